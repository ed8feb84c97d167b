"""Sharing the CPU: affinity lists, the thread-count policy, and where the models' threads run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.config import ConfigError, DecoderConfig, load_config
from edge.cpus import CpuSetError, allowed_cpus, check_cpus, model_thread_count, parse_cpu_list, pinned
from edge.decoder import SMALL_DECODER_BYTES, decoder_threads


def test_cpu_lists_parse_and_bad_ones_are_refused():
    assert parse_cpu_list("0-2,5") == {0, 1, 2, 5}
    assert parse_cpu_list("") == frozenset()
    with pytest.raises(CpuSetError, match="not a number"):
        parse_cpu_list("a")
    with pytest.raises(CpuSetError, match="not a valid range"):
        parse_cpu_list("3-1")
    with pytest.raises(CpuSetError, match="not available"):
        check_cpus(frozenset({10_000}), "cpu.models")


def test_config_names_the_bad_cpu_key():
    with pytest.raises(ConfigError, match=r"cpu\.loop: CPUs \[4096\]"):
        load_config(None, ["cpu.loop='4096'"])
    assert load_config(None, ["cpu.models='0'"]).cpu.model_cpus() == {0}


def test_pinned_restores_the_previous_set():
    before = allowed_cpus()
    with pinned(frozenset({min(before)})):
        assert allowed_cpus() == {min(before)}
    assert allowed_cpus() == before


def test_thread_policy_small_decoder_generates_on_one_thread():
    cpus = frozenset({0, 1, 2, 3})
    assert decoder_threads(DecoderConfig(), cpus, SMALL_DECODER_BYTES - 1) == (1, 4)
    assert decoder_threads(DecoderConfig(), cpus, SMALL_DECODER_BYTES) == (4, 4)
    assert decoder_threads(DecoderConfig(threads=2, threads_batch=3), cpus, 1) == (2, 3)
    assert model_thread_count(0, frozenset()) == len(allowed_cpus())


# Run in a fresh process: libgomp keeps its worker threads for the life of the process, so only the
# first parallel region of a process shows where new workers start.
PROBE = """
import json, sys, threading
from pathlib import Path
from edge.config import load_config
from edge.cpus import parse_cpu_list
from edge.runtime import load_model_parts

def thread_cpus():
    out = {}
    for task in Path("/proc/self/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out[int(task.name)] = sorted(parse_cpu_list(line.split(":", 1)[1].strip()))
    return out

before = set(thread_cpus())
parts = load_model_parts(load_config(None, sys.argv[1:]))
options = parts.vision._session.get_session_options()
print(json.dumps({
    "new": [cpus for tid, cpus in thread_cpus().items() if tid not in before],
    "caller": thread_cpus()[threading.get_native_id()],
    "spinning": options.get_session_config_entry("session.intra_op.allow_spinning"),
    "ort_threads": options.intra_op_num_threads,
    "decoder": [parts.decoder.threads, parts.decoder.threads_batch],
}))
parts.close()
"""


@pytest.mark.slow
@pytest.mark.skipif(len(allowed_cpus()) < 2, reason="needs two CPUs to tell the sets apart")
def test_model_threads_start_on_the_model_cpus_and_spinning_is_off(tiny_bundle):
    model_cpu = max(allowed_cpus())
    sets = [f"bundle={str(tiny_bundle)!r}", f"cpu.models='{model_cpu}'", "vision.threads=2",
            "decoder.threads_batch=2"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", PROBE, *sets], capture_output=True, text=True, timeout=300,
                          env=env, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["new"], "the libraries started no worker threads"
    assert all(cpus == [model_cpu] for cpus in got["new"]), got["new"]
    assert got["caller"] == sorted(allowed_cpus())  # the loading thread got its own set back
    assert got["spinning"] == "0"
    assert got["ort_threads"] == 2
    assert got["decoder"] == [1, 2]  # the tiny decoder generates on one thread


def test_openmp_wait_policy_is_passive_unless_the_environment_says_otherwise():
    code = "import os, edge.llm; print(os.environ.get('OMP_WAIT_POLICY', '<unset>'))"
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE"), ("", "<unset>")):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if given is not None:
            env["OMP_WAIT_POLICY"] = given
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == expected


def _task_cpus(native_id: int) -> frozenset[int]:
    for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return parse_cpu_list(line.split(":", 1)[1].strip())
    raise AssertionError(f"no CPU list for thread {native_id}")


@pytest.mark.slow
@pytest.mark.skipif(len(allowed_cpus()) < 2, reason="needs two CPUs to tell the sets apart")
def test_the_loop_and_the_threads_it_starts_run_on_cpu_loop(tiny_bundle, drive_videos):
    from edge.runtime import running_loop

    loop_cpu = min(allowed_cpus())
    before = allowed_cpus()
    config = load_config(None, [f"bundle={str(tiny_bundle)!r}", f"cpu.loop='{loop_cpu}'",
                                f"camera.source={str(drive_videos[0])!r}", "camera.loop_video=true",
                                "bus.publish_endpoint='tcp://127.0.0.1:*'", "bus.nav_endpoint='tcp://127.0.0.1:*'"])
    with running_loop(config) as loop:
        assert allowed_cpus() == {loop_cpu}
        started_here = [t for t in threading.enumerate() if t.name == "status-heartbeat"]
        assert started_here and all(_task_cpus(t.native_id) == {loop_cpu} for t in started_here)
        assert loop.run(max_cycles=1) == 1
    assert allowed_cpus() == before  # the caller's own set comes back when the loop closes
