"""The built-in trained model's bundle, used when a command is given none.

Building it needs the training packages, which the runtime never imports: the `edge` command line
(`edge_cli`) installs the builder; without one (a device image), a bundle must be named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge.manifest import BundleError

_builder: Callable[[], Path] | None = None


def set_builder(builder: Callable[[], Path] | None) -> None:
    global _builder
    _builder = builder


def builtin_bundle() -> Path:
    """The built-in bundle's folder (built on first use, then cached)."""
    if _builder is None:
        raise BundleError("no bundle given (--bundle or `bundle` in the config), and this installation "
                          "cannot build the built-in one (install the [export] extra, or copy a bundle over)")
    return _builder()
