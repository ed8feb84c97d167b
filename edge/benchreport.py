"""One shape for every benchmark and report file (DESIGN.md, "Benchmark and report files").

A benchmark measures its baseline and its own variant in the same run and writes
``{"bench", "created", "machine", "results", "ratios"}``. Ratios are ``A_over_B_<stat>``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# A report is plain JSON: its values are whatever each bench measured.
Report = dict[str, Any]


@dataclass(frozen=True)
class Stats:
    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    median_ms: float
    mean_ms: float

    @classmethod
    def from_samples(cls, samples_ms: Iterable[float]) -> Stats:
        values = np.asarray(list(samples_ms), dtype=np.float64)
        if values.size == 0:
            raise ValueError("no samples: a benchmark that measured nothing has no statistics")
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return cls(
            n=int(values.size),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            max_ms=float(values.max()),
            median_ms=float(p50),
            mean_ms=float(values.mean()),
        )

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name, or None. Reads the driver's proc file so no CUDA library is
    needed just to label a report."""
    root = Path("/proc/driver/nvidia/gpus")
    if not root.is_dir():
        return None
    for info in sorted(root.glob("*/information")):
        for line in info.read_text().splitlines():
            if line.startswith("Model:"):
                return line.split(":", 1)[1].strip()
    return None


def machine_info() -> dict[str, object]:
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def make_report(
    bench: str,
    results: Mapping[str, object],
    ratios: Mapping[str, float | None],
    **extra: object,
) -> Report:
    report: Report = {
        "bench": bench,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "results": results,
        "ratios": ratios,
    }
    report.update(extra)
    return report


def print_ratios(ratios: Mapping[str, float | None], digits: int = 2, prefix: str = "") -> None:
    """One line per ratio, `n/a` where it could not be computed (a zero denominator)."""
    for name, value in ratios.items():
        print(f"{prefix}{name}: {value:.{digits}f}" if value is not None else f"{prefix}{name}: n/a")


def write_report(path: str | Path, report: Mapping[str, object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path
