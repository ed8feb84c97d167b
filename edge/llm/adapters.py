"""LoRA adapters on a loaded decoder: checked, loaded once, switched per context without reloading.

An adapter is refused before it is applied when its file is missing or differs from the manifest's
sha256, when it was exported for another decoder (`base_sha256` in the manifest and in the file),
when its rank disagrees with the manifest, or when llama.cpp cannot load it against this model
(a corrupt file, a tensor the model does not have, a shape that does not fit: llama_adapter_lora_init
checks every pair). Applying is llama_set_adapters_lora on the context: the weights stay loaded, the
next evaluation uses the new set.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from edge.llm.context import LlamaContext
from edge.llm.errors import LlamaError
from edge.llm.model import LlamaModel
from edge.manifest import AdapterArtifact, sha256_file

# Metadata written by export/lora_gguf.py (kept here as strings: the device does not import export).
KEY_BASE = "edge.lora.base_sha256"
KEY_RANK = "edge.lora.rank"


class AdapterRefused(LlamaError):
    """A LoRA adapter was not applied; the message says which and why."""


@dataclass(frozen=True)
class LoadedAdapter:
    name: str
    ptr: Any  # llama_adapter_lora pointer as llama_cpp returns it (freed with the model)
    artifact: AdapterArtifact


def _adapter_meta(ptr, key: str) -> str | None:
    buf = ctypes.create_string_buffer(128)
    n = llama_cpp.llama_adapter_meta_val_str(ptr, key.encode(), buf, ctypes.sizeof(buf))
    return None if n < 0 else buf.value.decode("utf-8", errors="replace")


def load_adapter(model: LlamaModel, bundle_dir: Path, artifact: AdapterArtifact, base_identity: str) -> LoadedAdapter:
    """Check and load one adapter of the bundle onto `model` (not yet applied to any context)."""
    name, path = artifact.name, Path(bundle_dir) / artifact.path
    if artifact.base_sha256 != base_identity:
        raise AdapterRefused(f"adapter {name!r} was exported for another decoder (base {artifact.base_sha256[:12]}, "
                             f"this bundle's is {base_identity[:12]})")
    if not path.is_file():
        raise AdapterRefused(f"adapter {name!r}: {artifact.path} is missing")
    digest = sha256_file(path)
    if digest != artifact.sha256:
        raise AdapterRefused(f"adapter {name!r}: sha256 of {artifact.path} is {digest[:12]}, the manifest says "
                             f"{artifact.sha256[:12]} (file changed or corrupt)")
    ptr = llama_cpp.llama_adapter_lora_init(model.ptr, str(path).encode())
    if not ptr:
        raise AdapterRefused(f"adapter {name!r}: llama.cpp refused {artifact.path} (corrupt, or tensors/shapes "
                             f"this decoder does not have)")
    file_base, file_rank = _adapter_meta(ptr, KEY_BASE), _adapter_meta(ptr, KEY_RANK)
    reason = (f"its file names base {str(file_base)[:12]}, not {base_identity[:12]}" if file_base != base_identity
              else f"its file says rank {file_rank}, the manifest {artifact.rank}" if file_rank != str(artifact.rank)
              else None)
    if reason:
        llama_cpp.llama_adapter_lora_free(ptr)
        raise AdapterRefused(f"adapter {name!r} refused: {reason}")
    return LoadedAdapter(name, ptr, artifact)


def apply_adapters(ctx: LlamaContext, active: list[tuple[LoadedAdapter, float]]) -> None:
    """Make `active` (adapter, scale) the context's adapter set; an empty list removes every adapter.
    The KV cache is not touched: entries computed under the old set must be recomputed by the caller."""
    n = len(active)
    ptrs = (llama_cpp.llama_adapter_lora_p_ctypes * max(n, 1))(*[a.ptr for a, _ in active])
    scales = (ctypes.c_float * max(n, 1))(*[s for _, s in active])
    if llama_cpp.llama_set_adapters_lora(ctx.ptr, ptrs if n else None, n, scales if n else None) != 0:
        raise AdapterRefused(f"llama.cpp could not apply adapters {[a.name for a, _ in active]}")


def _bundle_adapters(bundle_dir: Path) -> dict[str, AdapterArtifact]:
    """The adapters the bundle's manifest lists now (an adapter exported while the runtime runs can be
    switched to without a restart). Only the `adapters` table is read: its entries carry their own hashes."""
    import json

    from edge.manifest import MANIFEST_FILENAME

    try:
        raw = json.loads((Path(bundle_dir) / MANIFEST_FILENAME).read_text()).get("adapters") or []
        return {a.name: a for a in (AdapterArtifact.model_validate(entry) for entry in raw)}
    except (OSError, ValueError) as exc:
        raise AdapterRefused(f"the bundle's adapter table cannot be read ({str(exc).splitlines()[0][:120]})") from exc


class AdapterSet:
    """The decoder's LoRA adapters: the active set, and a checked change waiting for the next cycle.

    `request` does every check and load at once (a refusal raises and changes nothing); the change
    takes effect when the decoder calls `apply_pending` between cycles, which then rebuilds its
    cached prefix once."""

    def __init__(self, model: LlamaModel, bundle_dir: Path, base_identity: str):
        self._model, self._bundle_dir, self.base_identity = model, Path(bundle_dir), base_identity
        self._loaded: dict[tuple[str, str], LoadedAdapter] = {}  # (name, sha256) -> loaded adapter
        self.active: tuple[tuple[str, float], ...] = ()
        self._active_files: tuple[tuple[str, float], ...] = ()  # (sha256, scale): a re-export is a change
        self._pending: list[tuple[LoadedAdapter, float]] | None = None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.active]

    def request(self, choices: list[tuple[str, float]]) -> None:
        """Check and load `choices` (name, scale); applied at the next `apply_pending`."""
        listed = _bundle_adapters(self._bundle_dir) if choices else {}
        chosen = []
        for name, scale in choices:
            artifact = listed.get(name)
            if artifact is None:
                raise AdapterRefused(f"the bundle has no adapter {name!r} (has {sorted(listed)})")
            key = (name, artifact.sha256)
            if key not in self._loaded:
                self._loaded[key] = load_adapter(self._model, self._bundle_dir, artifact, self.base_identity)
            chosen.append((self._loaded[key], scale))
        self._pending = chosen

    def apply_pending(self, ctx: LlamaContext) -> bool:
        """Apply the requested set, if any; True when the context's adapters changed."""
        if self._pending is None:
            return False
        pending, self._pending = self._pending, None
        files = tuple((a.artifact.sha256, s) for a, s in pending)
        if files == self._active_files:
            return False
        apply_adapters(ctx, pending)
        self.active, self._active_files = tuple((a.name, s) for a, s in pending), files
        return True
