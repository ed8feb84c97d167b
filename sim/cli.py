"""``edge scene``: render synthetic scenes with ground truth.

    edge scene --list
    edge scene --scenario red_light --seed 3 --out scenes/red_light
    edge scene --scenario all --seeds 0:4 --variant all --out scenes/   # one folder per scene

``register(subparsers)`` adds the command to `edge` (edge_cli/main.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def seed_list(text: str) -> list[int]:
    """"3" -> [3]; "0:4" -> [0, 1, 2, 3]; "1,5,9" -> [1, 5, 9]."""
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            return list(range(int(a), int(b)))
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seeds {text!r}: use N, A:B or N,M,...") from None


def _add_scene(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "scene",
        help="render a synthetic drive with ground-truth labels",
        description="Render a scenario to DIR/video.mp4, labels.jsonl, nav.jsonl, scenario.toml, scene.json.",
    )
    p.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")
    p.add_argument("--scenario", help="built-in name, path to a .toml file, or 'all'")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--seeds", type=seed_list, help="several seeds (A:B or N,M,...); one sub-folder per seed")
    p.add_argument("--variant", help="override the look: day, dusk, night, rain, or 'all'")
    p.add_argument("--duration", type=float, help="override the duration in seconds (later events are dropped)")
    p.add_argument("--fps", type=float, help="override the frame rate")
    p.add_argument("--width", type=int, help="override the frame width")
    p.add_argument("--height", type=int, help="override the frame height")
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_scene)


def register(subparsers: argparse._SubParsersAction) -> None:
    _add_scene(subparsers)


def cmd_scene(args: argparse.Namespace) -> int:
    from sim.scenario import VARIANTS, ScenarioError, builtin_descriptions, builtin_names
    from sim.scene import render_scene

    if args.list:
        for name, description in builtin_descriptions().items():
            print(f"{name:26s} {description}")
        return 0
    if not args.scenario or args.out is None:
        print("edge scene: --scenario and --out are required (or --list)", file=sys.stderr)
        return 2
    names = builtin_names() if args.scenario == "all" else [args.scenario]
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    seeds = args.seeds if args.seeds is not None else [args.seed]
    many = len(names) * len(variants) * len(seeds) > 1
    for name in names:
        for variant in variants:
            for seed in seeds:
                out = args.out
                if many:
                    stem = Path(name).stem
                    out = out / stem / (variant or "default") / f"seed{seed}"

                def progress(done: int, total: int, _out: Path = out) -> None:
                    if not args.quiet and (done == total or done % 25 == 0):
                        print(f"\r{_out}: frame {done}/{total}", end="" if done < total else "\n", flush=True)

                try:
                    files = render_scene(name, seed, out, duration_s=args.duration, fps=args.fps, variant=variant,
                                         width=args.width, height=args.height, progress=progress)
                except ScenarioError as exc:
                    print(f"edge scene: {exc}", file=sys.stderr)
                    return 2
                if not args.quiet:
                    print(f"{files.name} seed {files.seed} ({files.variant}): {files.n_frames} frames -> {files.out_dir}")
    return 0
