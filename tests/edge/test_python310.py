"""The device image may run Python 3.10 (JetPack 6): no `edge` module may need 3.11's standard library."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edge

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(m.name for m in pkgutil.walk_packages(edge.__path__, "edge."))

IMPORT_WITHOUT_TOMLLIB = """
import importlib, sys
sys.modules["tomllib"] = None  # `import tomllib` now fails as on Python 3.10
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == "tomllib":
            failed.append(f"{name}: {exc}")
    except Exception:
        pass  # other missing packages are not this test's business
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_edge_module_imports_without_tomllib():
    assert "edge.config" in MODULES and "edge.loop" in MODULES
    done = subprocess.run([sys.executable, "-c", IMPORT_WITHOUT_TOMLLIB, *MODULES], capture_output=True,
                          text=True, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, f"modules that need tomllib:\n{done.stdout}{done.stderr[-2000:]}"


def test_the_config_parses_toml_without_tomllib(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text("[camera]\ninterval_ms = 250\n")
    code = ("import sys; sys.modules['tomllib'] = None\n"
            "from edge.config import load_config\n"
            f"print(load_config({str(config)!r}).camera.interval_ms)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "250"


COMPILE_ALL = """
import pathlib, sys
bad = []
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.py")):
    try:
        compile(path.read_text(), str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        bad.append(f"{path}:{exc.lineno}: {exc.msg}")
print("\\n".join(bad))
sys.exit(1 if bad else 0)
"""


def _python310() -> str | None:
    """A working Python 3.10 interpreter, if this machine has one (a pyenv shim may not run)."""
    candidates = [shutil.which("python3.10"), *sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))]
    for exe in filter(None, candidates):
        probe = subprocess.run([str(exe), "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True, timeout=30, check=False)
        if probe.stdout.strip() == "True":
            return str(exe)
    return None


def test_every_edge_module_compiles_under_python310():
    """Syntax the 3.10 interpreter rejects (except*, PEP 695 generics) shows up here."""
    exe = _python310()
    if exe is None:
        pytest.skip("no working python3.10 on this machine")
    done = subprocess.run([exe, "-c", COMPILE_ALL, str(REPO / "edge")], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
