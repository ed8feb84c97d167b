"""edge.llm on the tiny bundle's real GGUF in real llama.cpp: widths, positions, KV prefix reuse,
grammar-constrained generation and deadlines."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from edge.llm import (
    ContextSettings,
    DeadlineExceeded,
    EmbeddingWidthError,
    GreedySampler,
    LlamaContext,
    LlamaError,
    LlamaModel,
    generate,
)
from edge.llm.positions import position_after_visual, text_positions, visual_positions
from edge.llm.video import frame_pair_timestamps, on_sampling_grid, timestamp_text
from edge.manifest import load_bundle

# Flash attention off + F32 KV: results independent of batch splitting up to float rounding.
# One thread: llama.cpp's spinning worker threads crawl on a shared 2-core CI box.
EXACT = ContextSettings(n_ctx=1024, n_batch=512, n_threads=1, flash_attention=False, kv_type="f32")
PREFIX = "<|im_start|>system\nYou advise the driver. Answer in JSON.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
TAIL = "<|vision_end|>The cyclist is entering the right lane.<|im_end|>\n<|im_start|>assistant\n"
ADVICE_GRAMMAR = r'''
root   ::= "{\"action\": \"" action "\", \"reason\": \"" reason "\"}"
action ::= "keep" | "decelerate" | "stop" | "change_left"
reason ::= [a-z] [a-z ]{0,23}
'''
ADVICE_RE = re.compile(r'\{"action": "(keep|decelerate|stop|change_left)", "reason": "[a-z][a-z ]{0,23}"\}')


@pytest.fixture(scope="module")
def decoder(tiny_bundle):
    manifest, bundle_dir = load_bundle(tiny_bundle, verify_hashes=False)
    art = next(d for d in manifest.decoder if d.quant == "f32")
    model = LlamaModel(bundle_dir / art.path, expected_n_embd_inp=art.n_embd_inp)
    yield model, manifest
    model.close()


def rows_for(manifest, seed: int) -> np.ndarray:
    """Visual rows of one frame pair (synthetic: the decoder's machinery does not care where they come from)."""
    p = manifest.profile
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((p.tokens_per_pair, manifest.decoder[0].n_embd_inp)) * 0.05).astype(np.float32)


def prompt_logits(ctx: LlamaContext, model: LlamaModel, manifest, rows: np.ndarray, with_prefix: bool = True):
    p = manifest.profile
    if with_prefix:
        ctx.eval_tokens(model.tokenize(PREFIX), logits="none")
    ctx.eval_visual(rows, p.merged_h, p.merged_w)
    ctx.eval_tokens(model.tokenize(TAIL))
    return ctx.logits()


# ---- pure position arithmetic -----------------------------------------------------------------
def test_visual_positions_follow_the_mrope_layout():
    pos = visual_positions(10, grid_h=2, grid_w=3)
    assert pos.dtype == np.int32 and pos.shape == (4, 6)
    assert pos[0].tolist() == [10] * 6  # t
    assert pos[1].tolist() == [10, 10, 10, 11, 11, 11]  # y = p0 + i // w
    assert pos[2].tolist() == [10, 11, 12, 10, 11, 12]  # x = p0 + i % w
    assert pos[3].tolist() == [0] * 6
    assert position_after_visual(10, 2, 3) == 13 and position_after_visual(10, 8, 14) == 24
    assert text_positions(5, 3).tolist() == [5, 6, 7]
    with pytest.raises(ValueError):
        visual_positions(0, 0, 3)


def test_video_timestamps_match_qwen3_vl():
    # transformers' Qwen3VLProcessor: mean of each pair's first and last frame time, one decimal.
    assert frame_pair_timestamps([0.0, 0.5, 1.0, 1.5]) == [0.25, 1.25]
    assert frame_pair_timestamps([0.0, 0.5, 1.0]) == [0.25, 1.0]  # odd tail padded with the last frame
    assert timestamp_text(1.25) == "<1.2 seconds>" and timestamp_text(3.0) == "<3.0 seconds>"


def test_clip_timestamps_do_not_depend_on_the_cameras_frame_rate():
    """Samples due every 0.5 s are served by the newest frame: at 25 fps frames 12, 25, 37, 50 (0.48 s,
    1.0 s, 1.48 s after the first) or 0, 12, 25, 37; at 30 fps exactly on time. Every one of these
    clips reads '<0.2 seconds>', '<1.2 seconds>' to the decoder."""
    def stamps(frame_indices, fps):
        times = [(i - frame_indices[0]) / fps for i in frame_indices]
        return [timestamp_text(t) for t in frame_pair_timestamps(on_sampling_grid(times, 0.5))]

    for frames, fps in (([12, 25, 37, 50], 25.0), ([0, 12, 25, 37], 25.0), ([0, 15, 30, 45], 30.0),
                        ([0, 15, 30, 45], 29.97)):
        assert stamps(frames, fps) == ["<0.2 seconds>", "<1.2 seconds>"], (frames, fps)
    # Without the grid the 25 fps clip would read 0.3 s and 1.3 s: another prompt for the same scene.
    assert [timestamp_text(t) for t in frame_pair_timestamps([0.0, 0.52, 1.0, 1.52])] == ["<0.3 seconds>",
                                                                                        "<1.3 seconds>"]
    # A sample served late by a whole interval stays late on the grid.
    assert on_sampling_grid([0.0, 0.5, 1.5, 2.0], 0.5) == [0.0, 0.5, 1.5, 2.0]
    with pytest.raises(ValueError):
        on_sampling_grid([0.0], 0.0)


# ---- model -------------------------------------------------------------------------------------
def test_model_reports_deepstack_widths(decoder):
    model, manifest = decoder
    assert model.architecture == "qwen3vlmoe"
    assert (model.n_embd, model.n_embd_inp, model.n_deepstack) == (256, 1024, 3)
    assert model.n_vocab == manifest.decoder[0].n_vocab
    assert model.is_eog(manifest.special_tokens.im_end)
    assert model.tokenize("<|im_start|>") == [manifest.special_tokens.im_start]


def test_manifest_width_mismatch_is_refused(decoder):
    model, _ = decoder
    with pytest.raises(LlamaError, match="n_embd_inp = 1024 but the bundle manifest says 2048"):
        LlamaModel(model.path, expected_n_embd_inp=2048)
    with pytest.raises(LlamaError, match="not found"):
        LlamaModel(model.path.with_name("missing.gguf"))


def test_rows_of_the_wrong_width_are_refused(decoder):
    model, manifest = decoder
    p = manifest.profile
    with LlamaContext(model, EXACT) as ctx:
        ctx.eval_tokens(model.tokenize(PREFIX), logits="none")
        before = (ctx.next_pos, ctx.n_tokens)
        for width in (model.n_embd, model.n_embd_inp + 1):  # merger only; off by one
            with pytest.raises(EmbeddingWidthError, match=f"n_embd_inp = {model.n_embd_inp}"):
                ctx.eval_visual(np.zeros((p.tokens_per_pair, width), np.float32), p.merged_h, p.merged_w)
        bad = rows_for(manifest, 0)
        bad[3, 7] = np.nan
        with pytest.raises(EmbeddingWidthError, match="NaN"):
            ctx.eval_visual(bad, p.merged_h, p.merged_w)
        with pytest.raises(ValueError, match="rows"):
            ctx.eval_visual(rows_for(manifest, 0)[:-1], p.merged_h, p.merged_w)
        assert (ctx.next_pos, ctx.n_tokens) == before  # nothing was evaluated


# ---- KV cache ------------------------------------------------------------------------------------
def test_prefix_kv_reuse_gives_the_logits_of_a_full_evaluation(decoder):
    model, manifest = decoder
    p = manifest.profile
    clip_a, clip_b = rows_for(manifest, 1), rows_for(manifest, 2)
    n_prefix = len(model.tokenize(PREFIX))
    with LlamaContext(model, EXACT) as ctx:
        ctx.eval_tokens(model.tokenize(PREFIX), logits="none")
        mark = ctx.mark()
        assert mark.next_pos == n_prefix and ctx.kv_pos_max() == n_prefix - 1
        reused = []
        for rows in (clip_a, clip_b, clip_a):  # three cycles on one cached prefix
            reused.append(prompt_logits(ctx, model, manifest, rows, with_prefix=False))
            # visual chunk: positions advance by max(grid_h, grid_w), not by its token count
            n_tail = len(model.tokenize(TAIL))
            assert ctx.next_pos == n_prefix + max(p.merged_h, p.merged_w) + n_tail
            assert ctx.n_tokens == n_prefix + p.tokens_per_pair + n_tail
            ctx.rewind(mark)
            assert (ctx.next_pos, ctx.n_tokens, ctx.kv_pos_max()) == (n_prefix, n_prefix, n_prefix - 1)
    full = []
    for rows in (clip_a, clip_b):
        with LlamaContext(model, EXACT) as fresh:
            full.append(prompt_logits(fresh, model, manifest, rows))
    np.testing.assert_allclose(reused[0], full[0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(reused[1], full[1], atol=1e-4, rtol=0)
    np.testing.assert_allclose(reused[2], reused[0], atol=1e-5, rtol=0)
    assert np.abs(full[0] - full[1]).max() > 1e-3  # the rows matter: a stale cache would show


def test_batches_split_at_n_batch_give_the_same_logits(decoder):
    model, manifest = decoder
    rows = rows_for(manifest, 3)
    with LlamaContext(model, EXACT) as whole:
        expected = prompt_logits(whole, model, manifest, rows)
    small = ContextSettings(n_ctx=1024, n_batch=32, n_threads=1, flash_attention=False, kv_type="f32")
    with LlamaContext(model, small) as split:  # 112 rows -> 4 embedding batches; text split too
        assert split.n_batch == 32
        got = prompt_logits(split, model, manifest, rows)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_prompt_larger_than_the_context_is_refused(decoder):
    model, _ = decoder
    settings = ContextSettings(n_ctx=256, n_batch=256, n_threads=1)
    with LlamaContext(model, settings) as ctx, pytest.raises(LlamaError, match="does not fit"):
        ctx.eval_tokens([1] * 300)


def test_logits_need_a_batch_that_asked_for_them(decoder):
    model, _manifest = decoder
    with LlamaContext(model, EXACT) as ctx:
        ctx.eval_tokens(model.tokenize(PREFIX), logits="none")
        with pytest.raises(LlamaError, match="no logits"):
            ctx.logits()


# ---- generation ----------------------------------------------------------------------------------
def test_grammar_constrained_generation_emits_only_grammar_valid_text(decoder):
    model, manifest = decoder
    rows = rows_for(manifest, 4)
    with LlamaContext(model, EXACT) as ctx:
        prompt_logits(ctx, model, manifest, rows)
        mark_logits = ctx.logits()
        free = generate(ctx, GreedySampler(model), 40)
    # The random model left alone does not write our JSON: the grammar is what makes it valid.
    assert not ADVICE_RE.fullmatch(free.text)
    with LlamaContext(model, EXACT) as ctx:
        np.testing.assert_allclose(prompt_logits(ctx, model, manifest, rows), mark_logits, atol=1e-5)
        sampler = GreedySampler(model, ADVICE_GRAMMAR)
        pieces = []
        out = generate(ctx, sampler, 80, on_token=lambda tok, piece: pieces.append(piece))
    assert out.stop == "eog", out  # the grammar completed, then only end-of-generation was allowed
    assert ADVICE_RE.fullmatch(out.text), out.text
    assert json.loads(out.text)["action"] in {"keep", "decelerate", "stop", "change_left"}
    assert b"".join(pieces) == out.data and len(out.tokens) == len(pieces)


def test_sampler_reset_restarts_the_grammar(decoder):
    model, manifest = decoder
    rows = rows_for(manifest, 5)
    sampler = GreedySampler(model, ADVICE_GRAMMAR)
    texts = []
    for _ in range(2):
        with LlamaContext(model, EXACT) as ctx:
            prompt_logits(ctx, model, manifest, rows)
            sampler.reset()
            texts.append(generate(ctx, sampler, 80).text)
    assert texts[0] == texts[1] and ADVICE_RE.fullmatch(texts[0])


def test_invalid_grammar_is_refused(decoder):
    model, _ = decoder
    with pytest.raises(LlamaError, match="grammar"):
        GreedySampler(model, 'root ::= "unterminated')


def test_deadline_stops_generation(decoder):
    model, manifest = decoder
    rows = rows_for(manifest, 6)
    with LlamaContext(model, EXACT) as ctx:
        ctx.eval_tokens(model.tokenize(PREFIX), logits="none")
        mark = ctx.mark()
        prompt_logits(ctx, model, manifest, rows, with_prefix=False)
        late = generate(ctx, GreedySampler(model), 50, deadline=time.monotonic() - 0.001)
        assert late.stop == "deadline" and late.tokens == []

        # Each token "costs" 50 ms in the callback; a 0.16 s deadline cuts the run after a few tokens.
        deadline = time.monotonic() + 0.16
        cut = generate(ctx, GreedySampler(model), 50, on_token=lambda tok, piece: time.sleep(0.05),
                       deadline=deadline, stop_at_eog=False)
        assert cut.stop == "deadline" and 1 <= len(cut.tokens) <= 5, cut
        assert time.monotonic() - deadline < 0.1  # stopped within one token of the deadline

        ctx.rewind(mark)  # next cycle on the same cached prefix
        prompt_logits(ctx, model, manifest, rows, with_prefix=False)
        stopped = generate(ctx, GreedySampler(model), 50, on_token=lambda tok, piece: False, stop_at_eog=False)
        assert stopped.stop == "callback" and len(stopped.tokens) == 1
        assert stopped.tokens[0] == cut.tokens[0]  # same prompt, same greedy choice


def test_prompt_evaluation_checks_its_deadline(decoder):
    model, _ = decoder
    with LlamaContext(model, EXACT) as ctx:
        with pytest.raises(DeadlineExceeded):
            ctx.eval_tokens(model.tokenize(PREFIX), deadline=time.monotonic() - 1)
        assert ctx.next_pos == 0
