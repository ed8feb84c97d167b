"""`edge bench decode`: prefill and generation tokens/s, our decoder path vs llama-cpp-python's own.

Both variants load the same GGUF of the bundle with the same context parameters (n_ctx, n_batch =
n_ubatch, threads, flash attention, f16 KV cache) and work on the same prompt tokens:

- ours: `edge.llm` as the runtime uses it: `LlamaContext.eval_tokens` for the prompt, then
  `edge.llm.generate` with a `GreedySampler` (no grammar) for the new tokens;
- raw: llama-cpp-python's high-level `llama_cpp.Llama`: `Llama.eval` for the prompt, then
  `Llama.generate` with temperature 0 / top_k 1 (greedy) for the new tokens.

Generation ignores end-of-generation on both sides so that both produce exactly `gen_tokens`
tokens (the last one sampled, not evaluated, on both sides); greedy on the same model gives the
same tokens, which the report checks (`generation_tokens_match`), so both did the same work.

With `grammar`, a second pair of rows decodes under the runtime's advice GBNF (ours: argmax
first, the grammar asked only about that token; raw: llama-cpp-python's grammar sampler before
greedy), stopping at end-of-generation; those are reported separately because the grammar's cost
is not the per-token overhead the main comparison is about.

Repeats interleave the variants and alternate which goes first, so slow drift of a shared
machine (other processes, frequency changes) hits both alike. One warm-up round is discarded.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edge.benchreport import Report, Stats, make_report, print_ratios, ratio, write_report

if TYPE_CHECKING:
    from edge.manifest import DecoderArtifact

# Deterministic filler that makes the prompt as long as asked (the text does not affect the speed
# of a dense evaluation, only the count does).
FILLER = (
    " The car ahead brakes near the crossing; a cyclist waits at the right kerb while the lights turn amber."
)


@dataclass(frozen=True)
class DecodeBenchSettings:
    quant: str = "q4_k_m"
    prompt_tokens: int = 256
    gen_tokens: int = 64
    repeats: int = 10
    threads: int = 1
    n_ctx: int = 2048
    n_batch: int = 512
    flash_attn: bool = True
    grammar: bool = True
    warmup: int = 1
    lora: str | None = None  # a bundle adapter applied to ours only: ours_over_raw is then its cost

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or self.gen_tokens < 2 or self.repeats < 1 or self.threads < 1:
            raise ValueError(
                "need prompt_tokens >= 1, gen_tokens >= 2, repeats >= 1 and threads >= 1 "
                f"(got {self.prompt_tokens}, {self.gen_tokens}, {self.repeats}, {self.threads})"
            )
        if self.prompt_tokens + self.gen_tokens > self.n_ctx:
            raise ValueError(
                f"prompt_tokens + gen_tokens = {self.prompt_tokens + self.gen_tokens} exceeds n_ctx {self.n_ctx}"
            )


@dataclass
class GenerationRun:
    seconds: float
    tokens: list[int]


def bench_prompt(model, n_tokens: int, system_prefix: str) -> list[int]:
    """Exactly `n_tokens` prompt tokens: the bundle's system prefix followed by filler text."""
    text = system_prefix
    tokens = model.tokenize(text, parse_special=True)
    while len(tokens) < n_tokens:
        text += FILLER
        tokens = model.tokenize(text, parse_special=True)
    return tokens[:n_tokens]


class OursDecoder:
    """The runtime's path: edge.llm's context, evaluation and greedy generation loop."""

    def __init__(self, gguf: Path, settings: DecodeBenchSettings, grammar_text: str | None,
                 adapter: tuple[Path, Any, str] | None = None) -> None:
        """`adapter`: (bundle folder, AdapterArtifact, base identity) of a LoRA adapter to apply."""
        from edge.llm import ContextSettings, GreedySampler, LlamaContext, LlamaModel
        from edge.llm.adapters import apply_adapters, load_adapter

        self.model = LlamaModel(gguf)
        self.ctx = LlamaContext(self.model, ContextSettings(
            n_ctx=settings.n_ctx, n_batch=settings.n_batch, n_ubatch=settings.n_batch,
            n_threads=settings.threads, n_threads_batch=settings.threads,
            flash_attention=settings.flash_attn, kv_type="f16",
        ))
        if adapter is not None:
            apply_adapters(self.ctx, [(load_adapter(self.model, *adapter), 1.0)])
        self.sampler = GreedySampler(self.model)
        self.grammar_sampler = GreedySampler(self.model, grammar_text) if grammar_text else None

    def prefill(self, tokens: list[int]) -> float:
        self.ctx.clear()
        started = time.perf_counter()
        self.ctx.eval_tokens(tokens, logits="last")
        return time.perf_counter() - started

    def generate(self, n_tokens: int) -> GenerationRun:
        """From the logits the prefill left: exactly n_tokens greedy tokens."""
        from edge.llm import generate

        started = time.perf_counter()
        out = generate(self.ctx, self.sampler, n_tokens, stop_at_eog=False)
        return GenerationRun(time.perf_counter() - started, out.tokens)

    def generate_grammar(self, prompt: list[int], n_tokens: int) -> GenerationRun:
        from edge.llm import generate

        if self.grammar_sampler is None:
            raise ValueError("this decoder was made without a grammar")
        self.prefill(prompt)
        self.grammar_sampler.reset()
        started = time.perf_counter()
        out = generate(self.ctx, self.grammar_sampler, n_tokens, stop_at_eog=True)
        return GenerationRun(time.perf_counter() - started, out.tokens)

    def close(self) -> None:
        if self.grammar_sampler is not None:
            self.grammar_sampler.close()
        self.sampler.close()
        self.ctx.close()
        self.model.close()


class RawDecoder:
    """llama-cpp-python's own high-level API on the same GGUF with the same context parameters."""

    GREEDY: ClassVar[dict[str, Any]] = {"temp": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}

    def __init__(self, gguf: Path, settings: DecodeBenchSettings, grammar_text: str | None,
                 is_eog: Callable[[int], bool]) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(
            model_path=str(gguf), n_ctx=settings.n_ctx, n_batch=settings.n_batch, n_ubatch=settings.n_batch,
            n_threads=settings.threads, n_threads_batch=settings.threads, flash_attn=settings.flash_attn,
            type_k=llama_cpp.GGML_TYPE_F16, type_v=llama_cpp.GGML_TYPE_F16, verbose=False,
        )
        self.grammar = llama_cpp.LlamaGrammar.from_string(grammar_text, verbose=False) if grammar_text else None
        self.is_eog = is_eog

    def prefill(self, tokens: list[int]) -> float:
        self.llm.reset()
        started = time.perf_counter()
        self.llm.eval(tokens)
        return time.perf_counter() - started

    def generate(self, prompt: list[int], n_tokens: int) -> GenerationRun:
        """After `prefill(prompt)`: Llama.generate finds the whole prompt cached and samples at once."""
        started = time.perf_counter()
        tokens: list[int] = []
        stream = self.llm.generate(prompt, **self.GREEDY)
        for token in stream:
            tokens.append(token)
            if len(tokens) == n_tokens:
                break
        stream.close()
        return GenerationRun(time.perf_counter() - started, tokens)

    def generate_grammar(self, prompt: list[int], n_tokens: int) -> GenerationRun:
        self.prefill(prompt)
        started = time.perf_counter()
        tokens: list[int] = []
        stream = self.llm.generate(prompt, grammar=self.grammar, **self.GREEDY)
        for token in stream:
            if self.is_eog(token):
                break
            tokens.append(token)
            if len(tokens) == n_tokens:
                break
        stream.close()
        return GenerationRun(time.perf_counter() - started, tokens)

    def close(self) -> None:
        self.llm.close()


def rate_entry(seconds: list[float], tokens: list[int]) -> dict[str, Any]:
    """Per-run rates (median is the headline) plus the per-run time statistics."""
    rates = np.asarray(tokens, dtype=np.float64) / np.asarray(seconds, dtype=np.float64)
    per_token_us = np.asarray(seconds) * 1e6 / np.maximum(np.asarray(tokens, dtype=np.float64), 1)
    return {
        "tokens_per_s": float(np.median(rates)),
        "tokens_per_s_min": float(rates.min()),
        "tokens_per_s_max": float(rates.max()),
        "us_per_token_median": float(np.median(per_token_us)),
        "tokens": int(np.median(tokens)),
        **Stats.from_samples(s * 1e3 for s in seconds).as_dict(),
    }


def paired_ratio(ours: tuple[list[float], list[int]], raw: tuple[list[float], list[int]]) -> float:
    """Median over repeats of ours' rate / raw's rate in the same repeat."""
    ours_rates = np.asarray(ours[1], dtype=np.float64) / np.asarray(ours[0])
    raw_rates = np.asarray(raw[1], dtype=np.float64) / np.asarray(raw[0])
    return float(np.median(ours_rates / raw_rates))


Samples = dict[str, tuple[list[float], list[int]]]  # row name -> (seconds per repeat, tokens per repeat)
STAGE_ROWS = ("prefill", "generation", "grammar_generation")


def _interleaved_rounds(ours: OursDecoder, raw: RawDecoder, prompt: list[int],
                        settings: DecodeBenchSettings) -> tuple[Samples, dict[str, list[int]]]:
    """Warm-up rounds, then measured rounds of both variants in alternating order: (samples, the
    tokens of each row's first measured round)."""
    samples: Samples = {}
    first_tokens: dict[str, list[int]] = {}

    def record(name: str, seconds: float, tokens: list[int]) -> None:
        secs, counts = samples.setdefault(name, ([], []))
        secs.append(seconds)
        counts.append(len(tokens))
        first_tokens.setdefault(name, tokens)

    def round_ours(keep: bool) -> None:
        prefill_s = ours.prefill(prompt)
        gen = ours.generate(settings.gen_tokens)
        grammar_gen = ours.generate_grammar(prompt, settings.gen_tokens) if settings.grammar else None
        if keep:
            record("ours_prefill", prefill_s, prompt)
            record("ours_generation", gen.seconds, gen.tokens)
            if grammar_gen is not None:
                record("ours_grammar_generation", grammar_gen.seconds, grammar_gen.tokens)

    def round_raw(keep: bool) -> None:
        prefill_s = raw.prefill(prompt)
        gen = raw.generate(prompt, settings.gen_tokens)
        grammar_gen = raw.generate_grammar(prompt, settings.gen_tokens) if settings.grammar else None
        if keep:
            record("raw_prefill", prefill_s, prompt)
            record("raw_generation", gen.seconds, gen.tokens)
            if grammar_gen is not None:
                record("raw_grammar_generation", grammar_gen.seconds, grammar_gen.tokens)

    for _ in range(settings.warmup):
        round_ours(False)
        round_raw(False)
    for repeat in range(settings.repeats):
        # Alternate the order: whichever runs second may find warmer caches or a busier CPU.
        order = (round_ours, round_raw) if repeat % 2 == 0 else (round_raw, round_ours)
        for one_round in order:
            one_round(True)
    return samples, first_tokens


def _decode_report(settings: DecodeBenchSettings, artifact: DecoderArtifact, samples: Samples,
                   first_tokens: dict[str, list[int]]) -> Report:
    results = {name: rate_entry(*samples[name]) for name in samples}
    ratios: dict[str, float | None] = {}
    for stage in STAGE_ROWS:
        if f"ours_{stage}" in results:
            ratios[f"ours_over_raw_{stage}_tokens_per_s"] = ratio(
                results[f"ours_{stage}"]["tokens_per_s"], results[f"raw_{stage}"]["tokens_per_s"])
    ratios["ours_over_raw_tokens_per_s"] = ratios["ours_over_raw_generation_tokens_per_s"]
    # The same ratios from paired runs: repeat r of ours against repeat r of raw (adjacent in time),
    # median over r. On a shared machine whose load swings between rounds this is the steadier figure.
    paired: dict[str, float] = {}
    for stage in STAGE_ROWS:
        if f"ours_{stage}" in samples:
            paired[f"ours_over_raw_{stage}_tokens_per_s"] = paired_ratio(samples[f"ours_{stage}"],
                                                                         samples[f"raw_{stage}"])
    # With an adapter the two sides run different models: their tokens may differ, the work is the same.
    checks = {} if settings.lora else {
        "generation_tokens_match": first_tokens["ours_generation"] == first_tokens["raw_generation"],
    }
    if settings.grammar and not settings.lora:
        checks["grammar_generation_tokens_match"] = (
            first_tokens["ours_grammar_generation"] == first_tokens["raw_grammar_generation"])
    return make_report(
        "decode", results, ratios,
        paired_ratios=paired,
        checks=checks,
        config={**asdict(settings), "gguf": artifact.path, "n_vocab": artifact.n_vocab,
                "n_layer": artifact.n_layer, "n_embd": artifact.n_embd, "kv_type": "f16",
                "cpu_count": os.cpu_count(), "interleaved": True,
                "ours": "edge.llm LlamaContext.eval_tokens + edge.llm.generate(GreedySampler)",
                "raw": "llama_cpp.Llama.eval + Llama.generate(temp=0, top_k=1)",
                "ours_lora": settings.lora},
    )


def run_decode_bench(bundle: Path, settings: DecodeBenchSettings | None = None) -> Report:
    from edge.decoder import choose_decoder
    from edge.grammar import advice_grammar
    from edge.llm.model import ensure_backend
    from edge.manifest import load_bundle
    from edge.prompt import PromptTemplate

    settings = settings or DecodeBenchSettings()
    manifest, bundle_dir = load_bundle(bundle)
    artifact = choose_decoder(manifest, settings.quant)
    gguf = bundle_dir / artifact.path
    ensure_backend()  # also quiets llama.cpp's log for both variants
    grammar_text = advice_grammar(with_rationale=True) if settings.grammar else None

    adapter = ((bundle_dir, manifest.adapter(settings.lora), manifest.decoder_identity()) if settings.lora
               else None)
    ours = OursDecoder(gguf, settings, grammar_text, adapter)
    raw = RawDecoder(gguf, settings, grammar_text, ours.model.is_eog)
    try:
        prompt = bench_prompt(ours.model, settings.prompt_tokens,
                              PromptTemplate.from_manifest(manifest.prompt).prefix())
        if len(prompt) < settings.prompt_tokens:
            raise ValueError(f"could not build a {settings.prompt_tokens}-token prompt")
        samples, first_tokens = _interleaved_rounds(ours, raw, prompt, settings)
    finally:
        raw.close()
        ours.close()
    return _decode_report(settings, artifact, samples, first_tokens)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decode", help="prefill/generation tokens/s: our decoder vs llama-cpp-python's Llama (same GGUF, same run)")
    parser.add_argument("--bundle", required=True, type=Path, help="model bundle folder")
    parser.add_argument("--out", required=True, type=Path, help="JSON report path")
    parser.add_argument("--quant", default="q4_k_m", help="decoder artifact of the bundle (or 'auto')")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10, help="interleaved rounds per variant")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads for both variants (1 avoids spin-wait collapse on a busy small box)")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--flash-attn", choices=["on", "off"], default="on")
    parser.add_argument("--no-grammar", action="store_true", help="skip the advice-grammar rows")
    parser.add_argument("--lora", default=None, metavar="NAME",
                        help="apply the bundle's LoRA adapter NAME to ours (raw stays the base): ours_over_raw is then "
                        "the adapter's cost")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    settings = DecodeBenchSettings(
        quant=args.quant, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, repeats=args.repeats,
        threads=args.threads, n_ctx=args.n_ctx, n_batch=args.n_batch, flash_attn=args.flash_attn == "on",
        grammar=not args.no_grammar, lora=args.lora,
    )
    report = run_decode_bench(args.bundle, settings)
    path = write_report(args.out, report)
    for name, entry in report["results"].items():
        print(f"{name:<24} {entry['tokens_per_s']:>10.1f} tokens/s  ({entry['tokens']} tokens, "
              f"{entry['us_per_token_median']:.1f} us/token, n={entry['n']})")
    print_ratios(report["ratios"], digits=3)
    print_ratios(report["paired_ratios"], digits=3, prefix="paired ")
    print(f"checks: {report['checks']}")
    print(f"wrote {path}")
    return 0
