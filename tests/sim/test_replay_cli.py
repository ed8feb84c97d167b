"""`edge sim` as a user runs it: a planner outside the simulator follows a lock-step replay on a
configured endpoint, and bad input is refused in one line before any model loads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from sim.scene import render_scene

pytestmark = pytest.mark.slow

FAST = ["--set", "decoder.threads=1", "--set", "decoder.max_tokens=40"]


def edge(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_cli", *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene") / "red_light"
    return render_scene("red_light", seed=3, out_dir=out, duration_s=4.0)


def test_edge_listen_follows_a_lockstep_replay_on_a_configured_endpoint(tiny_bundle, scene, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    # 4 s at 10 fps, 500 ms sampling, 4-frame clips: five cycles.
    listener = subprocess.Popen(edge("listen", endpoint, "--json", "--count", "5", "--timeout-s", "240"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Subscribed before the replay binds (ZeroMQ retries the connection until it does).
    assert listener.stderr.readline().startswith(f"# listening on {endpoint}")
    # Validity long enough for a machine as busy as CI can be (a cycle of seconds), and far shorter
    # than the months a wall clock starting at a fixed epoch would be off by.
    valid = ["--set", "budgets.advice_valid_ms=60000"]
    replay = subprocess.run(
        edge("sim", "--bundle", str(tiny_bundle), "--video", str(scene.video), "--out", str(tmp_path / "report"),
             "--quiet", "--set", f"bus.publish_endpoint={endpoint!r}", *valid, *FAST),
        capture_output=True, text=True, timeout=300,
    )
    assert replay.returncode == 0, replay.stderr
    out, err = listener.communicate(timeout=120)
    assert listener.returncode == 0, err
    advice = [json.loads(line) for line in out.splitlines()]
    assert [a["cycle"] for a in advice] == [0, 1, 2, 3, 4]
    assert "expired 0" in err and "lost 0" in err
    # The simulated wall clock follows the real one: each advice is valid for a while after receipt.
    for a in advice:
        taken = a["frames"][-1]["capture_wall_ns"]
        assert taken <= a["wall_ns"] < a["valid_until_wall_ns"] == taken + 60 * 10**9
    assert json.loads((tmp_path / "report" / "report.json").read_text())["advice_count"] == 5


def test_an_unconfigured_endpoint_is_a_free_local_port(tiny_bundle, scene, tmp_path):
    """Two replays side by side: neither names an endpoint, so neither collides with the other or
    with a runtime on the default ports."""
    runtime_ports = zmq.Context.instance().socket(zmq.PUB)
    runtime_ports.bind("tcp://127.0.0.1:5555")  # what a runtime with the default config holds
    try:
        replay = subprocess.run(
            edge("sim", "--bundle", str(tiny_bundle), "--video", str(scene.video), "--out", str(tmp_path / "r"),
                 "--quiet", "--max-cycles", "1", *FAST),
            capture_output=True, text=True, timeout=300,
        )
    finally:
        runtime_ports.close(0)
    assert replay.returncode == 0, replay.stderr


@pytest.fixture
def not_a_loadable_bundle(tmp_path):
    """A folder with a manifest that no loader accepts: a command that loaded models before
    checking its other inputs would fail on it with a bundle error instead of the input's."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    return bundle


def bad_videos(tmp_path, drive_videos):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(bytes(range(256)) * 200)
    cut = tmp_path / "cut.mp4"
    source = next(v for v in drive_videos if "vehdet_test_video" in v.name)
    cut.write_bytes(source.read_bytes()[:300_000])  # the index is at the end: little decodes
    return {
        "empty": (empty, "is empty"),
        "noise": (noise, "does not recognise it"),
        "truncated": (cut, "no clip could be taken"),
        "missing": (tmp_path / "missing.mp4", "does not exist"),
    }


def assert_refused(done: subprocess.CompletedProcess, command: str, reason: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edge {command}: ") and reason in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("case", ["empty", "noise", "truncated", "missing"])
def test_sim_refuses_a_bad_video_before_loading_the_bundle(case, not_a_loadable_bundle, drive_videos, tmp_path):
    video, reason = bad_videos(tmp_path, drive_videos)[case]
    out = tmp_path / "out"
    done = subprocess.run(edge("sim", "--bundle", str(not_a_loadable_bundle), "--video", str(video), "--out",
                               str(out)), capture_output=True, text=True, timeout=120)
    assert_refused(done, "sim", reason)
    assert not out.exists()  # nothing half-written


def test_sim_refuses_bad_sidecars_and_bundles(not_a_loadable_bundle, drive_videos, tmp_path):
    video = drive_videos[0]
    nav = tmp_path / "nav.jsonl"
    nav.write_text('{"at_ms": 0, "nav_id": "n1"}\n{"at_ms": "soon"\n')
    done = subprocess.run(edge("sim", "--bundle", str(not_a_loadable_bundle), "--video", str(video), "--nav",
                               str(nav), "--out", str(tmp_path / "o")), capture_output=True, text=True, timeout=120)
    assert_refused(done, "sim", "nav.jsonl:2: not JSON")
    empty_folder = tmp_path / "no_manifest"
    empty_folder.mkdir()
    done = subprocess.run(edge("sim", "--bundle", str(empty_folder), "--video", str(video), "--out",
                               str(tmp_path / "o")), capture_output=True, text=True, timeout=120)
    assert_refused(done, "sim", "has no manifest.json")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["sim", "run"])
def test_an_endpoint_another_process_holds_is_refused(command, not_a_loadable_bundle, drive_videos, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    holder = zmq.Context.instance().socket(zmq.PUB)
    holder.bind(endpoint)
    try:
        video = str(drive_videos[0])
        args = (["sim", "--video", video, "--out", str(tmp_path / "o")] if command == "sim"
                else ["run", "--camera", video])
        done = subprocess.run(edge(*args, "--bundle", str(not_a_loadable_bundle), "--set",
                                   f"bus.publish_endpoint={endpoint!r}"), capture_output=True, text=True,
                              timeout=120)
    finally:
        holder.close(0)
    assert_refused(done, command, "config key 'bus.publish_endpoint'")
    assert "cannot bind it" in done.stderr


@pytest.mark.parametrize("case", ["empty", "noise", "missing"])
def test_run_refuses_a_bad_camera_file_before_loading_the_bundle(case, not_a_loadable_bundle, drive_videos,
                                                                 tmp_path):
    video, reason = bad_videos(tmp_path, drive_videos)[case]
    done = subprocess.run(edge("run", "--bundle", str(not_a_loadable_bundle), "--camera", str(video)),
                          capture_output=True, text=True, timeout=120)
    assert_refused(done, "run", reason)


def test_run_refuses_a_camera_device_that_cannot_be_opened(not_a_loadable_bundle):
    missing = next(f"/dev/video{i}" for i in range(40, 64) if not Path(f"/dev/video{i}").exists())
    done = subprocess.run(edge("run", "--bundle", str(not_a_loadable_bundle), "--camera", missing),
                          capture_output=True, text=True, timeout=120)
    assert_refused(done, "run", f"cannot open V4L2 camera {missing}")
