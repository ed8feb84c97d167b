"""`edge bench decode` on the tiny bundle: a short run that checks the report, not the speed."""

from __future__ import annotations

import json

import pytest

from edge.bench.decode import DecodeBenchSettings, run_decode_bench
from edge_cli.main import main as edge_main

PROMPT_TOKENS = 40
GEN_TOKENS = 8


@pytest.fixture(scope="module")
def report(tiny_bundle):
    settings = DecodeBenchSettings(quant="q4_k_m", prompt_tokens=PROMPT_TOKENS, gen_tokens=GEN_TOKENS, repeats=2)
    return run_decode_bench(tiny_bundle, settings)


def test_report_has_both_variants_with_the_same_work(report):
    results = report["results"]
    assert report["bench"] == "decode" and report["machine"]["cores"] >= 1
    assert set(results) == {"ours_prefill", "raw_prefill", "ours_generation", "raw_generation",
                            "ours_grammar_generation", "raw_grammar_generation"}
    for name in ("ours_prefill", "raw_prefill"):
        assert results[name]["tokens"] == PROMPT_TOKENS
    for name in ("ours_generation", "raw_generation"):
        assert results[name]["tokens"] == GEN_TOKENS  # end-of-generation ignored: exactly as asked
    for name in ("ours_grammar_generation", "raw_grammar_generation"):
        assert 1 <= results[name]["tokens"] <= GEN_TOKENS
    # Greedy on the same GGUF with the same context: both variants produced the same tokens.
    assert report["checks"] == {"generation_tokens_match": True, "grammar_generation_tokens_match": True}


def test_rates_and_ratios_are_sane(report):
    for entry in report["results"].values():
        assert entry["n"] == 2
        assert entry["tokens_per_s"] > 0 and entry["us_per_token_median"] > 0
        assert entry["tokens_per_s_min"] <= entry["tokens_per_s"] <= entry["tokens_per_s_max"]
        assert 0 < entry["p50_ms"] <= entry["p99_ms"] <= entry["max_ms"]
    ratios = report["ratios"]
    for name in ("ours_over_raw_prefill_tokens_per_s", "ours_over_raw_generation_tokens_per_s",
                 "ours_over_raw_grammar_generation_tokens_per_s", "ours_over_raw_tokens_per_s"):
        assert ratios[name] > 0
    assert ratios["ours_over_raw_tokens_per_s"] == ratios["ours_over_raw_generation_tokens_per_s"]
    assert set(report["paired_ratios"]) == {"ours_over_raw_prefill_tokens_per_s",
                                            "ours_over_raw_generation_tokens_per_s",
                                            "ours_over_raw_grammar_generation_tokens_per_s"}
    assert all(value > 0 for value in report["paired_ratios"].values())
    results = report["results"]
    assert ratios["ours_over_raw_prefill_tokens_per_s"] == pytest.approx(
        results["ours_prefill"]["tokens_per_s"] / results["raw_prefill"]["tokens_per_s"])


def test_cli_writes_the_json_file(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "decode.json"
    code = edge_main(["bench", "decode", "--bundle", str(tiny_bundle), "--out", str(out), "--prompt-tokens", "16",
                      "--gen-tokens", "4", "--repeats", "1", "--no-grammar", "--flash-attn", "off"])
    assert code == 0
    written = json.loads(out.read_text())
    assert set(written["results"]) == {"ours_prefill", "raw_prefill", "ours_generation", "raw_generation"}
    assert written["config"]["flash_attn"] is False and written["config"]["threads"] == 1
    assert "ours_over_raw_tokens_per_s" in capsys.readouterr().out


def test_settings_refuse_impossible_runs():
    with pytest.raises(ValueError, match="exceeds n_ctx"):
        DecodeBenchSettings(prompt_tokens=2000, gen_tokens=100, n_ctx=2048)
    with pytest.raises(ValueError, match="gen_tokens >= 2"):
        DecodeBenchSettings(gen_tokens=1)
