"""`edge capture now [--dir CAPTURE_DIR | --pid PID]`: ask a running runtime for a bad-case capture.

The runtime writes its process id to ``runtime.pid`` in its capture folder and captures on SIGUSR1
(edge/runtime.py); this command sends that signal. `edge capture list DIR` prints captures.jsonl;
`edge capture scene SEGMENT --out DIR` turns a segment into a scene folder (edge/drivelog/scene.py)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

PID_FILE = "runtime.pid"
INDEX_FILE = "captures.jsonl"


def _now(args: argparse.Namespace) -> int:
    pid = args.pid
    if pid is None:
        pid_file = args.dir / PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            print(f"edge capture: no running runtime recorded in {pid_file}: {exc}", file=sys.stderr)
            return 2
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        print(f"edge capture: no process {pid} (the runtime is not running)", file=sys.stderr)
        return 2
    print(f"edge capture: asked process {pid} for a capture")
    return 0


def _list(args: argparse.Namespace) -> int:
    index = args.dir / INDEX_FILE
    if not index.is_file():
        print(f"edge capture: no {INDEX_FILE} in {args.dir}", file=sys.stderr)
        return 2
    for line in index.read_text().splitlines():
        row = json.loads(line)
        print(f"{row['file']}  {row['trigger']:<9} {row['reason'][:60]:<60} advice seqs {row['advice_seqs'][:8]}")
    return 0


def _scene(args: argparse.Namespace) -> int:
    from edge.drivelog.reader import DriveLogError, read_drive_log
    from edge.drivelog.scene import TEMPLATE_NAME, write_scene

    try:
        log = read_drive_log([args.segment])
        out = write_scene(log, args.out, args.segment.name)
    except DriveLogError as exc:
        print(f"edge capture: {exc}", file=sys.stderr)
        return 2
    for damage in log.damage:
        print(f"edge capture: damaged segment, converted up to the damage: {damage}", file=sys.stderr)
    print(f"{out}: add labels.jsonl (start from {TEMPLATE_NAME}), then `edge eval --scenes` takes it")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("capture", help="bad-case capture: trigger one now, or list the captures")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    now = actions.add_parser("now", help="capture the window around now (SIGUSR1 to the runtime)")
    now.add_argument("--dir", type=Path, default=Path("."), help="the runtime's capture folder (capture.dir)")
    now.add_argument("--pid", type=int, help="the runtime's process id (instead of --dir)")
    now.set_defaults(func=_now)
    listing = actions.add_parser("list", help="print a capture folder's index")
    listing.add_argument("dir", type=Path, help="capture folder")
    listing.set_defaults(func=_list)
    scene = actions.add_parser("scene", help="a captured segment as a scene folder for edge eval / edge train")
    scene.add_argument("segment", type=Path, help="capture-*.mcap (or any drive log file)")
    scene.add_argument("--out", type=Path, required=True, help="scene folder to write")
    scene.set_defaults(func=_scene)
