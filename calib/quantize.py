"""Vision ONNX fp32 -> INT8 with onnxruntime.quantization.

Static mode writes a QDQ graph (QuantizeLinear/DequantizeLinear pairs around the quantised ops)
that ONNX Runtime fuses into integer kernels and TensorRT builds as an explicitly quantised engine.
TensorRT is stricter than ONNX Runtime, so by default the graph is made TensorRT-consumable:
symmetric activations (TensorRT refuses non-zero zero points) and float biases (TensorRT refuses
INT32 DequantizeLinear inputs). Weights are quantised per output channel.

Static graphs are also shaped so that ONNX Runtime's CPU kernels really run in integer
(`split_gemm_bias`, on by default). Left as exported, a QDQ `Gemm` with a float bias is fused into
`QGemm` only when ONNX Runtime itself turns the bias into INT32, which it does only for a Gemm whose
output is re-quantised; and the MLP / merger fc1 outputs fan out into GELU's elementwise ops, whose
output QuantizeLinear stays INT8 when ONNX Runtime converts the activations to UINT8 for x86, so the
fusion's "activation type == output type" check fails. Those Gemms, the biggest matrices of the
tower, then ran as "DequantizeLinear weights -> fp32 Gemm": INT8 was *slower* than fp32. With each
Gemm's bias moved into a separate float `Add` and no output QDQ on Gemms, every quantised Gemm
becomes a `QGemm` with float output (a bias-less QGemm needs no INT32 bias; nothing is re-quantised,
which is also more accurate), and the file stays TensorRT-consumable (float bias, INT8 only).

Dynamic mode quantises weights only and computes activation scales at run time (no calibration
data); ONNX Runtime's dynamic quantiser knows MatMul but not Gemm, and the TorchScript export turns
every nn.Linear of the vision tower into a Gemm, so Gemms are first rewritten as MatMul + Add.
Dynamic graphs use ONNX Runtime's integer ops and are for the CPU path only (TensorRT needs QDQ).

Pitfalls handled here (DESIGN.md): `quant_pre_process` runs first (shape inference + basic graph
optimisation make the quantiser's job well-defined); an existing external `.data` file is deleted
before anything writes one, because onnx *appends* to it; `CalibMaxIntermediateOutputs` is never
set (ORT discards the collected ranges when it is).
"""

from __future__ import annotations

import fnmatch
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from calib.clips import CalibrationError

Mode = Literal["static", "dynamic"]
Method = Literal["minmax", "entropy", "percentile"]
# Chosen from the measured comparison in docs/PERFORMANCE.md (`edge calib --compare`).
DEFAULT_OP_TYPES: tuple[str, ...] = ("Gemm", "Conv")
ALL_LINEAR_OP_TYPES: tuple[str, ...] = ("MatMul", "Gemm", "Conv")
# The vision tower's sensitive entry/exit modules, accepted as --keep-float shorthands.
KEEP_FLOAT_ALIASES = {
    "patch_embed": "/patch_embed/*",
    "patch-embed": "/patch_embed/*",
    "merger": "/merger/*",
    "deepstack": "/deepstack_merger_list.*",
}
# Beyond this, protobuf cannot hold the graph: weights go to one external `.data` file.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000


@dataclass(frozen=True)
class QuantSettings:
    mode: Mode = "static"
    method: Method = "minmax"
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    per_channel: bool = True
    keep_float: tuple[str, ...] = ()  # node names, globs, module paths or aliases (see resolve_keep_float)
    trt_compatible: bool = True  # symmetric activations + float biases
    # Gemm bias -> separate Add and no Gemm output QDQ, so ONNX Runtime fuses every quantised Gemm
    # into QGemm (see the module docstring); static mode only. False reproduces the old, slow graph.
    split_gemm_bias: bool = True

    def describe(self) -> str:
        if self.mode == "dynamic":
            return f"dynamic {'+'.join(self.op_types)}"
        return f"static {self.method} {'+'.join(self.op_types)}"

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class QuantizedModel:
    path: Path
    external_data: Path | None
    settings: QuantSettings
    kept_float: list[str] = field(default_factory=list)  # resolved node names
    quantized_nodes: dict[str, int] = field(default_factory=dict)  # op type -> count of QDQ/integer nodes
    calibration_clips: int = 0


def model_bytes(path: Path) -> int:
    """Size of a graph plus any external data files beside it."""
    path = Path(path)
    total = path.stat().st_size
    data = path.with_name(path.name + ".data")
    if data.is_file():
        total += data.stat().st_size
    return total


def resolve_keep_float(node_names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """Turn --keep-float values into node names; a value matching nothing is an error.

    A value is an exact node name, a glob (`/blocks.0/*`), a module path (`merger` ->
    `/merger/...`, `blocks.3/mlp`), or an alias from KEEP_FLOAT_ALIASES.
    """
    names = list(node_names)
    chosen: list[str] = []
    for raw in patterns:
        pattern = KEEP_FLOAT_ALIASES.get(raw, raw)
        if pattern in names:
            hits = [pattern]
        elif any(ch in pattern for ch in "*?["):
            hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        else:
            prefix = "/" + pattern.strip("/") + "/"
            hits = [n for n in names if n.startswith(prefix)]
        if not hits:
            examples = ", ".join(sorted({"/" + n.split("/")[1] for n in names if n.startswith("/")})[:12])
            raise CalibrationError(
                f"--keep-float {raw!r} matches no node of the vision graph (module paths in it: {examples}; "
                f"aliases: {', '.join(KEEP_FLOAT_ALIASES)})"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def gemm_to_matmul(model) -> int:
    """Rewrite `Gemm(A, B, C)` with constant B (alpha = beta = 1, transA = 0) as `MatMul(A, B') + C`.

    ONNX Runtime's dynamic quantiser only knows MatMul; the rewrite is exact (same arithmetic).
    Returns the number of rewritten nodes.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}

    def as_matmul(node, attrs) -> list | None:
        if (
            node.input[1] not in inits
            or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            return None
        weight = inits[node.input[1]]
        if attrs.get("transB", 0):
            # Store B transposed once (a new initializer: the original may be shared).
            array = numpy_helper.to_array(weight).T.copy()
            name = f"{weight.name}_T_for_{node.name or node.output[0]}".replace("/", "_")
            graph.initializer.append(numpy_helper.from_array(array, name))
            b_name = name
        else:
            b_name = weight.name
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = node.output[0] + "_matmul" if has_bias else node.output[0]
        nodes = [helper.make_node("MatMul", [node.input[0], b_name], [mm_out], name=f"{node.name}_MatMul")]
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
        return nodes

    rewritten = _rewrite_gemms(graph, as_matmul)
    # Drop initializers nothing reads any more (the untransposed weights).
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return rewritten


def split_gemm_bias(model, skip: Iterable[str] = ()) -> int:
    """Rewrite `Gemm(A, B, C)` with a constant bias C (beta = 1) as `Gemm(A, B) + C` (a float `Add`).

    Exact (same arithmetic, in float). Why: ONNX Runtime's QDQ -> QGemm fusion accepts a Gemm with no
    bias, or with an INT32 DequantizeLinear bias; a float bias is quantised by ONNX Runtime only when
    the Gemm's output is re-quantised, which blocks the fusion for Gemms feeding GELU (module
    docstring). Without a bias input the fusion needs neither. Gemms named in `skip` (kept in float)
    are left alone. Returns the number of rewritten nodes. Only node structure changes: weights
    stored as external data need not be loaded.
    """
    from onnx import helper

    graph = model.graph
    inits = {t.name for t in graph.initializer}
    skip = set(skip)

    def without_bias(node, attrs) -> list | None:
        if node.name in skip or len(node.input) < 3 or node.input[2] not in inits or attrs.get("beta", 1.0) != 1.0:
            return None
        bias, out = node.input[2], node.output[0]
        del node.input[2]
        node.output[0] = f"{out}_without_bias"
        return [node, helper.make_node("Add", [node.output[0], bias], [out], name=f"{node.name}_bias")]

    return _rewrite_gemms(graph, without_bias)


def _rewrite_gemms(graph, rewrite: Callable[[Any, dict], list | None]) -> int:
    """Replace each Gemm node by what `rewrite(node, attributes)` returns (None keeps it as it is),
    in place and in order. Returns how many were replaced."""
    from onnx import helper

    new_nodes = []
    rewritten = 0
    for node in graph.node:
        replacement = None
        if node.op_type == "Gemm":
            replacement = rewrite(node, {a.name: helper.get_attribute_value(a) for a in node.attribute})
        if replacement is None:
            new_nodes.append(node)
        else:
            new_nodes.extend(replacement)
            rewritten += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    return rewritten


class _ClipReader:
    """onnxruntime's CalibrationDataReader over preprocessed clips (one clip per batch)."""

    def __init__(self, input_name: str, clips: Sequence[np.ndarray], on_clip: Callable[[], None] | None = None):
        self._input_name = input_name
        self._clips = list(clips)
        self._next = 0
        self._on_clip = on_clip

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._clips):
            return None
        clip = self._clips[self._next]
        self._next += 1
        if self._on_clip:
            self._on_clip()
        return {self._input_name: clip}

    def rewind(self) -> None:
        self._next = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def set_range(self, start_index: int, end_index: int) -> None:  # part of ORT's reader protocol
        self._clips = self._clips[start_index:end_index]
        self._next = 0


def _save(model, path: Path, external: bool) -> Path | None:
    import onnx

    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)  # onnx appends to an existing data file
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
        return data
    onnx.save_model(model, str(path))
    return None


def count_quantized(path: Path) -> dict[str, int]:
    """How many quantisation nodes the graph holds (QDQ pairs or integer ops), by op type."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kinds = Counter(n.op_type for n in model.graph.node)
    wanted = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger")
    return {k: kinds[k] for k in wanted if kinds[k]}


def quantize_vision(
    fp32_path: Path | str,
    out_path: Path | str,
    input_name: str,
    calibration: Sequence[np.ndarray],
    settings: QuantSettings | None = None,
    *,
    progress: Callable[[], None] | None = None,
) -> QuantizedModel:
    """Quantise the fp32 vision graph at `fp32_path` to `out_path` (+ `.data` for huge graphs).

    `calibration`: preprocessed clips (the graph's input) for static mode; ignored by
    dynamic mode. `progress` is called once per calibration clip.
    """
    import onnx

    settings = settings or QuantSettings()
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if settings.mode == "static" and not calibration:
        raise CalibrationError("static quantisation needs at least one calibration clip")
    unknown = [t for t in settings.op_types if t not in ALL_LINEAR_OP_TYPES]
    if unknown:
        raise CalibrationError(f"unsupported --op-types {unknown}; choose from {', '.join(ALL_LINEAR_OP_TYPES)}")
    large = model_bytes(fp32_path) > EXTERNAL_DATA_THRESHOLD_BYTES
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="calib.", dir=out_path.parent) as tmp:
        tmp_dir = Path(tmp)
        pre_path = tmp_dir / "preprocessed.onnx"
        kept = _prepare_graph(fp32_path, pre_path, settings, large)
        tmp_out = tmp_dir / "quantized.onnx"
        if settings.mode == "static":
            _quantize_static(pre_path, tmp_out, _ClipReader(input_name, calibration, progress), settings, kept, large)
        else:
            _quantize_dynamic(pre_path, tmp_out, settings, kept, large)
        quantized = onnx.load(str(tmp_out))
        # Re-save at its final name; external data only when protobuf cannot hold the graph (an
        # INT8 graph of a tower whose fp32 graph needed external data usually fits inline).
        weight_bytes = sum(t.ByteSize() for t in quantized.graph.initializer)
        external = _save(quantized, out_path, weight_bytes > EXTERNAL_DATA_THRESHOLD_BYTES)
        del quantized
    return QuantizedModel(
        path=out_path,
        external_data=external,
        settings=settings,
        kept_float=kept,
        quantized_nodes=count_quantized(out_path),
        calibration_clips=len(calibration) if settings.mode == "static" else 0,
    )


def _splits_gemm_bias(settings: QuantSettings) -> bool:
    return settings.mode == "static" and settings.split_gemm_bias and "Gemm" in settings.op_types


def _prepare_graph(fp32_path: Path, pre_path: Path, settings: QuantSettings, large: bool) -> list[str]:
    """ONNX Runtime's pre-processing into `pre_path`, then the rewrites `settings` ask for; returns
    the names of the nodes kept in float."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(
        str(fp32_path),
        str(pre_path),
        save_as_external_data=large,
        all_tensors_to_one_file=True,
        external_data_location=pre_path.name + ".data" if large else None,
    )
    to_matmul = settings.mode == "dynamic" and "Gemm" in settings.op_types
    # Node names and the bias split need no weights: skip loading 2 GB of external data unless
    # weights are rewritten (gemm_to_matmul transposes them).
    model = onnx.load(str(pre_path), load_external_data=to_matmul)
    kept = resolve_keep_float([n.name for n in model.graph.node], settings.keep_float)
    if to_matmul:
        gemm_to_matmul(model)
        _save(model, pre_path, large)
    elif _splits_gemm_bias(settings):
        split_gemm_bias(model, skip=kept)
        # Structure only: tensors still point into preprocessed.onnx.data, which stays as it is.
        onnx.save_model(model, str(pre_path))
    return kept


def _quantize_static(pre_path: Path, out: Path, reader: _ClipReader, settings: QuantSettings, kept: list[str],
                     large: bool) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    quantize_static(
        str(pre_path),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(settings.op_types),
        per_channel=settings.per_channel,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept,
        use_external_data_format=large,
        calibrate_method=methods[settings.method],
        extra_options={
            "ActivationSymmetric": settings.trt_compatible,
            "WeightSymmetric": True,
            "QuantizeBias": not settings.trt_compatible,
            # Keep the attention MatMuls' two activation inputs on their own QDQ pairs.
            "DedicatedQDQPair": False,
            # A Gemm's output feeds float ops only (bias Add, GELU, residual, attention):
            # re-quantising it costs time and accuracy and blocks the QGemm fusion.
            "OpTypesToExcludeOutputQuantization": ["Gemm"] if _splits_gemm_bias(settings) else [],
        },
    )


def _quantize_dynamic(pre_path: Path, out: Path, settings: QuantSettings, kept: list[str], large: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = ["MatMul" if t == "Gemm" else t for t in settings.op_types]
    quantize_dynamic(
        str(pre_path),
        str(out),
        op_types_to_quantize=sorted(set(op_types)),
        per_channel=settings.per_channel,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept,
        use_external_data_format=large,
    )


def remove_model(path: Path) -> None:
    """Delete a graph and its external data (used when a quantised candidate is thrown away)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".data").unlink(missing_ok=True)

