"""`edge export lora --adapter ADAPTER_DIR --bundle B`: PEFT adapter -> GGUF adapter in the bundle,
then proven against transformers + PEFT (docs/LORA.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _base_checkpoint(args: argparse.Namespace) -> Path | None:
    """--checkpoint, else the base `edge train --lora` recorded."""
    if args.checkpoint is not None:
        return args.checkpoint
    record = args.adapter / "lora_training.json"
    if record.is_file():
        return Path(json.loads(record.read_text())["base"]["path"])
    return None


def _cmd_lora(args: argparse.Namespace) -> int:
    from edge.manifest import BundleError
    from export.lora_gguf import LoraExportError, export_lora

    try:
        art = export_lora(args.adapter, args.bundle, name=args.name, domain=args.domain)
    except (BundleError, LoraExportError, FileNotFoundError) as exc:
        print(f"edge export lora: {exc}", file=sys.stderr)
        return 2
    size = (args.bundle / art.path).stat().st_size
    print(f"adapter {art.name!r} ({art.domain}, rank {art.rank}, alpha {art.alpha:g}, {art.n_tensors} tensors, "
          f"{size / 1024:.1f} KiB) written to {args.bundle / art.path}; sha256 {art.sha256[:16]}")
    if args.no_verify:
        return 0
    checkpoint = _base_checkpoint(args)
    if checkpoint is None:
        print("edge export lora: --checkpoint (the base checkpoint) is needed to verify; or pass --no-verify",
              file=sys.stderr)
        return 2
    from export.lora_verify import verify_lora

    report = verify_lora(args.bundle, checkpoint, args.adapter, art.name, threads=args.threads)
    for quant, figures in report["decoder"].items():
        print(f"  verify {quant}: logits cosine {figures['logits_cosine']:.6f}, greedy {figures['greedy_match']}/"
              f"{report['greedy_len']}, adapter effect (cosine to the base) {figures['adapter_effect_cosine']:.4f}")
    for failure in report["failures"]:
        print(f"edge export lora: verify FAIL {failure}", file=sys.stderr)
    return 0 if report["passed"] else 1


def register_lora(commands) -> None:
    lora = commands.add_parser("lora", help="a PEFT LoRA adapter -> GGUF adapter in a bundle (verified)",
                               description="Writes adapters/NAME.gguf (llama.cpp's LoRA form, the decoder's tensor "
                               "names) into the bundle, lists it in the manifest and verifies it against transformers "
                               "with the PEFT adapter applied (logits cosine >= 0.999, greedy identical).")
    lora.add_argument("--adapter", type=Path, required=True, help="PEFT adapter folder (`edge train --lora --out`)")
    lora.add_argument("--bundle", type=Path, required=True, help="bundle of the adapter's base model")
    lora.add_argument("--name", default=None, help="adapter name in the bundle (default: the training record's)")
    lora.add_argument("--domain", default=None, help="the domain it is for (default: the training record's)")
    lora.add_argument("--checkpoint", type=Path, default=None,
                      help="base checkpoint for the verification (default: the one the training recorded)")
    lora.add_argument("--no-verify", action="store_true", help="skip the check against transformers + PEFT")
    lora.add_argument("--threads", type=int, default=None)
    lora.set_defaults(func=_cmd_lora)
