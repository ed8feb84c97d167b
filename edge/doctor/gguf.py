"""The GGUF header: the decoder's shape, for the KV cache estimate (no gguf package needed)."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, cast

_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_MAX_KEPT_ARRAY = 4096  # per-layer arrays are kept; the 150k-entry vocabulary is skipped


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The key/value header of a GGUF file (without the vocabulary arrays). Reads a few KB of a
    multi-GB file: llama.cpp is not needed and nothing is loaded."""
    with open(path, "rb") as handle:

        def unpack(fmt: str) -> Any:
            size = struct.calcsize(fmt)
            data = handle.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        def read_string() -> str:
            return handle.read(unpack("<Q")).decode("utf-8", errors="replace")

        def read_value(kind: int) -> Any:
            if kind in _GGUF_SCALARS:
                return unpack(_GGUF_SCALARS[kind])
            if kind == _GGUF_STRING:
                return read_string()
            if kind == _GGUF_ARRAY:
                item_kind, count = unpack("<I"), unpack("<Q")
                if count > _GGUF_MAX_KEPT_ARRAY:
                    if item_kind in _GGUF_SCALARS:
                        handle.seek(count * struct.calcsize(_GGUF_SCALARS[item_kind]), os.SEEK_CUR)
                    else:
                        for _ in range(count):
                            read_value(item_kind)
                    return None
                return [read_value(item_kind) for _ in range(count)]
            raise ValueError(f"{path}: unknown GGUF value type {kind}")

        if handle.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = unpack("<I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is too old")
        _tensors, kv_count = unpack("<Q"), unpack("<Q")
        meta: dict[str, Any] = {}
        for _ in range(kv_count):
            key = read_string()
            meta[key] = read_value(unpack("<I"))
        return meta


def kv_cache_bytes(meta: dict[str, Any], n_ctx: int, bytes_per_value: int = 2) -> int | None:
    """K and V for every layer and context position (f16 by default, llama.cpp's default type)."""
    arch = meta.get("general.architecture")
    layers = meta.get(f"{arch}.block_count")
    heads_kv = meta.get(f"{arch}.attention.head_count_kv", meta.get(f"{arch}.attention.head_count"))
    if isinstance(heads_kv, list):  # per-layer counts: layers x their mean is their sum
        heads_kv = sum(heads_kv) / len(heads_kv) if heads_kv else None
    heads = meta.get(f"{arch}.attention.head_count")
    if isinstance(heads, list):
        heads = max(heads) if heads else None
    n_embd = meta.get(f"{arch}.embedding_length")
    key_dim = meta.get(f"{arch}.attention.key_length") or (n_embd // heads if n_embd and heads else None)
    value_dim = meta.get(f"{arch}.attention.value_length") or key_dim
    dims = (layers, heads_kv, key_dim, value_dim)
    if not all(isinstance(v, int | float) and v for v in dims):
        return None
    n_layers, n_heads_kv, k_dim, v_dim = cast(tuple[float, float, float, float], dims)
    return int(n_layers * n_heads_kv * (k_dim + v_dim) * n_ctx * bytes_per_value)
