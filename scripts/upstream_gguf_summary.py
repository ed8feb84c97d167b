"""Run llama.cpp's own converter on the tiny checkpoint and write the summary the tests compare against.

    .venv/bin/python scripts/upstream_gguf_summary.py --llama-cpp PATH/TO/llama.cpp \
        --out tests/export/data/upstream_qwen3vlmoe_tiny_f16.json
    .venv/bin/python scripts/upstream_gguf_summary.py --llama-cpp PATH/TO/llama.cpp --mmproj \
        --outtype q8_0 --out tests/export/data/upstream_qwen3vl_mmproj_tiny_q8_0.json

PATH/TO/llama.cpp: a llama.cpp source tree, e.g. the one llama-cpp-python's sdist vendors
(`pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36`, unpacked:
llama_cpp_python-0.3.36/vendor/llama.cpp). Nothing of it is copied into this repository: the
converter runs from that tree (with its own gguf-py) in a child process.

With --mmproj, the vision tower is converted instead (upstream's `--mmproj`: the mmproj GGUF that
llama.cpp's mtmd loads), from the tiny checkpoint as the test fixture makes it.

Upstream's decoder converter is run on the tiny checkpoint stored in the original Qwen release's expert
layout (the layout it converts; see docs/DESIGN.md) with one change: the tiny tokenizer is not in
its table of known pre-tokenizers (it identifies them by hashing the tokens of a test string), so
`get_vocab_base_pre` answers "qwen2", the name the table gives the real Qwen3 tokenizer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

_HARNESS = """
import runpy, sys
from pathlib import Path
llama = Path(sys.argv[1])
sys.path.insert(0, str(llama)); sys.path.insert(1, str(llama / "gguf-py"))
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
sys.argv = ["convert_hf_to_gguf.py", *sys.argv[2:]]
runpy.run_path(str(llama / "convert_hf_to_gguf.py"), run_name="__main__")
"""


def run_upstream(llama_cpp: Path, checkpoint: Path, out: Path, outtype: str, mmproj: bool = False) -> None:
    cmd = [sys.executable, "-c", _HARNESS, str(llama_cpp), str(checkpoint), "--outfile", str(out), "--outtype", outtype]
    cmd += ["--mmproj"] if mmproj else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"upstream converter failed:\n{done.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source tree (convert_hf_to_gguf.py)")
    parser.add_argument("--out", type=Path, required=True, help="summary JSON to write")
    parser.add_argument("--outtype", choices=["f16", "f32", "q8_0"], default="f16")
    parser.add_argument("--mmproj", action="store_true", help="convert the vision tower (mmproj) instead of the decoder")
    parser.add_argument("--llama-cpp-python", default="0.3.36", help="the version whose vendored tree this is (recorded)")
    args = parser.parse_args()

    from export.gguf_compare import summarize_gguf
    from export.tiny import make_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        layout = "transformers" if args.mmproj else "original"
        checkpoint = make_tiny_checkpoint(Path(tmp) / "tiny", seed=0, expert_layout=layout)
        gguf_path = Path(tmp) / f"upstream-{args.outtype}.gguf"
        run_upstream(args.llama_cpp, checkpoint, gguf_path, args.outtype, mmproj=args.mmproj)
        summary = summarize_gguf(gguf_path)
    summary["source"] = {
        "converter": f"llama.cpp convert_hf_to_gguf.py{' --mmproj' if args.mmproj else ''} vendored by "
                     f"llama-cpp-python {args.llama_cpp_python}",
        "outtype": args.outtype,
        "checkpoint": f"export.tiny.make_tiny_checkpoint(seed=0, expert_layout={layout!r})",
    }
    if not args.mmproj:
        summary["source"]["pre_tokenizer"] = ("get_vocab_base_pre answered 'qwen2' (the tiny tokenizer is not in "
                                              "upstream's hash table)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(summary['tensors'])} tensors, {len(summary['metadata'])} metadata keys -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
