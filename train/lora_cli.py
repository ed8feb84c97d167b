"""The LoRA side of `edge train` and `edge eval` (docs/LORA.md):

    edge train --lora --base models/default --data scenes/fog --out adapters/fog --domain fog
    edge eval --lora fog --bundle B --scenes scenes/heldout --out lora-eval.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_lora_train_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LoRA adapter (--lora)")
    group.add_argument("--lora", action="store_true",
                       help="train a LoRA adapter (PEFT) on the decoder attention of --base instead of a model")
    group.add_argument("--base", type=Path, default=Path("models/default"), help="base checkpoint (default %(default)s)")
    group.add_argument("--data", type=Path, help="folder of labelled `edge scene` outputs (searched recursively)")
    group.add_argument("--rank", type=int, default=8)
    group.add_argument("--alpha", type=float, default=16.0)
    group.add_argument("--name", default=None, help="adapter name in the bundle (default: --out's folder name)")
    group.add_argument("--domain", default="unspecified",
                       help="the scenario or look the adapter is for (edge eval --lora scores it separately)")


def cmd_train_lora(args: argparse.Namespace) -> int:
    from train.dataset import DatasetError
    from train.lora import LoraTrainConfig, train_lora

    if args.data is None:
        print("edge train --lora: --data DIR is required", file=sys.stderr)
        return 2
    given = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "threads") if getattr(args, k) is not None}
    config = LoraTrainConfig(name=args.name or args.out.name, domain=args.domain, rank=args.rank, alpha=args.alpha,
                             seed=args.seed, max_minutes=args.minutes, **given)
    command = ["edge", *sys.argv[sys.argv.index("train"):]] if "train" in sys.argv[1:] else None
    try:
        out, record = train_lora(args.base, args.data, args.out, config, cache_dir=args.cache,
                                 progress=not args.no_progress, command=command)
    except (DatasetError, FileExistsError, FileNotFoundError) as exc:
        print(f"edge train --lora: {exc}", file=sys.stderr)
        return 2
    result = record["result"]
    size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    print(f"adapter {config.name!r} ({config.domain}, rank {config.rank}): {result['steps_done']} steps in "
          f"{result['seconds'] / 60:.1f} min, loss {result['loss_first']:.3f} -> {result['loss_last_10_mean']:.3f}; "
          f"{result['trainable_parameters']} parameters ({size / 1024:.0f} KiB) in {out}")
    print(f"  command: {shlex.join(command) if command else '(python API)'}")
    return 0


def add_lora_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora", default=None, metavar="NAME",
                        help="compare the bundle's adapter NAME with the base: its domain's accuracy and every other "
                        "scenario's; flagged when it costs more than --max-cost elsewhere")
    parser.add_argument("--lora-scale", type=float, default=1.0)
    parser.add_argument("--max-cost", type=float, default=0.01, help="--lora: flag above this loss (default 1 point)")


def cmd_eval_lora(args: argparse.Namespace) -> int:
    from edge.manifest import BundleError
    from train.dataset import DatasetError
    from train.lora_gate import evaluate_lora

    if args.scenes is None:
        print("edge eval --lora: --scenes is required", file=sys.stderr)
        return 2
    from train.cli import _default_bundle

    try:
        report = evaluate_lora(args.bundle or _default_bundle(), args.scenes, args.lora, scale=args.lora_scale,
                               combos=args.precision, max_scenes=args.max_scenes, out=args.out,
                               max_cost=args.max_cost, progress=None if args.quiet else print)
    except (BundleError, DatasetError, ValueError) as exc:
        print(f"edge eval: {exc}", file=sys.stderr)
        return 2

    def pct(value):
        return "-" if value is None else f"{value:.1%}"

    print(f"adapter {report['adapter']!r} (domain {report['adapter_domain']}, {report['precision']}):")
    for part in ("domain", "elsewhere"):
        base, adapted = report[part]["base"], report[part]["adapted"]
        print(f"  {part:10s} base {pct(base['accuracy'])} -> adapted {pct(adapted['accuracy'])} "
              f"({base['cycles']} cycles)")
    for scenario, before in report["elsewhere"]["base"]["per_scenario"].items():
        print(f"    {scenario:26s} {pct(before)} -> {pct(report['elsewhere']['adapted']['per_scenario'].get(scenario))}")
    if report["flagged"]:
        print(f"FLAGGED: costs more than {report['max_cost']:.0%} elsewhere: {'; '.join(report['flag_reasons'])}")
    return 1 if report["flagged"] else 0
