"""The runtime's advice decoder: visual rows + navigation line in, grammar-constrained advice out.

Built on ``edge.llm`` (llama-cpp-python's low-level API). Per cycle it rewinds the KV cache to
the end of the constant system prefix (evaluated once at start), injects each frame pair's rows
with Qwen3-VL's text timestamp in front, adds the navigation line and the assistant header, and
generates greedily under the advice grammar until end-of-generation, the token limit or the
deadline, whichever comes first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edge.budgets import DegradePolicy
from edge.config import DecoderConfig
from edge.cpus import model_thread_count
from edge.grammar import AdviceParseError, advice_grammar, parse_advice, partial_decision
from edge.llm import (
    ContextSettings,
    DeadlineExceeded,
    GreedySampler,
    KvMark,
    LlamaContext,
    LlamaModel,
    generate,
)
from edge.llm.adapters import AdapterRefused, AdapterSet
from edge.llm.confidence import ActionConfidence, ActionTokenSets
from edge.llm.sampling import StopReason
from edge.llm.video import frame_pair_timestamps
from edge.manifest import BundleError, BundleManifest, DecoderArtifact
from edge.messages import Advice, MetaAction
from edge.prompt import PromptTemplate

# Why a cycle's decoding ended: the generation's own stop, or the deadline passing during prefill.
DecodeStop = Literal[StopReason, "prefill_deadline"]

# Quantisations in order of preference when the config says "auto": the smallest that ships.
QUANT_PREFERENCE = ("q4_k_m", "q4_0", "q8_0", "f16", "f32")


@dataclass(frozen=True)
class DecodeResult:
    text: str
    advice: Advice | None  # the complete, validated advice
    partial: Advice | None  # the decision of a generation cut short, if it got that far
    stop: DecodeStop
    prefill_tokens: int  # tokens and visual rows evaluated this cycle (the cached prefix excluded)
    generated_tokens: int
    prefill_ms: float
    decode_ms: float
    error: str = ""
    adapters: tuple[str, ...] = ()  # the LoRA adapters this cycle's advice was made with
    # The probability the decoder gave the action it wrote, over the actions the grammar allowed
    # (edge.llm.confidence); None when generation stopped before the action was decided.
    confidence_raw: float | None = None


def choose_decoder(manifest: BundleManifest, quant: str) -> DecoderArtifact:
    by_quant = {d.quant: d for d in manifest.decoder}
    if not by_quant:
        raise BundleError("the bundle has no decoder artifact")
    if quant != "auto":
        if quant not in by_quant:
            raise BundleError(f"decoder quant {quant!r} is not in the bundle (has {sorted(by_quant)})")
        return by_quant[quant]
    return next(by_quant[q] for q in QUANT_PREFERENCE if q in by_quant)


# A decoder this small computes a token in less time than its threads would spend meeting at the
# barriers between the graph's operations: generation on one thread is faster alone and does not
# depend on a second core being free (docs/RELIABILITY.md has the figures).
SMALL_DECODER_BYTES = 256 * 1024 * 1024


def decoder_threads(config: DecoderConfig, cpus: frozenset[int], model_bytes: int) -> tuple[int, int]:
    """(generation threads, prefill threads). Prefill evaluates hundreds of rows per operation and
    uses every CPU the models may use; generation evaluates one token per operation."""
    prefill = model_thread_count(config.threads_batch, cpus)
    if config.threads:
        return config.threads, prefill
    return (1 if model_bytes < SMALL_DECODER_BYTES else model_thread_count(0, cpus)), prefill


class AdviceDecoder:
    def __init__(self, bundle_dir: Path, manifest: BundleManifest, config: DecoderConfig,
                 cpus: frozenset[int] = frozenset()):
        self.artifact = choose_decoder(manifest, config.quant)
        self.profile = manifest.profile
        self.template = PromptTemplate.from_manifest(manifest.prompt)
        self.model = LlamaModel(
            Path(bundle_dir) / self.artifact.path,
            n_gpu_layers=config.n_gpu_layers,
            expected_n_embd_inp=self.artifact.n_embd_inp,
        )
        self.threads, self.threads_batch = decoder_threads(config, cpus, self.model.size_bytes())
        needed = self._tokens_needed(config.max_tokens)
        n_ctx = max(config.n_ctx, needed)
        self.ctx = LlamaContext(
            self.model,
            ContextSettings(n_ctx=n_ctx, n_batch=config.n_batch, n_threads=self.threads,
                            n_threads_batch=self.threads_batch),
        )
        # One sampler per grammar variant; degraded cycles drop the rationale.
        self._samplers = {
            True: GreedySampler(self.model, advice_grammar(with_rationale=True)),
            False: GreedySampler(self.model, advice_grammar(with_rationale=False)),
        }
        self._action_sets = ActionTokenSets([self.model.token_bytes(t) for t in range(self.model.n_vocab)],
                                            [a.value for a in MetaAction])
        self._pair_close = self.model.tokenize(self.template.pair_close(), parse_special=True)
        self._assistant_header = self.model.tokenize(self.template.suffix(""), parse_special=True)
        self.prefix_builds = 0  # the system prefix is evaluated at start and once per adapter switch
        self.adapters = AdapterSet(self.model, Path(bundle_dir), manifest.decoder_identity())
        if config.lora:
            try:
                self.adapters.request([(choice.name, choice.scale) for choice in config.lora])
            except AdapterRefused as exc:
                self.close()
                raise BundleError(f"decoder.lora: {exc}") from exc
            self.adapters.apply_pending(self.ctx)
        self._build_prefix()

    def _build_prefix(self) -> None:
        """Evaluate the constant system prefix into an empty cache and mark its end (again after an
        adapter switch: its keys and values depend on the adapted projections)."""
        self.ctx.rewind(KvMark(next_pos=0, n_tokens=0))
        self.prefix_builds += 1
        prefix = self.model.tokenize(self.template.prefix(), parse_special=True)
        self.ctx.eval_tokens(prefix, logits="none")
        self.prefix_tokens = len(prefix)
        self._prefix_mark = self.ctx.mark()

    def _tokens_needed(self, max_tokens: int) -> int:
        # Prefix + visual rows + generous text allowance (timestamps, nav line, header) + output.
        return 512 + self.profile.tokens_per_clip + 32 * self.profile.frame_pairs + max_tokens

    def decode(
        self,
        rows: np.ndarray,
        frame_times_s: list[float],
        nav_line: str,
        policy: DegradePolicy,
        deadline: float,
        decode_budget_s: float = float("inf"),
    ) -> DecodeResult:
        """One cycle. ``deadline`` (a time.monotonic() value) bounds prefill and generation; the
        generation also stops ``decode_budget_s`` after it started. Both are checked per token."""
        profile = self.profile
        started = time.monotonic()
        if self.adapters.apply_pending(self.ctx):  # a switch requested since the last cycle
            self._build_prefix()
        self.ctx.rewind(self._prefix_mark)
        stamps = frame_pair_timestamps(frame_times_s, profile.temporal_patch_size)
        per_pair = profile.tokens_per_pair
        prefill_tokens = 0
        try:
            for pair, stamp in enumerate(stamps):
                opening = self.model.tokenize(self.template.pair_open(stamp), parse_special=True)
                self.ctx.eval_tokens(opening, logits="none", deadline=deadline)
                chunk = rows[pair * per_pair:(pair + 1) * per_pair]
                self.ctx.eval_visual(chunk, profile.merged_h, profile.merged_w, deadline=deadline)
                self.ctx.eval_tokens(self._pair_close, logits="none", deadline=deadline)
                prefill_tokens += len(opening) + per_pair + len(self._pair_close)
            # The navigation line is untrusted text: parse_special=False so that even a string
            # spelling a control token stays plain text.
            nav_tokens = self.model.tokenize(nav_line, parse_special=False)
            self.ctx.eval_tokens(nav_tokens + self._assistant_header, logits="last", deadline=deadline)
            prefill_tokens += len(nav_tokens) + len(self._assistant_header)
        except DeadlineExceeded as exc:
            prefill_ms = (time.monotonic() - started) * 1e3
            return DecodeResult("", None, None, "prefill_deadline", prefill_tokens, 0, prefill_ms, 0.0, str(exc),
                                tuple(self.adapters.names))
        prefill_ms = (time.monotonic() - started) * 1e3

        # Decoding starts with the grammar sampler's reset (llama.cpp work, ~0.1 ms): it is timed
        # with generation, as part of the decode stage.
        decode_started = time.monotonic()
        sampler = self._samplers[policy.with_rationale]
        sampler.reset()
        confidence = ActionConfidence(self._action_sets)

        def observe(token: int, piece: bytes) -> None:
            # Called before the token is evaluated: the context still holds the logits it came from.
            confidence.observe(token, piece, self.ctx.logits(copy=False))

        generation = generate(
            self.ctx, sampler, policy.max_tokens, on_token=observe,
            deadline=min(deadline, decode_started + decode_budget_s)
        )
        decode_ms = (time.monotonic() - decode_started) * 1e3
        text = generation.text
        advice, error = None, ""
        if generation.stop == "eog":
            try:
                advice = parse_advice(text)
            except AdviceParseError as exc:
                error = str(exc)
        return DecodeResult(
            text, advice, partial_decision(text), generation.stop, prefill_tokens,
            len(generation.tokens), prefill_ms, decode_ms, error, tuple(self.adapters.names), confidence.value,
        )

    def close(self) -> None:
        for sampler in self._samplers.values():
            sampler.close()
        self.ctx.close()
        self.model.close()
