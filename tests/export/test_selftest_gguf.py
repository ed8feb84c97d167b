"""The shipped self-test GGUF is what the exporter makes from the tiny checkpoint today."""

from __future__ import annotations

import pytest

from edge.llm.selftest import SELFTEST_GGUF


def _layout(path):
    import gguf

    reader = gguf.GGUFReader(path)
    tensors = {t.name: (tuple(int(d) for d in t.shape), t.tensor_type.name) for t in reader.tensors}
    arch = reader.fields["general.architecture"]
    return tensors, bytes(arch.parts[arch.data[0]]).decode()


@pytest.mark.slow
def test_shipped_selftest_gguf_matches_a_fresh_export(tmp_path):
    pytest.importorskip("torch")
    from export.selftest_gguf import make_selftest_gguf

    fresh = make_selftest_gguf(tmp_path / "fresh.gguf")
    shipped_tensors, shipped_arch = _layout(SELFTEST_GGUF)
    fresh_tensors, fresh_arch = _layout(fresh)
    assert shipped_arch == fresh_arch == "qwen3vlmoe"
    assert shipped_tensors == fresh_tensors
    assert any(t == "Q4_K" for _, t in shipped_tensors.values())
    assert SELFTEST_GGUF.stat().st_size < 3 * 1024 * 1024
