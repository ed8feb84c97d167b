"""llama.cpp's self-test: the set-up's proof that the build runs on this CPU."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

from edge.llm.selftest import RESULT_PREFIX, SELFTEST_GGUF, run_selftest


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_shipped_model_passes_with_several_threads():
    result = run_selftest(SELFTEST_GGUF, threads=2)
    assert result.ok, result.reason
    assert result.details["cosine"] >= 0.999 and len(result.details["tokens_many"]) == 8
    # Greedy tokens of the many-thread run match the one-thread run on this build.
    assert result.details["tokens_many"] == result.details["tokens_one"]


def test_the_build_uses_no_amx_and_nothing_the_cpu_lacks():
    features = set(run_selftest(SELFTEST_GGUF, threads=2).details["features"])
    assert not any(f.startswith("AMX") for f in features)
    if platform.machine() in ("x86_64", "AMD64"):
        cpu = set(Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split())
        for flag, feature in [("avx2", "AVX2"), ("avx512f", "AVX512"), ("avx512_vnni", "AVX512_VNNI"),
                              ("avx512_bf16", "AVX512_BF16"), ("fma", "FMA"), ("f16c", "F16C")]:
            assert feature not in features or flag in cpu, f"{feature} compiled in, but the CPU lacks {flag}"
        assert "AVX2" in features or "avx2" not in cpu  # the safe fallback keeps AVX2


def test_the_command_prints_one_line_and_exits_zero():
    done = subprocess.run([sys.executable, "-m", "edge.llm.selftest", "--threads", "2"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("llama.cpp self-test passed: 2 threads agree with 1 thread")
    assert len(done.stdout.splitlines()) == 1


def test_a_crashing_child_is_named_by_its_signal():
    result = run_selftest(child_argv=_child("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
    assert not result.ok
    assert "killed by SIGSEGV" in result.reason and "cannot run here" in result.reason


def test_a_hanging_child_times_out():
    result = run_selftest(child_argv=_child("import time; time.sleep(60)"), timeout_s=1)
    assert not result.ok and "hung" in result.reason


def test_a_child_that_fails_says_why():
    result = run_selftest(child_argv=_child("import sys; sys.exit('libggml-cpu.so: cannot open shared object')"))
    assert not result.ok
    assert "exited with code 1" in result.reason and "libggml-cpu.so" in result.reason


def test_wrong_numbers_from_worker_threads_fail_the_check():
    summary = {"threads": 4, "cosine": 0.42, "finite": True, "tokens_many": [1, 2], "tokens_one": [1, 3],
               "n_vocab": 10}
    result = run_selftest(child_argv=_child(f"print({RESULT_PREFIX + json.dumps(summary)!r})"))
    assert not result.ok and "disagree" in result.reason and "0.420000" in result.reason
    nan = {**summary, "cosine": 1.0, "finite": False}
    assert "NaN" in run_selftest(child_argv=_child(f"print({RESULT_PREFIX + json.dumps(nan)!r})")).reason


def test_the_command_exits_non_zero_on_a_model_it_cannot_load(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    done = subprocess.run([sys.executable, "-m", "edge.llm.selftest", "--gguf", str(broken)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 1
    assert done.stdout.startswith("llama.cpp self-test FAILED: the child process exited with code 1")
