import subprocess
import sys

import pytest

from edge.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_defaults_are_valid():
    config = load_config()
    assert config.camera.interval_ms == 500
    assert config.budgets.total_ms > config.budgets.encode_ms


def test_toml_and_overrides_merge(tmp_path):
    path = write(tmp_path, '[camera]\nsource = "video.mp4"\ninterval_ms = 250\n[budgets]\ntotal_ms = 900\n')
    config = load_config(path, ["budgets.total_ms=700", "bus.publish_endpoint=ipc:///tmp/x", "camera.loop_video=true"])
    assert config.camera.source == "video.mp4"
    assert config.camera.interval_ms == 250
    assert config.budgets.total_ms == 700
    assert config.bus.publish_endpoint == "ipc:///tmp/x"
    assert config.camera.loop_video is True


def test_bad_value_names_key_value_and_reason(tmp_path):
    path = write(tmp_path, "[budgets]\ntotal_ms = -5\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "budgets.total_ms" in text and "-5" in text and "greater than 0" in text


def test_unknown_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="camera.fps_typo"):
        load_config(write(tmp_path, "[camera]\nfps_typo = 3\n"))


def test_cross_field_rule_names_section():
    with pytest.raises(ConfigError, match="frames_per_clip=3 must be even"):
        load_config(None, ["camera.frames_per_clip=3"])


def test_curve_needs_keys():
    with pytest.raises(ConfigError, match="bus.curve"):
        load_config(None, ["bus.curve.enabled=true"])


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[camera\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["budgets.total_ms"])


def test_cli_fails_fast_with_nonzero_exit(tmp_path):
    path = write(tmp_path, "[camera]\ninterval_ms = 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "edge_cli", "config", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "camera.interval_ms" in proc.stderr and "0" in proc.stderr
    assert proc.stdout == ""
