"""`edge export trt`: the bundle's vision ONNX -> a TensorRT engine (plan) for THIS GPU.

fp16 plans come from the fp32 ONNX graph; int8 plans from the calibrated QDQ graph (`edge calib`),
i.e. TensorRT's explicit quantisation: the scales are the calibration's, TensorRT only fuses them.
Shapes are static (the bundle's camera profile), so no optimisation profile is needed.

A plan runs only on the GPU model and TensorRT version that built it, so the manifest records
`built_for = {gpu_name, compute_capability, tensorrt_version, source, source_sha256}`; the
runtime's TensorRT backend refuses a plan for another machine and falls back to ONNX Runtime. The
builder's timing cache is kept in the bundle so a rebuild on the same machine is fast. Plans are
named per GPU, so one bundle can carry plans for several devices (e.g. a Jetson and an A10G).

`tensorrt` is imported lazily: without it (or without a GPU) the command fails with a clear message.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.commandline import add_bundle_option, add_command
from edge.errors import EdgeError
from edge.manifest import BundleManifest, VisionArtifact, add_file, load_bundle, write_manifest

TIMING_CACHE_NAME = "trt_timing.cache"
PRECISIONS = ("fp16", "int8")
# TensorRT refuses these in a QDQ graph (they are ONNX Runtime's dynamic-quantisation ops).
DYNAMIC_QUANT_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger")


class TrtBuildError(EdgeError, RuntimeError):
    """The engine cannot be built here; the message says why and what to do."""


def qdq_trt_problems(onnx_path: Path | str) -> list[str]:
    """Why TensorRT would refuse this quantised graph (empty list: fine). Pure, needs no GPU.

    TensorRT's parser stops at the first offending node, so a graph with several problems would
    take several GPU builds to diagnose. Known constraints, all visible in the file:
    - DequantizeLinear inputs must be 8-bit (ONNX Runtime's INT32 biases are refused);
    - zero points must be 0 (TensorRT quantisation is symmetric);
    - no dynamic-quantisation ops (MatMulInteger, ConvInteger, DynamicQuantizeLinear).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    const_nodes = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def constant(name: str) -> np.ndarray | None:
        if name in inits and not inits[name].external_data:
            return numpy_helper.to_array(inits[name])
        if name in const_nodes:
            return numpy_helper.to_array(const_nodes[name].attribute[0].t)
        return None

    problems: list[str] = []
    dynamic = sorted({n.op_type for n in graph.node if n.op_type in DYNAMIC_QUANT_OPS})
    if dynamic:
        problems.append(f"dynamic-quantisation ops {dynamic} (TensorRT needs a static QDQ graph: `edge calib --mode static`)")
    int32_dq = [n.name for n in graph.node if n.op_type == "DequantizeLinear"
                and n.input[0] in inits and inits[n.input[0]].data_type == onnx.TensorProto.INT32]
    if int32_dq:
        problems.append(
            f"{len(int32_dq)} DequantizeLinear node(s) with INT32 input (quantised biases, e.g. {int32_dq[0]}); "
            "TensorRT accepts only 8-bit inputs: calibrate without --cpu-only-qdq"
        )
    nonzero = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
            zp = constant(node.input[2])
            if zp is not None and np.any(zp != 0):
                nonzero.append(node.name)
    if nonzero:
        problems.append(
            f"{len(nonzero)} Q/DQ node(s) with a non-zero zero point (asymmetric, e.g. {nonzero[0]}); TensorRT "
            "supports only symmetric quantisation: calibrate without --cpu-only-qdq"
        )
    return problems


def gpu_slug(gpu_name: str) -> str:
    """'NVIDIA A10G' -> 'a10g' (file-name safe)."""
    from edge.vision.tensorrt import normalize_gpu_name

    return re.sub(r"[^a-z0-9]+", "-", normalize_gpu_name(gpu_name)).strip("-") or "gpu"


def plan_name(precision: str, gpu_name: str) -> str:
    return f"vision_{precision}_{gpu_slug(gpu_name)}.plan"


def source_onnx(manifest: BundleManifest, precision: str, allow_unadopted: bool = False) -> VisionArtifact:
    """The ONNX graph a plan of `precision` is built from."""
    want = "fp32" if precision == "fp16" else "int8"
    art = manifest.find_vision("onnx", want)
    if art is not None:
        if want == "int8" and not art.adopted and not allow_unadopted:
            cosine = (art.accuracy or {}).get("cosine_min_slice")
            raise TrtBuildError(
                f"the bundle's INT8 model {art.path} was not adopted by calibration (worst held-out cosine "
                f"{cosine}); pass --force to build from it anyway, or recalibrate"
            )
        return art
    if want == "int8":
        raise TrtBuildError("the bundle has no INT8 QDQ model: run `edge calib --bundle B --video V` first")
    raise TrtBuildError("the bundle has no fp32 ONNX vision model")


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise TrtBuildError(
            "TensorRT is not installed on this machine (`pip install tensorrt cuda-python`, the [gpu] extra). "
            "TensorRT engines are specific to a GPU: build them with `edge export trt` on the target device."
        ) from exc
    return tensorrt


def build_plan(
    onnx_path: Path,
    precision: str,
    workspace_gb: float,
    timing_cache: bytes | None,
    log: Callable[[str], None] = print,
) -> tuple[bytes, bytes]:
    """Build a serialized engine from an ONNX file; returns (plan bytes, timing cache bytes)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # TensorRT 10 networks are always explicit-batch
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external data relative to the model file.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TrtBuildError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(d < 0 for d in tensor.shape):
            raise TrtBuildError(f"{onnx_path.name}: input {tensor.name} has a dynamic shape {tuple(tensor.shape)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    # fp16 everywhere it helps; for int8 the QDQ nodes fix the quantised layers, fp16 the rest.
    config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8" and hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)
    cache = config.create_timing_cache(timing_cache or b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log("timing cache in the bundle is from another GPU/TensorRT: starting a fresh one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrtBuildError(f"TensorRT failed to build a {precision} engine from {onnx_path.name} (see its log above)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


def build_engine(
    bundle: Path | str,
    precision: str,
    *,
    workspace_gb: float = 4.0,
    allow_unadopted: bool = False,
    verify: bool = True,
    log: Callable[[str], None] = print,
) -> VisionArtifact:
    """Build a `precision` plan for this GPU, record it in the bundle and return its artifact."""
    if precision not in PRECISIONS:
        raise TrtBuildError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if workspace_gb <= 0:
        raise TrtBuildError(f"--workspace-gb must be > 0, got {workspace_gb}")
    manifest, bundle_dir = load_bundle(bundle)
    source = _buildable_source(manifest, bundle_dir, precision, allow_unadopted)
    trt = import_tensorrt()
    gpu_name, capability = _this_gpu()

    rel_dir = Path(source.path).parent
    cache_rel = (rel_dir / TIMING_CACHE_NAME).as_posix()
    cache_path = bundle_dir / cache_rel
    log(f"building TensorRT {trt.__version__} {precision} engine from {source.path} for {gpu_name} "
        f"(compute {capability}), workspace {workspace_gb:g} GiB")
    plan, cache = build_plan(
        bundle_dir / source.path, precision, workspace_gb, cache_path.read_bytes() if cache_path.is_file() else None, log
    )
    plan_rel = (rel_dir / plan_name(precision, gpu_name)).as_posix()
    (bundle_dir / plan_rel).write_bytes(plan)
    cache_path.write_bytes(cache)
    artifact = source.model_copy(
        update={
            "path": plan_rel,
            "format": "tensorrt",
            "precision": precision,
            "external_data": None,
            "built_for": {
                "gpu_name": gpu_name,
                "compute_capability": capability,
                "tensorrt_version": str(trt.__version__),
                "source": source.path,
                "source_sha256": manifest.files.get(source.path),
                "workspace_gb": workspace_gb,
            },
            "timing_cache": cache_rel,
            "accuracy": None,
            "adopted": True,
        }
    )
    if verify:
        artifact.accuracy = verify_plan(bundle_dir, artifact, source_onnx(manifest, "fp16"), manifest)
        log(f"engine vs fp32 ONNX Runtime: cosine {artifact.accuracy['cosine']:.6f}, "
            f"max |diff| {artifact.accuracy['max_abs_diff']:.4g}")
    _record_plan(manifest, bundle_dir, artifact, cache_rel)
    log(f"wrote {plan_rel} ({len(plan) / 2**20:.1f} MiB)")
    return artifact


def _buildable_source(manifest: BundleManifest, bundle_dir: Path, precision: str,
                      allow_unadopted: bool) -> VisionArtifact:
    """The ONNX model the plan is built from; for int8, one TensorRT can consume."""
    source = source_onnx(manifest, precision, allow_unadopted)
    if precision == "int8":
        problems = qdq_trt_problems(bundle_dir / source.path)
        if problems:
            raise TrtBuildError(f"{source.path} is not a TensorRT-consumable QDQ graph: " + "; ".join(problems))
    return source


def _this_gpu() -> tuple[str, str]:
    """(name, compute capability) of the GPU the plan is built for: the one visible here."""
    from edge.vision.tensorrt import current_gpu

    gpu_name, capability = current_gpu()
    if not gpu_name or not capability:
        raise TrtBuildError("no NVIDIA GPU visible (CUDA reports none, or cuda-python is missing): "
                            "a TensorRT engine can only be built on the GPU it will run on")
    return gpu_name, capability


def _record_plan(manifest: BundleManifest, bundle_dir: Path, artifact: VisionArtifact, cache_rel: str) -> None:
    """Put the plan in the manifest (replacing one of the same name) with its and the timing cache's hashes."""
    manifest.vision = [a for a in manifest.vision if a.path != artifact.path]
    manifest.vision.append(artifact)
    add_file(manifest, bundle_dir, artifact.path)
    add_file(manifest, bundle_dir, cache_rel)  # shared by every plan: its hash changes with each build
    write_manifest(bundle_dir, manifest)


def _slice_count(manifest: BundleManifest, fp32: VisionArtifact) -> int:
    """Slices per row: 1 + n_deepstack (decoder), else the export self-check's output count."""
    if manifest.decoder:
        return 1 + manifest.decoder[0].n_deepstack
    outputs = (fp32.accuracy or {}).get("outputs")
    return len(outputs) if isinstance(outputs, dict) and outputs else 1


def verify_plan(bundle_dir: Path, plan: VisionArtifact, fp32: VisionArtifact, manifest: BundleManifest) -> dict:
    """Run the new engine and ONNX Runtime fp32 (CPU) on one seeded random clip; per-slice figures."""
    from edge.vision.base import random_input
    from edge.vision.onnxruntime import OnnxRuntimeBackend
    from edge.vision.tensorrt import TensorRTBackend
    from export.vision_onnx import compare_outputs, split_output

    pixels = random_input(fp32, np.random.default_rng(0))
    want = OnnxRuntimeBackend(bundle_dir, fp32, use_cuda=False).encode(pixels)
    backend = TensorRTBackend(bundle_dir, plan)
    try:
        got = backend.encode(pixels)
    finally:
        backend.close()
    n_embd = want.shape[-1] // _slice_count(manifest, fp32)
    whole = compare_outputs([got], [want])["merger"]  # one "slice" = the whole row
    return {
        "reference": f"fp32 ONNX Runtime CPU, uniform random {fp32.input_dtype} input seed 0",
        "cosine": whole["cosine"],
        "max_abs_diff": whole["max_abs_diff"],
        "outputs": compare_outputs(split_output(got, n_embd), split_output(want, n_embd)),
    }


# ---- CLI -------------------------------------------------------------------------------------------
def _cmd_trt(args) -> int:
    build_engine(  # a TrtBuildError or BundleError is printed by the edge command (exit 2)
        args.bundle,
        args.precision,
        workspace_gb=args.workspace_gb,
        allow_unadopted=args.force,
        verify=not args.no_verify,
        log=lambda line: print(line, file=sys.stderr),
    )
    return 0


def register_trt(commands) -> None:
    """Add `trt` to `edge export`'s subcommands."""
    trt = add_command(
        commands, "trt", _cmd_trt,
        help="build a TensorRT engine for THIS GPU from the bundle's ONNX (fp16, or int8 from the QDQ model)",
        description="Builds a static-shape TensorRT plan and records the GPU name, compute capability and "
                    "TensorRT version in the manifest (the runtime refuses plans built elsewhere). Needs an "
                    "NVIDIA GPU, tensorrt and cuda-python.",
    )
    add_bundle_option(trt, required=True)
    trt.add_argument("--precision", choices=PRECISIONS, required=True,
                     help="fp16: from the fp32 ONNX; int8: from the calibrated QDQ ONNX (`edge calib`)")
    trt.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit (default %(default)s)")
    trt.add_argument("--force", action="store_true", help="int8: build even from an INT8 model calibration did not adopt")
    trt.add_argument("--no-verify", action="store_true", help="skip the engine vs ONNX Runtime check after the build")
