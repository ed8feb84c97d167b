"""The model bundle manifest (DESIGN.md contract 1).

A bundle is a folder holding `manifest.json` plus the artifact files it names. The runtime loads a
bundle only through `load_bundle`, which refuses anything inconsistent (unknown schema, missing
file, wrong sha256, shapes that disagree with the camera profile) with a message that names the
offending file or field. This module must stay torch-free: the device imports it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from edge.errors import EdgeError

# 2: vision artifacts may take whole frames (`VisionArtifact.input_layout`). A runtime that reads
# only 1 refuses such a bundle at load instead of failing at its first encode; version 1 manifests
# (patch-layout encoders only) still load here.
MANIFEST_SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
MANIFEST_FILENAME = "manifest.json"
# Hash in 1 MiB chunks so a 60 GB GGUF never sits in memory.
HASH_CHUNK_BYTES = 1 << 20

log = logging.getLogger(__name__)


class BundleError(EdgeError, ValueError):
    """A bundle (or a request to build one) is unusable; the message says which file/field and why."""


def sha256_file(path: Path, chunk_bytes: int = HASH_CHUNK_BYTES) -> str:
    """Streamed sha256 of a file (constant memory whatever the file size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


class CameraProfile(BaseModel):
    """The fixed input geometry every exported vision artifact is built for."""

    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    frames_per_clip: int
    patch_size: int = 16
    temporal_patch_size: int = 2
    merge_size: int = 2

    @model_validator(mode="after")
    def _check_geometry(self) -> CameraProfile:
        if self.patch_size <= 0 or self.temporal_patch_size <= 0 or self.merge_size <= 0:
            raise ValueError("patch_size, temporal_patch_size and merge_size must be positive")
        # One visual token covers (patch * merge) pixels square, so the frame must tile exactly.
        unit = self.patch_size * self.merge_size
        for name, value in (("width", self.width), ("height", self.height)):
            if value <= 0 or value % unit:
                raise ValueError(
                    f"camera profile {name}={value} must be a positive multiple of {unit} "
                    f"(patch_size {self.patch_size} x merge_size {self.merge_size})"
                )
        # A temporal patch stacks `temporal_patch_size` frames; a partial pair has no meaning.
        if self.frames_per_clip < self.temporal_patch_size or self.frames_per_clip % self.temporal_patch_size:
            raise ValueError(
                f"camera profile frames_per_clip={self.frames_per_clip} must be a positive multiple of "
                f"the temporal patch size {self.temporal_patch_size} (an even number >= 2)"
            )
        return self

    @property
    def frame_pairs(self) -> int:
        return self.frames_per_clip // self.temporal_patch_size

    @property
    def grid_h(self) -> int:
        return self.height // self.patch_size

    @property
    def grid_w(self) -> int:
        return self.width // self.patch_size

    @property
    def merged_h(self) -> int:
        return self.grid_h // self.merge_size

    @property
    def merged_w(self) -> int:
        return self.grid_w // self.merge_size

    @property
    def tokens_per_pair(self) -> int:
        return self.merged_h * self.merged_w

    @property
    def tokens_per_clip(self) -> int:
        return self.frame_pairs * self.tokens_per_pair

    @property
    def patch_dim(self) -> int:
        return 3 * self.temporal_patch_size * self.patch_size * self.patch_size

    @property
    def patches_per_pair(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def patches_per_clip(self) -> int:
        return self.frame_pairs * self.patches_per_pair

    def grid_thw(self) -> list[int]:
        """The `grid_thw` row transformers uses for one clip of this profile."""
        return [self.frame_pairs, self.grid_h, self.grid_w]


class Normalization(BaseModel):
    model_config = ConfigDict(frozen=True)

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale_factor: float = 1.0 / 255.0


class VisionArtifact(BaseModel):
    path: str  # relative to the bundle folder
    format: Literal["onnx", "tensorrt"]
    precision: Literal["fp32", "fp16", "int8"]
    input_name: str
    input_shape: list[int]  # patches: [patches_per_clip, patch_dim]; frames: [frames_per_clip, 3, H, W]
    # "float32": normalised pixel values, exactly the HF processor's. "uint8": the raw RGB levels;
    # the graph normalises them itself (its first ops), so the host writes a quarter of the bytes
    # and skips the per-value arithmetic (and a GPU gets a quarter of the upload).
    input_dtype: Literal["float32", "uint8"] = "float32"
    # "patches": the HF processor's patch rows (frame pairs, merge-block order). "frames": the
    # clip's resized frames as they are, RGB planes per frame; the graph cuts them into patches
    # itself (its patch embedding is a strided convolution over each frame pair), so the host
    # only resizes. uint8 only.
    input_layout: Literal["patches", "frames"] = "patches"
    output_name: str
    output_shape: list[int]  # [tokens_per_clip, n_embd * (1 + n_deepstack)]
    external_data: str | None = None
    # TensorRT only: {gpu_name, compute_capability, tensorrt_version}; a plan runs only where it was built.
    built_for: dict | None = None
    timing_cache: str | None = None
    accuracy: dict | None = None  # e.g. {"cosine": .., "max_abs_diff": .., "report": "reports/x.json"}
    adopted: bool = True  # calibration may record an INT8 model that was not adopted

    @model_validator(mode="after")
    def _frames_are_levels(self) -> VisionArtifact:
        if self.input_layout == "frames" and self.input_dtype != "uint8":
            raise ValueError("input_layout 'frames' takes uint8 levels (input_dtype 'uint8')")
        return self

    @property
    def pixel_format(self) -> Literal["float32", "uint8", "frames"]:
        """What the preprocessor must hand this encoder (`edge.preprocess.PixelFormat`)."""
        return "frames" if self.input_layout == "frames" else self.input_dtype


class DecoderArtifact(BaseModel):
    path: str
    quant: Literal["f32", "f16", "q8_0", "q4_0", "q4_k_m"]
    n_embd: int
    n_embd_inp: int
    n_deepstack: int
    n_vocab: int
    n_layer: int

    @model_validator(mode="after")
    def _check_widths(self) -> DecoderArtifact:
        # llama.cpp: n_embd_inp = n_embd * (1 + n_deepstack). Anything else means a broken export.
        if self.n_embd_inp != self.n_embd * (1 + self.n_deepstack):
            raise ValueError(
                f"decoder {self.path}: n_embd_inp {self.n_embd_inp} != n_embd {self.n_embd} * "
                f"(1 + n_deepstack {self.n_deepstack})"
            )
        return self


class SpecialTokens(BaseModel):
    model_config = ConfigDict(frozen=True)

    im_start: int
    im_end: int
    vision_start: int
    vision_end: int
    image_pad: int
    video_pad: int
    endoftext: int


class AdapterArtifact(BaseModel):
    """A LoRA adapter for the bundle's decoder (docs/LORA.md). Its file is listed here, not in
    `files`: adding or removing an adapter leaves the bundle's identity unchanged, and the runtime
    checks the hash itself when it applies the adapter (a bad adapter is refused, the bundle is not)."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_][a-z0-9_.-]{0,39}$")]
    path: str
    sha256: str
    base_sha256: str  # decoder_identity() of the bundle it was exported for
    rank: int = Field(gt=0)
    alpha: float
    target_modules: list[str]
    domain: str
    n_tensors: int = Field(gt=0)
    source: dict = Field(default_factory=dict)  # adapter folder, training provenance
    verify: dict = Field(default_factory=dict)  # `edge export lora` against transformers + PEFT (the gate)


class BundleManifest(BaseModel):
    schema_version: int = MANIFEST_SCHEMA_VERSION
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    source: dict = Field(default_factory=dict)  # checkpoint name, config sha256, provenance
    profile: CameraProfile
    normalization: Normalization
    vision: list[VisionArtifact] = Field(default_factory=list)
    decoder: list[DecoderArtifact] = Field(default_factory=list)
    special_tokens: SpecialTokens
    prompt: dict[str, str] = Field(default_factory=dict)  # prompt template pieces (e.g. chat template)
    reports: dict[str, str] = Field(default_factory=dict)  # name -> relative path of a JSON report
    # Measured figures the runtime acts on (edge.quality: driving agreement per precision combination).
    quality: dict = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)  # relative path -> sha256, EVERY artifact file
    adapters: list[AdapterArtifact] = Field(default_factory=list)  # LoRA adapters, checked when applied

    def bundle_sha256(self) -> str:
        """Stable identity of the bundle: hash of the sorted file table (not of timestamps)."""
        table = json.dumps(sorted(self.files.items()), separators=(",", ":"))
        return hashlib.sha256(table.encode()).hexdigest()

    def decoder_identity(self) -> str:
        """What a LoRA adapter is trained against: the hash of the decoder files' table (every
        quant is made from the same weights; reports and adapters do not change it)."""
        table = sorted((d.path, self.files.get(d.path, "")) for d in self.decoder)
        return hashlib.sha256(json.dumps(table, separators=(",", ":")).encode()).hexdigest()

    def adapter(self, name: str) -> AdapterArtifact:
        for art in self.adapters:
            if art.name == name:
                return art
        raise BundleError(f"the bundle has no LoRA adapter {name!r} (has {sorted(a.name for a in self.adapters)})")

    def n_deepstack(self) -> int | None:
        return self.decoder[0].n_deepstack if self.decoder else None

    def adopted_vision(self, format: str | None = None) -> list[VisionArtifact]:
        return [v for v in self.vision if v.adopted and (format is None or v.format == format)]

    def find_vision(self, format: str, precision: str) -> VisionArtifact | None:
        """The first vision artifact of this format and precision, adopted or not."""
        return next((v for v in self.vision if v.format == format and v.precision == precision), None)


def add_file(manifest: BundleManifest, bundle_dir: Path, rel_path: str) -> str:
    """Hash `bundle_dir/rel_path` (streamed) into the manifest's file table; returns the sha256."""
    path = Path(bundle_dir) / rel_path
    if not path.is_file():
        raise BundleError(f"cannot add {rel_path!r} to the manifest: {path} is not a file")
    digest = sha256_file(path)
    manifest.files[Path(rel_path).as_posix()] = digest
    return digest


def write_manifest(bundle_dir: Path, manifest: BundleManifest) -> Path:
    """Write manifest.json atomically (a reader never sees half a manifest)."""
    bundle_dir = Path(bundle_dir)
    target = bundle_dir / MANIFEST_FILENAME
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n")
    tmp.replace(target)
    return target


def vision_input_shape(profile: CameraProfile, layout: str) -> list[int]:
    """The encoder input shape a layout has for the camera profile."""
    if layout == "frames":
        return [profile.frames_per_clip, 3, profile.height, profile.width]
    return [profile.patches_per_clip, profile.patch_dim]


def _check_shapes(manifest: BundleManifest) -> None:
    profile = manifest.profile
    widths = {d.n_embd_inp for d in manifest.decoder}
    if len(widths) > 1:
        raise BundleError(f"decoder artifacts disagree on n_embd_inp: {sorted(widths)}")
    for art in manifest.vision:
        want_in = vision_input_shape(profile, art.input_layout)
        if list(art.input_shape) != want_in:
            raise BundleError(
                f"vision artifact {art.path}: input_shape {art.input_shape} does not match the camera "
                f"profile {profile.width}x{profile.height}x{profile.frames_per_clip} (expected {want_in})"
            )
        if len(art.output_shape) != 2 or art.output_shape[0] != profile.tokens_per_clip:
            raise BundleError(
                f"vision artifact {art.path}: output_shape {art.output_shape} must be "
                f"[{profile.tokens_per_clip}, width] for the camera profile"
            )
        if widths and art.output_shape[1] not in widths:
            raise BundleError(
                f"vision artifact {art.path}: output width {art.output_shape[1]} != decoder n_embd_inp "
                f"{next(iter(widths))}"
            )


def _referenced_files(manifest: BundleManifest) -> list[str]:
    refs = [v.path for v in manifest.vision] + [d.path for d in manifest.decoder]
    refs += [v.external_data for v in manifest.vision if v.external_data]
    refs += list(manifest.reports.values())
    return refs


def load_bundle(path: Path | str, verify_hashes: bool = True) -> tuple[BundleManifest, Path]:
    """Load and check a bundle. Returns (manifest, bundle folder); raises BundleError on any mismatch."""
    bundle_dir = Path(path)
    if bundle_dir.is_file() and bundle_dir.name == MANIFEST_FILENAME:
        bundle_dir = bundle_dir.parent
    manifest_path = bundle_dir / MANIFEST_FILENAME
    if not manifest_path.is_file():
        raise BundleError(f"not a bundle: {manifest_path} is missing")
    try:
        raw = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not readable JSON ({exc})") from exc
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise BundleError(
            f"{manifest_path}: schema_version {version!r} is not supported (this runtime reads {readable})"
        )
    try:
        manifest = BundleManifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{manifest_path}: invalid manifest: {exc}") from exc
    _check_shapes(manifest)

    for ref in _referenced_files(manifest):
        if ref not in manifest.files:
            raise BundleError(f"{manifest_path}: {ref!r} is referenced but has no sha256 in 'files'")
    for rel in manifest.files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BundleError(f"{manifest_path}: file path {rel!r} must be relative to the bundle")
        if not (bundle_dir / rel).is_file():
            raise BundleError(f"bundle {bundle_dir}: file {rel!r} listed in the manifest is missing")
    if verify_hashes:
        for rel, want in manifest.files.items():
            got = sha256_file(bundle_dir / rel)
            if got != want:
                raise BundleError(
                    f"bundle {bundle_dir}: sha256 of {rel!r} is {got[:16]}..., the manifest says "
                    f"{want[:16]}... (file changed or corrupt)"
                )
    else:
        log.warning("bundle %s loaded WITHOUT hash verification", bundle_dir)
    return manifest, bundle_dir
