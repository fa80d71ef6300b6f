"""Comparison tables from a runs DataFrame (:func:`mlp_sweeps.read.results.load_runs`).

Rows are grouped by the factors that vary in the selection (or the ones named); seeds of
one configuration are aggregated as mean +- std with their count; diverged, failed and
killed runs stay in the table with their status.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mlp_sweeps.claim.ledger import HALTED, RESULTS
from mlp_sweeps.read.results import CONFIG_COLUMNS

VALUES = ["train_loss", "test_loss", "train_acc", "test_acc", "time_s"]
HEADERS = {"train_loss": "train loss", "test_loss": "test loss", "train_acc": "train acc",
           "test_acc": "test acc", "time_s": "time (s)", "epochs_done": "epochs",
           "n": "seeds", "status": "status"}
FORMATS = ("markdown", "csv", "latex", "html")
_DIGITS = {"train_loss": 4, "test_loss": 4, "train_acc": 4, "test_acc": 4, "time_s": 1}


def varying_factors(df: pd.DataFrame, exclude: Sequence[str] = ("seed",)) -> list[str]:
    """Config columns with more than one distinct value in ``df`` (seed excluded)."""
    out = []
    for c in CONFIG_COLUMNS:
        if c in exclude or c not in df:
            continue
        if df[c].astype(str).nunique(dropna=False) > 1:
            out.append(c)
    return out


def summarize(df: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per configuration: mean and std of each value over seeds (numbers), the
    number of seeds, the epochs run and the statuses (e.g. ``finished`` or
    ``finished 2, diverged 1``)."""
    by = list(by) if by is not None else varying_factors(df)
    if df.empty:
        return pd.DataFrame(columns=[*by, "n", *VALUES, *(f"{v}_std" for v in VALUES),
                                     "epochs", "status"])  # the columns of a non-empty one
    keys = by or ["_all"]
    d = df.assign(_all="all") if not by else df
    # results, and successive halving's runs stopped at a rung (their values there; the
    # epochs column says how far they went)
    ok = d["status"].isin((*RESULTS, *HALTED))
    g_all = d.groupby(keys, dropna=False, sort=False)
    g_ok = d[ok].groupby(keys, dropna=False, sort=False)
    mean = g_ok[VALUES].mean()
    std = g_ok[VALUES].std(ddof=1)
    out = mean.join(std.add_suffix("_std"))
    out = g_all.size().rename("n").to_frame().join(out)
    out["epochs"] = g_all["epochs_done"].max()
    out["status"] = g_all["status"].agg(_status_text)
    out = out.reset_index()
    if not by:
        out = out.drop(columns="_all")
    return out


def _status_text(s: pd.Series) -> str:
    counts = s.value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def ordered(summary: pd.DataFrame, by: Sequence[str], rank_by: str | None = None) -> pd.DataFrame:
    """A summary's rows in the comparison order: the factors' (``by``), or with ``rank_by``
    (a value, e.g. ``test_acc``: a sweep's closing table) best first (highest accuracy,
    lowest loss or time), rows without that value last."""
    if rank_by is None:
        return summary.sort_values(list(by), kind="stable") if by else summary
    if rank_by not in VALUES:
        raise ValueError(f"cannot rank by {rank_by!r}; valid: {', '.join(VALUES)}")
    best_low = not rank_by.endswith("_acc")
    return summary.sort_values(rank_by, ascending=best_low, na_position="last",
                               kind="stable").reset_index(drop=True)


def display(summary: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Human-readable cells: ``0.9812 ± 0.0011`` when there are several seeds, a dash for
    missing values, headers as in the study."""
    out = summary[list(by)].copy()
    several = summary["n"] > 1
    for v in VALUES:
        digits = _DIGITS[v]
        cells = []
        for m, s, multi in zip(summary[v], summary.get(f"{v}_std", np.nan), several):
            if pd.isna(m):
                cells.append("—")
            elif multi and not pd.isna(s):
                cells.append(f"{m:.{digits}f} ± {s:.{digits}f}")
            else:
                cells.append(f"{m:.{digits}f}")
        out[HEADERS[v]] = cells
    out["epochs"] = summary["epochs"].map(lambda e: "—" if pd.isna(e) else str(int(e)))
    if several.any():
        out["seeds"] = summary["n"].astype(int)
    out["status"] = summary["status"]
    return out


def pivot(df: pd.DataFrame, rows: str, cols: str, value: str = "test_acc",
          by: Sequence[str] = ()) -> dict[tuple, pd.DataFrame]:
    """``rows`` x ``cols`` tables of the mean ``value`` over seeds, one per combination of
    ``by`` (e.g. activation x loss for each depth). Non-finished runs show their status."""
    tables = {}
    groups = df.groupby(list(by), dropna=False, sort=True) if by else [((), df)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        s = summarize(part, [rows, cols])
        s["cell"] = [f"{m:.4f}" if not pd.isna(m) else st
                     for m, st in zip(s[value], s["status"])]
        t = s.pivot(index=rows, columns=cols, values="cell")
        t.index.name, t.columns.name = rows, cols
        tables[key] = t.fillna("")
    return tables


def render(table: pd.DataFrame, fmt: str, index: bool = False) -> str:
    """Text of ``table`` as Markdown, CSV, LaTeX or HTML."""
    if fmt == "markdown":
        return table.to_markdown(index=index, disable_numparse=True)
    if fmt == "csv":
        return table.to_csv(index=index)
    if fmt == "latex":
        return table.to_latex(index=index, escape=True)
    if fmt == "html":
        return table.to_html(index=index, border=0, na_rep="—")
    raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")


def comparison(df: pd.DataFrame, by: Sequence[str] | None = None,
               rank_by: str | None = None) -> pd.DataFrame:
    """The study-style table of a selection: grouped by ``by`` (default: the factors that
    vary), mean +- std over seeds, displayed. Rows in the factors' order; with ``rank_by`` (a
    value, e.g. ``test_acc``: a sweep's closing table, ``mlp-export --rank-by``) best first,
    rows without a value last (:func:`ordered`)."""
    by = list(by) if by is not None else varying_factors(df)
    return display(ordered(summarize(df, by), by, rank_by), by)
