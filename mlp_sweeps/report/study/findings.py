"""The study's findings as a table: each a claim, the grids whose runs it rests on, its
thresholds and a pure judge from runs to a verdict with its evidence.

A judge gets DataFrames and returns the parts of its claim, each held, not held or not
measured (``None``, with why), and one line of evidence per part:

- ``runs``: one row per run (columns of :func:`mlp_sweeps.read.results.load_runs`), already
  restricted to the finding's grids and to runs that completed (finished or diverged);
- ``curves``: per-epoch metrics of those runs, long format (run_id, key, epoch, value);
- ``steps``: the batch metrics of those that logged them every ``log_every_steps``
  iterations, long format (run_id, key, iteration, value);
- ``timing``: the controlled timing pass (:mod:`mlp_sweeps.report.study.timing`): one row per
  configuration timed alone on one core, ``epoch_s`` its median epoch, ``other_cpu`` the
  cores other processes used meanwhile.

:func:`evaluate` applies what every finding shares: no runs is *not measured*; runs shorter
than the study's give *not measured* (what they show is still printed, marked with their
length); timings taken under load are not used.

Differences are judged against the noise the seeds measure (:func:`compare`): a difference
of two means is *resolved* when it exceeds :data:`NOISE` standard errors of that
difference, from the seeds' spread (at least 2 seeds each); a claim that turns on an
unresolved difference is *not resolved*, with the numbers, rather than held or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from mlp_sweeps.claim.ledger import RESULTS
from mlp_sweeps.report.study.protocol import (CONFIG_KEYS, PROTOCOL, Protocol, config_key, configurations,
                    read_published)

TOL = PROTOCOL.tolerance_pts  # accuracy points: "reproduced", "about the same", "no clear gain"
LOAD_LIMIT = 0.25  # cores used by other processes during a timing above which it is not used
# a difference of two means is resolved beyond this many standard errors of the difference
# (sqrt(s_a^2 / n_a + s_b^2 / n_b), s the seeds' standard deviation): about a 95% two-sided
# test for normal seed noise
NOISE = 2.0
# "about x": a measured change within this fraction of x (and resolved from 0)
ABOUT = 0.5


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
    # with held None: measured, but the seeds' noise does not let the data decide
    unresolved: bool = False

    @property
    def mark(self) -> str:
        if self.held is None:
            return "not resolved" if self.unresolved else "not measured"
        return "yes" if self.held else "no"

    def text(self) -> str:
        return f"{self.claim}: {self.mark} ({self.evidence})"


@dataclass
class Judgement:
    verdict: Verdict
    parts: list[Part]
    why: str = ""  # for NOT_MEASURED: what is missing
    runs: str = ""  # what the verdict rests on, e.g. "5 runs, 100 epochs, seed 0"

    def evidence(self) -> str:
        return "; ".join(p.text() for p in self.parts) or "—"


def combine(parts: Sequence[Part]) -> Verdict:
    """holds: every part measured and held; not measured: no part could be measured or
    resolved; does not hold: no measured part held; partly: the rest (some held, others did
    not or could not be measured or resolved)."""
    measured = [p.held for p in parts if p.held is not None]
    if not measured:
        return Verdict.NOT_MEASURED
    if all(measured) and len(measured) == len(parts):
        return Verdict.HOLDS
    return Verdict.PARTLY if any(measured) else Verdict.DOES_NOT_HOLD


# helpers for judges ---------------------------------------------------------------------------
def pts(x: float) -> str:
    return f"{100 * x:.2f}%"


@dataclass(frozen=True)
class Diff:
    """``a - b`` of two means over seeds, its standard error and whether it is resolved."""

    d: float
    se: float
    n: int  # the fewer seeds of the two

    @property
    def resolved(self) -> bool:
        return self.n >= 2 and math.isfinite(self.se) and abs(self.d) > NOISE * self.se

    def text(self, scale: float = 100, unit: str = " points", digits: int = 2) -> str:
        if self.n < 2:
            return f"{scale * self.d:+.{digits}f}{unit}, one seed: its noise is unknown"
        return (f"{scale * self.d:+.{digits}f}{unit} ± {scale * self.se:.{digits}f} "
                f"(standard error over {self.n} seeds; resolved beyond {NOISE:g}x: "
                f"{'yes' if self.resolved else 'no'})")


def compare(a: Sequence[float], b: Sequence[float]) -> Diff:
    """mean(a) - mean(b) with its standard error from the spread of each (one value per
    seed)."""
    a, b = pd.Series(list(a), dtype=float).dropna(), pd.Series(list(b), dtype=float).dropna()
    n = min(len(a), len(b))
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if n >= 2 else math.nan
    return Diff(float(a.mean() - b.mean()), se, n)


def about(d: Diff, x: float) -> bool | None:
    """Whether a change ``d`` is "about ``x``": yes when within :data:`ABOUT` of ``x`` and
    resolved from 0; no when outside that band and resolved from ``x`` too (more than
    :data:`NOISE` standard errors from it); None (not resolved) otherwise."""
    if d.n < 2 or not math.isfinite(d.se):
        return None
    near = abs(d.d - x) <= ABOUT * abs(x)
    if near and d.resolved:
        return True
    if not near and abs(d.d - x) > NOISE * d.se:
        return False
    return None


def about_text(d: Diff, x: float, points: float) -> str:
    """The band "about ``x``" and how far ``d`` is from ``x``, in standard errors."""
    far = f"{abs(d.d - x) / d.se:.1f}" if d.se > 0 else "inf"
    return (f"about {points:g}: {points * (1 - ABOUT):g} to {points * (1 + ABOUT):g} points; "
            f"{far} standard errors from {points:g}" if d.n >= 2 else f"about {points:g}")


def per_seed(runs: pd.DataFrame, factor: str, value: str = "test_acc") -> dict:
    """Level of ``factor`` -> ``value`` of each of its runs (one per seed)."""
    return {k: part[value].to_numpy() for k, part in runs.groupby(factor)}


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


def reach_per_seed(curves: pd.DataFrame, runs: pd.DataFrame, factor: str, level: float,
                   key: str = "train_acc") -> dict[int, pd.Series]:
    """Per seed: the first epoch at which each level of ``factor`` reached ``level`` in
    that seed's run (inf: never); only seeds that ran every level."""
    n = runs[factor].nunique()
    out = {}
    for seed, part in runs.groupby("seed"):
        if part[factor].nunique() == n:
            out[int(seed)] = epochs_to(curves, part, factor, level, key)
    return out


def seeds_text(per: Mapping[int, float], fmt: str = "+.2f") -> str:
    """``at seeds 0, 1, 2: -1.00, -0.96, -0.99``."""
    return (f"at seeds {', '.join(map(str, per))}: "
            + ", ".join(f"{v:{fmt}}" for v in per.values()))


def held_by_seeds(mean_holds: bool, per_seed: Sequence[bool]) -> bool | None:
    """A part read from seed-mean curves, checked seed by seed: yes when the mean and
    every seed agree; no when the mean and every seed fail; else not resolved."""
    if len(per_seed) < 2:
        return mean_holds
    if mean_holds and all(per_seed):
        return True
    if not mean_holds and not any(per_seed):
        return False
    return None


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


def _epoch_spread(rows: pd.DataFrame) -> float | None:
    """How much one configuration's epochs varied in the timing pass (its slowest epoch over
    its fastest, the largest over ``rows``): differences below it are noise."""
    if not {"epoch_s_min", "epoch_s_max"} <= set(rows.columns) or rows.empty:
        return None
    return float((rows["epoch_s_max"] / rows["epoch_s_min"]).max())


def _epoch_noise(rows: pd.DataFrame) -> str:
    noise = _epoch_spread(rows)
    return "" if noise is None else f" (one configuration's epochs varied by up to {noise:.3f}x)"


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
def _lowest(runs, acc: pd.Series, which: str) -> Part:
    """``which`` ends lowest: the lowest mean, resolved from the next lowest."""
    claim = f"{which} ends lowest"
    if which not in acc or len(acc) < 2:
        return Part(claim, None, f"{which} and another activation needed")
    seeds = per_seed(runs, "activation")
    low, nxt = acc.sort_values().index[:2]
    d = compare(seeds[nxt], seeds[low])
    text = f"lowest: {low}; the next lowest, {nxt}, is above it by {d.text()}"
    if not d.resolved:
        return Part(claim, None, text, unresolved=True)
    return Part(claim, low == which, text)


def _alike(claim: str, runs, factor: str, same: float) -> Part:
    """The levels of ``factor`` end "about the same": the best mean minus the worst within
    ``same`` points, or not resolved from 0 by the seeds' noise."""
    acc = mean_by(runs, factor)
    if len(acc) < 2:
        return Part(claim, None, f"fewer than 2 levels of {factor} run")
    seeds = per_seed(runs, factor)
    d = compare(seeds[acc.idxmax()], seeds[acc.idxmin()])
    return Part(claim, bool(not d.resolved or abs(d.d) * 100 <= same),
                f"{listing(acc)}: best minus worst {d.text()} (about the same: within "
                f"{same:g} points, or not resolved)")


def judge_activations(runs, curves, timing, level=0.97, steps=None):
    acc = mean_by(runs, "activation")
    reach = epochs_to(curves, runs, "activation", level)
    parts = [
        Part(f"all > {level:.0%}", bool((acc > level).all()), listing(acc)),
        _lowest(runs, acc, "sigmoid"),
        _slowest(curves, runs, reach, "activation", "sigmoid", level),
    ]
    t = timed(timing, depth=1, loss="cross_entropy", hidden_size=784, batch_size=100)
    t = t[t["activation"].isin(acc.index)]
    why = timing_problem(t, len(acc))
    if why:
        parts += [Part("GELU slowest per epoch", None, why), Part("ReLU fastest per epoch", None, why)]
    else:
        per = t.groupby("activation")["epoch_s"].median().sort_values()
        spread = per.max() / per.min()
        noise = _epoch_spread(t)
        text = "s per epoch alone: " + listing(per, lambda s: f"{s:.3f}") + \
            f"; slowest / fastest {spread:.3f}" + _epoch_noise(t)
        if noise is not None and spread <= noise:  # the ranking is within the noise
            text += ": the activations differ by less than one configuration's epochs do"
            parts += [Part("GELU slowest per epoch", None, text, unresolved=True),
                      Part("ReLU fastest per epoch", None, text, unresolved=True)]
        else:
            parts += [Part("GELU slowest per epoch", per.idxmax() == "gelu", text),
                      Part("ReLU fastest per epoch", per.idxmin() == "relu", text)]
    return parts


def judge_losses(runs, curves, timing, level=0.98, clearly=1.0,
                 published=(("mse", "relu", 0.944), ("mse", "swish", 0.891),
                            ("mse", "selu", 0.918)), steps=None):
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
        close = bool(round(abs(ours - exact) * 100, 9) <= TOL)
        parts.append(Part(claim, close,
                          f"ours {pts(ours)} against {pts(exact)}"
                          f"{' (the published table)' if len(cell) else ''}, "
                          f"{100 * (ours - exact):+.2f} points: "
                          f"{'within' if close else 'outside'} the ±{TOL:g} points that count "
                          f"as reproduced"))
    return parts


def judge_depth(runs, curves, timing, ratio_range=(1.5, 2.5), steps=None):
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
        m = ratio.median()
        how = "about doubles" if lo <= m <= hi else "more than doubles" if m > hi else \
            "less than doubles"
        parts.append(Part("about doubles training time",
                          bool(lo <= m <= hi),
                          f"{how}: time per epoch, 2 layers / 1 layer: median {m:.2f}x "
                          f"over {len(ratio)} configurations (range {ratio.min():.2f}-"
                          f"{ratio.max():.2f}); about double: {lo:g}-{hi:g}x. Per step a second "
                          "784x784 layer adds three matrix products (forward, weight gradient, "
                          "input gradient) to the first layer's two"))
    return parts


def judge_lr(runs, curves, timing, band=(5e-5, 1e-3), level=0.97, same=0.5, steps=None):
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
        _alike(f"about the same within [{band[0]:g}, {band[1]:g}]",
               runs[runs["lr"].isin(in_band.index)], "lr", same),
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


def _slowest(curves, runs, reach: pd.Series, factor: str, which: str, level: float) -> Part:
    """``which`` converges slowest: the last to reach ``level`` on the seed-mean curves,
    and at every seed."""
    def slowest(r: pd.Series) -> bool:
        return which in r and bool(r[which] > r.drop(which).max())

    per = reach_per_seed(curves, runs, factor, level)
    text = f"epochs to {level:.0%} train accuracy (seed mean curves): {listing(reach, epochs_text)}"
    if len(per) > 1:
        text += "; " + "; ".join(
            f"seed {s}: {which} {epochs_text(r[which])}, next slowest "
            f"{epochs_text(r.drop(which).max())}" for s, r in per.items() if which in r)
    held = held_by_seeds(slowest(reach), [slowest(r) for r in per.values()])
    return Part(f"{which} converges slowest", held, text, unresolved=held is None)


def _faster_with(curves, runs, reach: pd.Series, factor: str, level: float, strong: float,
                 name: str, what: str) -> Part:
    """Larger ``factor`` reaches ``level`` sooner: rank correlation of the epochs with the
    factor <= -``strong`` on the seed-mean curves, and at every seed."""
    rc = rank_corr(reach.index, reach.values)
    per = {s: rank_corr(r.index, r.values)
           for s, r in reach_per_seed(curves, runs, factor, level).items()}
    text = (f"epochs to {level:.0%} train accuracy (seed mean curves): "
            f"{listing(reach, epochs_text)}; rank correlation with {what} {rc:+.2f} (faster: <= "
            f"{-strong:g})" + (f"; {seeds_text(per)}" if len(per) > 1 else ""))
    held = held_by_seeds(bool(rc <= -strong), [bool(v <= -strong) for v in per.values()])
    return Part(name, held, text, unresolved=held is None)


def judge_momentum(runs, curves, timing, level=0.97, strong=0.7, steps=None):
    acc = mean_by(runs, "momentum")
    reach = epochs_to(curves, runs, "momentum", level)
    ra = rank_corr(acc.index, acc.values)
    return [
        _faster_with(curves, runs, reach, "momentum", level, strong,
                     "higher momentum converges faster", "momentum"),
        Part("and ends slightly higher", bool(ra >= 0.5),
             f"{listing(acc)}; rank correlation {ra:+.2f} (higher: >= 0.5)"),
    ]


def judge_weight_decay(runs, curves, timing, large=0.1, steps=None):
    """0.1 *clearly* lowers accuracy: its mean is below the best smaller decay's by a
    resolved difference, and its mean test curve below every smaller decay's at every
    evaluation. Small values are all fine: no smaller decay resolved below the best one by
    more than the tolerance. Slight overfitting as decay grows: the gaps' largest difference
    resolved, and rank correlation of gap with decay >= 0.5."""
    acc = mean_by(runs, "weight_decay")
    small = acc[acc.index < large]
    seeds = per_seed(runs, "weight_decay")
    parts = []
    if large in acc and len(small):
        best = small.idxmax()
        d = compare(seeds[large], seeds[best])
        big = curve(curves, runs[runs["weight_decay"] == large]["run_id"], "test_acc")
        below = all((big < curve(curves, runs[runs["weight_decay"] == w]["run_id"],
                                 "test_acc").reindex(big.index)).all() for w in small.index)
        text = (f"{pts(acc[large])} against the best smaller decay's {pts(small.max())} "
                f"({best:g}): {d.text()}; below every smaller decay at every evaluation: "
                f"{'yes' if below else 'no'}")
        parts.append(Part(f"{large:g} clearly lowers accuracy",
                          None if not d.resolved else bool(d.d < 0 and below), text,
                          unresolved=not d.resolved))
    else:
        parts.append(Part(f"{large:g} clearly lowers accuracy", None, f"{large:g} not run"))
    if len(small) > 1:
        worst = small.idxmin()
        d = compare(seeds[small.idxmax()], seeds[worst])
        fine = not d.resolved or abs(d.d) * 100 <= TOL
        parts.append(Part("smaller values all fine", bool(fine),
                          f"{listing(small)}: best minus worst {d.text()} (fine: not resolved, "
                          f"or within {TOL:g} points)"))
    else:
        parts.append(Part("smaller values all fine", None, "fewer than 2 smaller decays run"))
    gaps = {w: overfit_gap(part).to_numpy()
            for w, part in runs[runs["weight_decay"] < large].groupby("weight_decay")}
    gap = pd.Series({w: v.mean() for w, v in gaps.items()}, dtype=float).sort_index()
    claim = "slight overfitting as decay grows"
    if len(gap) < 3:
        parts.append(Part(claim, None, "fewer than 3 smaller decays run"))
    else:
        d = compare(gaps[gap.idxmax()], gaps[gap.idxmin()])
        rg = rank_corr(gap.index, gap.values)
        text = (f"overfitting gap |train - test accuracy| in points: "
                f"{listing(gap, lambda v: f'{100 * v:.2f}')}; largest minus smallest "
                f"{d.text()}; rank correlation with decay {rg:+.2f} (grows: >= 0.5)")
        parts.append(Part(claim, None, text, unresolved=True) if not d.resolved
                     else Part(claim, bool(rg >= 0.5), text))
    return parts


def step_jitter(steps: pd.DataFrame, run_ids: Sequence[str], key: str = "batch_train_loss"
                ) -> pd.Series:
    """Per run: the mean |change| of ``key`` between consecutive logged iterations over the
    second half of its training (the study's training curve, logged every 50 iterations)."""
    out = {}
    s = steps[steps["run_id"].isin(list(run_ids)) & (steps["key"] == key)]
    for rid, part in s.groupby("run_id"):
        v = part.sort_values("iteration")
        late = v[v["iteration"] > v["iteration"].max() / 2]["value"].to_numpy()
        if len(late) >= 2:
            out[rid] = float(np.abs(np.diff(late)).mean())
    return pd.Series(out, dtype=float)


def judge_batch_size(runs, curves, timing, level=0.97, visibly=1.5, steps=None,
                     key="batch_train_loss"):
    """Batch 10 oscillates visibly, judged on the training curves as the study plotted them:
    the batch loss logged every ``log_every_steps`` iterations. Its mean |change| between
    logs over the second half of training, per run; batch 10 oscillates most when its mean
    over seeds is ``visibly`` times the most of the other batch sizes' and the difference is
    resolved."""
    acc = mean_by(runs, "batch_size")
    conv = Part(f"all converge to high accuracy (> {level:.0%})", bool((acc > level).all()),
                listing(acc))
    smallest = acc.index.min() if len(acc) else 10
    claim = f"batch {smallest:g} oscillates most"
    if steps is None or steps.empty:
        return [Part(claim, None, "no training curves: the runs logged no batch metrics "
                     "(`log_every_steps=50`, the study's dispfreq)"), conv]
    per_run = step_jitter(steps, runs["run_id"], key)
    by = {b: per_run.reindex(part["run_id"]).dropna().to_numpy()
          for b, part in runs.groupby("batch_size")}
    if any(len(v) == 0 for v in by.values()):
        lacking = [f"{b:g}" for b, v in by.items() if len(v) == 0]
        return [Part(claim, None, f"no training curves for batch {', '.join(lacking)}"), conv]
    jitter = pd.Series({b: v.mean() for b, v in by.items()}, dtype=float).sort_index()
    others = jitter.drop(smallest)
    rival = others.idxmax()
    ratio = jitter[smallest] / others.max() if others.max() > 0 else math.inf
    d = compare(by[smallest], by[rival])
    text = (f"mean |change| of the batch train loss between logs every 50 iterations, second "
            f"half of training: {listing(jitter, lambda v: f'{v:.4f}')}; batch {smallest:g} / "
            f"the most of the others ({rival:g}) {ratio:.2f}x (visibly: >= {visibly:g}x), "
            f"difference {d.text(scale=1, unit='', digits=4)}")
    if not d.resolved:
        return [Part(claim, None, text, unresolved=True), conv]
    return [Part(claim, bool(ratio >= visibly and d.d > 0), text), conv]


def judge_hidden_size(runs, curves, timing, knee=512, level=0.97, same=0.5, steps=None):
    acc = mean_by(runs, "hidden_size")
    low, high = acc[acc.index <= knee], acc[acc.index >= knee]
    narrow = runs[runs["hidden_size"] <= knee]
    reach = epochs_to(curves, narrow, "hidden_size", level)
    steps = np.diff(low.to_numpy()) * 100
    few = "fewer than 3 widths run" if len(low) < 3 else None
    faster = _faster_with(curves, narrow, reach, "hidden_size", level, 0.7,
                          f"16 to {knee}: wider is faster (fewer epochs)", "width")
    parts = [
        Part(f"16 to {knee}: wider is more accurate",
             None if few else bool((steps >= -TOL).all() and low.iloc[-1] > low.iloc[0]),
             few or listing(low)),
        Part(faster.claim, None, few) if few else faster,
        _alike(f"{knee} to 2048: accuracy flat", runs[runs["hidden_size"] >= knee],
               "hidden_size", same),
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


def judge_focal(runs, curves, timing, gammas=(0, 0.5, 1, 2, 5), steps=None):
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


def _reach(curves: pd.DataFrame, run_ids: Sequence[str], level: float,
           key: str = "train_acc") -> np.ndarray:
    """Each run's first epoch with ``key`` >= ``level`` (inf: never)."""
    out = []
    for rid in run_ids:
        c = curve(curves, [rid], key)
        hit = c[c >= level]
        out.append(float(hit.index[0]) if len(hit) else math.inf)
    return np.array(out)


def _final(curves: pd.DataFrame, run_ids: Sequence[str], key: str) -> np.ndarray:
    """Each run's last value of ``key`` (NaN where it has none)."""
    out = []
    for rid in run_ids:
        c = curve(curves, [rid], key)
        out.append(float(c.iloc[-1]) if len(c) else math.nan)
    return np.array(out)


def judge_dropout(runs, curves, timing, rise=0.3, shrink=0.5, levels=(0.94, 0.95), steps=None):
    """Dropout against none, with the study's own dropout (``dropout_mask=fixed``: a fixed
    80% of the units, at test time too) where it ran, else inverted dropout (saying so).
    Converges more slowly: more epochs to each of ``levels`` train accuracy, resolved.
    Test accuracy rises by about ``rise`` points and the gap shrinks by about ``shrink``:
    resolved changes within :data:`ABOUT` of those. The gap is |train - test accuracy|
    with the training set evaluated as the test set is (``eval_train``; else the running
    train accuracy, measured with the training-mode mask, saying so)."""
    masks = runs["dropout_mask"] if "dropout_mask" in runs else pd.Series("inverted", runs.index)
    none = runs[runs["dropout"] == 0]
    fixed = runs[(runs["dropout"] > 0) & (masks == "fixed")]
    drop = fixed if len(fixed) else runs[(runs["dropout"] > 0) & (masks != "fixed")]
    if none.empty or drop.empty:
        return [Part("dropout against none", None, "needs runs with and without dropout")]
    which = "the study's fixed mask" if len(fixed) else "inverted dropout (the study's fixed " \
        "mask not run: `python scripts/reproduce.py --only dropout_fixed_mask`)"
    parts = []
    slower, texts = [], []
    for lv in levels:
        d = compare(_reach(curves, drop["run_id"], lv), _reach(curves, none["run_id"], lv))
        slower.append(None if not d.resolved else d.d > 0)
        texts.append(f"{lv:.0%}: {d.text(scale=1, unit=' epochs', digits=1)}")
    held = None if None in slower else all(slower)
    if held is None and any(s is False for s in slower):
        held = False
    parts.append(Part("converges more slowly", held,
                      f"{which}; epochs to train accuracy, with minus without: "
                      + "; ".join(texts), unresolved=held is None))
    d_acc = compare(drop["test_acc"], none["test_acc"])
    held = about(d_acc, rise / 100)
    parts.append(Part(f"test accuracy rises by about {rise:g} points", held,
                      f"{pts(none['test_acc'].mean())} -> {pts(drop['test_acc'].mean())}: "
                      f"{d_acc.text()}; {about_text(d_acc, rise / 100, rise)}",
                      unresolved=held is None))
    ev = {k: _final(curves, r["run_id"], "train_eval_acc") for k, r in (("none", none),
                                                                        ("drop", drop))}
    evaluated = all(np.isfinite(v).all() and len(v) for v in ev.values())
    train = {"none": ev["none"], "drop": ev["drop"]} if evaluated else \
        {"none": none["train_acc"].to_numpy(), "drop": drop["train_acc"].to_numpy()}
    gap_none = np.abs(train["none"] - none["test_acc"].to_numpy())
    gap_drop = np.abs(train["drop"] - drop["test_acc"].to_numpy())
    d_gap = compare(gap_drop, gap_none)
    how = "the training set evaluated as the test set" if evaluated else \
        "the running train accuracy (training-mode masks lower it)"
    held = about(d_gap, -shrink / 100)
    parts.append(Part(f"the overfitting gap shrinks by about {shrink:g} points", held,
                      f"|train - test accuracy|, train accuracy from {how}: "
                      f"{100 * gap_none.mean():.2f} -> {100 * gap_drop.mean():.2f} points: "
                      f"{d_gap.text()}; {about_text(d_gap, -shrink / 100, shrink)} (a "
                      f"shrinking)", unresolved=held is None))
    return parts


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
            "gap by about 0.5 points.", ("dropout", "dropout_fixed_mask"), judge_dropout,
            factor="dropout", by=("dropout", "dropout_mask")),
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
    def seed_text(seeds):
        return (f"seed {seeds[0]}" if len(seeds) == 1 else
                f"seeds {', '.join(map(str, seeds))}")

    text = f"{len(runs)} run{'s' if len(runs) > 1 else ''}, {ep_text}, "
    if set(CONFIG_KEYS) <= set(runs.columns):  # configurations run at different seeds: say so
        per = runs.groupby(config_key(runs))["seed"].agg(lambda s: tuple(sorted(set(s))))
        if per.nunique() > 1:
            counts = per.value_counts()
            return text + "; ".join(f"{seed_text(list(k))} for {n} configuration"
                                    f"{'s' if n > 1 else ''}" for k, n in counts.items())
    return text + seed_text(seeds)


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
             study: pd.DataFrame | None = None, steps: pd.DataFrame | None = None
             ) -> Judgement:
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
    parts = finding.judge(sel, curves, timing, steps=steps)
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
        study_ = configurations() if study is None else study
        grid = study_[in_grids(study_, finding.grids)]
        varying = [k for k in CONFIG_KEYS if missing[k].nunique() > 1] or \
            [k for k in CONFIG_KEYS if grid[k].nunique() > 1] or \
            [k for k in CONFIG_KEYS if k != "loss.reduction"][:2]
        shown = [_configuration_text(r, varying) for r in missing.head(4).to_dict("records")]
        more = f" and {len(missing) - len(shown)} more" if len(missing) > len(shown) else ""
        judgement.why = (f"{len(missing)} of the {wanted} configurations it rests on not run "
                         f"yet ({', '.join(shown)}{more}; `python scripts/reproduce.py --only "
                         f"{','.join(finding.grids)}`); from the {wanted - len(missing)} that "
                         f"ran it would be: {judgement.verdict.value}")
        judgement.verdict = Verdict.NOT_MEASURED
    else:
        judgement.why = "; ".join(f"{p.claim}: {p.mark}, {p.evidence}"
                                  for p in parts if p.held is None)
    return judgement
