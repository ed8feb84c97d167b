"""The runtime (`edge`) depends on nothing above it: no torch, transformers or onnx, and none of
the packages that build on it (export, train, calib, sim, fleet, the `edge` command line)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "transformers", "onnx", "onnxscript", "export", "train", "calib", "sim", "fleet", "edge_cli")

IMPORT_ALL_BLOCKED = """
import importlib, importlib.abc, pkgutil, sys
blocked = set(sys.argv[1:])
reached = []

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            reached.append((importing, name))
            raise ImportError(f"{name} is blocked for the runtime", name=name)
        return None

sys.meta_path.insert(0, Blocker())
import edge
importing = "edge"
failed = []
names = sorted(m.name for m in pkgutil.walk_packages(edge.__path__, "edge.", onerror=failed.append))
for importing in names:
    try:
        importlib.import_module(importing)
    except Exception as exc:
        failed.append(f"{importing}: {type(exc).__name__}: {exc}")
print(len(names))
for module, name in reached:
    print(f"{module} imports {name}")
for line in failed:
    print(f"failed: {line}")
sys.exit(1 if reached or failed else 0)
"""


def test_every_edge_module_imports_with_the_upper_packages_blocked():
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL_BLOCKED, *BLOCKED], capture_output=True, text=True,
                          cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert int(done.stdout.split()[0]) >= 80  # every module was walked, not just the package


def _imported_names(path: Path) -> list[tuple[int, str]]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module))
    return names


# Each of the project's packages and the ones it may import (docs/DESIGN.md, "Parts").
MAY_IMPORT = {
    "edge": set(),
    "calib": {"edge"},
    "sim": {"edge"},
    "export": {"edge"},
    "train": {"edge", "calib", "sim", "export"},
    "fleet": {"edge", "calib", "sim", "export", "train"},
}


def test_no_package_imports_one_above_it_even_lazily():
    """Imports inside functions do not run at import time; read them from the source instead."""
    wrong = [f"{path.relative_to(REPO)}:{line}: {name}"
             for package, allowed in MAY_IMPORT.items()
             for path in sorted((REPO / package).rglob("*.py"))
             for line, name in _imported_names(path)
             if name.split(".")[0] in (set(MAY_IMPORT) | {"edge_cli"}) - allowed - {package}]
    assert not wrong, "imports against the direction edge <- calib/sim/export <- train <- fleet:\n" + "\n".join(wrong)
    edge_wrong = [f"{path.relative_to(REPO)}:{line}: {name}"
                  for path in sorted((REPO / "edge").rglob("*.py"))
                  for line, name in _imported_names(path) if name.split(".")[0] in BLOCKED]
    assert not edge_wrong, "the runtime imports workstation packages:\n" + "\n".join(edge_wrong)


def test_the_blocker_catches_a_wrong_way_import(tmp_path):
    """The same check run over a package that does import one: it must fail."""
    bad = tmp_path / "edge_probe"
    bad.mkdir()
    (bad / "__init__.py").write_text("")
    (bad / "uses_sim.py").write_text("import sim.scenario\n")
    script = IMPORT_ALL_BLOCKED.replace("import edge\n", "import edge_probe as edge\n").replace('"edge."', '"edge_probe."')
    done = subprocess.run([sys.executable, "-c", script, *BLOCKED], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 1
    assert "edge_probe.uses_sim imports sim" in done.stdout
