"""GGUF -> quantised GGUF with llama.cpp's own quantiser (`llama_model_quantize`).

K-quants need tensor rows that are multiples of 256 elements; llama.cpp falls back to another
type per tensor where they are not (the tiny checkpoint is sized so the experts are real Q4_K).
1-D tensors (norms) and the MoE router stay F32 whatever the target, as llama.cpp decides.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from edge.errors import EdgeError

# llama_ftype values (llama.h): what `llama_model_quantize` produces for each bundle quant name.
QUANT_FTYPES: dict[str, int] = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_k_m": 15}


class QuantizeError(EdgeError, RuntimeError):
    pass


def quantize_gguf(source: Path, target: Path, quant: str, threads: int | None = None) -> Path:
    """Write `target` as `quant` from the F32/F16 GGUF `source` (streams tensor by tensor)."""
    import llama_cpp

    from edge.llm.model import ensure_backend

    if quant not in QUANT_FTYPES:
        raise QuantizeError(f"unknown quant {quant!r}; choose one of {', '.join(QUANT_FTYPES)}")
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise QuantizeError(f"cannot quantise: {source} does not exist")
    ensure_backend()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[quant]
    params.nthread = threads or os.cpu_count() or 1
    tmp = target.with_name(target.name + ".partial")
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
    if status != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise QuantizeError(f"llama_model_quantize({source.name} -> {quant}) failed with status {status}")
    tmp.replace(target)  # a reader never sees a half-written model
    return target
