"""The logs of `edge fleet replay`: MCAP drive logs, and plain videos where a drive has no log.

Each MCAP file is one unit of work (a file registers every channel and starts with the frames and
navigation in use, so it replays on its own; edge/drivelog). A video file is replayed in lock-step
like `edge sim` does (with the `nav.jsonl` beside it, if any); it has no recorded advice, so its row
has cycles, advice and latency but no agreement. Folders are searched recursively; a folder that
holds MCAP files contributes those only (its video, if any, is what was logged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError

MCAP, VIDEO = "mcap", "video"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
NAV_NAME = "nav.jsonl"


class LogsError(EdgeError):
    """The logs given cannot be listed (a path that does not exist, nothing to replay)."""


@dataclass(frozen=True)
class LogItem:
    path: Path
    rel: str  # unique name in the report
    kind: str  # MCAP or VIDEO

    @property
    def nav(self) -> Path | None:
        nav = self.path.parent / NAV_NAME
        return nav if self.kind == VIDEO and nav.is_file() else None


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return MCAP if suffix == ".mcap" else VIDEO if suffix in VIDEO_SUFFIXES else None


def _in_folder(root: Path) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and _kind(p) is not None)
    logged = {p.parent for p in files if _kind(p) == MCAP}
    return [p for p in files if _kind(p) == MCAP or p.parent not in logged]


def find_logs(paths: list[Path]) -> list[LogItem]:
    """Every log and video named or under the folders named, in the order given (sorted within a folder)."""
    items: list[LogItem] = []
    for given in map(Path, paths):
        if given.is_dir():
            prefix = given.name if len(paths) > 1 else ""
            for path in _in_folder(given):
                rel = path.relative_to(given).as_posix()
                items.append(LogItem(path, f"{prefix}/{rel}" if prefix else rel, _kind(path)))  # type: ignore[arg-type]
        elif given.is_file():
            # A file named explicitly is taken at its word: a .mcap that is not MCAP fails in its row.
            items.append(LogItem(given, given.as_posix(), _kind(given) or MCAP))
        else:
            raise LogsError(f"{given} does not exist")
    if not items:
        raise LogsError(f"no MCAP logs or videos under {', '.join(map(str, paths))}")
    names = [item.rel for item in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LogsError(f"logs given twice: {', '.join(duplicates)}")
    return items
