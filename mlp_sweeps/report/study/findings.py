"""The study's findings as a table: each a claim, the grids whose runs it rests on, its
thresholds and a pure judge from runs to a verdict with its evidence.

A judge gets DataFrames and returns the parts of its claim, each held, not held or not
measured (``None``, with why), and one line of evidence per part:

- ``runs``: one row per run (columns of :func:`mlp_sweeps.read.results.load_runs`), already
  restricted to the finding's grids and to runs that completed (finished or diverged);
- ``curves``: per-epoch metrics of those runs, long format (run_id, key, epoch, value);
- ``timing``: the controlled timing pass (:mod:`mlp_sweeps.report.study.timing`): one row per
  configuration timed alone on one core, ``epoch_s`` its median epoch, ``other_cpu`` the
  cores other processes used meanwhile.

:func:`evaluate` applies what every finding shares: no runs is *not measured*; runs shorter
than the study's give *not measured* (what they show is still printed, marked with their
length); timings taken under load are not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mlp_sweeps.claim.ledger import RESULTS
from mlp_sweeps.report.study.protocol import (CONFIG_KEYS, PROTOCOL, Protocol, config_key, configurations,
                    read_published)

TOL = PROTOCOL.tolerance_pts  # accuracy points: "reproduced", "about the same", "no clear gain"
LOAD_LIMIT = 0.25  # cores used by other processes during a timing above which it is not used


class Verdict(str, Enum):
    HOLDS = "holds"
    PARTLY = "partly"
    DOES_NOT_HOLD = "does not hold"
    NOT_MEASURED = "not measured"


@dataclass
class Part:
    """One part of a claim: held (True/False) or not measured (None), with its evidence."""

    claim: str
    held: bool | None
    evidence: str

    def text(self) -> str:
        mark = {True: "yes", False: "no", None: "not measured"}[self.held]
        return f"{self.claim}: {mark} ({self.evidence})"


@dataclass
class Judgement:
    verdict: Verdict
    parts: list[Part]
    why: str = ""  # for NOT_MEASURED: what is missing
    runs: str = ""  # what the verdict rests on, e.g. "5 runs, 100 epochs, seed 0"

    def evidence(self) -> str:
        return "; ".join(p.text() for p in self.parts) or "—"


def combine(parts: Sequence[Part]) -> Verdict:
    """holds: every part measured and held; not measured: no part could be measured; does
    not hold: no measured part held; partly: the rest (some held, others did not or could
    not be measured)."""
    measured = [p.held for p in parts if p.held is not None]
    if not measured:
        return Verdict.NOT_MEASURED
    if all(measured) and len(measured) == len(parts):
        return Verdict.HOLDS
    return Verdict.PARTLY if any(measured) else Verdict.DOES_NOT_HOLD


# helpers for judges ---------------------------------------------------------------------------
def pts(x: float) -> str:
    return f"{100 * x:.2f}%"


def mean_by(runs: pd.DataFrame, factor: str, value: str = "test_acc") -> pd.Series:
    """``value`` averaged over seeds, per level of ``factor``, sorted by the level."""
    return runs.groupby(factor)[value].mean().sort_index()


def curve(curves: pd.DataFrame, run_ids: Sequence[str], key: str) -> pd.Series:
    """Mean over ``run_ids`` of metric ``key`` per epoch."""
    c = curves[curves["run_id"].isin(list(run_ids)) & (curves["key"] == key)]
    return c.groupby("epoch")["value"].mean().sort_index()


def epochs_to(curves: pd.DataFrame, runs: pd.DataFrame, factor: str, level: float,
              key: str = "train_acc") -> pd.Series:
    """Per level of ``factor``: the first epoch at which ``key`` reached ``level`` (inf:
    never)."""
    out = {}
    for v, part in runs.groupby(factor):
        c = curve(curves, part["run_id"], key)
        hit = c[c >= level]
        out[v] = float(hit.index[0]) if len(hit) else math.inf
    return pd.Series(out, dtype=float).sort_index()


def rank_corr(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties averaged); NaN with fewer than 3 points."""
    x, y = pd.Series(list(x), dtype=float), pd.Series(list(y), dtype=float)
    if len(x) < 3:
        return math.nan
    return float(x.rank().corr(y.rank()))


def listing(s: pd.Series, fmt: Callable[[float], str] = pts) -> str:
    return ", ".join(f"{k:g}: {fmt(v)}" if isinstance(k, float) else f"{k}: {fmt(v)}"
                     for k, v in s.items())


def epochs_text(e: float) -> str:
    return "never" if math.isinf(e) else f"{e:.0f}"


def overfit_gap(runs: pd.DataFrame) -> pd.Series:
    """|train accuracy - test accuracy| of each run: the overfitting gap."""
    return (runs["train_acc"] - runs["test_acc"]).abs()


def timed(timing: pd.DataFrame, **where) -> pd.DataFrame:
    """Rows of the timing pass matching ``where`` (column -> value)."""
    if timing is None or timing.empty:
        return pd.DataFrame(columns=["epoch_s", "other_cpu"])
    keep = np.ones(len(timing), bool)
    for k, v in where.items():
        keep &= timing[k].to_numpy() == v
    return timing[keep]


def _epoch_noise(rows: pd.DataFrame) -> str:
    """How much one configuration's epochs varied in the timing pass (its slowest epoch over
    its fastest, the largest over ``rows``): differences below it are noise."""
    if not {"epoch_s_min", "epoch_s_max"} <= set(rows.columns) or rows.empty:
        return ""
    noise = float((rows["epoch_s_max"] / rows["epoch_s_min"]).max())
    return f" (one configuration's epochs varied by up to {noise:.3f}x)"


def timing_problem(rows: pd.DataFrame, needed: int) -> str | None:
    """Why these timing rows cannot be used (None if they can)."""
    if len(rows) < needed:
        return (f"the timing pass has {len(rows)} of the {needed} configurations "
                f"(`python scripts/reproduce.py --timing`)")
    load = float(rows["other_cpu"].max())
    if not math.isfinite(load):
        return "the timing pass could not measure the machine's load"
    if load > LOAD_LIMIT:
        return f"timings taken under load (other processes used {load:.2f} cores)"
    return None


# the judges -------------------------------------------------------------------------------------
def judge_activations(runs, curves, timing, level=0.97):
    acc = mean_by(runs, "activation")
    reach = epochs_to(curves, runs, "activation", level)
    parts = [
        Part(f"all > {level:.0%}", bool((acc > level).all()), listing(acc)),
        Part("sigmoid ends lowest", acc.idxmin() == "sigmoid", f"lowest: {acc.idxmin()}"),
        Part("sigmoid converges slowest", reach.idxmax() == "sigmoid" and
             reach["sigmoid"] > reach.drop("sigmoid").max() if "sigmoid" in reach else False,
             f"epochs to {level:.0%} train accuracy: {listing(reach, epochs_text)}"),
    ]
    t = timed(timing, depth=1, loss="cross_entropy", hidden_size=784, batch_size=100)
    t = t[t["activation"].isin(acc.index)]
    why = timing_problem(t, len(acc))
    if why:
        parts += [Part("GELU slowest per epoch", None, why), Part("ReLU fastest per epoch", None, why)]
    else:
        per = t.groupby("activation")["epoch_s"].median().sort_values()
        text = "s per epoch alone: " + listing(per, lambda s: f"{s:.3f}") + \
            f"; slowest / fastest {per.max() / per.min():.3f}" + _epoch_noise(t)
        parts += [Part("GELU slowest per epoch", per.idxmax() == "gelu", text),
                  Part("ReLU fastest per epoch", per.idxmin() == "relu", text)]
    return parts


def judge_losses(runs, curves, timing, level=0.98, clearly=1.0,
                 published=(("mse", "relu", 0.944), ("mse", "swish", 0.891),
                            ("mse", "selu", 0.918))):
    one = runs[runs["activation"] == "relu"]
    acc = mean_by(one, "loss")
    others = acc.drop("mse", errors="ignore")
    parts = [Part(f"hinge > {level:.0%}", bool(acc.get("hinge", 0) > level),
                  pts(acc.get("hinge", math.nan))),
             Part(f"cross-entropy > {level:.0%}", bool(acc.get("cross_entropy", 0) > level),
                  pts(acc.get("cross_entropy", math.nan)))]
    if "mse" in acc and len(others):
        parts.append(Part("MSE clearly worse", bool(acc["mse"] < others.min() - clearly / 100),
                          f"MSE {pts(acc['mse'])} against the others' lowest "
                          f"{pts(others.min())}; clearly: {clearly:g}+ points below"))
    table = read_published()
    for loss, act, pub in published:
        r = runs[(runs["loss"] == loss) & (runs["activation"] == act)]
        claim = f"{loss.upper()} + {act} {pub:.1%}"
        if r.empty:
            parts.append(Part(claim, None, f"{loss} + {act} not run"))
            continue
        # the published table's own number where it has the cell (the claim's is rounded)
        cell = table[(table["loss"] == loss) & (table["activation"] == act)
                     & (table["depth"] == 1)]["test_acc"]
        exact = float(cell.iloc[0]) if len(cell) else pub
        ours = r["test_acc"].mean()
        parts.append(Part(claim, bool(round(abs(ours - exact) * 100, 9) <= TOL),
                          f"ours {pts(ours)} against {pts(exact)}"
                          f"{' (the published table)' if len(cell) else ''}; reproduced: "
                          f"within ±{TOL:g} points"))
    return parts


def judge_depth(runs, curves, timing, ratio_range=(1.5, 2.5)):
    piv = runs.pivot_table(index=["activation", "loss"], columns="depth", values="test_acc",
                           aggfunc="mean")
    parts = []
    if {1, 2} <= set(piv.columns) and len(piv.dropna()):
        gain = (piv[2] - piv[1]).dropna() * 100
        worst = gain.idxmin()
        parts.append(Part("no clear accuracy gain", bool(gain.median() < TOL),
                          f"gain of a second layer over {len(gain)} configurations: median "
                          f"{gain.median():+.2f} points (range {gain.min():+.2f} for "
                          f"{'+'.join(worst)} to {gain.max():+.2f})"))
    else:
        parts.append(Part("no clear accuracy gain", None, "no configuration ran at both depths"))
    t = timed(timing, hidden_size=784, batch_size=100)
    t = t[(t["loss"] == "cross_entropy") | (t["activation"] == "relu")]
    tp = t.pivot_table(index=["activation", "loss"], columns="depth", values="epoch_s",
                       aggfunc="median")
    why = timing_problem(t, 2) or (None if {1, 2} <= set(tp.columns) else
                                   "the timing pass has no configuration at both depths")
    if why:
        parts.append(Part("about doubles training time", None, why))
    else:
        ratio = (tp[2] / tp[1]).dropna()
        lo, hi = ratio_range
        parts.append(Part("about doubles training time",
                          bool(lo <= ratio.median() <= hi),
                          f"time per epoch, 2 layers / 1 layer: median {ratio.median():.2f}x "
                          f"over {len(ratio)} configurations (range {ratio.min():.2f}-"
                          f"{ratio.max():.2f}); about double: {lo:g}-{hi:g}x. Per step a second "
                          "784x784 layer adds three matrix products (forward, weight gradient, "
                          "input gradient) to the first layer's two"))
    return parts


def judge_lr(runs, curves, timing, band=(5e-5, 1e-3), level=0.97, same=0.5):
    acc = mean_by(runs, "lr")
    reach = epochs_to(curves, runs, "lr", level)
    in_band = acc[(acc.index >= band[0]) & (acc.index <= band[1])]
    small = sorted(r for r in acc.index if r <= 1e-4)  # the baseline and below
    slow = reach[small]
    parts = [
        Part("small rates converge slowly", bool(len(slow) > 1 and slow.is_monotonic_decreasing
                                                 and slow.iloc[0] > slow.iloc[-1]),
             f"epochs to {level:.0%} train accuracy: {listing(slow, epochs_text)}"),
        Part("the smallest rate ends lower", bool(len(in_band) and
                                                  acc.iloc[0] < in_band.min() - TOL / 100),
             f"lr {acc.index[0]:g}: {pts(acc.iloc[0])}; lowest in the band {pts(in_band.min())}"
             if len(in_band) else "no rate in the band"),
        Part(f"about the same within [{band[0]:g}, {band[1]:g}]",
             bool(len(in_band) > 1 and (in_band.max() - in_band.min()) * 100 <= same),
             f"{listing(in_band)}: spread {100 * (in_band.max() - in_band.min()):.2f} points "
             f"(about the same: <= {same:g})"),
    ]
    top = acc.index.max()
    r = runs[runs["lr"] == top]
    c = curve(curves, r["run_id"], "train_loss")
    if r.empty or c.empty:
        parts.append(Part(f"at {top:g} the loss does not go down", None, "no curve"))
    else:
        diverged = (r["status"] == "diverged").any()
        stuck = diverged or not math.isfinite(c.iloc[-1]) or c.iloc[-1] >= 0.9 * c.iloc[0]
        parts.append(Part(f"at {top:g} the loss does not go down", bool(stuck),
                          "diverged (non-finite loss)" if diverged else
                          f"train loss {c.iloc[0]:.3g} -> {c.iloc[-1]:.3g}"))
    return parts


def judge_momentum(runs, curves, timing, level=0.97, strong=0.7):
    acc = mean_by(runs, "momentum")
    reach = epochs_to(curves, runs, "momentum", level)
    rc = rank_corr(reach.index, reach.values)
    ra = rank_corr(acc.index, acc.values)
    return [
        Part("higher momentum converges faster", bool(rc <= -strong),
             f"epochs to {level:.0%} train accuracy: {listing(reach, epochs_text)}; rank "
             f"correlation with momentum {rc:+.2f} (faster: <= {-strong:g})"),
        Part("and ends slightly higher", bool(ra >= 0.5),
             f"{listing(acc)}; rank correlation {ra:+.2f} (higher: >= 0.5)"),
    ]


def judge_weight_decay(runs, curves, timing, large=0.1, clearly=1.0, same=0.5):
    acc = mean_by(runs, "weight_decay")
    small = acc[acc.index < large]
    gap = overfit_gap(runs).groupby(runs["weight_decay"]).mean().sort_index()
    gap_small = gap[gap.index < large]
    rg = rank_corr(gap_small.index, gap_small.values)
    parts = []
    if large in acc and len(small):
        parts.append(Part(f"{large:g} clearly lowers accuracy",
                          bool(acc[large] < small.max() - clearly / 100),
                          f"{pts(acc[large])} against the best smaller value's "
                          f"{pts(small.max())} (clearly: {clearly:g}+ points)"))
    else:
        parts.append(Part(f"{large:g} clearly lowers accuracy", None, f"{large:g} not run"))
    parts += [
        Part("smaller values all fine", bool(len(small) > 1 and
                                             (small.max() - small.min()) * 100 <= same),
             f"{listing(small)}: spread {100 * (small.max() - small.min()):.2f} points "
             f"(fine: <= {same:g})"),
        Part("slight overfitting as decay grows", bool(rg >= 0.5),
             f"overfitting gap |train - test accuracy| in points: "
             f"{listing(gap_small, lambda v: f'{100 * v:.2f}')}; rank correlation with decay "
             f"{rg:+.2f} (grows: >= 0.5)"),
    ]
    return parts


def judge_batch_size(runs, curves, timing, level=0.97, min_evals=4, visibly=1.5):
    acc = mean_by(runs, "batch_size")
    jitter, n_evals = {}, {}
    for b, part in runs.groupby("batch_size"):
        c = curve(curves, part["run_id"], "test_acc")
        late = c.iloc[len(c) // 2:]
        n_evals[b] = len(late)
        jitter[b] = float(np.abs(np.diff(late.to_numpy())).mean()) if len(late) >= 2 else math.nan
    jitter = pd.Series(jitter, dtype=float).sort_index()
    fewest = min(n_evals.values()) if n_evals else 0
    if fewest < min_evals:
        osc = Part("batch 10 oscillates most", None,
                   f"too few evaluations: {fewest} in the second half of training "
                   f"(need {min_evals}; the study evaluated every {PROTOCOL.test_every} of "
                   f"{PROTOCOL.epochs} epochs)")
    else:
        smallest = jitter.index.min()
        others = jitter.drop(smallest).max() if len(jitter) > 1 else math.nan
        ratio = jitter[smallest] / others if others > 0 else math.inf
        osc = Part(f"batch {smallest:g} oscillates most", bool(ratio >= visibly),
                   "mean |change| of test accuracy between evaluations over the second half, "
                   f"points: {listing(jitter, lambda v: f'{100 * v:.3f}')}; batch "
                   f"{smallest:g} / the most of the others {ratio:.2f}x (visibly: "
                   f">= {visibly:g}x)")
    return [osc, Part(f"all converge to high accuracy (> {level:.0%})",
                      bool((acc > level).all()), listing(acc))]


def judge_hidden_size(runs, curves, timing, knee=512, level=0.97, same=0.5):
    acc = mean_by(runs, "hidden_size")
    low, high = acc[acc.index <= knee], acc[acc.index >= knee]
    reach = epochs_to(curves, runs[runs["hidden_size"] <= knee], "hidden_size", level)
    steps = np.diff(low.to_numpy()) * 100
    rr = rank_corr(reach.index, reach.values)
    few = "fewer than 3 widths run" if len(low) < 3 else None
    parts = [
        Part(f"16 to {knee}: wider is more accurate",
             None if few else bool((steps >= -TOL).all() and low.iloc[-1] > low.iloc[0]),
             few or listing(low)),
        Part(f"16 to {knee}: wider is faster (fewer epochs)",
             None if few else bool(rr <= -0.7),
             few or f"epochs to {level:.0%} train accuracy: {listing(reach, epochs_text)}; "
             f"rank correlation with width {rr:+.2f}"),
        Part(f"{knee} to 2048: accuracy flat",
             None if len(high) < 2 else bool((high.max() - high.min()) * 100 <= same),
             "fewer than 2 widths run" if len(high) < 2 else
             f"{listing(high)}: spread {100 * (high.max() - high.min()):.2f} points"),
    ]
    t = timed(timing, depth=1, activation="relu", loss="cross_entropy", batch_size=100)
    t = t[t["hidden_size"] >= knee]
    why = timing_problem(t, len(high))
    if why:
        parts.append(Part("training time grows with width", None, why))
    else:
        per = t.groupby("hidden_size")["epoch_s"].median().sort_index()
        parts.append(Part("training time grows with width",
                          bool(per.is_monotonic_increasing and per.iloc[-1] > per.iloc[0]),
                          "s per epoch alone: " + listing(per, lambda s: f"{s:.3f}")))
    return parts


def judge_focal(runs, curves, timing, gammas=(0, 0.5, 1, 2, 5)):
    """Analytic: the loss of a confident sample (p = 0.9) relative to an unconfident one
    (p = 0.1), by our focal loss, for increasing gamma."""
    from mlp import losses

    ratios = []
    for gamma in gammas:
        loss = losses.get("focal", reduction="sum", gamma=float(gamma), alpha=1.0)
        vals = []
        for p in (0.9, 0.1):
            z = np.full((1, 10), math.log((1 - p) / 9))
            z[0, 0] = math.log(p)
            vals.append(loss.forward(z, np.array([0])))
        ratios.append(vals[0] / vals[1])
    dec = all(a > b for a, b in zip(ratios, ratios[1:]))
    return [Part("larger gamma lowers the loss of confident samples relative to unconfident "
                 "ones", dec, "loss at p = 0.9 / loss at p = 0.1: " +
                 ", ".join(f"gamma {g:g}: {r:.4f}" for g, r in zip(gammas, ratios)))]


def judge_dropout(runs, curves, timing, rise=0.3, shrink=0.5):
    acc = mean_by(runs, "dropout")
    if not {0.0, 0.2} <= set(acc.index):
        return [Part("dropout against none", None, "needs dropout 0.0 and 0.2")]
    early = {}
    for d, part in runs.groupby("dropout"):
        c = curve(curves, part["run_id"], "train_acc")
        early[d] = c.iloc[: max(1, len(c) // 5)].mean()
    gap = overfit_gap(runs).groupby(runs["dropout"]).mean()
    d_acc = (acc[0.2] - acc[0.0]) * 100
    d_gap = (gap[0.2] - gap[0.0]) * 100
    return [
        Part("converges more slowly", bool(early[0.2] < early[0.0]),
             f"mean train accuracy over the first fifth of training: {pts(early[0.0])} "
             f"without, {pts(early[0.2])} with dropout"),
        Part(f"test accuracy rises (about {rise:g} points)", bool(d_acc > 0),
             f"{d_acc:+.2f} points"),
        Part(f"the overfitting gap shrinks (about {shrink:g} points)", bool(d_gap < 0),
             f"|train - test accuracy| {100 * gap[0.0]:.2f} -> {100 * gap[0.2]:.2f} points "
             f"({d_gap:+.2f})"),
    ]


# the table ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    number: int
    topic: str
    claim: str                      # as the study stated it (reference/published_claims.md)
    grids: tuple[str, ...]          # the study grids whose runs it rests on ("" : none)
    judge: Callable[..., list[Part]]
    where: dict = field(default_factory=dict)  # a restriction of those runs, column -> value
    factor: str | None = None       # the swept factor (tables and figures)
    by: tuple[str, ...] = ()        # the table's rows, if not the factor alone

    @property
    def table_by(self) -> list[str]:
        return list(self.by or (self.factor,))


FINDINGS: tuple[Finding, ...] = (
    Finding(1, "Activations", "All reach >97% test accuracy; sigmoid converges slowest and "
            "ends lowest; GELU is the slowest per epoch, ReLU the fastest.",
            ("activations",), judge_activations, {"depth": 1}, "activation"),
    Finding(2, "Losses", "Hinge and softmax cross-entropy reach >98%; MSE is clearly worse "
            "(94.4%); with MSE, swish reached only 89.1% and SELU 91.8%.",
            ("losses", "depth"), judge_losses, {"depth": 1}, "loss", ("loss", "activation")),
    Finding(3, "Depth", "A second hidden layer of 784 gives no clear accuracy gain and about "
            "doubles training time.", ("activations", "losses", "depth"), judge_depth),
    Finding(4, "Learning rate", "Small rates converge slowly and lower; within [5e-5, 1e-3] "
            "final accuracy is about the same; at 1e-2 the loss does not go down.",
            ("lr",), judge_lr, factor="lr"),
    Finding(5, "Momentum", "Higher momentum converges faster and ends slightly higher.",
            ("momentum",), judge_momentum, factor="momentum"),
    Finding(6, "Weight decay", "0.1 clearly lowers accuracy; small values are all fine, with "
            "slight overfitting as decay grows.", ("weight_decay",), judge_weight_decay,
            factor="weight_decay"),
    Finding(7, "Batch size", "Batch 10 oscillates visibly; all converge to high accuracy.",
            ("batch_size",), judge_batch_size, factor="batch_size"),
    Finding(8, "Hidden size", "From 16 to 512 wider is faster and more accurate; from 512 to "
            "2048 accuracy stays flat while training time grows with width.",
            ("hidden_size",), judge_hidden_size, factor="hidden_size"),
    Finding(9, "Focal loss", "Larger gamma lowers the loss of confident samples relative to "
            "unconfident ones.", (), judge_focal),
    Finding(10, "Dropout", "With ReLU + focal loss and lr 5e-5, dropout (keep 0.8) converges "
            "more slowly, raises test accuracy by about 0.3 points and shrinks the train/test "
            "gap by about 0.5 points.", ("dropout",), judge_dropout, factor="dropout"),
)



def in_grids(runs: pd.DataFrame, grids: Sequence[str]) -> pd.Series:
    tags = runs["grid"].fillna("").map(lambda g: set(g.split(",")))
    return tags.map(lambda t: bool(t & set(grids)))


def runs_for(finding: Finding, runs: pd.DataFrame) -> pd.DataFrame:
    """The completed runs a finding rests on: its grids, its restriction."""
    if not finding.grids or runs.empty:
        return runs.iloc[0:0]
    sel = runs[in_grids(runs, finding.grids) & runs["status"].isin(RESULTS)]
    for k, v in finding.where.items():
        sel = sel[sel[k] == v]
    return sel


def describe_runs(runs: pd.DataFrame) -> str:
    """``12 runs, 100 epochs, seed 0`` (or ``seeds 0-2``, ``2-100 epochs``)."""
    if runs.empty:
        return "none"
    ep = sorted(set(runs["epochs"].astype(int)))
    seeds = sorted(set(runs["seed"].astype(int)))
    ep_text = f"{ep[0]} epoch{'s' if ep[0] > 1 else ''}" if len(ep) == 1 else \
        f"{ep[0]}-{ep[-1]} epochs"
    seed_text = (f"seed {seeds[0]}" if len(seeds) == 1 else
                 f"seeds {', '.join(map(str, seeds))}")
    return f"{len(runs)} run{'s' if len(runs) > 1 else ''}, {ep_text}, {seed_text}"


def missing_configurations(finding: Finding, sel: pd.DataFrame,
                           study: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(the configurations of the finding's grids and restriction that have no completed run
    in ``sel``, how many the finding rests on)."""
    want = study[in_grids(study, finding.grids)]
    for k, v in finding.where.items():
        want = want[want[k] == v]
    have = set(config_key(sel)) if len(sel) else set()
    return want[~config_key(want).isin(have)] if len(want) else want, len(want)


def _configuration_text(row: dict, varying: Sequence[str]) -> str:
    return " ".join(f"{k}={row[k]:g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                    for k in varying)


def evaluate(finding: Finding, runs: pd.DataFrame, curves: pd.DataFrame,
             timing: pd.DataFrame | None, protocol: Protocol = PROTOCOL,
             study: pd.DataFrame | None = None) -> Judgement:
    """The finding's verdict from all runs of a study (any grids, any statuses).

    A verdict rests on every configuration of the finding's grids (``study``: the study's
    configurations, :func:`mlp_sweeps.report.study.protocol.configurations`) at the study's length: with
    some not run yet, or runs shorter than the study's, the finding is *not measured*, and
    says what it would be from the runs there are."""
    sel = runs_for(finding, runs)
    if finding.grids and sel.empty:
        where = "".join(f", {k}={v}" for k, v in finding.where.items())
        return Judgement(Verdict.NOT_MEASURED, [],
                         f"no completed runs of grid {' or '.join(finding.grids)}{where} "
                         f"(`python scripts/reproduce.py --only {finding.grids[0]}`)", "none")
    parts = finding.judge(sel, curves, timing)
    judgement = Judgement(combine(parts), parts, runs=describe_runs(sel) if finding.grids
                          else "computed, no runs")
    short = int(sel["epochs"].min()) if finding.grids else protocol.epochs
    missing, wanted = missing_configurations(
        finding, sel, configurations() if study is None else study) if finding.grids \
        else (pd.DataFrame(), 0)
    if short < protocol.epochs:
        judgement.why = (f"runs of {short} epoch{'s' if short > 1 else ''}; the study's ran "
                         f"{protocol.epochs} (at {short} it would be: {judgement.verdict.value})")
        judgement.verdict = Verdict.NOT_MEASURED
    elif len(missing):
        varying = [k for k in CONFIG_KEYS if missing[k].nunique() > 1] or \
            [k for k in CONFIG_KEYS if k != "loss.reduction"][:2]
        shown = [_configuration_text(r, varying) for r in missing.head(4).to_dict("records")]
        more = f" and {len(missing) - len(shown)} more" if len(missing) > len(shown) else ""
        judgement.why = (f"{len(missing)} of the {wanted} configurations it rests on not run "
                         f"yet ({', '.join(shown)}{more}; `python scripts/reproduce.py --only "
                         f"{','.join(finding.grids)}`); from the {wanted - len(missing)} that "
                         f"ran it would be: {judgement.verdict.value}")
        judgement.verdict = Verdict.NOT_MEASURED
    else:
        judgement.why = "; ".join(f"{p.claim}: not measured, {p.evidence}"
                                  for p in parts if p.held is None)
    return judgement
