"""The reliability plot of advice confidence: in each confidence bin, how often the advice was right.

A calibrated model's points lie on the diagonal; the expected calibration error (ECE) is the
cycle-weighted mean distance from it (edge.llm.confidence.expected_calibration_error makes the bins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_reliability(figures: dict[str, Any], path: Path, title: str = "Advice confidence") -> Path:
    """`figures`: expected_calibration_error's result (ece, n, bins)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = figures.get("bins") or []
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="calibrated")
    if bins:
        xs = [b["confidence"] for b in bins]
        ax.plot(xs, [b["accuracy"] for b in bins], "o-", color="tab:blue", label="advice")
        hist.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["n"] for b in bins], width=0.09, color="tab:blue")
    ece = figures.get("ece")
    ax.set_title(f"{title}: ECE {ece:.3f} over {figures.get('n', 0)} cycles" if ece is not None
                 else f"{title}: no judged cycles", fontsize=10)
    ax.set_ylabel("share of advice that was right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("confidence")
    hist.set_ylabel("cycles")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
