"""Runtime configuration: pydantic models, loaded from a TOML file plus CLI overrides.

A bad value is reported with its dotted key, the value and the reason, and the process exits
non-zero before it opens a camera or loads a model (``ConfigError``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from edge.cpus import check_cpus, parse_cpu_list
from edge.errors import EdgeError
from edge.ood import FROZEN_AFTER_S

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6): the same parser as a package
    import tomli as tomllib  # type: ignore[no-redef]  # the same module under 3.10's name


class ConfigError(EdgeError, ValueError):
    """A configuration value is wrong. The message names the key, the value and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CameraConfig(_Section):
    # A V4L2 index ("0") or device ("/dev/video0"), a GStreamer pipeline ("gst:..."), an RTSP URL,
    # or a video file played as a camera at its native frame rate.
    source: str = ""
    interval_ms: int = Field(default=500, gt=0, le=60_000)
    frames_per_clip: int = Field(default=4, ge=2, le=16)
    resize: Literal["crop", "letterbox"] = "crop"
    loop_video: bool = False
    reopen_backoff_min_ms: int = Field(default=200, gt=0)
    reopen_backoff_max_ms: int = Field(default=5_000, gt=0)

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        if self.frames_per_clip % 2:
            raise ValueError(
                f"frames_per_clip={self.frames_per_clip} must be even: the vision encoder takes frame pairs"
            )
        if self.reopen_backoff_max_ms < self.reopen_backoff_min_ms:
            raise ValueError("reopen_backoff_max_ms must be >= reopen_backoff_min_ms")
        return self


class BudgetConfig(_Section):
    """Per-stage budgets in ms. Enforced, not just logged: see edge/budgets.py."""

    max_frame_age_ms: float = Field(default=1_000, gt=0, description="older clips are dropped")
    preprocess_ms: float = Field(default=50, gt=0)
    encode_ms: float = Field(default=400, gt=0)
    prefill_ms: float = Field(default=600, gt=0)
    decode_ms: float = Field(default=1_500, gt=0)
    publish_ms: float = Field(default=5, gt=0)
    total_ms: float = Field(default=2_500, gt=0, description="deadline from cycle start")
    advice_valid_ms: float = Field(default=1_500, gt=0)
    degrade_after_misses: int = Field(default=3, ge=1)
    recover_after_successes: int = Field(default=5, ge=1)


class VisionConfig(_Section):
    backend: Literal["auto", "onnxruntime", "tensorrt"] = "auto"
    precision: Literal["auto", "fp32", "int8", "fp16"] = "auto"
    threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads; 0 = one per cpu.models CPU")
    # Idle intra-op workers busy-wait for the next job: faster on free cores, a collapse beside
    # other processes (docs/RELIABILITY.md). On only for a machine the runtime has to itself.
    spin: bool = False


class LoraChoice(_Section):
    """One LoRA adapter of the bundle (manifest `adapters[].name`) and the scale it is applied at."""

    name: str = Field(min_length=1, max_length=40)
    scale: float = Field(default=1.0, ge=0.0, le=4.0)


class DecoderConfig(_Section):
    n_gpu_layers: int = Field(default=0, ge=-1)
    n_ctx: int = Field(default=4096, ge=256)
    n_batch: int = Field(default=512, ge=32)
    threads: int = Field(default=0, ge=0, description="generation threads; 0 = auto (edge.decoder)")
    threads_batch: int = Field(default=0, ge=0, description="prefill threads; 0 = one per cpu.models CPU")
    max_tokens: int = Field(default=96, ge=8, le=512)
    quant: str = Field(default="auto", description="which decoder artifact of the bundle")
    lora: list[LoraChoice] = Field(default_factory=list, max_length=4,
                                   description="LoRA adapters of the bundle applied at start (docs/LORA.md)")


class CurveConfig(_Section):
    enabled: bool = False
    # The runtime's own key pair (its public key is given to planners and nav units).
    server_secret_key_file: Path | None = None
    # Folder of *.key public-key certificates allowed to connect (planners, nav publishers).
    authorized_clients_dir: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> CurveConfig:
        if self.enabled and (self.server_secret_key_file is None or self.authorized_clients_dir is None):
            raise ValueError("curve.enabled needs server_secret_key_file and authorized_clients_dir")
        return self

    def files(self) -> tuple[Path, Path]:
        """The secret key file and the allowed clients' folder (both set when `enabled`: checked above)."""
        if self.server_secret_key_file is None or self.authorized_clients_dir is None:
            raise ConfigError("curve.enabled needs server_secret_key_file and authorized_clients_dir")
        return self.server_secret_key_file, self.authorized_clients_dir


class BusConfig(_Section):
    # The runtime binds both: planners connect to `publish`, nav units connect to `nav`.
    publish_endpoint: str = "tcp://127.0.0.1:5555"
    nav_endpoint: str = "tcp://127.0.0.1:5556"
    send_hwm: int = Field(default=100, ge=1)
    # SO_SNDBUF of the advice/status socket (0: the OS default, megabytes on loopback TCP). A planner
    # that stops reading is named on status once this, send_hwm and its own queue are full.
    send_buffer_bytes: int = Field(default=65_536, ge=0)
    receive_hwm: int = Field(default=100, ge=1)
    max_message_bytes: int = Field(default=65_536, ge=1_024, le=16 * 1024 * 1024)
    status_interval_ms: int = Field(default=1_000, gt=0)
    curve: CurveConfig = Field(default_factory=CurveConfig)


class NavConfig(_Section):
    # A nav instruction older than this is dropped even if its own ttl says otherwise.
    max_ttl_ms: int = Field(default=120_000, gt=0)


class AuditConfig(_Section):
    path: Path | None = None
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=4_096)
    keep: int = Field(default=5, ge=1)


class CpuConfig(_Section):
    """CPU affinity in Linux list notation ("0-3,6"); empty = no pinning (edge/cpus.py)."""

    loop: str = Field(default="", description="the loop thread and the threads it starts")
    models: str = Field(default="", description="encoder and decoder computation (and their worker threads)")

    @model_validator(mode="after")
    def _check(self) -> CpuConfig:
        for key in ("loop", "models"):
            check_cpus(parse_cpu_list(getattr(self, key)), f"cpu.{key}")
        return self

    def loop_cpus(self) -> frozenset[int]:
        return parse_cpu_list(self.loop)

    def model_cpus(self) -> frozenset[int]:
        return parse_cpu_list(self.models)
class RecordConfig(_Section):
    """Drive logs in MCAP (edge/drivelog). `dir` unset: no recording."""

    dir: Path | None = None
    image_format: Literal["jpeg", "png"] = Field(default="jpeg", description="png: lossless, bit-exact replay")
    jpeg_quality: int = Field(default=80, ge=10, le=100)
    max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)
    max_file_s: float = Field(default=600, gt=0, description="drive time per file")
    quota_bytes: int = Field(default=8 * 1024**3, ge=64 * 1024, description="oldest files go first")
    queue_size: int = Field(default=256, ge=1, description="items waiting for the writer thread")
    # MCAP chunk size: a crash loses at most the chunk being built (about 10 JPEG frames at 256 KiB).
    chunk_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=64 * 1024 * 1024)


class LiveConfig(_Section):
    """The Foxglove WebSocket live view. Loopback by default: the car's network is not the viewer's."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65_535, description="0: any free port")


CaptureVerdict = Literal["ok", "degraded", "late", "no_advice"]


class CaptureConfig(_Section):
    """Bad-case capture: a window around each trigger as its own MCAP segment. `dir` unset: off."""

    dir: Path | None = None
    before_s: float = Field(default=10.0, ge=0, le=600)
    after_s: float = Field(default=5.0, ge=0, le=600)
    verdicts: list[CaptureVerdict] = Field(default_factory=lambda: list[CaptureVerdict](["no_advice", "late"]))
    flip_cycles: int = Field(default=3, ge=0, description="conflicting actions within N cycles; 0: off")
    unconfirmed: bool = Field(default=True, description="an alarm held back by advice.confirm_cycles (edge.confirm)")
    quota_bytes: int = Field(default=2 * 1024**3, ge=64 * 1024)


class AdviceConfig(_Section):
    """What happens between the decoder's decision and the planner (edge/confirm.py)."""

    confirm_cycles: int = Field(
        default=2, ge=1, le=4,
        description="cycles in a row that must decide an alarm (stop, pull_over, yield, turn) or name a hazard "
                    "before it is published; a first sighting is published as decelerate. 1: publish as decided")
    frozen_after_s: float = Field(
        default=FROZEN_AFTER_S, gt=0, le=600,
        description="identical frames for this long are frozen input (out_of_domain); a camera never repeats a "
                    "frame exactly, the simulator's renderer does while the car waits (sim.replay raises it to 10 s "
                    "for rendered scenes)")


class RuntimeConfig(_Section):
    bundle: Path | None = None
    # Warn at load (log and status event) when the bundle's recorded driving agreement of the
    # precision combination in use is under this (edge.quality).
    min_agreement: float = Field(default=0.97, ge=0.0, le=1.0)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    budgets: BudgetConfig = Field(default_factory=BudgetConfig)
    vision: VisionConfig = Field(default_factory=VisionConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    advice: AdviceConfig = Field(default_factory=AdviceConfig)
    bus: BusConfig = Field(default_factory=BusConfig)
    nav: NavConfig = Field(default_factory=NavConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    cpu: CpuConfig = Field(default_factory=CpuConfig)
    record: RecordConfig = Field(default_factory=RecordConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)


def _describe(error: ErrorDetails, data: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<root>"
    value: Any = error.get("input", "<missing>")
    if isinstance(value, dict):
        # The error sits on a whole section (a cross-field rule): show the section, not a dump.
        value = "{" + ", ".join(sorted(value)) + "}"
    reason = error["msg"].removeprefix("Value error, ")
    return f"config key '{key}' = {value!r}: {reason}"


def _parse_scalar(text: str) -> Any:
    """CLI overrides are TOML-ish scalars: numbers, booleans, quoted or bare strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(data: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.path=value")
    dotted, raw = assignment.split("=", 1)
    parts = [p for p in dotted.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {assignment!r} has an empty key")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{dotted}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = _parse_scalar(raw.strip())


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RuntimeConfig:
    """Read TOML (optional), apply ``key.path=value`` overrides, validate everything at once."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return build_config(data, overrides)


def build_config(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> RuntimeConfig:
    """Apply ``key.path=value`` overrides to a configuration dict and validate it."""
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return RuntimeConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(err, data) for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def dump_config(config: RuntimeConfig) -> str:
    return json.dumps(config.model_dump(mode="json"), indent=2)
