"""`edge train` and `edge eval` (workstation side: torch/transformers are imported inside).

    edge train --render train --scenes scenes/train --out models/default --seed 0 --decoder-seed 0 --batch-size 16 \
        --train-mergers
      (--render train == `edge scene --scenario all --seeds 0,1 --variant all --out scenes/train` first)
    edge eval --scenes scenes/heldout --out eval.json            # the built-in default bundle
    edge eval --bundle B --scenes scenes/heldout --out eval.json --precision int8+q4_k_m
    edge eval --bundle B --scenes scenes/validation --record      # agreement into B's manifest
    edge eval --bundle B --gate 0.97                              # exit 1 when B's recorded agreement is under 97%
    edge probe --checkpoint models/default --train-scenes scenes/train --scenes scenes/heldout --out probe.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from edge.commandline import add_bundle_option, add_command, add_precision_filter
from sim.cli import seed_list


def _to_stderr(line: str) -> None:
    """Progress lines go to stderr (line-buffered), so stdout keeps only the command's result."""
    print(line, file=sys.stderr)


# TrainConfig fields settable from the command line (defaults: train.config.TrainConfig).
_CONFIG_OPTIONS = ("decoder_seed", "steps", "vision_steps", "batch_size", "vision_batch_size", "lr", "warmup_steps",
                   "balance",
                   "balance_by", "mirror_draws", "action_balance", "aux_balance", "train_mergers", "experts_implementation",
                   "threads", "unfreeze_vision_blocks", "vision_lr_scale")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig an `edge train` command line asks for. Options left out keep TrainConfig's
    defaults (one place for them; training.json records all)."""
    from train.config import TrainConfig
    from train.mirror import expand_scenarios

    given = {name: getattr(args, name) for name in _CONFIG_OPTIONS if getattr(args, name) is not None}
    if args.mirror:
        given["mirror_scenarios"] = expand_scenarios(name for value in args.mirror for name in value.split(","))
    if args.init_checkpoint is not None:
        given["init_checkpoint"] = str(args.init_checkpoint)
    return TrainConfig(seed=args.seed, init_seed=args.init_seed, max_minutes=args.minutes, **given)


def _loss_summary(losses: list[float], phase: str) -> str:
    if not losses:
        return f"no {phase} steps"
    tail = losses[-20:]
    return f"{phase} loss {losses[0]:.3f} -> {sum(tail) / len(tail):.3f} (mean of the last {len(tail)})"


def _cmd_train(args: argparse.Namespace) -> int:
    from train.dataset import DatasetError
    from train.trainer import train

    if args.lora:
        from train.lora_cli import cmd_train_lora

        return cmd_train_lora(args)
    if args.scenes is None:
        print("edge train: --scenes is required (or --lora --base CHECKPOINT --data DIR)", file=sys.stderr)
        return 2

    config = config_from_args(args)
    recipe = json.loads(Path(args.recipe).read_text()) if args.recipe else None
    if args.render:
        from train.recipe import RECIPES, render_recipe

        chosen = RECIPES[args.render]
        render_recipe(chosen, args.scenes, progress=None if args.no_progress else _to_stderr)
        recipe = chosen.to_json()
    if args.real is not None:
        from sim.real_labels import LOOKS, TRAINING_LOOKS, RealLabelsError, find_real_clips, training_scenes

        wanted = [x for value in args.real_looks or [] for x in value.split(",") if x]
        looks = tuple(LOOKS) if wanted == ["all"] else tuple(wanted) or TRAINING_LOOKS
        try:
            clips = find_real_clips(args.real, split="train")
            training_scenes(clips, Path(args.scenes) / "real", looks=looks)
        except RealLabelsError as exc:
            print(f"edge train: {exc}", file=sys.stderr)
            return 2
        recipe = {**(recipe or {}), "real": {"folder": str(args.real), "clips": [c.name for c in clips],
                                             "looks": list(looks)}}
        if args.composite_seeds:
            from sim.composite import composite_scenes

            composite_scenes(clips, Path(args.scenes) / "composite", seeds=tuple(args.composite_seeds))
            recipe["real"]["composite_seeds"] = list(args.composite_seeds)
    # The command as typed (from the subcommand on), for training.json; None when called from Python.
    command = ["edge", *sys.argv[sys.argv.index("train"):]] if "train" in sys.argv[1:] else None
    try:
        out, result = train(args.scenes, args.out, config, cache_dir=args.cache, progress=not args.no_progress,
                            command=command, recipe=recipe,
                            log=_to_stderr if args.no_progress else None)
    except (DatasetError, FileExistsError) as exc:
        print(f"edge train: {exc}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    print(f"trained {len(result.vision_losses)} vision + {result.steps_done} decoder steps in "
          f"{result.seconds / 60:.1f} min; {_loss_summary(result.vision_losses, 'vision')}; "
          f"{_loss_summary(result.losses, 'decoder')}")
    if result.stopped_early:
        print(f"  stopped by --minutes {args.minutes} before --steps {config.steps}: not reproducible by step count")
    print(f"checkpoint written to {out} ({size / 2**20:.1f} MiB bf16), provenance in {out / 'training.json'}")
    print(f"  command: {shlex.join(command) if command else '(python API)'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from edge.manifest import BundleError
    from train.dataset import DatasetError

    if args.lora is not None:
        from train.lora_cli import cmd_eval_lora

        return cmd_eval_lora(args)
    if args.real is not None:
        return _cmd_eval_real(args)
    if args.scenes is None and args.gate is None:
        print("edge eval: --scenes or --real is required (or --gate alone, to check a bundle's recorded agreement)",
              file=sys.stderr)
        return 2
    try:
        agreement = _run_eval(args) if args.scenes is not None else _recorded_agreement(args.bundle)
    except (BundleError, DatasetError, ValueError) as exc:
        print(f"edge eval: {exc}", file=sys.stderr)
        return 2
    if args.gate is None:
        return 0
    return _apply_gate(agreement, args.gate)


def _cmd_eval_real(args: argparse.Namespace) -> int:
    from edge.manifest import BundleError
    from sim.labels import SidecarError
    from train.eval_real import evaluate_real

    emulate = [x for value in args.emulate or [] for x in value.split(",") if x]
    try:
        report = evaluate_real(args.bundle, args.real, args.out, combos=args.precision,
                               split=None if args.split == "all" else args.split, emulate=emulate,
                               progress=None if args.quiet else _to_stderr, confirm_cycles=args.confirm_cycles)
    except (BundleError, SidecarError, ValueError) as exc:
        print(f"edge eval: {exc}", file=sys.stderr)
        return 2
    for name, figures in report["precisions"].items():
        rate = figures["false_alarm_rate"]
        ece = figures["calibration"]["ece"]
        print(f"{name:16s} false alarms {figures['false_alarms']}/{figures['cycles']} cycles"
              + (f" ({rate:.1%})" if rate is not None else "")
              + f"; unwarranted manoeuvres {figures['unwarranted_manoeuvres']}"
              + f"; out of domain {figures['out_of_domain_rate'] or 0:.1%}"
              + (f"; ECE {ece:.3f}" if ece is not None else ""))
        for cond, agg in figures["per_condition"].items():
            print(f"  {cond:28s} {agg['false_alarms']}/{agg['cycles']} false alarms, "
                  f"{agg['unwarranted_manoeuvres']} unwarranted manoeuvres")
    if args.out is not None:
        print(f"report written to {args.out}")
    return 0


def _run_eval(args: argparse.Namespace) -> dict[str, float | None]:
    from train.eval import evaluate

    progress = None if args.quiet else _to_stderr
    if args.record:
        from train.gate import record_agreement

        bundle = args.bundle or _default_bundle()
        record = record_agreement(bundle, args.scenes, combos=args.precision, max_scenes=args.max_scenes,
                                  progress=progress)
        report = json.loads((Path(bundle) / record["report"]).read_text())
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    else:
        report = evaluate(args.bundle, args.scenes, args.out, combos=args.precision, max_scenes=args.max_scenes,
                          progress=progress, confirm_cycles=args.confirm_cycles)
    print_eval_figures(report)
    if args.out is not None:
        print(f"report written to {args.out}")
    if args.record:
        print("agreement recorded in the bundle's manifest (quality.driving_agreement)")
    return {name.split(" vs ")[0]: value for name, value in report["agreement"].items()}


def print_eval_figures(report: dict) -> None:
    """An eval report's accuracy per precision and agreement per pair, one line each (edge eval, fleet eval)."""
    for name, figures in report["precisions"].items():
        acc = figures["accuracy"]
        print(f"{name:16s} accuracy {acc:.1%} over {figures['cycles']} cycles" if acc is not None
              else f"{name:16s} no labelled cycles")
    for name, value in report["agreement"].items():
        print(f"{name:30s} agreement {value:.1%}" if value is not None else f"{name}: no common cycles")


def _default_bundle() -> Path:
    from train.default import ensure_default_bundle

    return ensure_default_bundle()


def _recorded_agreement(bundle: Path | None) -> dict[str, float | None]:
    from edge.manifest import load_bundle
    from edge.quality import QUALITY_KEY

    manifest, bundle_dir = load_bundle(bundle or _default_bundle())
    record = manifest.quality.get(QUALITY_KEY)
    if not record or not record.get("agreement"):
        raise ValueError(f"bundle {bundle_dir} records no driving agreement (measure it with --scenes DIR --record)")
    for combo, value in record["agreement"].items():
        print(f"{combo} vs {record['reference']:16s} agreement {value:.1%} (recorded, {record['cycles']} cycles)")
    return record["agreement"]


def _apply_gate(agreement: dict[str, float | None], threshold: float) -> int:
    from train.gate import gate_failures

    if not agreement:
        print("edge eval: no quantised combination was compared with the reference; nothing to gate", file=sys.stderr)
        return 1
    failures = gate_failures(agreement, threshold)
    for failure in failures:
        print(f"edge eval: gate FAIL {failure}", file=sys.stderr)
    if not failures:
        print(f"gate: PASS (every agreement >= {threshold:.1%})")
    return 1 if failures else 0


def _cmd_probe(args: argparse.Namespace) -> int:
    import torch

    from train.dataset import load_dataset
    from train.probe import probe
    from train.trainer import load_start_model

    if not (args.checkpoint / "config.json").is_file():
        print(f"edge probe: {args.checkpoint} is not a checkpoint folder (no config.json)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    train_set = load_dataset(args.train_scenes, args.cache)  # a DatasetError is printed by the edge command
    probe_set = load_dataset(args.scenes, args.cache)
    tokenizer, model = load_start_model(args.checkpoint, "eager")
    report = probe(model, tokenizer, train_set, probe_set, per_scenario=args.per_scenario,
                   train_stride=args.train_stride)
    report["checkpoint"], report["scenes"], report["train_scenes"] = (str(args.checkpoint), str(args.scenes),
                                                                      str(args.train_scenes))
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    decoder, tower = report["decoder"], report["tower_linear_probe"]
    print(f"{'scenario':26s} decoder  tower probe   ({report['clips']} clips)")
    for name in decoder["per_scenario"]:
        print(f"{name:26s} {decoder['per_scenario'][name]:7.0%}  {tower['per_scenario'][name]:7.0%}")
    print(f"{'overall':26s} {decoder['accuracy']:7.1%}  {tower['accuracy']:7.1%}")
    print(f"report written to {args.out}")
    return 0


def _cmd_fit_advice(args: argparse.Namespace) -> int:
    from edge.manifest import BundleError
    from sim.real_labels import RealLabelsError
    from train.advice_stats import apply_to_bundle, fit_confidence, fit_ood

    bundle = args.bundle or _default_bundle()
    stats = json.loads(args.out.read_text()) if args.out.is_file() else {}
    try:
        if args.ood_scenes:
            ood = fit_ood(bundle, args.ood_scenes, args.ood_real, progress=_to_stderr)
            stats["ood"] = ood.to_json()
            print(f"out-of-domain statistics: {ood.source}; threshold {ood.threshold:.3f}")
        if args.calibration_scenes:
            calibration, summary = fit_confidence(bundle, args.calibration_scenes, args.precision,
                                                  progress=_to_stderr)
            stats["confidence"] = calibration.to_json()
            stats["confidence_fit"] = summary
            print(f"confidence calibration: a {summary['a']:.3f}, b {summary['b']:.3f} over {summary['cycles']} "
                  f"cycles; ECE {summary['ece_raw']:.3f} raw -> {summary['ece_fitted']:.3f} fitted")
    except (BundleError, RealLabelsError, ValueError) as exc:
        print(f"edge fit-advice: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stats) + "\n")
    if args.apply:
        apply_to_bundle(bundle, stats)
        print(f"written into the bundle {bundle}")
    print(f"statistics written to {args.out}")
    return 0


def register(subparsers) -> None:
    _register_train(subparsers)
    _register_eval(subparsers)
    _register_fit_advice(subparsers)
    _register_probe(subparsers)


def _register_train(subparsers) -> None:
    train = add_command(
        subparsers, "train", _cmd_train,
        help="train the tiny advice model on rendered scenes (needs the [export] extra)",
        description="Teacher-forced training of a tiny Qwen3-VL-MoE (export.tiny dimensions) on clips from "
                    "`edge scene` folders, sampled as the runtime samples them, to answer with the advice JSON.",
    )
    train.add_argument("--scenes", type=Path, help="folder of `edge scene` outputs (searched recursively)")
    train.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (bf16 safetensors)")
    train.add_argument("--seed", type=int, default=0, help="batch order and torch seed (default %(default)s)")
    train.add_argument("--decoder-seed", type=int, default=None,
                       help="phase 2's batch order, if not --seed's (models are chosen among a few on the validation scenes)")
    train.add_argument("--init-seed", type=int, default=0, help="make_tiny_checkpoint seed of the start weights")
    train.add_argument("--init-checkpoint", type=Path, default=None,
                       help="warm start: fine-tune this trained checkpoint (its vision blocks stay frozen)")
    train.add_argument("--real", type=Path, default=None,
                       help="also train on the labelled recordings of this folder whose clips.json split is "
                            "'train' (as recorded, mirrored, emulated dusk/night/rain, dashboard, zoomed; data/drive)")
    train.add_argument("--real-looks", action="append", metavar="LOOK[,LOOK]",
                       help="with --real: the looks to train on instead (sim.real_labels.LOOKS, e.g. "
                            "random_view_0..random_view_3: random cameras), or 'all'")
    train.add_argument("--composite-seeds", type=seed_list, default=None, metavar="SEED[,SEED]",
                       help="with --real: also train on the actor-driven scenarios rendered with these seeds "
                            "and pasted onto the training recordings (sim.composite)")
    train.add_argument("--vision-steps", type=int, help="phase 1: vision tower + auxiliary head steps")
    train.add_argument("--steps", type=int, help="phase 2: whole-model teacher-forcing steps")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--vision-batch-size", type=int, help="clips per phase-1 step")
    train.add_argument("--lr", type=float)
    train.add_argument("--warmup-steps", type=int, help="phase 2's linear learning-rate warm-up")
    train.add_argument("--balance", type=float, help="sample weight = count(group) ** -BALANCE (0: uniform)")
    train.add_argument("--balance-by", choices=["scenario_action", "action"],
                       help="the groups --balance evens out")
    train.add_argument("--mirror", action="append", metavar="SCENARIO[,SCENARIO...]",
                       help="also train these scenarios' clips mirrored left-right, left and right swapped in the "
                            "answer and the navigation line (repeatable; lane_edge: the cyclist, stalled car, cones and "
                            "roadworks scenarios; nav_sided: the turns and the exit; sided: both)")
    train.add_argument("--mirror-draws", choices=["shared", "own"],
                       help="shared: a mirrored clip shares its original's draws (default); own: the mirrored "
                            "scenes are drawn as scenarios of their own, each answer with a full group's draws")
    train.add_argument("--action-balance", type=float,
                       help="extra weight scenarios(action) ** -X for actions that few scenarios have")
    train.add_argument("--aux-balance", type=float,
                       help="phase 1: weight each label's positives by ((1 - f) / f) ** X, f its frequency (0: off)")
    train.add_argument("--train-mergers", action=argparse.BooleanOptionalAction, default=None,
                       help="phase 2: also train the vision tower's output mergers (per-row MLPs; the tower's "
                            "blocks stay frozen)")
    train.add_argument("--unfreeze-vision-blocks", type=int, metavar="N",
                       help="phase 2: also train the vision tower's last N blocks (the others stay frozen)")
    train.add_argument("--vision-lr-scale", type=float,
                       help="phase 2: the vision tower's learning rate (mergers, unfrozen blocks) as a multiple of --lr")
    train.add_argument("--experts-implementation", choices=["eager", "grouped_mm"],
                       help="how transformers runs the MoE experts: the same function; grouped_mm makes a "
                            "decoder step ~20%% cheaper on the CPU (the shipped model was trained with eager)")
    train.add_argument("--threads", type=int, help="torch threads (fixed for reproducibility)")
    train.add_argument("--minutes", type=float, default=None, help="stop after this many minutes (a cap; recorded)")
    train.add_argument("--cache", type=Path, default=None, help="frame cache folder (default SCENES/.train_cache)")
    train.add_argument("--render", choices=["train", "validation", "heldout", "calibration"], default=None,
                       help="first render that built-in data recipe into --scenes (existing scenes are kept) and "
                            "record it in training.json")
    train.add_argument("--recipe", type=Path, default=None, help="JSON describing how the scenes were rendered "
                       "(stored in training.json)")
    train.add_argument("--no-progress", action="store_true",
                       help="no progress bars (for logs): a plain line with the loss every tenth of each phase")
    from train.lora_cli import add_lora_train_arguments

    add_lora_train_arguments(train)


def _register_eval(subparsers) -> None:
    ev = add_command(
        subparsers, "eval", _cmd_eval,
        help="meta-action accuracy of a bundle on labelled scenes, per precision (lock-step replay)",
        description="Replays every scene folder under --scenes through the runtime loop in lock-step, once per "
                    "precision combination of the bundle, and reports accuracy and quantised-vs-reference agreement.",
    )
    add_bundle_option(ev)
    ev.add_argument("--scenes", type=Path, default=None, help="folder of `edge scene` outputs (searched recursively)")
    ev.add_argument("--real", type=Path, default=None,
                    help="folder of labelled recordings (NAME.mp4 + NAME.labels.jsonl, optional clips.json): "
                         "false alarms per clip and condition, accuracy, calibration, out-of-domain rate")
    ev.add_argument("--split", default="validation", help="with --real: the clips.json split to replay "
                    "(train, validation, or all; default %(default)s; clips without an entry count as validation)")
    ev.add_argument("--confirm-cycles", type=int, default=None, metavar="N",
                    help="replay with this alarm confirmation (config advice.confirm_cycles; default: the runtime's, "
                         "2); 1 scores the decoder's own decisions")
    ev.add_argument("--emulate", action="append", metavar="LOOK[,LOOK]",
                    help="with --real: also replay darkened copies of every clip (dusk, night: an exposure "
                         "transform, not real footage), reported as conditions of their own")
    ev.add_argument("--out", type=Path, default=None, help="report JSON to write")
    add_precision_filter(ev, "evaluate only these combinations, e.g. int8+q4_k_m (repeatable; the reference is "
                             "always run)")
    ev.add_argument("--max-scenes", type=int, default=None, help="only the first N scenes (sorted by path)")
    ev.add_argument("--quiet", action="store_true")
    ev.add_argument("--record", action="store_true",
                    help="store the agreement figures in the bundle (manifest quality.driving_agreement and "
                    "reports/eval.json); the runtime warns at load when its combination is under runtime.min_agreement")
    ev.add_argument("--gate", type=float, default=None, metavar="MIN",
                    help="exit 1 when a quantised combination agrees with the reference on fewer than MIN of the "
                    "cycles, e.g. 0.97; without --scenes the bundle's recorded agreement is checked")
    from train.lora_cli import add_lora_eval_arguments

    add_lora_eval_arguments(ev)


def _register_fit_advice(subparsers) -> None:
    fit = add_command(
        subparsers, "fit-advice", _cmd_fit_advice,
        help="fit a bundle's out-of-domain statistics and confidence calibration (advice_stats.json)",
        description="Out-of-domain statistics: the pooled vision embedding of one clip a second of the training "
                    "videos. Confidence calibration: Platt scaling of the raw action probability against correctness "
                    "over a lock-step replay of labelled scenes (validation, never held-out). The file goes next to "
                    "a checkpoint (models/default/advice_stats.json), and the default bundle carries it.",
    )
    add_bundle_option(fit)
    fit.add_argument("--ood-scenes", type=Path, action="append", help="rendered training scenes (repeatable)")
    fit.add_argument("--ood-real", type=Path, default=None, help="labelled recordings; their train split is in-domain")
    fit.add_argument("--calibration-scenes", type=Path, default=None, help="labelled scenes to fit the calibration on")
    fit.add_argument("--precision", default=None, metavar="ENCODER+DECODER",
                     help="the combination to fit on (default: the bundle's most quantised, what the runtime runs)")
    fit.add_argument("--out", type=Path, required=True, help="advice_stats.json to write (updated when it exists)")
    fit.add_argument("--apply", action="store_true", help="also write the result into the bundle")


def _register_probe(subparsers) -> None:
    pr = add_command(
        subparsers, "probe", _cmd_probe,
        help="where a checkpoint's misses live: the decoder's greedy action vs a linear probe on the vision tower",
        description="On a stratified sample of --scenes' clips, scores the checkpoint's greedy action (transformers) "
                    "and a linear classifier fitted on the frozen vision tower's pooled rows of --train-scenes' clips, "
                    "per scenario. The tower right and the decoder wrong: the decoder does not read what the tower has.",
    )
    pr.add_argument("--checkpoint", type=Path, required=True, help="`edge train` checkpoint folder")
    pr.add_argument("--train-scenes", type=Path, required=True, help="scenes the linear probe is fitted on")
    pr.add_argument("--scenes", type=Path, required=True, help="scenes the verdicts are scored on (held out)")
    pr.add_argument("--out", type=Path, required=True, help="report JSON to write")
    pr.add_argument("--per-scenario", type=int, default=40, help="clips scored per scenario (default %(default)s)")
    pr.add_argument("--train-stride", type=int, default=3, help="fit on every Nth training clip (default %(default)s)")
    pr.add_argument("--cache", type=Path, default=None, help="frame cache folder (default SCENES/.train_cache)")
    pr.add_argument("--threads", type=int, default=2)
