"""`edge run` as a user runs it: a real drive video as the camera, `edge listen` as the planner,
and SIGTERM in the middle of a run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

from edge.commands.schema import message_schemas

pytestmark = pytest.mark.slow

GENEROUS = [
    "--set", "decoder.threads=1",
    "--set", "decoder.max_tokens=32",
    "--set", "budgets.total_ms=60000",
    "--set", "budgets.decode_ms=60000",
    "--set", "budgets.prefill_ms=60000",
    "--set", "budgets.encode_ms=60000",
    "--set", "budgets.preprocess_ms=60000",
    "--set", "budgets.max_frame_age_ms=60000",
]


def edge(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_cli", *args]


def test_edge_run_publishes_advice_that_edge_listen_receives(tiny_bundle, drive_videos, tmp_path):
    publish = f"ipc://{tmp_path / 'advice.ipc'}"
    listener = subprocess.Popen(
        edge("listen", publish, "--json", "--count", "5", "--timeout-s", "240"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(1.0)  # let the listener connect; ipc connects before the runtime binds
    runtime = subprocess.run(
        edge("run", "--bundle", str(tiny_bundle), "--camera", str(drive_videos[0]), "--max-cycles", "5",
             "--publish", publish, "--nav", f"ipc://{tmp_path / 'nav.ipc'}", *GENEROUS),
        capture_output=True, text=True, timeout=300,
    )
    assert runtime.returncode == 0, runtime.stderr
    out, err = listener.communicate(timeout=60)
    assert listener.returncode == 0, err
    schema = message_schemas()["advice.schema.json"]
    advice = [json.loads(line) for line in out.splitlines()]
    assert len(advice) == 5
    for message in advice:
        jsonschema.validate(message, schema)
        stages = message["stages"]
        assert stages["encode_ms"] > 0 and stages["total_ms"] >= stages["encode_ms"]
    newest = [m["frames"][-1]["frame_id"] for m in advice]
    assert newest == sorted(newest) and len(set(newest)) == 5
    assert [m["seq"] for m in advice] == list(range(5))


def test_sigterm_leaves_an_intact_audit_log(tiny_bundle, drive_videos, tmp_path):
    audit = tmp_path / "audit.jsonl"
    runtime = subprocess.Popen(
        edge("run", "--bundle", str(tiny_bundle), "--camera", str(drive_videos[0]), "--audit", str(audit),
             "--publish", f"ipc://{tmp_path / 'a.ipc'}", "--nav", f"ipc://{tmp_path / 'n.ipc'}",
             "--set", "camera.loop_video=true", *GENEROUS),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not audit.exists() or len(audit.read_text().splitlines()) < 2):
        assert runtime.poll() is None, runtime.stderr.read()
        time.sleep(0.2)
    runtime.send_signal(signal.SIGTERM)
    _, err = runtime.communicate(timeout=120)
    assert runtime.returncode == 0, err
    lines = audit.read_text().splitlines()
    assert len(lines) >= 2
    records = [json.loads(line) for line in lines]  # every line parses: nothing torn
    assert [r["cycle"] for r in records] == list(range(len(records)))
    assert all(r["prompt_sha256"] or r["verdict"] == "no_advice" for r in records)


def test_refusals_before_the_first_cycle_are_clear(tiny_bundle, drive_videos, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 400)
    common = ["--publish", f"ipc://{tmp_path / 'a.ipc'}", "--nav", f"ipc://{tmp_path / 'n.ipc'}"]
    bad_video = subprocess.run(edge("run", "--bundle", str(tiny_bundle), "--camera", str(corrupt), *common),
                               capture_output=True, text=True, timeout=120)
    assert bad_video.returncode == 2
    assert "cannot decode video file" in bad_video.stderr and "Traceback" not in bad_video.stderr
    not_a_bundle = subprocess.run(edge("run", "--bundle", str(tmp_path), "--camera", str(drive_videos[0]), *common),
                                  capture_output=True, text=True, timeout=120)
    assert not_a_bundle.returncode == 2
    assert "not a bundle" in not_a_bundle.stderr


def test_without_a_bundle_it_runs_the_builtin_one_verified(drive_videos, tmp_path):
    """As `edge sim` does: no --bundle means the built-in trained model, its hashes checked."""
    runtime = subprocess.run(
        edge("run", "--camera", str(drive_videos[0]), "--max-cycles", "2", "--publish",
             f"ipc://{tmp_path / 'a.ipc'}", "--nav", f"ipc://{tmp_path / 'n.ipc'}", *GENEROUS),
        capture_output=True, text=True, timeout=900,
    )
    assert runtime.returncode == 0, runtime.stderr
    assert "no bundle given, using the built-in one" in runtime.stderr
    assert "edge run: 2 cycles" in runtime.stderr
    assert "WITHOUT hash verification" not in runtime.stderr and "WARNING edge.manifest" not in runtime.stderr
