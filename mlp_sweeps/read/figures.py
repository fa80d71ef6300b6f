"""Figures (matplotlib, files only): learning curves of one run, overlaid curves of a sweep,
final accuracy and time against a swept hyperparameter, and the focal-loss curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
# the same figure gives the same SVG file (element ids, no creation date): regenerated
# reports change only where the results do
matplotlib.rcParams["svg.hashsalt"] = "mlp-sweeps"
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mlp_sweeps.claim.ledger import RESULTS  # noqa: E402

# hyperparameters whose study grid is logarithmic
LOG_AXES = {"lr", "weight_decay", "batch_size", "hidden_size"}


def _save(fig, path: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for i, ext in enumerate(formats):
        p = path.with_suffix(f".{ext}")
        fig.savefig(p, dpi=110, metadata={"Date": None} if ext == "svg" else None)
        out.append(p)
        if i == 0:  # laid out once: the other formats reuse it (layout is most of a save)
            fig.set_layout_engine("none")
    plt.close(fig)
    return out


def plot_learning_curves(history: Sequence[dict[str, Any]], path: Path,
                         title: str | None = None) -> Path:
    """One run: loss and accuracy against epoch (train every epoch, test where evaluated)."""
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
    return _save(fig, path)[0]


def _label(row: pd.Series, factors: Sequence[str]) -> str:
    return ", ".join(f"{f}={row[f]:g}" if isinstance(row[f], float) else f"{f}={row[f]}"
                     for f in factors)


def plot_sweep_curves(runs: pd.DataFrame, histories: pd.DataFrame, factors: Sequence[str],
                      path: Path, title: str = "", formats=("png", "svg")) -> list[Path]:
    """Overlaid learning curves: train/test loss and accuracy against epoch, one line per
    configuration (labelled by the swept ``factors``); seeds averaged."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True, sharex=True)
    panels = [("train_loss", axes[0, 0]), ("test_loss", axes[0, 1]),
              ("train_acc", axes[1, 0]), ("test_acc", axes[1, 1])]
    groups = runs.groupby(list(factors), sort=True, dropna=False) if factors else [((), runs)]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (_, part) in enumerate(groups):
        label = _label(part.iloc[0], factors) if factors else "runs"
        if (part["status"] != "finished").all():
            label += f" ({part['status'].iloc[0]})"
        h = histories[histories["run_id"].isin(part["run_id"])]
        for key, ax in panels:
            s = h[h["key"] == key].groupby("epoch")["value"].mean()
            if len(s):
                ax.plot(s.index, s.values, color=colors[i % len(colors)], label=label,
                        marker="o" if key.startswith("test") else None, markersize=3)
    for key, ax in panels:
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
        if key.endswith("loss"):
            ax.set_yscale("log")
        else:
            lo = ax.get_ylim()[0]
            ax.set_ylim(max(lo, 0.8) if lo < 0.99 else lo, 1.0)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path, formats)


def plot_against(runs: pd.DataFrame, factor: str, values: Sequence[str], path: Path,
                 title: str = "", formats=("png", "svg")) -> list[Path]:
    """Final ``values`` (e.g. test_acc, time_s) against a swept hyperparameter, mean over
    seeds with min-max bars; log axis where the study's grid is logarithmic."""
    fig, axes = plt.subplots(1, len(values), figsize=(5.5 * len(values), 4),
                             constrained_layout=True, squeeze=False)
    ok = runs[runs["status"].isin(RESULTS)]
    for ax, v in zip(axes[0], values):
        g = ok.groupby(factor)[v].agg(["mean", "min", "max"]).sort_index()
        x = g.index.to_numpy(dtype=float)
        ax.errorbar(x, g["mean"], yerr=[g["mean"] - g["min"], g["max"] - g["mean"]],
                    marker="o", capsize=3)
        if factor in LOG_AXES or (x > 0).all() and x.max() / max(x.min(), 1e-300) > 50:
            ax.set_xscale("log")
        ax.set_xlabel(factor)
        ax.set_ylabel(v.replace("_", " "))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path, formats)


def plot_focal_loss(path: Path, gammas: Sequence[float] = (0, 0.5, 1, 2, 5), n_classes: int = 10,
                    formats=("png", "svg")) -> list[Path]:
    """Focal loss against the true-class probability p for several gamma, computed by the
    core's own focal loss (alpha = 1) on logits whose softmax gives p_t = p in a
    ``n_classes``-way task (the others share 1 - p)."""
    from mlp import losses

    p = np.linspace(0.01, 0.99, 197)
    # logits with softmax_t = p: z_t = log p, z_k = log((1 - p) / (K - 1))
    z = np.tile(np.log((1 - p) / (n_classes - 1))[:, None], (1, n_classes))
    z[:, 0] = np.log(p)
    labels = np.zeros(len(p), dtype=np.int64)
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    for g in gammas:
        loss = losses.get("focal", reduction="sum", gamma=float(g), alpha=1.0)
        per_sample = np.array([loss.forward(z[i:i + 1], labels[i:i + 1]) for i in range(len(p))])
        ax.plot(p, per_sample, label=f"γ = {g:g}" + (" (cross-entropy)" if g == 0 else ""))
    ax.set_xlabel("probability of the true class p")
    ax.set_ylabel("loss")
    ax.set_title(f"Focal loss -(1 - p)^γ log p ({n_classes} classes)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path, formats)


def plot_ladder(curves: Sequence[tuple[str, Sequence[tuple[int, float]], bool]],
                rung_epochs: Sequence[int], metric: str, path: Path,
                title: str | None = None) -> Path:
    """Successive halving's ladder: each configuration's ``metric`` curve ``(label, [(epoch,
    value)], reached the last rung)``, the stopped ones faded, the rungs as vertical lines
    (log epoch axis: the rungs evenly spaced), the last rung's configurations labelled."""
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for e in rung_epochs:
        ax.axvline(e, color="0.85", lw=0.8, zorder=0)
    for label, points, top in sorted(curves, key=lambda c: c[2]):
        if not points:
            continue
        ep, v = zip(*sorted(points))
        ax.plot(ep, v, color="C0" if top else "0.6", alpha=1.0 if top else 0.35,
                lw=1.8 if top else 0.9, marker="o" if top else ".", ms=3,
                label=label if top else None)
    ax.set_xscale("log")
    ax.set_xticks(list(rung_epochs))
    ax.set_xticklabels([str(e) for e in rung_epochs])
    ax.set_xlabel("epoch (rungs marked)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, axis="y")
    if any(c[2] for c in curves):
        ax.legend(fontsize=7, loc="lower right", title="to the last rung")
    ax.set_title(title or f"Successive halving: {metric} of each configuration "
                          f"(stopped ones faded)")
    return _save(fig, path)[0]
