"""Building `llama_batch` structs from numpy buffers we own, and submitting them with `llama_decode`.

We use the legacy `llama_batch` struct rather than `llama_batch_init`: that allocator gives one
position per token, but an embedding batch for an M-RoPE model needs 4 per token. Owning the arrays
as numpy buffers lets us size them exactly and keeps them alive for the duration of the call.
llama.cpp copies the batch before `llama_decode` returns, so the buffers may go after that.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np

from edge.llm.errors import ContextFullError, LlamaError
from edge.llm.positions import POSITIONS_PER_EMBEDDING


@dataclass
class PreparedBatch:
    """A ready-to-decode `llama_batch` plus the numpy buffers its pointers refer to."""

    struct: llama_cpp.llama_batch
    n_tokens: int
    buffers: list[np.ndarray] = field(default_factory=list)
    token: np.ndarray | None = None  # the arrays the struct points to; writable in place
    pos: np.ndarray | None = None


def _seq_arrays(n: int, seq_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Every token belongs to exactly one sequence: n_seq_id = 1, seq_id[i] -> &ids[i].
    n_seq = np.ones(n, dtype=np.int32)
    ids = np.full(n, seq_id, dtype=np.int32)
    # An array of pointers into `ids`, built arithmetically instead of n ctypes objects.
    ptrs = (ids.ctypes.data + 4 * np.arange(n, dtype=np.uint64)).astype(np.uintp)
    return n_seq, ids, ptrs


def _output_flags(n: int, output: str) -> np.ndarray:
    flags = np.zeros(n, dtype=np.int8)
    if output == "all":
        flags[:] = 1
    elif output == "last":
        flags[-1] = 1
    elif output != "none":
        raise ValueError(f"output must be 'all', 'last' or 'none', not {output!r}")
    return flags


def _assemble(n: int, token: np.ndarray | None, embd: np.ndarray | None, pos: np.ndarray,
              seq_id: int, output: str) -> PreparedBatch:
    n_seq, ids, ptrs = _seq_arrays(n, seq_id)
    flags = _output_flags(n, output)
    struct: Any = llama_cpp.llama_batch()  # Any: llama_cpp annotates its pointer fields as arrays
    struct.n_tokens = n
    struct.token = token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token)) if token is not None else None
    struct.embd = embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if embd is not None else None
    struct.pos = pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
    struct.n_seq_id = n_seq.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
    struct.seq_id = ctypes.cast(ptrs.ctypes.data, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id)))
    struct.logits = flags.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
    kept = [a for a in (token, embd, pos, n_seq, ids, ptrs, flags) if a is not None]
    return PreparedBatch(struct=struct, n_tokens=n, buffers=kept, token=token, pos=pos)


def token_batch(tokens: np.ndarray, positions: np.ndarray, seq_id: int = 0, output: str = "last") -> PreparedBatch:
    """A text batch: one position per token (llama.cpp broadcasts it to every M-RoPE axis)."""
    tok = np.ascontiguousarray(tokens, dtype=np.int32)
    pos = np.ascontiguousarray(positions, dtype=np.int32)
    if tok.ndim != 1 or tok.size == 0 or pos.shape != tok.shape:
        raise ValueError(f"token batch needs 1-D tokens and positions of equal length (got {tok.shape}, {pos.shape})")
    return _assemble(tok.size, tok, None, pos, seq_id, output)


def embedding_batch(rows: np.ndarray, positions: np.ndarray, seq_id: int = 0, output: str = "none") -> PreparedBatch:
    """An embedding batch: rows (n, width) float32 and positions (4, n), flattened section-major."""
    embd = np.ascontiguousarray(rows, dtype=np.float32)
    if embd.ndim != 2 or embd.shape[0] == 0:
        raise ValueError(f"embedding rows must be a non-empty 2-D array, got shape {embd.shape}")
    n = embd.shape[0]
    pos = np.ascontiguousarray(positions, dtype=np.int32)
    if pos.shape != (POSITIONS_PER_EMBEDDING, n):
        raise ValueError(f"embedding positions must have shape ({POSITIONS_PER_EMBEDDING}, {n}), got {pos.shape}")
    return _assemble(n, None, embd.reshape(-1), pos.reshape(-1), seq_id, output)


def decode(ctx: llama_cpp.llama_context_p, batch: PreparedBatch) -> None:
    """Run `llama_decode`, turning its status codes into exceptions with a reason."""
    status = llama_cpp.llama_decode(ctx, batch.struct)
    if status == 0:
        return
    if status == 1:
        raise ContextFullError(
            f"llama_decode: no KV slot for a batch of {batch.n_tokens} tokens (context full; raise n_ctx)"
        )
    if status == 2:
        raise LlamaError("llama_decode: aborted")
    if status == -1:
        raise LlamaError(f"llama_decode: invalid input batch of {batch.n_tokens} tokens (see llama.cpp log)")
    raise LlamaError(f"llama_decode failed with status {status}")
