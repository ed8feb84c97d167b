"""HF checkpoint -> model bundle (vision ONNX fp32 + GGUF decoder(s) + manifest.json).

Order of work: every argument is validated first (profile geometry, frame count, quant names,
architecture, shard presence/completeness, output folder), and only then does anything heavy run.
Memory: the checkpoint is streamed tensor by tensor (export.checkpoint); the vision tower is the only
part held whole (0.54B parameters for the 30B-A3B), the decoder converter streams per tensor.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edge.environment import installed_versions
from edge.manifest import (
    MANIFEST_FILENAME,
    MANIFEST_SCHEMA_VERSION,
    BundleError,
    BundleManifest,
    CameraProfile,
    DecoderArtifact,
    Normalization,
    SpecialTokens,
    VisionArtifact,
    add_file,
    write_manifest,
)
from export.checkpoint import CheckpointError, CheckpointReader

SUPPORTED_QUANTS = ("f32", "f16", "q8_0", "q4_0", "q4_k_m")
DEFAULT_QUANTS = ("q4_k_m",)
VISION_DIR = "vision"
VISION_ONNX_NAME = "vision_fp32.onnx"
# Qwen3-VL's processor normalisation (used when the checkpoint ships no preprocessor_config.json).
QWEN3_VL_MEAN = (0.5, 0.5, 0.5)
QWEN3_VL_STD = (0.5, 0.5, 0.5)

_SPECIAL_TOKEN_FIELDS = {
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
    "image_pad": "<|image_pad|>",
    "video_pad": "<|video_pad|>",
    "endoftext": "<|endoftext|>",
}


def make_profile(width: int, height: int, frames: int) -> CameraProfile:
    """CameraProfile with its validation errors turned into one clear BundleError."""
    try:
        return CameraProfile(width=width, height=height, frames_per_clip=frames)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        details = "; ".join(e["msg"].removeprefix("Value error, ") for e in getattr(exc, "errors", lambda: [])())
        raise BundleError(f"invalid camera profile {width}x{height}, {frames} frames: {details or exc}") from None


def normalize_quants(quants) -> list[str]:
    names = [q.lower() for q in (quants or DEFAULT_QUANTS)]
    unknown = [q for q in names if q not in SUPPORTED_QUANTS]
    if unknown:
        raise BundleError(f"unknown quant type(s) {unknown}; choose from {', '.join(SUPPORTED_QUANTS)}")
    return list(dict.fromkeys(names))  # keep order, drop duplicates


def read_special_tokens(reader: CheckpointReader) -> SpecialTokens:
    """Ids of Qwen's special tokens from tokenizer.json (falls back to tokenizer_config.json)."""
    ids: dict[str, int] = {}
    tokenizer = reader.read_json("tokenizer.json")
    if tokenizer:
        ids.update({t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens", [])})
    tok_config = reader.read_json("tokenizer_config.json")
    if tok_config:
        for token_id, entry in (tok_config.get("added_tokens_decoder") or {}).items():
            ids.setdefault(entry["content"], int(token_id))
    if not ids:
        raise CheckpointError(f"{reader.path}: no tokenizer.json / tokenizer_config.json with Qwen's special tokens")
    missing = [tok for tok in _SPECIAL_TOKEN_FIELDS.values() if tok not in ids]
    if missing:
        raise CheckpointError(f"{reader.path}: tokenizer lacks Qwen special tokens {missing}")
    values = {field: ids[tok] for field, tok in _SPECIAL_TOKEN_FIELDS.items()}
    # The model config names its placeholder ids too; a disagreement means mismatched files.
    for key, field in (("image_token_id", "image_pad"), ("video_token_id", "video_pad"),
                       ("vision_start_token_id", "vision_start"), ("vision_end_token_id", "vision_end")):
        if key in reader.config and int(reader.config[key]) != values[field]:
            raise CheckpointError(
                f"{reader.path}: config.json {key}={reader.config[key]} but the tokenizer's {_SPECIAL_TOKEN_FIELDS[field]} "
                f"is {values[field]}"
            )
    return SpecialTokens(**values)


def read_normalization(reader: CheckpointReader) -> Normalization:
    pre = reader.read_json("preprocessor_config.json") or {}
    return Normalization(
        mean=tuple(pre.get("image_mean", QWEN3_VL_MEAN)),
        std=tuple(pre.get("image_std", QWEN3_VL_STD)),
        rescale_factor=float(pre.get("rescale_factor", 1.0 / 255.0)),
    )


def read_prompt_pieces(reader: CheckpointReader) -> dict[str, str]:
    tok_config = reader.read_json("tokenizer_config.json") or {}
    template = tok_config.get("chat_template")
    if not template and (reader.path / "chat_template.jinja").is_file():
        template = (reader.path / "chat_template.jinja").read_text()
    if not template:
        chat = reader.read_json("chat_template.json") or {}
        template = chat.get("chat_template")
    pieces = {
        "image_placeholder": "<|vision_start|><|image_pad|><|vision_end|>",
        "video_placeholder": "<|vision_start|><|video_pad|><|vision_end|>",
    }
    if isinstance(template, str):
        pieces["chat_template"] = template
    return pieces


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BundleError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise BundleError(f"output folder {out} is not empty (pass overwrite=True / --overwrite to replace it)")
        if not (out / MANIFEST_FILENAME).is_file():
            # Never wipe a folder we did not create: only a previous bundle may be replaced.
            raise BundleError(f"output folder {out} is not empty and is not a bundle; refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _tool_versions() -> dict[str, str]:
    return installed_versions(("torch", "transformers", "onnx", "onnxruntime", "gguf", "llama-cpp-python"))


def _decoder_writer():
    """X2's GGUF converter + quantiser (export.gguf_decoder.write_decoder_artifacts)."""
    try:
        from export.gguf_decoder import write_decoder_artifacts
    except ModuleNotFoundError as exc:
        if exc.name != "export.gguf_decoder":
            raise
        raise BundleError(
            "the decoder converter (export.gguf_decoder) is not available; use include_decoder=False "
            "for a vision-only bundle"
        ) from None
    return write_decoder_artifacts


def _relative(path, bundle_dir: Path) -> str:
    """Bundle-relative posix path (the decoder writer may hand back absolute or relative paths)."""
    path = Path(path)
    if path.is_absolute():
        path = path.resolve().relative_to(bundle_dir.resolve())
    return path.as_posix()


def build_bundle(
    checkpoint: Path | str,
    out: Path | str,
    width: int,
    height: int,
    frames: int,
    quants=DEFAULT_QUANTS,
    *,
    progress: bool = True,
    overwrite: bool = False,
    include_decoder: bool = True,
    self_check: bool = True,
    vision_input: str = "frames",
) -> BundleManifest:
    """Write a bundle for one camera profile. Returns the manifest (also written to out/manifest.json).

    vision_input: the vision graph's input layout, "frames" (uint8 RGB frames; the graph normalises
    and patchifies) or "patches" (the processor's patch rows as uint8 levels); see export.vision_onnx.

    Raises BundleError / CheckpointError before any heavy work when an argument or the checkpoint is
    unusable (profile not a multiple of 32, odd frame count, unknown quant, wrong architecture,
    missing or truncated shards, a tensor missing, mis-shaped or in a dtype the exporter does not
    convert (export.preflight), non-empty output folder).
    """
    # ---- validation: cheap, complete, first ---------------------------------------------------
    profile = make_profile(width, height, frames)
    if vision_input not in ("frames", "patches"):
        raise BundleError(f"vision_input must be 'frames' or 'patches', got {vision_input!r}")
    quant_list = normalize_quants(quants)
    reader = CheckpointReader(checkpoint)
    from export.vision_onnx import check_profile_against_config

    check_profile_against_config(profile, reader.vision_config)
    special_tokens = read_special_tokens(reader)
    normalization = read_normalization(reader)
    write_decoder = _decoder_writer() if include_decoder else None
    from export.preflight import check_checkpoint

    check_checkpoint(reader, include_decoder=include_decoder)
    out = Path(out)
    _prepare_out_dir(out, overwrite)

    # ---- work --------------------------------------------------------------------------------
    # A failed export must not leave a half-written folder that looks like a bundle (or blocks a rerun).
    try:
        from export.vision_onnx import export_vision_onnx

        manifest = _new_manifest(reader, profile, normalization, special_tokens)
        vision = export_vision_onnx(
            reader, profile, out / VISION_DIR / VISION_ONNX_NAME, progress=progress, self_check=self_check,
            normalization=normalization, input_layout=vision_input,
        )
        manifest.vision.append(_vision_artifact(vision, out))
        if write_decoder is not None:
            _add_decoders(manifest, write_decoder(reader, out, quant_list, progress), out, vision.output_shape[1])
        _hash_every_file(manifest, out, progress)
        write_manifest(out, manifest)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return manifest


def _new_manifest(reader: CheckpointReader, profile: CameraProfile, normalization: Normalization,
                  special_tokens: SpecialTokens) -> BundleManifest:
    """The manifest before any artifact: where the bundle comes from and how its inputs are made."""
    manifest = BundleManifest(
        schema_version=MANIFEST_SCHEMA_VERSION,
        source={
            "checkpoint": reader.name,
            "config_sha256": reader.config_sha256,
            "architecture": "Qwen3VLMoeForConditionalGeneration",
            "checkpoint_bytes": reader.total_bytes,
            "shards": len(reader.shard_files),
            "exporter": "edge export bundle",
            "tools": _tool_versions(),
        },
        profile=profile,
        normalization=normalization,
        special_tokens=special_tokens,
        prompt=read_prompt_pieces(reader),
    )
    # A trained checkpoint carries its provenance (command, seed, data recipe): keep it with the bundle.
    training = reader.read_json("training.json")
    if training:
        manifest.source["training"] = training
    return manifest


def _vision_artifact(vision, out: Path) -> VisionArtifact:
    """The manifest entry of the exported vision ONNX (export.vision_onnx's result)."""
    return VisionArtifact(
        path=_relative(vision.path, out),
        format="onnx",
        precision="fp32",
        input_name=vision.input_name,
        input_shape=vision.input_shape,
        input_dtype=vision.input_dtype,
        input_layout=vision.input_layout,
        output_name=vision.output_name,
        output_shape=vision.output_shape,
        external_data=_relative(vision.external_data, out) if vision.external_data else None,
        accuracy=vision.accuracy or None,
    )


def _add_decoders(manifest: BundleManifest, decoders, out: Path, vision_width: int) -> None:
    """Record the written decoders; their input width must be the vision rows' width."""
    for artifact in decoders:
        artifact = artifact if isinstance(artifact, DecoderArtifact) else DecoderArtifact.model_validate(artifact)
        artifact.path = _relative(artifact.path, out)
        manifest.decoder.append(artifact)
    width_inp = {d.n_embd_inp for d in manifest.decoder}
    if width_inp and width_inp != {vision_width}:
        raise BundleError(f"vision rows are {vision_width} wide but the decoder expects n_embd_inp {sorted(width_inp)}")


def _hash_every_file(manifest: BundleManifest, out: Path, progress: bool) -> None:
    """Hash every file in the bundle (not just the artifacts): nothing unverified ships."""
    from tqdm import tqdm

    rel_files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_FILENAME)
    for rel in tqdm(rel_files, desc="sha256", unit="file", disable=not progress):
        add_file(manifest, out, rel)
