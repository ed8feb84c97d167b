"""CPU sets and thread counts: how the runtime shares a machine with other processes.

The runtime is rarely alone on a device (camera stack, planner, logging, other perception). Two
things decide how it behaves beside them:

- Which CPUs it may use. ``cpu.loop`` pins the loop's own thread (preprocessing, publishing, nav,
  the capture and heartbeat threads it starts); ``cpu.models`` pins the encoder's and the
  decoder's computation: the loop thread switches to that set for the duration of a model call
  (both libraries compute on the calling thread too), and their worker threads are created there.
- Whether idle worker threads spin. Spinning buys microseconds when the cores are free and costs
  whole scheduler time slices when they are not: a worker that busy-waits at a barrier burns the
  time slice the descheduled worker it waits for needs. Both libraries are told not to spin by
  default (see edge/llm/openmp.py for llama.cpp, edge/vision/onnxruntime.py for ONNX Runtime).

CPU lists use the Linux notation: ``"0-3,6"``. An empty string means "no pinning".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class CpuSetError(ValueError):
    pass


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"0-3,6"`` -> {0, 1, 2, 3, 6}; ``""`` -> empty (no pinning)."""
    cpus: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise CpuSetError(f"CPU list {text!r}: {part!r} is not a number or a range like 2-5") from None
        if first < 0 or last < first:
            raise CpuSetError(f"CPU list {text!r}: {part!r} is not a valid range")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def allowed_cpus() -> frozenset[int]:
    """The CPUs the calling thread may run on now (its affinity mask), or all of them."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def check_cpus(cpus: frozenset[int], key: str) -> None:
    """Refuse a CPU set this process cannot run on (before anything starts)."""
    if not cpus:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise CpuSetError(f"{key}: CPU affinity is not supported on this platform")
    outside = sorted(cpus - allowed_cpus())
    if outside:
        raise CpuSetError(f"{key}: CPUs {outside} are not available to this process "
                          f"(available: {sorted(allowed_cpus())})")


def pin_thread(cpus: frozenset[int]) -> None:
    """Pin the calling thread (threads it starts later inherit the set). Empty: no change."""
    if cpus:
        os.sched_setaffinity(0, cpus)


@contextlib.contextmanager
def pinned(cpus: frozenset[int]) -> Iterator[None]:
    """Run the body on `cpus` and give the calling thread its previous set back afterwards."""
    if not cpus:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def model_thread_count(requested: int, cpus: frozenset[int]) -> int:
    """A model's thread count: the configured one, or (0) one per CPU the models may use."""
    if requested:
        return requested
    return len(cpus or allowed_cpus()) or 1
