"""How the reproduction report writes what it shows: means over seeds, Markdown tables, a
comparison table's plain labels, a finding's anchor, a dropout setting's name."""

from __future__ import annotations

import pandas as pd

from mlp_sweeps.read import tables

__all__ = ["mean_sd", "markdown", "plain", "anchor", "dropout_label"]


def mean_sd(values: pd.Series, digits: int = 4, scale: float = 1.0) -> str:
    """``mean ± sd`` over the seeds (the value alone for one, a dash for none)."""
    v = values.dropna() * scale
    if v.empty:
        return "—"
    if len(v) > 1:
        return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
    return f"{v.iloc[0]:.{digits}f}"


def markdown(df: pd.DataFrame) -> str:
    return tables.render(df, "markdown")


def plain(table: pd.DataFrame) -> pd.DataFrame:
    """A comparison table for readers: plain column names, no status column when every
    row finished, the run's wall time named as such."""
    out = table.copy()
    if "status" in out and (out["status"] == "finished").all():
        out = out.drop(columns="status")
    return out.rename(columns=lambda c: {"time (s)": "run time (s)"}.get(c, c.replace("_", " ")))


def anchor(f) -> str:
    """The Markdown heading anchor of a finding's section."""
    return f"{f.number}-{f.topic.lower().replace(' ', '-')}"


def dropout_label(row) -> str:
    if not row["dropout"]:
        return "no dropout"
    kind = "the study's fixed mask" if row.get("dropout_mask") == "fixed" else "inverted"
    return f"keep {1 - row['dropout']:g}, {kind}"
