"""Bus fixtures: real sockets on loopback tcp and ipc."""

from __future__ import annotations

import pytest
import zmq


@pytest.fixture
def zmq_context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture(params=["tcp", "ipc"])
def endpoint(request, tmp_path):
    """A bindable endpoint; tcp picks a free port."""
    return "tcp://127.0.0.1:*" if request.param == "tcp" else f"ipc://{tmp_path / 'bus.ipc'}"
