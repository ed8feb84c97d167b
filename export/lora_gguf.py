"""A PEFT LoRA adapter folder -> a GGUF LoRA adapter for the bundle's decoder (llama.cpp's form).

llama.cpp (the version llama-cpp-python 0.3.36 vendors, src/llama-adapter.cpp) loads an adapter GGUF
with `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, the base's
`general.architecture`, and per adapted weight a pair `<base tensor name>.lora_a` / `.lora_b`. In
numpy order `lora_a` is (rank, in) and `lora_b` is (out, rank): exactly PEFT's `lora_A.weight` and
`lora_B.weight`, so no transposition (upstream's convert_lora_to_gguf.py transposes only
`token_embd`, which is never adapted here). llama.cpp scales the product by scale * alpha / rank,
PEFT by alpha / rank: the same at scale 1.

Only the decoder's attention projections can be exported: the MoE experts are stacked 3-D tensors
(a LoRA on one expert has no per-expert GGUF pair) and the vision tower runs in ONNX, not llama.cpp.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.manifest import (
    AdapterArtifact,
    BundleError,
    BundleManifest,
    load_bundle,
    sha256_file,
    write_manifest,
)
from export.gguf_decoder import ARCH, TEXT_PREFIXES, GgufNames

# Keys the runtime reads back from the adapter file (edge/llm/adapters.py) to refuse a foreign one.
KEY_BASE = "edge.lora.base_sha256"
KEY_RANK = "edge.lora.rank"
KEY_NAME = "edge.lora.name"
KEY_DOMAIN = "edge.lora.domain"

# PEFT matches module names against this: the text decoder's attention, never the vision tower's.
TARGET_REGEX = r".*language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
LORA_TRAINING_JSON = "lora_training.json"  # the training record beside a PEFT adapter
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Decoder modules llama.cpp applies a LoRA to in the qwen3vlmoe graph (build_lora_mm).
EXPORTABLE_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
_KEY_RE = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


class LoraExportError(ValueError):
    """The adapter cannot be exported; the message names the file, key or setting and why."""


@dataclass(frozen=True)
class PeftAdapter:
    folder: Path
    rank: int
    alpha: float
    target_modules: list[str]
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]  # GGUF base tensor name -> (lora_a, lora_b)
    training: dict


def _adapter_config(folder: Path) -> dict:
    path = folder / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LoraExportError(f"{path}: not a readable PEFT adapter config ({exc})") from exc
    if config.get("peft_type") != "LORA":
        raise LoraExportError(f"{path}: peft_type is {config.get('peft_type')!r}, only LORA is exported")
    # Variants whose arithmetic llama.cpp's `scale * alpha / rank * B A x` does not reproduce.
    for key, bad in (("use_rslora", True), ("use_dora", True), ("rank_pattern", None), ("alpha_pattern", None),
                     ("modules_to_save", None)):
        value = config.get(key)
        if (bad is True and value) or (bad is None and value):
            raise LoraExportError(f"{path}: {key}={value!r} is not supported by llama.cpp's LoRA (plain LoRA only)")
    if config.get("bias", "none") != "none":
        raise LoraExportError(f"{path}: bias={config['bias']!r}; llama.cpp's LoRA has no bias terms")
    return config


def _gguf_base_name(module: str, names: GgufNames) -> str:
    for prefix in TEXT_PREFIXES:
        if module.startswith(prefix) and ".layers." in "." + module[len(prefix):]:
            hf = module[len(prefix):]
            leaf = hf.rsplit(".", 1)[-1]
            if leaf not in EXPORTABLE_MODULES:
                break
            return names(hf + ".weight")
    raise LoraExportError(
        f"adapted module {module!r} is not a decoder attention projection ({', '.join(EXPORTABLE_MODULES)}); "
        f"llama.cpp cannot apply it to the GGUF decoder"
    )


def read_peft_adapter(folder: Path | str, n_layer: int) -> PeftAdapter:
    """Read and check a PEFT adapter folder; tensors keyed by the GGUF name they adapt."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = _adapter_config(folder)
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise LoraExportError(f"{weights} is missing")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    names = GgufNames(n_layer)
    parts: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(str(weights)).items():
        match = _KEY_RE.match(key)
        if match is None:
            raise LoraExportError(f"{weights}: tensor {key!r} is not a lora_A/lora_B weight")
        parts.setdefault(_gguf_base_name(match["module"], names), {})[match["part"]] = value.astype(np.float32)
    pairs = {}
    for name, ab in sorted(parts.items()):
        if set(ab) != {"A", "B"}:
            raise LoraExportError(f"{weights}: {name} has only lora_{''.join(ab)}")
        a, b = ab["A"], ab["B"]
        if a.shape[0] != rank or b.shape[1] != rank:
            raise LoraExportError(f"{weights}: {name} has lora_A {a.shape} / lora_B {b.shape}, not rank {rank}")
        pairs[name] = (a, b)
    if not pairs:
        raise LoraExportError(f"{weights}: no LoRA tensors")
    training_file = folder / LORA_TRAINING_JSON
    training = json.loads(training_file.read_text()) if training_file.is_file() else {}
    targets = config.get("target_modules") or []
    modules = [targets] if isinstance(targets, str) else sorted(map(str, targets))
    return PeftAdapter(folder, rank, alpha, modules, pairs, training)


def write_adapter_gguf(adapter: PeftAdapter, out: Path, *, base_sha256: str, name: str, domain: str) -> Path:
    import gguf

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".gguf.tmp")
    writer = gguf.GGUFWriter(tmp, ARCH)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter.alpha)
    writer.add_string(KEY_BASE, base_sha256)
    writer.add_uint32(KEY_RANK, adapter.rank)
    writer.add_string(KEY_NAME, name)
    writer.add_string(KEY_DOMAIN, domain)
    for base_name, (a, b) in adapter.pairs.items():
        writer.add_tensor(base_name + ".lora_a", np.ascontiguousarray(a))
        writer.add_tensor(base_name + ".lora_b", np.ascontiguousarray(b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out


def _check_shapes(adapter: PeftAdapter, manifest: BundleManifest) -> None:
    """Refuse an adapter whose matrices do not fit this decoder (trained on another base size)."""
    dec = manifest.decoder[0]
    for name, (a, b) in adapter.pairs.items():
        in_width = a.shape[1]
        if name.endswith(("attn_q.weight", "attn_k.weight", "attn_v.weight")) and in_width != dec.n_embd:
            raise LoraExportError(f"{name}.lora_a takes {in_width} inputs, the bundle's decoder has n_embd {dec.n_embd}")
        if name.endswith("attn_output.weight") and b.shape[0] != dec.n_embd:
            raise LoraExportError(f"{name}.lora_b gives {b.shape[0]} outputs, the bundle's decoder has n_embd {dec.n_embd}")


def export_lora(adapter_dir: Path | str, bundle: Path | str, *, name: str | None = None,
                domain: str | None = None) -> AdapterArtifact:
    """Write `adapters/<name>.gguf` into the bundle and list it in the manifest (replacing one of the
    same name). The hash table of the bundle (its identity) is left as it is."""
    manifest, bundle_dir = load_bundle(bundle)
    if not manifest.decoder:
        raise BundleError(f"bundle {bundle_dir} has no decoder to adapt")
    adapter = read_peft_adapter(adapter_dir, manifest.decoder[0].n_layer)
    _check_shapes(adapter, manifest)
    name = name or adapter.training.get("name") or Path(adapter_dir).name
    domain = domain or adapter.training.get("domain") or "unspecified"
    rel = f"adapters/{name}.gguf"
    base = manifest.decoder_identity()
    path = write_adapter_gguf(adapter, bundle_dir / rel, base_sha256=base, name=name, domain=domain)
    art = AdapterArtifact(
        name=name, path=rel, sha256=sha256_file(path), base_sha256=base, rank=adapter.rank, alpha=adapter.alpha,
        target_modules=adapter.target_modules, domain=domain, n_tensors=2 * len(adapter.pairs),
        source={"adapter_dir": str(adapter_dir), "training": adapter.training},
    )
    manifest.adapters = [a for a in manifest.adapters if a.name != name] + [art]
    write_manifest(bundle_dir, manifest)
    return art
