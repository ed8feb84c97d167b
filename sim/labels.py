"""Ground truth from a simulated drive: ``labels.jsonl`` and ``nav.jsonl``.

``labels.jsonl``: one JSON object per time window in which the right answer does not change::

    {"start_ms": 2500, "end_ms": 4000,
     "actions": ["decelerate", "stop"],      # acceptable meta-actions, primary first
     "lateral": "keep_lane",                 # the optional second action of the advice, or null
     "hazards": ["yellow_light"], "urgency": "medium",
     "rationale": "traffic light turning yellow ahead", "source": "traffic_light"}

Windows are contiguous, half-open ``[start_ms, end_ms)``, and cover the whole video; frame i
(captured at ``i / fps`` s) belongs to the window containing ``1000 * i / fps``.

``nav.jsonl``: one line per navigation instruction to publish, at ``at_ms`` video time, with
the fields of ``edge.messages.NavInstruction`` (validated with it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.messages import MAX_HAZARDS, Advice, Hazard, MetaAction, NavInstruction, Urgency
from sim.drive import Drive

LOW_VISIBILITY_VARIANTS = ("night", "rain")


@dataclass(frozen=True)
class LabelWindow:
    start_ms: int
    end_ms: int
    actions: tuple[MetaAction, ...]
    hazards: tuple[Hazard, ...]
    urgency: Urgency
    lateral: MetaAction | None
    rationale: str
    source: str

    @property
    def primary(self) -> MetaAction:
        return self.actions[0]

    def contains(self, t_ms: float) -> bool:
        return self.start_ms <= t_ms < self.end_ms

    def accepts(self, action: MetaAction | str) -> bool:
        return MetaAction(action) in self.actions

    def to_json(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "actions": [a.value for a in self.actions],
            "lateral": self.lateral.value if self.lateral else None,
            "hazards": [h.value for h in self.hazards],
            "urgency": self.urgency.value,
            "rationale": self.rationale,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LabelWindow:
        try:
            return cls(
                start_ms=int(obj["start_ms"]),
                end_ms=int(obj["end_ms"]),
                actions=tuple(MetaAction(a) for a in obj["actions"]),
                hazards=tuple(Hazard(h) for h in obj.get("hazards", [])),
                urgency=Urgency(obj.get("urgency", "low")),
                lateral=MetaAction(obj["lateral"]) if obj.get("lateral") else None,
                rationale=str(obj.get("rationale", "")),
                source=str(obj.get("source", "")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"bad label line {obj!r}: {exc}") from exc

    def advice(self) -> Advice:
        """The advice a perfect model would give in this window (a training target)."""
        return Advice(action=self.primary, urgency=self.urgency, lateral=self.lateral,
                      hazards=list(self.hazards), rationale=self.rationale)


def label_windows(drive: Drive) -> list[LabelWindow]:
    """Merge consecutive frames with the same situation into windows."""
    sc = drive.scenario
    duration_ms = round(sc.duration_s * 1000)
    low_vis = sc.variant in LOW_VISIBILITY_VARIANTS
    windows: list[LabelWindow] = []
    for frame in drive.frames:
        sit = frame.situation
        hazards = tuple(sit.hazards)
        if low_vis and Hazard.LOW_VISIBILITY not in hazards and len(hazards) < MAX_HAZARDS:
            hazards = (*hazards, Hazard.LOW_VISIBILITY)
        start = round(frame.t * 1000)
        key = (sit.actions, hazards, sit.urgency, sit.lateral, sit.rationale, sit.source)
        if windows:
            last = windows[-1]
            if (last.actions, last.hazards, last.urgency, last.lateral, last.rationale, last.source) == key:
                continue
            windows[-1] = _close(last, start)
        windows.append(LabelWindow(start, duration_ms, sit.actions, hazards, sit.urgency, sit.lateral,
                                   sit.rationale, sit.source))
    return windows


def _close(window: LabelWindow, end_ms: int) -> LabelWindow:
    return LabelWindow(window.start_ms, end_ms, window.actions, window.hazards, window.urgency, window.lateral,
                       window.rationale, window.source)


def nav_lines(drive: Drive) -> list[dict[str, Any]]:
    """The navigation timeline, each line checked against the wire model."""
    lines = []
    for line in drive.nav:
        fields = {k: v for k, v in line.items() if k != "at_ms"}
        NavInstruction(**fields)  # raises on anything the runtime would refuse
        lines.append(dict(line))
    return lines


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    path = Path(path)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
    return path


class SidecarError(EdgeError, ValueError):
    """A labels.jsonl or nav.jsonl that cannot be read; the message names the file and line."""


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with Path(path).open() as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise SidecarError(f"{path}:{number}: not JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SidecarError(f"{path}: cannot read it ({exc})") from None
    return rows


def load_labels(path: str | Path) -> list[LabelWindow]:
    windows = []
    for number, row in enumerate(read_jsonl(path), 1):
        try:
            windows.append(LabelWindow.from_json(row))
        except ValueError as exc:
            raise SidecarError(f"{path}: label {number}: {exc}") from None
    return windows


def load_nav(path: str | Path) -> list[tuple[int, NavInstruction]]:
    """(at_ms, instruction) pairs, in time order."""
    out = []
    for number, row in enumerate(read_jsonl(path), 1):
        try:
            fields = dict(row)
            at_ms = int(fields.pop("at_ms"))
            out.append((at_ms, NavInstruction(**fields)))
        except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SidecarError(f"{path}: navigation message {number}: {reason}") from None
    return sorted(out, key=lambda p: p[0])


def window_at(windows: list[LabelWindow], t_ms: float) -> LabelWindow | None:
    for w in windows:
        if w.contains(t_ms):
            return w
    return None
