"""Summarise a GGUF file (tensor names, shapes, types; metadata) and diff two summaries.

Used to hold the decoder GGUF the project writes equal to what llama.cpp's own converter
(`convert_hf_to_gguf.py`) writes for the same checkpoint: tests/export/data holds the summary of
upstream's output for the tiny checkpoint, made by scripts/upstream_gguf_summary.py. Long arrays
(token list, token types, merges) are summarised by length and sha256, so a summary is a few KB.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# Keys that describe the file or the tool, not the model: they may differ between two converters.
IGNORED_KEYS = ("general.", "GGUF.")
_INLINE_ARRAY_MAX = 16


def _field_value(field):
    from gguf import GGUFValueType

    if field.types and field.types[0] == GGUFValueType.ARRAY:
        items = [field.contents(i) for i in range(len(field.data))]
        if len(items) <= _INLINE_ARRAY_MAX:
            return items
        digest = hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()
        return {"len": len(items), "sha256": digest}
    value = field.contents()
    if isinstance(value, float):
        return float(f"{value:.9g}")  # f32 metadata: compare at its own precision
    return value


def summarize_gguf(path: Path | str) -> dict:
    """{"arch", "metadata": {key: value}, "tensors": {name: {"shape": [numpy order], "type", "sha256"}}}.

    sha256 is of the tensor's bytes as stored: equal hashes mean the same values in the same layout
    (a transposed expert block of equal dimensions has equal shapes but another hash)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    metadata = {name: _field_value(f) for name, f in reader.fields.items() if not name.startswith(IGNORED_KEYS)}
    tensors = {
        t.name: {"shape": [int(d) for d in reversed(t.shape.tolist())], "type": t.tensor_type.name,
                 "sha256": hashlib.sha256(t.data.tobytes()).hexdigest()}
        for t in reader.tensors
    }
    arch = reader.fields["general.architecture"].contents()
    return {"arch": arch, "metadata": dict(sorted(metadata.items())), "tensors": dict(sorted(tensors.items()))}


def diff_summaries(ours: dict, theirs: dict, *, compare_types: bool = True) -> list[str]:
    """One line per difference: architecture, tensors missing on either side, shapes, types, metadata."""
    out = []
    if ours["arch"] != theirs["arch"]:
        out.append(f"architecture: ours {ours['arch']!r}, upstream {theirs['arch']!r}")
    for name in sorted(set(theirs["tensors"]) - set(ours["tensors"])):
        out.append(f"tensor {name}: only upstream writes it")
    for name in sorted(set(ours["tensors"]) - set(theirs["tensors"])):
        out.append(f"tensor {name}: only ours writes it")
    for name in sorted(set(ours["tensors"]) & set(theirs["tensors"])):
        a, b = ours["tensors"][name], theirs["tensors"][name]
        if a["shape"] != b["shape"]:
            out.append(f"tensor {name}: shape ours {a['shape']}, upstream {b['shape']}")
        if compare_types and a["type"] != b["type"]:
            out.append(f"tensor {name}: type ours {a['type']}, upstream {b['type']}")
        elif compare_types and a.get("sha256") != b.get("sha256"):
            out.append(f"tensor {name}: same shape and type, other values (layout or conversion differs)")
    for key in sorted(set(ours["metadata"]) | set(theirs["metadata"])):
        a, b = ours["metadata"].get(key, "<absent>"), theirs["metadata"].get(key, "<absent>")
        if a != b:
            out.append(f"metadata {key}: ours {_short(a)}, upstream {_short(b)}")
    return out


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."
