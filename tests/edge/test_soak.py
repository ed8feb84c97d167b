"""A 500-cycle soak of the loop with real parts: nothing grows, the audit log rotates without loss."""

from __future__ import annotations

import pytest

from edge.bench.soak import run_soak

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_soak_500_cycles_holds(tiny_bundle, drive_videos):
    report = run_soak(tiny_bundle, drive_videos[0], cycles=500, warmup=100, audit_max_bytes=32 * 1024,
                      progress=None)
    held = report["held"]
    assert all(held.values()), (held, report["memory"], report["audit"])
    assert report["audit"]["rotations"] >= 3
    assert report["work"]["nav_used"] > 0
    assert sum(report["work"]["verdicts"].values()) == 500
