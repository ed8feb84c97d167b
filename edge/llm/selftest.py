"""Proves that the installed llama.cpp computes correctly on this machine's CPU.

A llama.cpp build can compile kernels the CPU advertises but the OS does not let every thread use
(AMX tiles on some VMs): the first multi-threaded matrix product then kills the process. So the
check runs in a child process. The child loads a small Q4_K_M GGUF of the real architecture
(shipped with the package), evaluates a prompt batch, a visual chunk of injected rows and a few
greedy tokens with several threads, repeats it with one thread, and reports both. The parent
turns a crash, a hang or a wrong answer into one line.

    python -m edge.llm.selftest            # exit 0 and one line when llama.cpp works here
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SELFTEST_GGUF = Path(__file__).resolve().parent / "data" / "selftest-q4_k_m.gguf"
PROMPT = "<|im_start|>user\nThe road ahead is clear and the light is green.<|im_end|>\n<|im_start|>assistant\n"
GENERATED_TOKENS = 8
# Logits of the many-thread and the one-thread run: the same kernels on other row splits, so they
# agree to float rounding; a kernel that computes garbage on worker threads does not.
MIN_COSINE = 0.999
RESULT_PREFIX = "SELFTEST_RESULT "


@dataclass(frozen=True)
class SelfTestResult:
    ok: bool
    reason: str
    details: dict


def _cosine(a: list[float], b: list[float]) -> float:
    import numpy as np

    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / denominator if denominator else 0.0


def _run_once(gguf: Path, threads: int) -> dict:
    """Prompt batch, a visual chunk, then greedy tokens; the logits after the prompt and the tokens."""
    import numpy as np

    from edge.llm.context import ContextSettings, LlamaContext
    from edge.llm.model import LlamaModel

    with LlamaModel(gguf) as model, LlamaContext(
        model, ContextSettings(n_ctx=512, n_batch=128, n_threads=threads, kv_type="f32", flash_attention=False)
    ) as ctx:
        rows = np.random.default_rng(0).standard_normal((4 * 4, model.n_embd_inp)).astype(np.float32) * 0.1
        ctx.eval_tokens(model.tokenize("<|vision_start|>"), logits="none")
        ctx.eval_visual(rows, 4, 4)
        ctx.eval_tokens(model.tokenize(PROMPT))
        logits = ctx.logits()
        tokens = []
        for _ in range(GENERATED_TOKENS):
            token = int(np.argmax(ctx.logits(copy=False)))
            tokens.append(token)
            ctx.eval_token(token)
        return {"threads": threads, "logits": logits.tolist(), "tokens": tokens,
                "finite": bool(np.isfinite(logits).all()), "n_vocab": model.n_vocab}


def cpu_features() -> list[str]:
    """The instruction sets and options this llama.cpp build uses (llama_print_system_info's "X = 1")."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return re.findall(r"([A-Z0-9_]+) = 1", info)


def child_main(gguf: Path, threads: int) -> int:
    many = _run_once(gguf, threads)
    one = _run_once(gguf, 1)
    cosine = _cosine(many["logits"], one["logits"])
    summary = {"threads": threads, "cosine": cosine, "finite": many["finite"] and one["finite"],
               "tokens_many": many["tokens"], "tokens_one": one["tokens"], "n_vocab": many["n_vocab"],
               "features": cpu_features()}
    print(RESULT_PREFIX + json.dumps(summary), flush=True)
    return 0


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _judge(summary: dict) -> SelfTestResult:
    if not summary["finite"]:
        return SelfTestResult(False, "the logits hold NaN or infinity", summary)
    if summary["cosine"] < MIN_COSINE:
        return SelfTestResult(
            False, f"the {summary['threads']}-thread logits disagree with the 1-thread logits "
                   f"(cosine {summary['cosine']:.6f} < {MIN_COSINE})", summary)
    if not all(0 <= t < summary["n_vocab"] for t in summary["tokens_many"]):
        return SelfTestResult(False, f"generated token ids out of range: {summary['tokens_many']}", summary)
    features = " ".join(summary.get("features", [])) or "none reported"
    return SelfTestResult(
        True, f"{summary['threads']} threads agree with 1 thread (logits cosine {summary['cosine']:.6f}), "
              f"{len(summary['tokens_many'])} tokens generated; CPU features: {features}", summary)


def run_selftest(gguf: Path = SELFTEST_GGUF, threads: int | None = None, timeout_s: float = 300.0,
                 child_argv: list[str] | None = None) -> SelfTestResult:
    """Run the check in a child process and judge what it reports.

    `child_argv` replaces the child command (the default re-runs this module with --child); the
    child must print one RESULT_PREFIX line of JSON."""
    threads = threads or max(2, os.cpu_count() or 2)
    argv = child_argv or [sys.executable, "-m", "edge.llm.selftest", "--child", "--gguf", str(gguf),
                          "--threads", str(threads)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return SelfTestResult(False, f"the child process hung (no answer in {timeout_s:.0f} s)", {})
    if done.returncode < 0:
        return SelfTestResult(
            False, f"the child process was killed by {_signal_name(done.returncode)} while running llama.cpp "
                   f"(a kernel this CPU advertises but cannot run here)", {"stderr": done.stderr[-2000:]})
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return SelfTestResult(False, f"the child process exited with code {done.returncode}: {last}",
                              {"stderr": done.stderr[-2000:]})
    return _judge(json.loads(lines[-1][len(RESULT_PREFIX):]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.llm.selftest", description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", type=Path, default=SELFTEST_GGUF, help="model to run (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=None, help="threads of the many-thread run (default: all)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before the child counts as hung")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.gguf, args.threads or max(2, os.cpu_count() or 2))
    result = run_selftest(args.gguf, args.threads, args.timeout)
    print(f"llama.cpp self-test {'passed' if result.ok else 'FAILED'}: {result.reason}", flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
