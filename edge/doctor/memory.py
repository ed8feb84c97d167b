"""Loading for real (`edge doctor --load`): the runtime's own loaders, with the memory they take."""

from __future__ import annotations

import logging
from typing import Any

from edge.doctor.fit import BundleReport
from edge.environment import process_memory


def load_and_measure(report: BundleReport, config: Any, verify_hashes: bool = True) -> None:
    """Load the bundle as the runtime would (vision backend chosen by the runtime's own rule, one clip
    encoded; the GGUF and a context of the configured n_ctx) and record time and memory per step
    into ``report.memory["measured"]``. A failure becomes a reason: the bundle cannot run here."""
    import time

    steps: list[dict[str, Any]] = []

    def mark(step: str, started: float) -> None:
        steps.append({"step": step, "seconds": round(time.perf_counter() - started, 3), **process_memory()})

    start = time.perf_counter()
    try:
        import numpy as np

        from edge.llm.context import ContextSettings, LlamaContext
        from edge.llm.model import LlamaModel
        from edge.manifest import load_bundle
        from edge.vision.select import select_backend

        mark("baseline: python and the runtime's imports", start)
        # The caller has just verified the hashes; do not log the "not verified" warning again.
        logging.getLogger("edge.manifest").disabled = not verify_hashes
        try:
            manifest, bundle_dir = load_bundle(report.path, verify_hashes=verify_hashes)
        finally:
            logging.getLogger("edge.manifest").disabled = False
        start = time.perf_counter()
        choice = select_backend(bundle_dir, manifest, config.vision)
        rows = choice.backend.encode(np.zeros(choice.backend.artifact.input_shape, choice.backend.artifact.input_dtype))
        mark(f"vision: {choice.backend.name} loaded, one clip encoded to {list(rows.shape)}", start)
        from edge.decoder import choose_decoder

        decoder = choose_decoder(manifest, config.decoder.quant)
        start = time.perf_counter()
        model = LlamaModel(
            bundle_dir / decoder.path,
            n_gpu_layers=config.decoder.n_gpu_layers,
            expected_n_embd_inp=decoder.n_embd_inp,
        )
        context = LlamaContext(
            model, ContextSettings(n_ctx=config.decoder.n_ctx, n_batch=config.decoder.n_batch)
        )
        mark(f"decoder: {decoder.path} loaded, context n_ctx {context.n_ctx}", start)
        context.close()
        model.close()
        choice.backend.close()
    except Exception as exc:  # any loader's failure is the answer, not a crash of the doctor
        report.reasons.append(f"loading failed: {type(exc).__name__}: {exc}")
        report.runnable = False
    report.memory["measured"] = steps
