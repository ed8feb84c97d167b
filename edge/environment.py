"""What this installation and process are: package versions and resident memory, as reports and
benchmarks record them."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Each distribution's installed version, None where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """The versions of those distributions that are installed."""
    return {name: version for name, version in package_versions(names).items() if version is not None}


def process_memory(status_path: str = "/proc/self/status") -> dict[str, int]:
    """This process's resident memory in bytes: VmRSS (now), VmHWM (peak), RssAnon (heap, copies)
    and RssFile (mapped files: a GGUF is mmapped, so its pages count here once touched)."""
    values = {}
    try:
        with open(status_path) as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (VmHWM), in bytes."""
    peak = process_memory().get("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
