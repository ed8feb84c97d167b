"""One llama.cpp context (KV cache) for a Qwen3-VL decoder: evaluate text and visual rows at explicit
M-RoPE positions, read logits, and trim the cache back to a mark so a constant prefix is reused.

The context tracks the next free position of sequence 0 (`next_pos`). Text advances it by one per
token; a visual chunk of grid (h, w) starting at p0 advances it to p0 + max(h, w) (see positions.py).
Batches larger than `n_batch` are split; llama.cpp itself splits further into `n_ubatch`.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import llama_cpp
import numpy as np

from edge.llm import batch as batches
from edge.llm.errors import DeadlineExceeded, EmbeddingWidthError, LlamaError
from edge.llm.model import LlamaModel
from edge.llm.positions import position_after_visual, text_positions, visual_positions

KV_TYPES = {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0}
FLASH_ATTENTION = {None: llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, False: llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                   True: llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED}
SEQ = 0  # one conversation per context

# llama_get_logits_ith returning the bare address (an int): the logits view is cached per address,
# so the per-token path skips ctypes.cast + np.ctypeslib.as_array (lib[name] is a fresh function
# object; llama_cpp's own keeps its POINTER(c_float) restype).
_logits_address = llama_cpp.llama_cpp._lib["llama_get_logits_ith"]
_logits_address.argtypes = [llama_cpp.llama_context_p_ctypes, ctypes.c_int32]
_logits_address.restype = ctypes.c_void_p


@dataclass(frozen=True)
class ContextSettings:
    """llama.cpp context parameters the runtime cares about.

    For a bit-faithful comparison against transformers use `flash_attention=False, kv_type="f32"`.
    """

    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int | None = None  # None: same as n_batch
    n_threads: int | None = None  # None: all cores
    n_threads_batch: int | None = None  # None: same as n_threads
    flash_attention: bool | None = None  # None: llama.cpp decides
    kv_type: Literal["f32", "f16", "q8_0"] = "f16"

    def __post_init__(self) -> None:
        if self.n_ctx <= 0 or self.n_batch <= 0:
            raise ValueError(f"n_ctx and n_batch must be positive (got {self.n_ctx}, {self.n_batch})")
        if self.kv_type not in KV_TYPES:
            raise ValueError(f"kv_type must be one of {sorted(KV_TYPES)}, not {self.kv_type!r}")


@dataclass(frozen=True)
class KvMark:
    """A point in sequence 0 to rewind to: everything at positions >= next_pos is dropped."""

    next_pos: int
    n_tokens: int


class LlamaContext:
    """KV state + evaluation for one sequence on a loaded `LlamaModel`."""

    def __init__(self, model: LlamaModel, settings: ContextSettings | None = None) -> None:
        self.model = model
        self.settings = settings = settings or ContextSettings()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = settings.n_ctx
        params.n_batch = settings.n_batch
        params.n_ubatch = settings.n_ubatch or settings.n_batch
        threads = settings.n_threads or os.cpu_count() or 1
        params.n_threads = threads
        params.n_threads_batch = settings.n_threads_batch or threads
        params.flash_attn_type = FLASH_ATTENTION[settings.flash_attention]
        params.type_k = params.type_v = KV_TYPES[settings.kv_type]
        params.no_perf = False
        ptr = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise LlamaError(
                f"llama.cpp could not create a context for {model.path.name} with {settings} "
                f"(too little memory, or flash attention off with a quantised V cache)"
            )
        self._ptr = ptr
        self.n_ctx = llama_cpp.llama_n_ctx(ptr)
        self.n_batch = llama_cpp.llama_n_batch(ptr)
        self.next_pos = 0  # next free M-RoPE position of sequence 0
        self.n_tokens = 0  # KV cells held by sequence 0
        self._has_logits = False
        # Generation evaluates one token per step: reuse one prepared batch instead of building
        # seven small arrays each time (the per-token Python overhead is what a decode loop adds).
        self._single_token, self._single_pos = np.zeros(1, np.int32), np.zeros(1, np.int32)
        self._single = batches.token_batch(self._single_token, self._single_pos, SEQ, "last")
        self._logits_view: tuple[int, np.ndarray] | None = None  # (address, view) of the last logits row

    # -- lifetime ------------------------------------------------------------------------------
    @property
    def ptr(self) -> llama_cpp.llama_context_p:
        if self._ptr is None:
            raise LlamaError("context is closed")
        return self._ptr

    def close(self) -> None:
        if getattr(self, "_ptr", None):
            llama_cpp.llama_free(self._ptr)
        self._ptr = None

    def __enter__(self) -> LlamaContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _kv(self) -> llama_cpp.llama_memory_t:
        return llama_cpp.llama_get_memory(self.ptr)

    # -- evaluation ----------------------------------------------------------------------------
    def _room_for(self, n: int) -> None:
        if self.n_tokens + n > self.n_ctx:
            raise LlamaError(
                f"prompt does not fit: {self.n_tokens} tokens cached + {n} new > n_ctx {self.n_ctx}"
            )

    @staticmethod
    def _check_deadline(deadline: float | None, what: str) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceeded(f"deadline passed while evaluating {what}")

    def eval_tokens(self, tokens: Sequence[int], logits: Literal["last", "all", "none"] = "last",
                    deadline: float | None = None) -> None:
        """Evaluate text tokens at next_pos, next_pos+1, ... (split at n_batch).

        `logits="last"` keeps the logits of the final token (for sampling); "all" keeps every token's
        logits of the final chunk. `deadline` (time.monotonic()) is checked before each chunk.
        """
        if logits == "last" and isinstance(tokens, list) and len(tokens) == 1:
            self.eval_token(tokens[0], deadline)  # the generation step: no numpy on this path
            return
        toks = np.asarray(tokens, dtype=np.int32).reshape(-1)
        if toks.size == 0:
            return
        if toks.min() < 0 or toks.max() >= self.model.n_vocab:
            raise LlamaError(f"token id out of range [0, {self.model.n_vocab}): {int(toks.min())}..{int(toks.max())}")
        self._room_for(toks.size)
        if toks.size == 1 and logits == "last":
            self.eval_token(int(toks[0]), deadline)
            return
        for start in range(0, toks.size, self.n_batch):
            self._check_deadline(deadline, f"text tokens {start}..{toks.size}")
            chunk = toks[start:start + self.n_batch]
            final = start + self.n_batch >= toks.size
            out = logits if final else "none"
            batch = batches.token_batch(chunk, text_positions(self.next_pos, chunk.size), SEQ, out)
            batches.decode(self.ptr, batch)
            self.next_pos += chunk.size
            self.n_tokens += chunk.size
            self._has_logits = out != "none"

    def eval_token(self, token: int, deadline: float | None = None) -> None:
        """Evaluate one text token at next_pos and keep its logits: one generation step.

        Reuses the prepared one-token batch and checks with plain Python (numpy reductions on a
        one-element array cost more than the check), because this runs once per generated token."""
        if not 0 <= token < self.model.n_vocab:
            raise LlamaError(f"token id out of range [0, {self.model.n_vocab}): {token}")
        self._room_for(1)
        self._check_deadline(deadline, "one text token")
        self._single_token[0] = token
        self._single_pos[0] = self.next_pos
        batches.decode(self.ptr, self._single)
        self.next_pos += 1
        self.n_tokens += 1
        self._has_logits = True

    def check_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows as float32 (n, n_embd_inp), or EmbeddingWidthError. The legacy batch API reads
        n_embd_inp floats per row without knowing the array's width, so a wrong width would read garbage."""
        arr = np.asarray(rows)
        width = self.model.n_embd_inp
        if arr.ndim != 2 or arr.shape[1] != width:
            raise EmbeddingWidthError(
                f"visual rows have shape {tuple(arr.shape)}, but {self.model.path.name} takes rows of "
                f"n_embd_inp = {width} floats (n_embd {self.model.n_embd} x (1 + {self.model.n_deepstack} "
                f"DeepStack levels)); is the vision encoder from the same bundle?"
            )
        if not np.isfinite(arr).all():
            raise EmbeddingWidthError("visual rows contain NaN or infinity")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def eval_embeddings(self, rows: np.ndarray, positions: np.ndarray, next_pos: int,
                        deadline: float | None = None) -> None:
        """Evaluate rows (n, n_embd_inp) at explicit positions (4, n); afterwards text continues at next_pos."""
        arr = self.check_rows(rows)
        pos = np.asarray(positions, dtype=np.int32)
        if pos.shape != (4, arr.shape[0]):
            raise ValueError(f"positions must have shape (4, {arr.shape[0]}), got {pos.shape}")
        if next_pos < self.next_pos:
            raise ValueError(f"next_pos {next_pos} would move backwards from {self.next_pos}")
        self._room_for(arr.shape[0])
        for start in range(0, arr.shape[0], self.n_batch):
            self._check_deadline(deadline, f"visual rows {start}..{arr.shape[0]}")
            stop = start + self.n_batch
            batch = batches.embedding_batch(arr[start:stop], pos[:, start:stop], SEQ, "none")
            batches.decode(self.ptr, batch)
            self.n_tokens += batch.n_tokens
        self.next_pos = next_pos
        self._has_logits = False

    def eval_visual(self, rows: np.ndarray, grid_h: int, grid_w: int, deadline: float | None = None) -> None:
        """Evaluate one visual chunk (an image, or one frame pair of a video) in raster order at next_pos."""
        n = grid_h * grid_w
        arr = self.check_rows(rows)
        if arr.shape[0] != n:
            raise ValueError(f"a {grid_h}x{grid_w} visual chunk has {n} rows, got {arr.shape[0]}")
        p0 = self.next_pos
        self.eval_embeddings(arr, visual_positions(p0, grid_h, grid_w), position_after_visual(p0, grid_h, grid_w),
                             deadline)

    # -- outputs -------------------------------------------------------------------------------
    def logits(self, index: int = -1, copy: bool = True) -> np.ndarray:
        """The logits (n_vocab,) of output `index` of the last batch (-1: the last output).

        `copy=False` returns a view into llama.cpp's buffer: no 600 KB copy per token for a 150K
        vocabulary, but it is overwritten by the next evaluation."""
        if not self._has_logits:
            raise LlamaError("no logits: the last evaluated batch did not request any (evaluate text last)")
        address = _logits_address(self.ptr, index)
        if not address:
            raise LlamaError(f"no logits for output {index} of the last batch")
        cached = self._logits_view
        if cached is None or cached[0] != address:  # llama.cpp (re)allocated its output buffer
            view = np.ctypeslib.as_array((ctypes.c_float * self.model.n_vocab).from_address(address))
            self._logits_view = cached = (address, view)
        return cached[1].copy() if copy else cached[1]

    # -- KV cache management -------------------------------------------------------------------
    def mark(self) -> KvMark:
        """Remember the current end of sequence 0 (e.g. after the constant system prefix)."""
        return KvMark(next_pos=self.next_pos, n_tokens=self.n_tokens)

    def rewind(self, mark: KvMark) -> None:
        """Drop everything evaluated after `mark`; the prefix before it stays cached and is reused."""
        if mark.next_pos > self.next_pos:
            raise ValueError(f"cannot rewind forward: mark at {mark.next_pos}, context at {self.next_pos}")
        if not llama_cpp.llama_memory_seq_rm(self._kv(), SEQ, mark.next_pos, -1):
            raise LlamaError(f"llama.cpp could not trim the KV cache at position {mark.next_pos}")
        self.next_pos = mark.next_pos
        self.n_tokens = mark.n_tokens
        self._has_logits = False

    def clear(self) -> None:
        """Empty the KV cache entirely."""
        llama_cpp.llama_memory_clear(self._kv(), True)
        self.next_pos = 0
        self.n_tokens = 0
        self._has_logits = False

    def kv_pos_max(self) -> int:
        """Largest position llama.cpp holds for sequence 0 (-1 when empty); a check on our bookkeeping."""
        return int(llama_cpp.llama_memory_seq_pos_max(self._kv(), SEQ))
