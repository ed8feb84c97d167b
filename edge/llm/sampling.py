"""Greedy token selection, optionally under a GBNF grammar, and a generation loop with a deadline.

Sampling is greedy so runs are reproducible. With a grammar we follow llama.cpp's own fast path
(common_sampler): take the argmax first and ask the grammar only whether that one token is allowed;
only when it is not do we filter the whole vocabulary through the grammar (a 150K-token vocabulary
makes that the expensive step). The grammar sampler is a `llama_sampler` chain (grammar + greedy),
so the fallback is exactly llama.cpp's grammar-constrained greedy choice.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import llama_cpp

from edge.llm.context import LlamaContext
from edge.llm.errors import LlamaError
from edge.llm.model import LlamaModel

StopReason = Literal["eog", "max_tokens", "deadline", "callback"]
# on_token(token_id, piece_bytes) -> False stops generation (anything else continues).
TokenCallback = Callable[[int, bytes], "bool | None"]


class GreedySampler:
    """Greedy choice over the context's last logits; constrained by `grammar` (GBNF text) when given."""

    def __init__(self, model: LlamaModel, grammar: str | None = None, root: str = "root") -> None:
        self.model = model
        self.grammar_text = grammar
        self._chain = None
        self._grammar = None
        if grammar is not None:
            sampler = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode(), root.encode())
            if not sampler:
                raise LlamaError(f"llama.cpp rejected the GBNF grammar (root rule {root!r}); see its log for the line")
            chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
            llama_cpp.llama_sampler_chain_add(chain, sampler)  # the chain owns and frees its members
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
            self._chain = chain
            self._grammar = sampler
        # One reusable candidate for the "is the argmax allowed?" probe.
        # Pointer and byref made once: the probe runs every token, and building them costs more
        # than the grammar's answer for a single candidate.
        # Any: llama_cpp annotates the C structs' pointer fields as arrays.
        self._probe: Any = llama_cpp.llama_token_data()
        self._probe_pointer = ctypes.pointer(self._probe)
        self._probe_array: Any = llama_cpp.llama_token_data_array(
            data=self._probe_pointer, size=1, selected=-1, sorted=False)
        self._probe_ref = ctypes.byref(self._probe_array)

    def close(self) -> None:
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
        self._chain = self._grammar = None

    def __del__(self) -> None:
        self.close()

    def reset(self) -> None:
        """Start the grammar again from its root (call before each new generation)."""
        if self._chain:
            llama_cpp.llama_sampler_reset(self._chain)

    def _allowed(self, token: int) -> bool:
        self._probe.id = token
        self._probe.logit = 0.0
        self._probe.p = 0.0
        self._probe_array.data = self._probe_pointer  # samplers may move the pointer
        self._probe_array.size = 1
        self._probe_array.selected = -1
        self._probe_array.sorted = False
        llama_cpp.llama_sampler_apply(self._grammar, self._probe_ref)
        return math.isfinite(self._probe.logit)

    def sample(self, ctx: LlamaContext) -> int:
        """Choose the next token from the last logits and advance the grammar by it."""
        token = int(ctx.logits(copy=False).argmax())  # the method: np.argmax adds two Python calls per token
        if self._chain is None:
            return token
        if self._allowed(token):
            llama_cpp.llama_sampler_accept(self._chain, token)
            return token
        # Slow path: llama.cpp filters the vocabulary, picks the best allowed token and accepts it.
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx.ptr, -1))


@dataclass
class Generation:
    """What `generate` produced. The last token is sampled but not evaluated into the KV cache."""

    tokens: list[int] = field(default_factory=list)
    data: bytes = b""
    stop: StopReason = "max_tokens"
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def generate(ctx: LlamaContext, sampler: GreedySampler, max_tokens: int, on_token: TokenCallback | None = None,
             deadline: float | None = None, stop_at_eog: bool = True) -> Generation:
    """Greedy generation from the context's current logits.

    Stops at end-of-generation (not included in the result), after `max_tokens`, when `on_token`
    returns False, or when `deadline` (a time.monotonic() value) has passed: the clock is checked
    before every token, so a late generation is cut after at most one token's time.
    """
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    start = time.monotonic()
    out = Generation()
    pieces: list[bytes] = []
    for step in range(max_tokens):
        if deadline is not None and time.monotonic() >= deadline:
            out.stop = "deadline"
            break
        token = sampler.sample(ctx)
        if stop_at_eog and ctx.model.is_eog(token):
            out.stop = "eog"
            break
        piece = ctx.model.token_bytes(token)
        out.tokens.append(token)
        pieces.append(piece)
        if on_token is not None and on_token(token, piece) is False:
            out.stop = "callback"
            break
        if step + 1 < max_tokens:
            ctx.eval_token(token)
    else:
        out.stop = "max_tokens"
    out.data = b"".join(pieces)
    out.seconds = time.monotonic() - start
    return out
