"""Errors raised by the llama.cpp layer; each message says what was expected and what arrived."""

from __future__ import annotations

from edge.errors import EdgeError


class LlamaError(EdgeError, RuntimeError):
    """llama.cpp refused or failed an operation (load, decode, tokenize, grammar)."""


class EmbeddingWidthError(LlamaError, ValueError):
    """Rows handed to the decoder do not have the model's input width (n_embd_inp)."""


class ContextFullError(LlamaError):
    """The KV cache has no room for the batch (n_ctx too small for the prompt)."""


class DeadlineExceeded(LlamaError):
    """A deadline passed before (or while) a prompt was evaluated."""
