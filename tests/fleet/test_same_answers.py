"""A fleet run gives `edge eval`'s answers: the same per-cycle advice on the same drives and bundle,
the same report shape, plus one row per drive."""

from __future__ import annotations

import json

from tests.fleet.conftest import SCENARIOS

COMBOS = ["int8+q4_k_m"]  # what ships; the reference (fp32+f16) is always run beside it


def test_fleet_eval_matches_edge_eval_cycle_by_cycle(default_bundle, drives_root, tmp_path):
    from fleet.driver import FleetOptions, run_fleet
    from train.eval import evaluate

    sequential = evaluate(default_bundle, drives_root, tmp_path / "eval.json", combos=COMBOS, progress=None)
    out = tmp_path / "fleet.json"
    fleet = run_fleet(default_bundle, [drives_root], out, FleetOptions(workers=2, threads=1, combos=COMBOS,
                                                                        progress=False))
    assert json.loads(out.read_text()) == fleet

    assert set(fleet["precisions"]) == set(sequential["precisions"]) == {"fp32+f16", "int8+q4_k_m"}
    for name, figures in sequential["precisions"].items():
        mine = fleet["precisions"][name]
        # Every cycle of every drive: newest-frame time, advised action, judged correct.
        assert mine["per_scene"] == figures["per_scene"], name
        for key in ("accuracy", "cycles", "correct", "no_advice", "lost", "per_scenario", "per_variant", "confusion"):
            assert mine[key] == figures[key], (name, key)
    assert fleet["agreement_detail"] == sequential["agreement_detail"]
    assert sorted(fleet["scenes"]) == sorted(sequential["scenes"]) == sorted(SCENARIOS)
    assert fleet["reference"] == sequential["reference"] and fleet["bundle_sha256"] == sequential["bundle_sha256"]

    assert [row["drive"] for row in fleet["drives"]] == sorted(SCENARIOS)
    for row in fleet["drives"]:
        assert row["status"] == "done" and row["attempts"] == 1
        assert row["cycles"] == 5
        assert row["accuracy"] == {name: figures["per_scene"][row["drive"]]["accuracy"]
                                   for name, figures in sequential["precisions"].items()}
    assert len({row["worker"] for row in fleet["drives"]}) == 2  # both workers took drives
    summary = fleet["fleet"]
    assert (summary["done"], summary["failed"], summary["not_run"]) == (4, 0, 0)
    assert summary["cycles"] == 4 * 5 * 2 and summary["cycles_per_second"] > 0
