"""The small decoder GGUF that `python -m edge.llm.selftest` runs (shipped in edge/llm/data/).

It is a tiny checkpoint's decoder (preset "tiny", seed 0: the real Qwen3-VL-MoE architecture with
MoE layers and DeepStack input rows), shrunk to four experts of half the width to stay under 3 MB, in
Q4_K_M, the quantisation the runtime ships, so the check runs the kernels the runtime runs. Regenerate it with

    python -m export.selftest_gguf edge/llm/data/selftest-q4_k_m.gguf
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

# Four layers: llama.cpp needs more layers than DeepStack levels (three).
SHRINK = {"num_hidden_layers": 4, "num_experts": 4, "moe_intermediate_size": 256}


def make_selftest_gguf(out: Path) -> Path:
    from export.checkpoint import CheckpointReader
    from export.gguf_decoder import write_decoder_artifacts
    from export.tiny import make_tiny_checkpoint

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="edge-selftest-") as tmp:
        checkpoint = make_tiny_checkpoint(Path(tmp) / "tiny", seed=0, preset="tiny", text_overrides=SHRINK)
        [artifact] = write_decoder_artifacts(CheckpointReader(checkpoint), Path(tmp) / "bundle", ["q4_k_m"],
                                             progress=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "bundle" / artifact.path).replace(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m export.selftest_gguf OUT.gguf")
    print(make_selftest_gguf(Path(sys.argv[1])))
