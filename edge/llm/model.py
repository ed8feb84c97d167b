"""A GGUF model loaded through llama-cpp-python's low-level API: weights, vocabulary, tokenizer.

`LlamaModel` owns the `llama_model` pointer. It knows the widths the runtime must respect: `n_embd`
(hidden size) and `n_embd_inp` (the input row width; for Qwen3-VL n_embd * (1 + n_deepstack), since a
visual row carries the DeepStack features next to the merger output).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

import llama_cpp

from edge.llm.errors import LlamaError

_backend_lock = threading.Lock()
_backend_ready = False


def ensure_backend(verbose: bool = False) -> None:
    """Initialise llama.cpp's backends once per process and set its log level."""
    global _backend_ready
    # llama-cpp-python routes llama.cpp's log through this logger; by default it prints everything.
    logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True


def gguf_metadata(model: llama_cpp.llama_model_p, key: str) -> str | None:
    """One metadata value of a loaded model as text (None when the key is absent)."""
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, ctypes.sizeof(buf))
    if n < 0:
        return None
    if n >= ctypes.sizeof(buf):
        buf = ctypes.create_string_buffer(n + 1)
        llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, ctypes.sizeof(buf))
    return buf.value.decode("utf-8", errors="replace")


class LlamaModel:
    """Weights + vocabulary of one GGUF file. Create contexts with `edge.llm.context.LlamaContext`.

    `expected_n_embd_inp` (from the bundle manifest) is checked right after loading: a GGUF whose input
    width differs would silently misread every visual row, so it is refused with a clear error.
    """

    def __init__(self, path: Path | str, n_gpu_layers: int = 0, expected_n_embd_inp: int | None = None,
                 verbose: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise LlamaError(f"GGUF model not found: {self.path}")
        ensure_backend(verbose)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        ptr = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not ptr:
            raise LlamaError(f"llama.cpp could not load {self.path} (not a GGUF, or an unsupported architecture)")
        self._ptr = ptr
        self._vocab = llama_cpp.llama_model_get_vocab(ptr)
        self.architecture = gguf_metadata(ptr, "general.architecture") or "unknown"
        self.n_embd = llama_cpp.llama_model_n_embd(ptr)
        self.n_embd_inp = llama_cpp.llama_model_n_embd_inp(ptr)
        self.n_layer = llama_cpp.llama_model_n_layer(ptr)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(ptr)
        # Per-token answers that never change for a loaded vocabulary, asked once per generated
        # token: cached so a generation step makes no extra ctypes calls.
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._eog: dict[int, bool] = {}
        if expected_n_embd_inp is not None and expected_n_embd_inp != self.n_embd_inp:
            self.close()
            raise LlamaError(
                f"{self.path.name}: llama.cpp reports n_embd_inp = {self.n_embd_inp} but the bundle manifest "
                f"says {expected_n_embd_inp}; the vision encoder's rows would not fit this decoder "
                f"(re-export the bundle, or check the GGUF's n_deepstack_layers)"
            )

    # -- lifetime ------------------------------------------------------------------------------
    @property
    def ptr(self) -> llama_cpp.llama_model_p:
        if self._ptr is None:
            raise LlamaError(f"model {self.path.name} is closed")
        return self._ptr

    @property
    def vocab(self) -> llama_cpp.llama_vocab_p:
        self.ptr  # noqa: B018 - raises when closed
        return self._vocab

    def close(self) -> None:
        if getattr(self, "_ptr", None):
            llama_cpp.llama_model_free(self._ptr)
        self._ptr = None

    def __enter__(self) -> LlamaModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    @property
    def n_deepstack(self) -> int:
        return self.n_embd_inp // self.n_embd - 1

    # -- tokenizer -----------------------------------------------------------------------------
    def size_bytes(self) -> int:
        """The weights' size in bytes (what one token's evaluation reads, for a dense model)."""
        return int(llama_cpp.llama_model_size(self.ptr))

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        """Text -> token ids. `parse_special` makes '<|im_start|>' one control token, as transformers does."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, parse_special)
        if n < 0:  # buffer too small: -n is the size needed
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, parse_special)
        if n < 0:
            raise LlamaError(f"llama_tokenize failed for a text of {len(data)} bytes")
        return list(buf[:n])

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (a piece may hold part of a UTF-8 character)."""
        piece = self._pieces.get((token, special))
        if piece is not None:
            return piece
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, ctypes.sizeof(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, ctypes.sizeof(buf), 0, special)
        piece = self._pieces[(token, special)] = buf.raw[:n]
        return piece

    def detokenize(self, tokens: list[int], special: bool = False) -> str:
        return b"".join(self.token_bytes(t, special) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        """End of generation (EOS, EOT, <|im_end|> ...) as the GGUF's vocabulary defines it."""
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
        return eog
