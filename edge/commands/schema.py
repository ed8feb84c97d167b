"""`edge schema --out DIR`: one JSON Schema file per wire message, for planners in other languages."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.messages import MESSAGE_TYPES


def message_schemas() -> dict[str, dict]:
    """File name -> JSON Schema of each topic's message model."""
    return {f"{topic}.schema.json": model.model_json_schema() for topic, model in sorted(MESSAGE_TYPES.items())}


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in message_schemas().items():
        path = out_dir / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="write JSON Schema files for the wire messages")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    for path in write_schemas(args.out):
        print(path)
    return 0
