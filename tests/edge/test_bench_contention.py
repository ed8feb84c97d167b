"""`edge bench contention` on the tiny bundle: three cases measured in child processes, one report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge.bench.contention import CASES, STAGES, TARGETS

pytestmark = pytest.mark.slow


def test_contention_report_has_every_case_and_the_target_ratios(tiny_bundle, drive_videos, tmp_path):
    out = tmp_path / "c.json"
    done = subprocess.run(
        [sys.executable, "-m", "edge_cli", "bench", "contention", "--bundle", str(tiny_bundle),
         "--video", str(drive_videos[0]), "--cycles", "3", "--rounds", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["bench"] == "contention"
    for case in CASES:
        for stage in STAGES:
            assert report["results"][f"{case}.{stage}"]["n"] == 3
    assert set(TARGETS) <= set(report["ratios"])
    assert set(report["held"]) == set(TARGETS)
    assert len(report["load_average"]["before"]) == 3
    assert report["config"]["variants"]["default"]["decoder_threads"]["generation"] == 1
