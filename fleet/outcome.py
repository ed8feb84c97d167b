"""What a worker sends back for one drive: its runs per precision combination, or why it failed."""

from __future__ import annotations

from dataclasses import dataclass, field

from train.dataset import Scene
from train.eval import SceneRun

# Why a drive failed, as far as retrying goes: its own input is bad (the same on every worker: no
# retry), or the worker is (its bundle differs, it crashed, it died): another worker may do better.
BAD_INPUT = "bad_input"
WORKER_FAULT = "worker_fault"


@dataclass
class DriveOutcome:
    drive: Scene
    worker: str  # host:pid of the worker that replayed (or tried) it
    runs: dict[str, SceneRun] = field(default_factory=dict)  # per combination name
    error: str | None = None
    error_kind: str | None = None  # BAD_INPUT or WORKER_FAULT when error is set
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the worker's process (all its threads) while on this drive

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class LogOutcome:
    """What a worker sends back for one drive log (or plain video) of `edge fleet replay`."""

    drive: object  # fleet.logs.LogItem
    worker: str
    error: str | None = None
    error_kind: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    figures: dict = field(default_factory=dict)  # counts, agreement, latency, damage (fleet.replay_report)
    cycles: list[dict] = field(default_factory=list)  # per cycle: recorded and replayed advice, verdicts, total_ms

    @property
    def ok(self) -> bool:
        return self.error is None
