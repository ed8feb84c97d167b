"""Ray for a fleet run: a cluster named by --address / RAY_ADDRESS, or a local one started on demand.

The local one is sized for a shared workstation: a small object store (the drives and bundle travel
by path, only results go through it), no dashboard, and it is shut down when the run ends, so no Ray
process outlives the command.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

LOCAL_OBJECT_STORE_MB = 256  # results are small (per-cycle actions); Ray's minimum is ~75 MB


def ray_module():
    """Import ray, or say how to install it in one line."""
    try:
        import ray
    except ImportError:
        from edge.errors import EdgeError

        raise EdgeError("fleet replay needs Ray: pip install -e '.[fleet]' (scripts/setup.sh installs it)") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int, object_store_mb: int = LOCAL_OBJECT_STORE_MB) -> Iterator[object]:
    """Connect to `address` (or RAY_ADDRESS), else start Ray locally; shut down what was started here."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    ray = ray_module()
    if ray.is_initialized():  # a caller (a notebook, a test) already holds a session: use it, leave it
        yield ray
        return
    kwargs: dict = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs.update(num_cpus=num_cpus, object_store_memory=object_store_mb << 20, include_dashboard=False)
    ray.init(address=address, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()
