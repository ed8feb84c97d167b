"""Read a Hugging Face Qwen3-VL-MoE checkpoint without loading it whole.

The real Qwen3-VL-30B-A3B is ~60 GB of bf16 weights in many safetensors shards, exported on boxes
with not much more RAM than that. So this reader:
- opens only config.json and the shard index (or the single file's header) up front, and checks
  architecture, shard presence and shard completeness BEFORE any work starts;
- reads ONE tensor at a time with plain positioned file reads. It deliberately does not mmap the
  shards (as `safetensors.safe_open` does): every mmapped page a conversion touches stays resident
  and counts in the process' RSS until the map is closed, so a full pass over a mmapped 60 GB
  checkpoint shows ~60 GB RSS. With reads, peak memory is the largest tensor (x2 for the fp32 copy).

Tensor names are returned exactly as stored (e.g. `model.visual.blocks.0.attn.qkv.weight`).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from edge.errors import EdgeError

EXPECTED_ARCHITECTURE = "Qwen3VLMoeForConditionalGeneration"
EXPECTED_MODEL_TYPE = "qwen3_vl_moe"
INDEX_FILENAME = "model.safetensors.index.json"
SINGLE_FILENAME = "model.safetensors"
# Where the vision tower lives in the different naming generations of Qwen3-VL checkpoints.
VISION_PREFIXES = ("model.visual.", "visual.")

# safetensors dtype tag -> (torch dtype name, bytes per element)
_DTYPES = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
_FLOAT_TAGS = {"F64", "F32", "F16", "BF16"}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class CheckpointError(EdgeError, ValueError):
    """The checkpoint cannot be exported; the message names the file and the reason."""


class TensorInfo:
    __slots__ = ("begin", "dtype", "end", "file", "shape")

    def __init__(self, file: Path, dtype: str, shape: tuple[int, ...], begin: int, end: int):
        self.file = file
        self.dtype = dtype  # safetensors tag, e.g. "BF16"
        self.shape = shape
        self.begin = begin  # absolute byte offsets in the file
        self.end = end

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse a safetensors header (8-byte length + JSON) and check the data fits in the file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw_len = handle.read(8)
        if len(raw_len) != 8:
            raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
            raise CheckpointError(f"{path}: not a safetensors file (header length {header_len} invalid)")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: corrupt safetensors header ({exc})") from exc
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_len
    infos: dict[str, TensorInfo] = {}
    data_end = data_start
    for name, entry in header.items():
        tag = entry.get("dtype")
        if tag not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {tag!r}")
        begin, end = entry["data_offsets"]
        shape = tuple(int(d) for d in entry["shape"])
        count = 1
        for d in shape:
            count *= d
        if end - begin != count * _DTYPES[tag][1]:
            raise CheckpointError(f"{path}: tensor {name!r} byte range does not match its shape {shape}")
        infos[name] = TensorInfo(path, tag, shape, data_start + begin, data_start + end)
        data_end = max(data_end, data_start + end)
    if data_end > size:
        raise CheckpointError(
            f"{path}: truncated shard ({size} bytes, the header needs {data_end}); re-download it"
        )
    return infos, metadata


class CheckpointReader:
    """Streaming access to a Qwen3-VL-MoE checkpoint folder.

    reader = CheckpointReader(path)       # validates, loads nothing
    reader.config / .text_config / .vision_config   (dicts from config.json)
    reader.tensor_names(); reader.shape(name); reader.get(name) -> fp32 torch.Tensor
    for name, tensor in reader.iter_prefix("model.visual."): ...
    """

    def __init__(self, path: Path | str, check_architecture: bool = True):
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(f"checkpoint folder {self.path} does not exist")
        config_path = self.path / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"{self.path} is not a Hugging Face checkpoint: config.json is missing")
        raw_config = config_path.read_bytes()
        try:
            self.config: dict = json.loads(raw_config)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{config_path}: invalid JSON ({exc})") from exc
        self.config_sha256 = hashlib.sha256(raw_config).hexdigest()
        if check_architecture:
            self._check_architecture()
        self._tensors = self._read_layout()

    # ---- validation -------------------------------------------------------------------------
    def _check_architecture(self) -> None:
        model_type = self.config.get("model_type")
        architectures = self.config.get("architectures") or []
        if model_type != EXPECTED_MODEL_TYPE or (architectures and EXPECTED_ARCHITECTURE not in architectures):
            raise CheckpointError(
                f"{self.path}: unsupported architecture (model_type={model_type!r}, "
                f"architectures={architectures}); this exporter handles {EXPECTED_ARCHITECTURE} "
                f"(model_type {EXPECTED_MODEL_TYPE!r}, e.g. Qwen/Qwen3-VL-30B-A3B-Instruct)"
            )
        for key in ("text_config", "vision_config"):
            if not isinstance(self.config.get(key), dict):
                raise CheckpointError(f"{self.path}/config.json: {key} is missing")

    def _read_layout(self) -> dict[str, TensorInfo]:
        index_path = self.path / INDEX_FILENAME
        single_path = self.path / SINGLE_FILENAME
        if index_path.is_file():
            try:
                index = json.loads(index_path.read_text())
                weight_map: dict[str, str] = index["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{index_path}: not a valid shard index ({exc})") from exc
            shard_names = sorted(set(weight_map.values()))
            missing = [s for s in shard_names if not (self.path / s).is_file()]
            if missing:
                raise CheckpointError(
                    f"{self.path}: {len(missing)} of {len(shard_names)} shards listed in {INDEX_FILENAME} "
                    f"are missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
                )
            tensors: dict[str, TensorInfo] = {}
            headers = {s: read_safetensors_header(self.path / s)[0] for s in shard_names}
            for name, shard in weight_map.items():
                info = headers[shard].get(name)
                if info is None:
                    raise CheckpointError(
                        f"{self.path / shard}: tensor {name!r} is listed in {INDEX_FILENAME} but not in the shard"
                    )
                tensors[name] = info
            self.shard_files = [self.path / s for s in shard_names]
            self.index_path: Path | None = index_path
        elif single_path.is_file():
            tensors = read_safetensors_header(single_path)[0]
            self.shard_files = [single_path]
            self.index_path = None
        else:
            raise CheckpointError(
                f"{self.path}: no weights found (neither {INDEX_FILENAME} nor {SINGLE_FILENAME})"
            )
        if not tensors:
            raise CheckpointError(f"{self.path}: the checkpoint holds no tensors")
        return tensors

    # ---- metadata ---------------------------------------------------------------------------
    @property
    def text_config(self) -> dict:
        return self.config["text_config"]

    @property
    def vision_config(self) -> dict:
        return self.config["vision_config"]

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def tensor_names(self) -> list[str]:
        return list(self._tensors)

    def has(self, name: str) -> bool:
        return name in self._tensors

    def info(self, name: str) -> TensorInfo:
        try:
            return self._tensors[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: tensor {name!r} is not in the checkpoint") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.info(name).shape

    def dtype(self, name: str) -> str:
        """The stored safetensors dtype tag ("BF16", "F32", ...)."""
        return self.info(name).dtype

    def nbytes(self, name: str) -> int:
        return self.info(name).nbytes

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self._tensors.values())

    @property
    def largest_tensor_bytes(self) -> int:
        return max(t.nbytes for t in self._tensors.values())

    def vision_prefix(self) -> str:
        for prefix in VISION_PREFIXES:
            if any(n.startswith(prefix) for n in self._tensors):
                return prefix
        raise CheckpointError(f"{self.path}: no vision tower tensors (looked for {', '.join(VISION_PREFIXES)})")

    # ---- data -------------------------------------------------------------------------------
    def get(self, name: str, dtype=None):
        """Read one tensor. Floating tensors come back as fp32 unless `dtype` says otherwise
        (pass `dtype="stored"` to keep the stored type). Memory: this tensor only."""
        import torch

        info = self.info(name)
        torch_name, _ = _DTYPES[info.dtype]
        # Read straight into the tensor's own storage (no intermediate Python buffer to fragment the heap).
        tensor = torch.empty(info.shape, dtype=getattr(torch, torch_name))
        if info.nbytes:
            view = memoryview(tensor.view(-1).view(torch.uint8).numpy())
            with open(info.file, "rb", buffering=0) as handle:
                done = 0
                while done < info.nbytes:
                    got = os.preadv(handle.fileno(), [view[done:]], info.begin + done)
                    if got <= 0:
                        raise CheckpointError(f"{info.file}: unexpected end of file while reading {name!r}")
                    done += got
        if dtype == "stored":
            return tensor
        if dtype is None:
            dtype = torch.float32 if info.dtype in _FLOAT_TAGS else None
        if dtype is not None and tensor.dtype != dtype:
            tensor = tensor.to(dtype)  # a fresh tensor; the raw buffer is freed with this frame
        return tensor

    def iter_prefix(self, prefix: str = "", dtype=None) -> Iterator[tuple[str, object]]:
        """Yield (name, tensor) for every tensor whose name starts with `prefix`, one at a time, in
        file order (sequential reads). Drop each tensor before asking for the next to stay streaming."""
        names = [n for n in self._tensors if n.startswith(prefix)]
        names.sort(key=lambda n: (str(self._tensors[n].file), self._tensors[n].begin))
        for name in names:
            yield name, self.get(name, dtype=dtype)

    def iter_tensors(self, dtype=None) -> Iterator[tuple[str, object]]:
        return self.iter_prefix("", dtype=dtype)

    # ---- side files -------------------------------------------------------------------------
    def read_json(self, filename: str) -> dict | None:
        path = self.path / filename
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: invalid JSON ({exc})") from exc

    def __repr__(self) -> str:
        return (
            f"CheckpointReader({str(self.path)!r}, tensors={len(self._tensors)}, "
            f"shards={len(self.shard_files)}, bytes={self.total_bytes})"
        )
