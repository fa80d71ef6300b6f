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


def _label(row: pd.Series, factors: Sequence[str], labels: Any = None) -> str:
    """A configuration's legend entry: ``labels(row)`` if given, else its factors' values."""
    if labels is not None:
        return labels(row)
    return ", ".join(f"{f.replace('_', ' ')} {row[f]:g}" if isinstance(row[f], float)
                     else f"{f.replace('_', ' ')} {row[f]}" for f in factors)


ACC_FLOOR = 0.8  # accuracy panels start here unless every curve is above it


def plot_sweep_curves(runs: pd.DataFrame, histories: pd.DataFrame, factors: Sequence[str],
                      path: Path, title: str = "", formats=("png", "svg"), labels: Any = None
                      ) -> list[Path]:
    """Overlaid learning curves: train/test loss and accuracy against epoch, one line per
    configuration (labelled by the swept ``factors``, or ``labels(row)``): the mean over its
    seeds, with the band from the lowest to the highest seed. A configuration whose curve
    stays below an accuracy panel's axis is named in that panel."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True, sharex=True)
    panels = [("train_loss", axes[0, 0]), ("test_loss", axes[0, 1]),
              ("train_acc", axes[1, 0]), ("test_acc", axes[1, 1])]
    groups = runs.groupby(list(factors), sort=True, dropna=False) if factors else [((), runs)]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn: dict[str, list[tuple[str, float]]] = {k: [] for k, _ in panels}
    for i, (_, part) in enumerate(groups):
        label = _label(part.iloc[0], factors, labels) if factors else "runs"
        if (part["status"] != "finished").all():
            label += f" ({part['status'].iloc[0]})"
        h = histories[histories["run_id"].isin(part["run_id"])]
        color = colors[i % len(colors)]
        for key, ax in panels:
            g = h[h["key"] == key].groupby("epoch")["value"].agg(["mean", "min", "max"])
            if len(g):
                ax.plot(g.index, g["mean"], color=color, label=label,
                        marker="o" if key.startswith("test") else None, markersize=3)
                if part["run_id"].nunique() > 1:
                    ax.fill_between(g.index, g["min"], g["max"], color=color, alpha=0.2,
                                    linewidth=0)
                drawn[key].append((label, float(g["max"].max())))
    for key, ax in panels:
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
        if key.endswith("loss"):
            ax.set_yscale("log")
        else:
            lo = ax.get_ylim()[0]
            floor = max(lo, ACC_FLOOR) if lo < 0.99 else lo
            ax.set_ylim(floor, 1.0)
            below = [lab for lab, top in drawn[key] if top < floor]
            if below:
                ax.text(0.98, 0.04, f"below {floor:.2f} throughout: " + "; ".join(below),
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                        bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path, formats)


def plot_step_curves(runs: pd.DataFrame, steps: pd.DataFrame, factor: str, path: Path,
                     key: str = "batch_train_loss", title: str = "", formats=("png", "svg")
                     ) -> list[Path]:
    """The training curves as the study drew them: a batch metric every ``log_every_steps``
    iterations against the iteration, one panel per level of ``factor`` (one run each: the
    lowest seed), on a shared log-scaled value axis."""
    levels = sorted(runs[factor].unique())
    fig, axes = plt.subplots(1, len(levels), figsize=(3.2 * len(levels), 3.4),
                             constrained_layout=True, sharey=True, squeeze=False)
    for ax, v in zip(axes[0], levels):
        part = runs[runs[factor] == v].sort_values("seed")
        rid = part["run_id"].iloc[0]
        s = steps[(steps["run_id"] == rid) & (steps["key"] == key)].sort_values("iteration")
        ax.plot(s["iteration"], s["value"], linewidth=0.4)
        ax.set_title(f"{factor.replace('_', ' ')} {v:g} (seed {int(part['seed'].iloc[0])})")
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(key.replace("_", " "))
    fig.suptitle(title)
    return _save(fig, path, formats)


def plot_against(runs: pd.DataFrame, factor: str, values: Sequence[str], path: Path,
                 title: str = "", formats=("png", "svg"), min_span: float = 0.01) -> list[Path]:
    """Final ``values`` (e.g. test_acc, time_s) against a swept hyperparameter, mean over
    seeds with min-max bars at every point (the seeds run are in the axis label); log axis
    where the study's grid is logarithmic. An accuracy axis spans at least ``min_span``
    (1 point), so that seed noise is not drawn as structure; a point off the axis is named."""
    fig, axes = plt.subplots(1, len(values), figsize=(5.5 * len(values), 4),
                             constrained_layout=True, squeeze=False)
    ok = runs[runs["status"].isin(RESULTS)]
    for ax, v in zip(axes[0], values):
        g = ok.groupby(factor)[v].agg(["mean", "min", "max", "count"]).sort_index()
        x = g.index.to_numpy(dtype=float)
        ax.errorbar(x, g["mean"], yerr=[g["mean"] - g["min"], g["max"] - g["mean"]],
                    marker="o", capsize=3)
        if factor in LOG_AXES or (x > 0).all() and x.max() / max(x.min(), 1e-300) > 50:
            ax.set_xscale("log")
        if v.endswith("_acc"):
            lo, hi = ax.get_ylim()
            if hi - lo < min_span:
                mid = (hi + lo) / 2
                ax.set_ylim(mid - min_span / 2, mid + min_span / 2)
        n = sorted(set(g["count"].astype(int)))
        seeds = f"{n[0]} seeds" if len(n) == 1 else f"{n[0]}-{n[-1]} seeds"
        ax.set_xlabel(factor.replace("_", " "))
        ax.set_ylabel(f"{v.replace('_', ' ')} (mean, min-max over {seeds})")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path, formats)


def plot_depth_pairs(runs: pd.DataFrame, path: Path, value: str = "test_acc", title: str = "",
                     formats=("png", "svg")) -> list[Path]:
    """1 against 2 hidden layers: ``value`` of each activation x loss configuration run at
    both depths, side by side (mean over seeds, min-max bars), one panel per loss."""
    ok = runs[runs["status"].isin(RESULTS)]
    g = ok.groupby(["loss", "activation", "depth"])[value].agg(["mean", "min", "max"])
    losses = sorted({k[0] for k in g.index})
    widths = [len({a for a, _ in g.loc[loss].index}) + 1 for loss in losses]
    fig, axes = plt.subplots(1, len(losses), figsize=(0.9 * sum(widths) + 1, 3.6),
                             constrained_layout=True, squeeze=False, sharey=True,
                             gridspec_kw={"width_ratios": widths})
    for ax, loss in zip(axes[0], losses):
        part = g.loc[loss]
        acts = sorted({a for a, _ in part.index})
        for j, depth in enumerate((1, 2)):
            rows = [part.loc[(a, depth)] if (a, depth) in part.index else None for a in acts]
            x = np.arange(len(acts)) + (j - 0.5) * 0.38
            m = [r["mean"] if r is not None else np.nan for r in rows]
            err = [[r["mean"] - r["min"] if r is not None else 0 for r in rows],
                   [r["max"] - r["mean"] if r is not None else 0 for r in rows]]
            ax.bar(x, m, width=0.38, yerr=err, capsize=2,
                   label=f"{depth} hidden layer{'s' if depth > 1 else ''}")
        ax.set_xticks(np.arange(len(acts)), acts, rotation=30)
        ax.set_title(loss.replace("_", " "))
        ax.grid(alpha=0.3, axis="y")
    lo = float(g["min"].min())
    axes[0, 0].set_ylim(max(0.0, lo - 0.02), 1.0)
    axes[0, 0].set_ylabel(f"{value.replace('_', ' ')} (mean, min-max over seeds)")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    return _save(fig, path, formats)


def plot_time_against(timing: pd.DataFrame, factor: str, path: Path, title: str = "",
                      formats=("png", "svg")) -> list[Path]:
    """Seconds per epoch against ``factor`` from a timing pass: the median epoch with bars
    from its fastest to its slowest epoch."""
    t = timing.sort_values(factor)
    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    x = t[factor].to_numpy(dtype=float)
    ax.errorbar(x, t["epoch_s"], yerr=[t["epoch_s"] - t["epoch_s_min"],
                                       t["epoch_s_max"] - t["epoch_s"]], marker="o", capsize=3)
    if factor in LOG_AXES:
        ax.set_xscale("log")
    ax.set_xlabel(factor.replace("_", " "))
    ax.set_ylabel("s per epoch (median; fastest-slowest epoch)")
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
