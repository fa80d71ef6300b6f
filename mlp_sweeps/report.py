"""Figures (and, later, tables) from training histories and tracked runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curves(history: Sequence[dict[str, Any]], path: Path,
                         title: str | None = None) -> Path:
    """Loss and accuracy against epoch (train every epoch, test where evaluated)."""
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ep = [r["epoch"] for r in history]
    tested = [r for r in history if "test_acc" in r]
    for ax, key, label in ((ax_l, "loss", "loss"), (ax_a, "acc", "accuracy")):
        ax.plot(ep, [r[f"train_{key}"] for r in history], label="train")
        if tested:
            ax.plot([r["epoch"] for r in tested], [r[f"test_{key}"] for r in tested],
                    marker="o", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_l.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
