"""The driving gate: agreement recorded in the manifest, a warning at load, `edge eval --gate` for CI."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from edge.manifest import load_bundle, write_manifest
from edge.quality import QUALITY_KEY, agreement_warning
from train.cli import register as register_train


@pytest.fixture(scope="module")
def default_bundle() -> Path:
    from train.default import ensure_default_bundle

    return ensure_default_bundle(progress=False)


def _with_agreement(bundle: Path, tmp_path: Path, value: float) -> Path:
    """A copy of the bundle whose recorded agreement of its shipped combination is `value`."""
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    manifest, _ = load_bundle(copy, verify_hashes=False)
    record = manifest.quality[QUALITY_KEY]
    record["agreement"] = {combo: value for combo in record["agreement"]}
    write_manifest(copy, manifest)
    return copy


def _edge_eval(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="edge")
    register_train(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


def test_the_default_bundle_records_its_driving_agreement(default_bundle):
    from train.gate import GATE_SCENES

    manifest, bundle_dir = load_bundle(default_bundle, verify_hashes=True)
    record = manifest.quality[QUALITY_KEY]
    shipped = "int8+q4_k_m" if "int8" in {a.precision for a in manifest.adopted_vision("onnx")} else "fp32+q4_k_m"
    assert record["reference"] == "fp32+f16"
    assert set(record["agreement"]) == {shipped}
    assert 0.0 <= record["agreement"][shipped] <= 1.0
    assert record["scenes"] == len(GATE_SCENES.folders())
    assert record["cycles"] > 0
    report = json.loads((bundle_dir / record["report"]).read_text())  # hashed with the rest (verified above)
    assert report["agreement"][f"{shipped} vs fp32+f16"] == record["agreement"][shipped]


def test_the_runtime_warns_at_load_under_the_threshold(default_bundle, tmp_path, caplog):
    from edge.config import RuntimeConfig
    from edge.runtime import load_model_parts

    low = _with_agreement(default_bundle, tmp_path, 0.9)
    manifest, _ = load_bundle(low, verify_hashes=False)
    config = RuntimeConfig(bundle=low)
    config.vision.backend = "onnxruntime"
    with caplog.at_level(logging.WARNING, logger="edge.runtime"):
        parts = load_model_parts(config)
    try:
        combo = f"{parts.vision.artifact.precision}+{parts.decoder.artifact.quant}"
        assert len(parts.warnings) == 1
        assert parts.warnings[0].startswith(f"{combo} agrees with fp32+f16 on 90.0% of")
        assert "under the 97% gate" in parts.warnings[0]
        assert any(parts.warnings[0] in r.getMessage() for r in caplog.records)
    finally:
        parts.close()
    # The same figure passes a lower threshold; a bundle that records nothing says nothing.
    assert agreement_warning(manifest, *combo.split("+"), threshold=0.85) is None
    manifest.quality.clear()
    assert agreement_warning(manifest, *combo.split("+")) is None


def test_the_status_topic_carries_the_warning(default_bundle, tmp_path, drive_videos):
    """A replay (the runtime loop, its bus and heartbeat) of a bundle under the gate: the planner
    sees the warning as a status event, not only the log."""
    from sim.replay import ReplayOptions, replay_scene

    low = _with_agreement(default_bundle, tmp_path, 0.5)
    result = replay_scene(low, drive_videos[0], options=ReplayOptions(max_cycles=1, annotate=False))
    events = {e.kind: e for status in result.status for e in status.events}
    assert "low_agreement" in events and "on 50.0% of" in events["low_agreement"].message


def test_edge_eval_gate_on_the_recorded_agreement(default_bundle, tmp_path, capsys):
    assert _edge_eval(["--bundle", str(_with_agreement(default_bundle, tmp_path / "a", 0.99)), "--gate", "0.97"]) == 0
    assert "gate: PASS" in capsys.readouterr().out
    low = _with_agreement(default_bundle, tmp_path / "b", 0.95)
    assert _edge_eval(["--bundle", str(low), "--gate", "0.97"]) == 1
    err = capsys.readouterr().err
    assert "gate FAIL" in err and "agreement 95.0% < 97.0%" in err
    manifest, _ = load_bundle(low, verify_hashes=False)
    manifest.quality.clear()
    write_manifest(low, manifest)
    assert _edge_eval(["--bundle", str(low), "--gate", "0.97"]) == 2
    assert "records no driving agreement" in capsys.readouterr().err


def test_edge_eval_record_then_gate(default_bundle, tmp_path, capsys):
    """--record on one short labelled scene stores the figure; --gate over 100% fails on it."""
    from sim.scene import render_scene

    scenes = tmp_path / "scenes"
    render_scene("red_light", 1002, scenes / "red_light", duration_s=4.0)
    copy = shutil.copytree(default_bundle, tmp_path / "bundle")
    code = _edge_eval(["--bundle", str(copy), "--scenes", str(scenes), "--record", "--gate", "1.01", "--quiet"])
    assert code == 1
    manifest, _ = load_bundle(copy, verify_hashes=True)
    record = manifest.quality[QUALITY_KEY]
    assert record["scenes"] == 1 and 1 <= record["cycles"] <= 6  # 4 s: a cycle every 500 ms from 1.5 s
    assert f"agreement {next(iter(record['agreement'].values())):.1%} < 101.0%" in capsys.readouterr().err
