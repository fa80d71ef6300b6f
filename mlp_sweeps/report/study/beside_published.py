"""The published numbers beside ours: each published cell with our runs of its
configuration, the published tables, the gradient-scaling variant and the time per run.
Functions of a :class:`~mlp_sweeps.report.study.document.Report` (its runs, the published
data, the timing pass)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlp_sweeps.report.study.protocol import CONFIG_KEYS, PROTOCOL, configuration
from mlp_sweeps.report.study.text import markdown, mean_sd

__all__ = ["table_keys", "published_rows", "published_tables", "same_step", "time_table"]


def table_keys(report) -> set:
    return {tuple(configuration({"activation": r.activation, "loss": r.loss,
                                 "depth": int(r.depth)})[k] for k in CONFIG_KEYS)
            for r in report.published.itertuples()}

def published_rows(report) -> pd.DataFrame:
    """One row per published cell with our runs of that configuration (all seeds)."""
    recs = []
    for p in report.published.to_dict("records"):
        key = tuple(configuration({"activation": p["activation"], "loss": p["loss"],
                                   "depth": p["depth"]})[k] for k in CONFIG_KEYS)
        mine = report.runs[report.runs["key"] == key]
        recs.append({**p, "runs": mine, "ours": mine["test_acc"].mean() if len(mine)
                     else math.nan, "epochs": int(mine["epochs"].min()) if len(mine) else 0})
    out = pd.DataFrame(recs)
    out["delta_pts"] = (out["ours"] - out["test_acc"]) * 100
    return out


def published_tables(report) -> str:
    pub = published_rows(report)
    out = []
    for (table, depth), part in pub.groupby(["table", "depth"], sort=False):
        rows = []
        for p in part.to_dict("records"):
            r = p["runs"]
            rows.append({
                "activation": p["activation"], "loss": p["loss"],
                "train loss (pub / ours)": f"{p['train_loss']:.4f} / {mean_sd(r['train_loss'])}",
                "test loss (pub / ours)": f"{p['test_loss']:.4f} / {mean_sd(r['test_loss'])}",
                "train acc (pub / ours)": f"{p['train_acc']:.4f} / {mean_sd(r['train_acc'])}",
                "test acc (pub / ours)": f"{p['test_acc']:.4f} / {mean_sd(r['test_acc'])}",
                "ours − pub (pts)": "—" if math.isnan(p["delta_pts"])
                else f"{p['delta_pts']:+.2f}",
                "runs": f"{len(r)} × {p['epochs']} epochs" if len(r) else "not run"})
        name = "activations" if table == "activation" else "losses"
        out.append(f"### Table: {name}, {depth} hidden layer{'s' if depth > 1 else ''}\n\n"
                   + markdown(pd.DataFrame(rows)))
    return "\n\n".join(out)

def same_step(report) -> str:
    rows = []
    r = report.runs
    for depth in (1, 2):
        for loss in ("mse", "cross_entropy", "hinge", "focal"):
            study = r[r["key"] == _key(loss=loss, depth=depth)]
            same = r[r["key"] == _key(loss=loss, depth=depth, reduction="sum")]
            rows.append({"depth": depth, "loss": loss,
                         "study's convention: test acc": mean_sd(study["test_acc"]),
                         "same step for all: test acc": mean_sd(same["test_acc"]),
                         "gradient of": "mean → sum (lr 1e-4)" if loss == "mse"
                         else "sum (lr 1e-4), unchanged"})
    return markdown(pd.DataFrame(rows))

def _key(loss: str, depth: int, reduction: str | None = None) -> tuple:
    o = {"loss": loss, "depth": depth}
    if reduction:
        o["loss.reduction"] = reduction
    c = configuration(o)
    return tuple(c[k] for k in CONFIG_KEYS)


def time_table(report) -> str:
    if report.timing is None:
        return "No timing pass (`python scripts/reproduce.py --timing`)."
    limit = report.timing["train_limit"].max() if "train_limit" in report.timing else math.nan
    if pd.notna(limit):
        return (f"The timing pass ran on the first {int(limit)} training examples: not "
                "comparable with the published times of whole runs.")
    rows = []
    for p in report.published.to_dict("records"):
        c = configuration({"activation": p["activation"], "loss": p["loss"],
                           "depth": p["depth"]})
        t = report.timing
        hit = t[np.logical_and.reduce([t[k].to_numpy() == c[k] for k in CONFIG_KEYS])]
        if hit.empty:
            continue
        h = hit.iloc[0]
        evals = PROTOCOL.epochs // PROTOCOL.test_every
        ours = h["epoch_s"] * PROTOCOL.epochs + h["eval_s"] * evals
        rows.append({"table": p["table"], "depth": p["depth"], "activation": p["activation"],
                     "loss": p["loss"], "published run (s)": f"{p['time_s']:.0f}",
                     "ours, s per epoch": f"{h['epoch_s']:.3f}",
                     f"ours, {PROTOCOL.epochs}-epoch run (s)": f"{ours:.0f}",
                     "published ÷ ours": f"{p['time_s'] / ours:.1f}×"})
    return markdown(pd.DataFrame(rows)) if rows else "The timing pass has none of these."
