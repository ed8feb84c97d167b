"""`edge export verify`: prove a bundle against transformers on the same pixels and prompt.

Reference: the checkpoint in transformers (its own vision tower, its own M-RoPE positions from
`get_rope_index`, fp32). Bundle path: the ONNX vision encoder in ONNX Runtime, its rows injected into
the GGUF decoder in llama.cpp at explicit M-RoPE positions (edge.llm, the runtime's own code).

Two prompts are run: (a) one image, (b) a clip of two frame pairs with Qwen3-VL's text timestamps
before each pair. The report (DESIGN.md shape) holds, per encoder output slice, cosine and max abs
diff, and per decoder quant the last-token logits cosine and how many of the first `greedy_len`
greedy tokens agree (worst of the two prompts at the top, each prompt under "cases"). llama.cpp runs
with flash attention off and an F32 KV cache so an f32 GGUF is an fp32-exact check.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.llm.video import frame_pair_timestamps, timestamp_text
from edge.manifest import BundleManifest, VisionArtifact, add_file, load_bundle, write_manifest
from edge.preprocess import patch_layout

log = logging.getLogger(__name__)

GREEDY_LEN = 16
REPORT_NAME = "verify"
BUNDLE_REPORT_PATH = "reports/verify.json"
SYSTEM_TEXT = "You are the driving assistant of a car. Answer with one short action advice."
IMAGE_QUESTION = "Describe the road ahead and say what the car should do."
VIDEO_QUESTION = "What changed between the frames, and what should the car do now?"
CLIP_FRAME_INTERVAL_S = 0.5


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def synthetic_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """n RGB frames in [0, 1] (n, 3, H, W): smooth gradients, a moving bright box, mild noise.

    Structured content (not pure noise) so the encoder sees edges and motion like a road scene."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((n, 3, height, width), dtype=np.float32)
    for i in range(n):
        base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin((xx + 7 * i) / 23.0) * np.cos(yy / 17.0)])
        x0 = int((0.2 + 0.1 * i) * width) % max(1, width - width // 5)
        y0 = height // 3
        base[:, y0:y0 + height // 4, x0:x0 + width // 5] = [[[0.95]], [[0.9]], [[0.2]]]
        frames[i] = np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1)
    return frames


def patchify(frames: np.ndarray, mean, std, patch: int = 16, temporal: int = 2, merge: int = 2) -> np.ndarray:
    """Normalise frames (T, 3, H, W) and lay them out as Qwen2-VL/Qwen3-VL's processor does:
    (grid_t * grid_h * grid_w, 3 * temporal * patch * patch), merge blocks contiguous."""
    x = (frames - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return patch_layout(x.astype(np.float32), patch, temporal, merge)


@dataclass
class Segment:
    """A piece of the prompt: text, or the visual chunk of one image / frame pair (rows index)."""

    text: str | None = None
    pair: int | None = None  # index of the frame pair whose rows fill this chunk


@dataclass
class Case:
    name: str
    modality: str  # "image" or "video"
    segments: list[Segment]
    frames: np.ndarray  # uint8 RGB frames (T, 3, H, W), all pairs
    levels: np.ndarray  # the same levels in the processor layout
    pixel_values: np.ndarray  # the processor's normalised values of the same levels
    n_pairs: int

    def encoder_input(self, artifact: VisionArtifact) -> np.ndarray:
        """What the artifact's graph takes: the frames (it normalises and patchifies), the patch
        levels (it normalises) or the normalised values."""
        return {"frames": self.frames, "uint8": self.levels, "float32": self.pixel_values}[artifact.pixel_format]


def _clip_input(frames: np.ndarray, manifest: BundleManifest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames in [0, 1] (T, 3, H, W) -> (uint8 frames, uint8 levels and normalised values in the
    processor layout)."""
    from edge.preprocess import normalize_levels

    p = manifest.profile
    frame_levels = np.round(frames * 255.0).astype(np.uint8)
    levels = patch_layout(frame_levels, p.patch_size, p.temporal_patch_size, p.merge_size)
    return frame_levels, levels, normalize_levels(levels, manifest.normalization)


def build_cases(manifest: BundleManifest) -> list[Case]:
    p = manifest.profile
    head = f"<|im_start|>system\n{SYSTEM_TEXT}<|im_end|>\n<|im_start|>user\n"
    tail_image = f"{IMAGE_QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    tail_video = f"{VIDEO_QUESTION}<|im_end|>\n<|im_start|>assistant\n"

    # (a) one image: a single frame, duplicated to fill the temporal patch (as the processor does).
    still = synthetic_frames(1, p.height, p.width, seed=1)
    image = Case(
        "image", "image",
        [Segment(text=head + "<|vision_start|>"), Segment(pair=0), Segment(text="<|vision_end|>" + tail_image)],
        *_clip_input(np.repeat(still, p.temporal_patch_size, axis=0), manifest),
        1,
    )
    # (b) a clip of two frame pairs sampled every CLIP_FRAME_INTERVAL_S, timestamps before each pair.
    n_frames = 2 * p.temporal_patch_size
    clip = synthetic_frames(n_frames, p.height, p.width, seed=2)
    stamps = frame_pair_timestamps([i * CLIP_FRAME_INTERVAL_S for i in range(n_frames)], p.temporal_patch_size)
    segments = [Segment(text=head)]
    for pair, seconds in enumerate(stamps):
        segments += [Segment(text=timestamp_text(seconds) + "<|vision_start|>"), Segment(pair=pair),
                     Segment(text="<|vision_end|>")]
    segments.append(Segment(text=tail_video))
    video = Case("clip_2_pairs", "video", _merge_text(segments), *_clip_input(clip, manifest), 2)
    return [image, video]


def _merge_text(segments: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segments:
        if seg.text is not None and out and out[-1].text is not None:
            out[-1] = Segment(text=out[-1].text + seg.text)
        else:
            out.append(seg)
    return out


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float("nan")


def leading_matches(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _worse(old: dict | None, new: dict) -> dict:
    if old is None:
        return dict(new)
    return {"cosine": min(old["cosine"], new["cosine"]), "max_abs_diff": max(old["max_abs_diff"], new["max_abs_diff"])}


# ---------------------------------------------------------------------------------------------
# encoder: ONNX Runtime vs transformers
# ---------------------------------------------------------------------------------------------
def _vision_artifact(manifest: BundleManifest) -> VisionArtifact:
    for art in manifest.vision:
        if art.format == "onnx" and art.precision == "fp32":
            return art
    raise ValueError("the bundle has no fp32 ONNX vision artifact to verify")


class OnnxEncoder:
    """The bundle's fixed-profile encoder; encodes any number of frame pairs in profile-sized runs."""

    def __init__(self, bundle_dir: Path, manifest: BundleManifest, threads: int | None = None):
        import onnxruntime as ort

        art = _vision_artifact(manifest)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(bundle_dir / art.path), options, providers=["CPUExecutionProvider"])
        self.art = art
        self.pairs_per_run = manifest.profile.frame_pairs
        self.tokens_per_pair = manifest.profile.tokens_per_pair

    def encode(self, pixel_values: np.ndarray, n_pairs: int) -> np.ndarray:
        """`pixel_values` in the artifact's input (`Case.encoder_input`) -> rows
        (n_pairs * tokens_per_pair, width). Both input layouts are pair-major (a pair's patch rows,
        or its two frames), so a run is a slice along the first axis. Attention is per frame pair,
        so padding a run with copies of the last pair does not change the real pairs' rows."""
        pairs = pixel_values.reshape(n_pairs, -1)
        rows = []
        for start in range(0, n_pairs, self.pairs_per_run):
            chunk = pairs[start:start + self.pairs_per_run]
            real = chunk.shape[0]
            if real < self.pairs_per_run:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.pairs_per_run - real, axis=0)])
            feed = np.ascontiguousarray(chunk.reshape(self.art.input_shape))
            out = self.session.run([self.art.output_name], {self.art.input_name: feed})[0]
            rows.append(out[: real * self.tokens_per_pair])
        return np.concatenate(rows)


def _encoder_slices(output_name: str, n_embd: int, n_deepstack: int) -> list[tuple[str, slice]]:
    names = [(output_name, slice(None)), (f"{output_name}.merger", slice(0, n_embd))]
    names += [(f"{output_name}.deepstack_{k}", slice(n_embd * k, n_embd * (k + 1))) for k in range(1, n_deepstack + 1)]
    return names


# ---------------------------------------------------------------------------------------------
# reference: transformers
# ---------------------------------------------------------------------------------------------
class Reference:
    def __init__(self, checkpoint: Path, dtype: str = "float32"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoTokenizer, Qwen3VLMoeForConditionalGeneration

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.model = Qwen3VLMoeForConditionalGeneration.from_pretrained(checkpoint, dtype=getattr(torch, dtype)).eval()
        cfg = self.model.config
        self.image_token_id, self.video_token_id = cfg.image_token_id, cfg.video_token_id

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def release(self) -> None:
        """Drop the fp32 model (all its weights) once its figures are taken, so that the GGUF
        decoders load beside nothing but the figures: at the real widths the model is 4 bytes per
        parameter (11.6 GiB for 4 layers with 128 experts), more than any decoder GGUF."""
        import gc

        del self.model
        gc.collect()

    def visual_rows(self, pixel_values: np.ndarray, grid_thw: list[int]) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            out = self.model.model.visual(torch.from_numpy(pixel_values).to(self.model.dtype),
                                          grid_thw=torch.tensor([grid_thw]), return_dict=True)
        parts = [out.pooler_output, *out.deepstack_features]
        return torch.cat(parts, dim=-1).float().numpy()

    def ids(self, case: Case, n_pad: int) -> tuple[list[int], list[int]]:
        pad = self.image_token_id if case.modality == "image" else self.video_token_id
        kind = 1 if case.modality == "image" else 2
        ids, types = [], []
        for seg in case.segments:
            if seg.text is not None:
                toks = self.tokenize(seg.text)
                ids += toks
                types += [0] * len(toks)
            else:
                ids += [pad] * n_pad
                types += [kind] * n_pad
        return ids, types

    def run(self, case: Case, grid_thw: list[int], ids: list[int], types: list[int], greedy_len: int):
        """Last-token logits of the prompt and exactly `greedy_len` greedy tokens (transformers' own
        generate(): KV cache and M-RoPE deltas as transformers does them; end-of-turn does not stop it)."""
        torch = self.torch
        from transformers import GenerationConfig

        pixels = torch.from_numpy(case.pixel_values).to(self.model.dtype)
        grid = torch.tensor([grid_thw])
        vision = ({"pixel_values": pixels, "image_grid_thw": grid} if case.modality == "image"
                  else {"pixel_values_videos": pixels, "video_grid_thw": grid})
        # generate() fills unset fields from the checkpoint's generation_config: drop its EOS there so
        # both sides produce the same number of tokens whatever the (random) model prefers.
        self.model.generation_config.eos_token_id = None
        config = GenerationConfig(do_sample=False, max_new_tokens=greedy_len, min_new_tokens=0, eos_token_id=None,
                                  pad_token_id=self.tokenizer.pad_token_id or 0, output_logits=True,
                                  return_dict_in_generate=True)
        with torch.no_grad():
            out = self.model.generate(input_ids=torch.tensor([ids]), mm_token_type_ids=torch.tensor([types]),
                                      attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                      generation_config=config, **vision)
        generated = out.sequences[0, len(ids):].tolist()
        if len(generated) != greedy_len:
            raise RuntimeError(f"transformers generated {len(generated)} tokens, expected {greedy_len}")
        return out.logits[0][0].float().numpy(), generated


# ---------------------------------------------------------------------------------------------
# bundle decoder: llama.cpp with injected rows
# ---------------------------------------------------------------------------------------------
def run_bundle_decoder(model, case: Case, rows: np.ndarray, merged_h: int, merged_w: int, greedy_len: int,
                       threads: int | None, adapters=()) -> tuple[np.ndarray, list[int], list[int]]:
    """`adapters`: (edge.llm.adapters.LoadedAdapter, scale) pairs applied to the context first."""
    from edge.llm import ContextSettings, GreedySampler, LlamaContext, generate
    from edge.llm.adapters import apply_adapters

    tokens_per_pair = merged_h * merged_w
    text_tokens: list[int] = []
    n_prompt = sum(len(model.tokenize(s.text)) if s.text is not None else tokens_per_pair for s in case.segments)
    n_ctx = ((n_prompt + greedy_len + 64) // 256 + 1) * 256
    settings = ContextSettings(n_ctx=n_ctx, n_batch=512, n_threads=threads, flash_attention=False, kv_type="f32")
    with LlamaContext(model, settings) as ctx:
        if adapters:
            apply_adapters(ctx, list(adapters))
        for i, seg in enumerate(case.segments):
            if seg.text is not None:
                toks = model.tokenize(seg.text)
                text_tokens += toks
                ctx.eval_tokens(toks, logits="last" if i == len(case.segments) - 1 else "none")
            else:
                ctx.eval_visual(rows[seg.pair * tokens_per_pair:(seg.pair + 1) * tokens_per_pair], merged_h, merged_w)
        logits = ctx.logits()
        sampler = GreedySampler(model)
        gen = generate(ctx, sampler, greedy_len, stop_at_eog=False)
    return logits, gen.tokens, text_tokens


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def verify_bundle(bundle: Path | str, checkpoint: Path | str, out: Path | str | None = None, *,
                  greedy_len: int = GREEDY_LEN, threads: int | None = None, reference_dtype: str = "float32",
                  write_into_bundle: bool = True, verify_hashes: bool = True, thresholds=None) -> dict:
    """Run both paths on both prompts; return the report (and write it to `out` / the bundle).

    The report's "gate" says whether the figures meet `thresholds` (export.verify_gate.Thresholds,
    the defaults when None) and names every one that does not."""
    from edge.benchreport import machine_info
    from export.verify_gate import Thresholds, gate_report

    manifest, bundle_dir = load_bundle(bundle, verify_hashes=verify_hashes)
    if not manifest.decoder:
        raise ValueError(f"bundle {bundle_dir} has no decoder to verify")
    p = manifest.profile
    ref = Reference(Path(checkpoint), reference_dtype)
    encoder = OnnxEncoder(bundle_dir, manifest, threads)
    cases = build_cases(manifest)

    report: dict = {
        "bench": REPORT_NAME,
        "created": _now(),
        "machine": machine_info(),
        "bundle": str(bundle_dir),
        "bundle_sha256": manifest.bundle_sha256(),
        "checkpoint": str(checkpoint),
        "settings": {"greedy_len": greedy_len, "flash_attention": False, "kv_type": "f32",
                     "reference_dtype": reference_dtype},
        "encoder": {},
        "decoder": {},
        "cases": {},
    }
    prepared = [_reference_case(case, ref, encoder, manifest, report, greedy_len) for case in cases]
    # The reference and the ONNX session are done: free them before a decoder loads, so the peak is
    # the larger of the two, not their sum (at the real widths both are tens of GiB).
    ref.release()
    del encoder
    for art in manifest.decoder:
        report["decoder"][art.quant] = _decoder_figures(bundle_dir, art, prepared, ref, p, greedy_len, threads)

    report["gate"] = gate_report(report, thresholds or Thresholds())
    text = json.dumps(report, indent=2) + "\n"
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    if write_into_bundle:
        _store_in_bundle(bundle_dir, manifest, text)
    return report


def _reference_case(case, ref: Reference, encoder: OnnxEncoder, manifest: BundleManifest, report: dict,
                    greedy_len: int) -> tuple:
    """One case through the ONNX encoder and the reference: the encoder figures go into `report`
    (per case, and the worst over cases); returns what the decoders are compared with."""
    p, dec0 = manifest.profile, manifest.decoder[0]
    grid = [case.n_pairs, p.grid_h, p.grid_w]
    rows_onnx = encoder.encode(case.encoder_input(encoder.art), case.n_pairs)
    rows_ref = ref.visual_rows(case.pixel_values, grid)
    case_enc = {}
    for name, cols in _encoder_slices(encoder.art.output_name, dec0.n_embd, dec0.n_deepstack):
        stats = {"cosine": cosine(rows_onnx[:, cols], rows_ref[:, cols]),
                 "max_abs_diff": float(np.abs(rows_onnx[:, cols] - rows_ref[:, cols]).max())}
        case_enc[name] = stats
        report["encoder"][name] = _worse(report["encoder"].get(name), stats)
    ids, types = ref.ids(case, p.tokens_per_pair)
    ref_logits, ref_tokens = ref.run(case, grid, ids, types, greedy_len)
    report["cases"][case.name] = {"modality": case.modality, "frame_pairs": case.n_pairs,
                                  "prompt_tokens": len(ids), "encoder": case_enc,
                                  "reference_greedy": ref_tokens}
    return case, rows_onnx, ids, types, ref_logits, ref_tokens


def _decoder_figures(bundle_dir: Path, art, prepared: list[tuple], ref: Reference, p, greedy_len: int,
                     threads: int | None) -> dict:
    """One GGUF decoder on the ONNX encoder's rows vs the reference: per case and the worst."""
    from edge.llm import LlamaModel

    model = LlamaModel(bundle_dir / art.path, expected_n_embd_inp=art.n_embd_inp)
    try:
        summary: dict = {"logits_cosine": None, "greedy_match": None, "greedy_len": greedy_len, "cases": {}}
        for case, rows, ids, _types, ref_logits, ref_tokens in prepared:
            logits, tokens, text_tokens = run_bundle_decoder(model, case, rows, p.merged_h, p.merged_w,
                                                             greedy_len, threads)
            ref_text = [t for t in ids if t not in (ref.image_token_id, ref.video_token_id)]
            entry = {
                "logits_cosine": cosine(logits, ref_logits),
                "logits_max_abs_diff": float(np.abs(logits - ref_logits).max()),
                "greedy_match": leading_matches(tokens, ref_tokens),
                "greedy_len": greedy_len,
                "greedy_tokens": tokens,
                "tokenizer_match": text_tokens == ref_text,
            }
            summary["cases"][case.name] = entry
            lc = summary["logits_cosine"]
            summary["logits_cosine"] = entry["logits_cosine"] if lc is None else min(lc, entry["logits_cosine"])
            gm = summary["greedy_match"]
            summary["greedy_match"] = entry["greedy_match"] if gm is None else min(gm, entry["greedy_match"])
        return summary
    finally:
        model.close()


def _store_in_bundle(bundle_dir: Path, manifest: BundleManifest, text: str) -> None:
    """Keep the proof with the artifacts it proves: reports/verify.json, hashed in the manifest."""
    target = bundle_dir / BUNDLE_REPORT_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    manifest.reports[REPORT_NAME] = BUNDLE_REPORT_PATH
    add_file(manifest, bundle_dir, BUNDLE_REPORT_PATH)
    write_manifest(bundle_dir, manifest)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
