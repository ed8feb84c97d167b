"""`edge scene` through its argparse registration (sim.cli.register, as the edge command wires it)."""

from __future__ import annotations

import argparse

from sim.cli import register
from sim.labels import load_labels
from sim.scenario import builtin_names


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edge")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_list_names_every_builtin(capsys):
    assert run(["scene", "--list"]) == 0
    out = capsys.readouterr().out
    for name in builtin_names():
        assert name in out


def test_render_one_scene(tmp_path, capsys):
    out = tmp_path / "s"
    code = run(["scene", "--scenario", "yield_cross_traffic", "--seed", "3", "--out", str(out), "--duration", "3",
                "--width", "160", "--height", "90", "--fps", "4"])
    assert code == 0
    for name in ("video.mp4", "labels.jsonl", "nav.jsonl", "scenario.toml", "scene.json"):
        assert (out / name).is_file()
    assert load_labels(out / "labels.jsonl")[-1].end_ms == 3000
    assert "12 frames" in capsys.readouterr().out


def test_many_scenes_go_to_sub_folders(tmp_path):
    code = run(["scene", "--scenario", "lead_brake", "--seeds", "0:2", "--variant", "all", "--out", str(tmp_path),
                "--duration", "1", "--width", "96", "--height", "54", "--fps", "2", "--quiet"])
    assert code == 0
    videos = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("video.mp4"))
    assert len(videos) == 8
    assert "lead_brake/night/seed1/video.mp4" in videos


def test_bad_scenario_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('duration_s = 5\n[[events]]\nkind = "tornado"\nat_s = 1\n')
    assert run(["scene", "--scenario", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown event kind 'tornado'" in err and "bad.toml" in err
    assert run(["scene", "--out", str(tmp_path / "o")]) == 2
