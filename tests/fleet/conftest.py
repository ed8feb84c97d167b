"""Fixtures of the fleet tests: the built-in default bundle, a few short held-out drives, and a check
that no Ray process outlives a test."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("ray")

HELDOUT_SEED = 1001  # never used for training or calibration (tests/export/test_eval.py)
DRIVE_SECONDS = 4.0  # cycles at 1.5, 2.0, ... 3.5 s: 5 per drive
SCENARIOS = ("red_light", "pedestrian_crossing", "cyclist_nudge", "turn_right")


# Ray's daemons and workers inherit the test session's environment, so this marker tells this
# session's Ray processes from those of another Ray on the same machine (even once re-parented).
SESSION_MARK = f"EDGE_FLEET_TEST_SESSION={uuid.uuid4().hex}"
os.environ[SESSION_MARK.split("=")[0]] = SESSION_MARK.split("=")[1]


def ray_processes() -> set[int]:
    """This test session's Ray daemons and workers (raylet, GCS, ray:: actor processes)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if not (b"raylet" in cmdline or b"gcs_server" in cmdline or cmdline.startswith(b"ray::")):
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if SESSION_MARK.encode() in environ:
            found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_ray_process_left_behind():
    before = ray_processes()
    yield
    deadline = time.monotonic() + 15  # shutdown ends them within seconds
    while (left := ray_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes left running after the test: {sorted(left)}"


@pytest.fixture(scope="session")
def default_bundle() -> Path:
    from train.default import ensure_default_bundle

    return ensure_default_bundle(progress=False)


@pytest.fixture(scope="session")
def drives_root(tmp_path_factory) -> Path:
    """Four short rendered drives, one folder each (video.mp4, labels.jsonl, nav.jsonl, scene.json)."""
    from sim.scene import render_scene

    root = tmp_path_factory.mktemp("drives")
    for name in SCENARIOS:
        render_scene(name, HELDOUT_SEED, root / name, duration_s=DRIVE_SECONDS)
    return root


def os_kill(pid: int) -> None:
    import signal

    os.kill(pid, signal.SIGKILL)


def interrupt_after_first(command: list[str], out: Path) -> dict:
    """Run a fleet command as a terminal's foreground job, press Ctrl-C once its progress bar shows
    the first finished item, and return the report it wrote (after checking it exited 130)."""
    import json
    import signal
    import subprocess

    # Its own session, as a terminal's foreground job: Ctrl-C reaches the whole group, Ray's daemons too.
    # A shell starts a foreground job with Ctrl-C's default action; a child inherits an ignored SIGINT
    # from whatever ran before in this test process, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    deadline = time.monotonic() + 300
    while b"done=1" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += os.read(proc.stderr.fileno(), 4096)  # the progress bar
    assert b"done=1" in seen, seen.decode(errors="replace")[-2000:]
    os.killpg(proc.pid, signal.SIGINT)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout.decode()
    report = json.loads(out.read_text())
    assert report["fleet"]["interrupted"] is True
    return report
