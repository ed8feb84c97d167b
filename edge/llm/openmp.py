"""llama.cpp's worker threads are OpenMP threads (the wheel is built with GGML_OPENMP, the default):
how they wait is libgomp's wait policy, read once when the library loads.

libgomp's default lets a waiting thread spin for about 300 000 iterations at every barrier and
between parallel regions before it sleeps; llama.cpp passes a barrier between every operation of
the graph. On free cores that saves a futex wake-up per barrier. Beside another busy process it
is what made latency collapse: a worker descheduled by the neighbour leaves the others spinning
at the barrier for the rest of their time slice, burning the CPU time the descheduled worker
needs, and the spinning also takes CPU from the ONNX Runtime encoder and from the neighbour.
Measured on 2 cores (docs/RELIABILITY.md), the passive policy holds latency beside a busy process
where spinning does not.

So the runtime sets ``OMP_WAIT_POLICY=PASSIVE`` before llama.cpp loads, unless the environment
already says otherwise: a deployer who owns the whole machine may export ``OMP_WAIT_POLICY=ACTIVE``
(or ``GOMP_SPINCOUNT``) to have the workers spin. It is an environment setting and not a config
key because libgomp reads it once, when the process loads it.
"""

from __future__ import annotations

import os

DEFAULT_WAIT_POLICY = "PASSIVE"


def set_wait_policy() -> None:
    """Must run before the first ``import llama_cpp`` (edge/llm/__init__.py does it). An empty
    ``OMP_WAIT_POLICY`` keeps libgomp's own default (spin, then sleep): the benchmarks' baseline."""
    if os.environ.get("OMP_WAIT_POLICY") == "":
        del os.environ["OMP_WAIT_POLICY"]
        return
    os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_WAIT_POLICY)


def wait_policy() -> str:
    """The wait policy llama.cpp's threads run with (as the process environment says)."""
    return os.environ.get("OMP_WAIT_POLICY", "").upper() or "default (spin, then sleep)"
