"""Cost of converting and quantising the real-width decoder, per layer, projected to 48 layers.

    .venv/bin/python -m export.bench_full_dims --layers 4 6 --out bench-full-dims.json

For each layer count (one or two): a full-dims checkpoint (every text tensor at its Qwen3-VL-30B-A3B shape,
128 experts; the tiny vision tower, as the decoder is what is measured), then, each in its own
child process so that its peak RSS is its own: the f16 GGUF conversion (export.gguf_decoder) and
llama.cpp's Q4_K_M quantisation of it. Two layer counts give a per-layer slope and a fixed part
(embeddings, output head, vocabulary); the 48-layer figure is fixed + 48 x slope. With one layer
count, time and size are split by parameter share instead (both stages stream every weight once,
so their time follows the bytes), and peak RSS is the measured one (it follows the largest tensor,
not the layer count, for the conversion). Files are deleted as soon as they are measured (a
4-layer run needs ~14 GB of disk at its peak).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL_LAYERS = 48

_CONVERT = """
import sys
from export.checkpoint import CheckpointReader
from export.gguf_decoder import write_decoder_gguf
write_decoder_gguf(CheckpointReader(sys.argv[1]), sys.argv[2], base="f16", progress=False)
"""
_QUANTIZE = """
import sys
from export.quantize import quantize_gguf
quantize_gguf(sys.argv[1], sys.argv[2], "q4_k_m")
"""
_MAKE = """
import sys
from export.full_dims import make_full_dims_checkpoint
make_full_dims_checkpoint(sys.argv[1], int(sys.argv[2]), experts=int(sys.argv[3]), vision="tiny")
"""


def _child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter; its wall time and peak RSS (from wait4, this child only)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {err[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3)}


def _size_gib(path: Path) -> float:
    files = [path] if path.is_file() else list(path.glob("*"))
    return round(sum(f.stat().st_size for f in files) / 2**30, 3)


def measure(layers: int, experts: int, work: Path) -> dict:
    ckpt, f16, q4 = work / f"ckpt-{layers}", work / f"decoder-{layers}-f16.gguf", work / f"decoder-{layers}-q4_k_m.gguf"
    try:
        make = _child(_MAKE, str(ckpt), str(layers), str(experts))
        make["size_gib"] = _size_gib(ckpt)
        convert = _child(_CONVERT, str(ckpt), str(f16))
        convert["size_gib"] = _size_gib(f16)
        shutil.rmtree(ckpt)
        quantize = _child(_QUANTIZE, str(f16), str(q4))
        quantize["size_gib"] = _size_gib(q4)
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
        f16.unlink(missing_ok=True)
        q4.unlink(missing_ok=True)
    return {"layers": layers, "experts": experts, "make_checkpoint": make, "convert_f16": convert,
            "quantize_q4_k_m": quantize}


def project(a: dict, b: dict, stage: str, key: str, layers: int = REAL_LAYERS) -> dict:
    """Linear in the layer count through the two measurements: per layer, fixed, and at `layers`."""
    slope = (b[stage][key] - a[stage][key]) / (b["layers"] - a["layers"])
    fixed = a[stage][key] - slope * a["layers"]
    return {"per_layer": round(slope, 3), "fixed": round(fixed, 3), f"at_{layers}_layers": round(fixed + slope * layers, 2)}


def parameter_share(layers: int, experts: int) -> tuple[int, int]:
    """(parameters of one decoder layer, parameters outside the layers) of the text model."""
    from math import prod

    from export.full_dims import FULL_TEXT

    h, e, i = FULL_TEXT["hidden_size"], experts, FULL_TEXT["moe_intermediate_size"]
    q, kv = FULL_TEXT["num_attention_heads"] * FULL_TEXT["head_dim"], FULL_TEXT["num_key_value_heads"] * FULL_TEXT["head_dim"]
    per_layer = 3 * e * i * h + e * h + 2 * q * h + 2 * kv * h + 2 * h + 2 * FULL_TEXT["head_dim"]
    fixed = 2 * prod((FULL_TEXT["vocab_size"], h)) + h
    return per_layer, fixed


def split_by_share(run: dict, stage: str, key: str, layers: int = REAL_LAYERS) -> dict:
    per_layer_params, fixed_params = parameter_share(run["layers"], run["experts"])
    total = fixed_params + run["layers"] * per_layer_params
    slope = run[stage][key] * per_layer_params / total
    fixed = run[stage][key] - slope * run["layers"]
    return {"per_layer": round(slope, 3), "fixed": round(fixed, 3), f"at_{layers}_layers": round(fixed + slope * layers, 2),
            "method": "parameter share"}


def main(argv: list[str] | None = None) -> int:
    from edge.benchreport import make_report, write_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 6],
                        help="one or two layer counts (default 4 6; one: split by parameter share)")
    parser.add_argument("--experts", type=int, default=128)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if len(args.layers) > 2:
        parser.error("--layers takes one or two layer counts")
    work = Path(tempfile.mkdtemp(prefix="edge-full-dims-", dir=args.work))
    try:
        runs = []
        for n in sorted(args.layers):
            runs.append(measure(n, args.experts, work))
            print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stages = ("convert_f16", "quantize_q4_k_m")
    if len(runs) == 2:
        projection = {f"{stage}.{key}": project(*runs, stage, key)
                      for stage in stages for key in ("wall_s", "peak_rss_gib", "size_gib")}
    else:
        projection = {f"{stage}.{key}": split_by_share(runs[0], stage, key) for stage in stages
                      for key in ("wall_s", "size_gib")}
        projection.update({f"{stage}.peak_rss_gib": {"measured": runs[0][stage]["peak_rss_gib"]} for stage in stages})
    last = runs[-1]
    report = make_report("full_dims", {"runs": runs, "projection": projection},
                         {"quantize_over_convert_wall_s": round(last["quantize_q4_k_m"]["wall_s"] / last["convert_f16"]["wall_s"], 3)},
                         command=" ".join(["python -m export.bench_full_dims", *sys.argv[1:]]))
    write_report(args.out, report)
    print(json.dumps({"runs": runs, "projection": projection}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
