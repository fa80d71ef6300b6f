"""The reproduction report (``reports/REPORT.md``): a status block and the findings table
first (what ran, what holds), then the details: the published tables beside ours, the
gradient-scaling variant, each finding's evidence and figure, and the time per run.

Everything comes from an :class:`~mlp_sweeps.report.study.evidence.Evidence` (runs, curves, timing pass,
manifest) and the study's reference data; no tracking store is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mlp_sweeps.read import tables
from mlp_sweeps.report.study.evidence import Evidence
from mlp_sweeps.claim.ledger import RESULTS
from mlp_sweeps.report.study.findings import ABOUT, FINDINGS, NOISE, Judgement, Verdict, \
    describe_runs, evaluate, runs_for
from mlp_sweeps.report.study.protocol import CONFIG_KEYS, PROTOCOL, config_key, configuration, configurations, \
    read_published


def select_runs(runs: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """The completed runs that are study configurations, with the study's grids; for each
    configuration and seed the run that says most: full data over a subset, then the most
    epochs."""
    if runs.empty:
        return runs.assign(key=[])
    runs = runs[runs["status"].isin(RESULTS)].copy()
    runs["key"] = config_key(runs)
    grids = dict(zip(config_key(study), study["grid"]))
    runs = runs[runs["key"].isin(grids)]
    runs["grid"] = runs["key"].map(grids)
    runs["_full"] = runs["train_limit"].isna()
    runs = runs.sort_values(["_full", "epochs", "start_time"]).drop_duplicates(
        ["key", "seed"], keep="last").drop(columns="_full")
    return runs.reset_index(drop=True)


def _pm(values: pd.Series, digits: int = 4, scale: float = 1.0) -> str:
    v = values.dropna() * scale
    if v.empty:
        return "—"
    if len(v) > 1:
        return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
    return f"{v.iloc[0]:.{digits}f}"


def _md(df: pd.DataFrame) -> str:
    return tables.render(df, "markdown")


class Report:
    """REPORT.md and its figures from one Evidence."""

    def __init__(self, evidence: Evidence, out_dir: Path):
        self.ev = evidence
        self.out = Path(out_dir)
        self.fig_dir = self.out / "figures"
        self.study = configurations()
        self.runs = select_runs(evidence.runs, self.study)
        self.timing = evidence.timing if not evidence.timing.empty else None
        self.published = read_published()
        self.judgements: list[tuple] = [
            (f, evaluate(f, self.runs, evidence.curves, self.timing, study=self.study,
                         steps=evidence.steps))
            for f in FINDINGS]

    # status ----------------------------------------------------------------------------------
    def coverage(self) -> list[tuple[str, str]]:
        """(what, count) lines: configurations run at the study's protocol, and at others."""
        seed0 = self.runs[self.runs["seed"] == PROTOCOL.seed]
        n = len(self.study)
        full = seed0[(seed0["epochs"] >= PROTOCOL.epochs) & seed0["train_limit"].isna()]
        out = [(f"configurations at the study's protocol ({PROTOCOL.epochs} epochs, full data, "
                f"seed {PROTOCOL.seed})", f"{full['key'].nunique()} / {n}")]
        rest = seed0[~seed0.index.isin(full.index)]
        for (ep, lim), part in rest.groupby(["epochs", rest["train_limit"].fillna(0)]):
            where = f", first {int(lim)} training examples" if lim else ""
            out.append((f"configurations with shorter runs only ({int(ep)} epochs{where})",
                        f"{part['key'].nunique()} / {n}"))
        table = self._table_keys()
        extra = [s for s in PROTOCOL.table_seeds if s != PROTOCOL.seed]
        if extra:
            have = self.runs[self.runs["key"].isin(table) & self.runs["seed"].isin(extra)
                             & (self.runs["epochs"] >= PROTOCOL.epochs)]
            complete = have.groupby("key")["seed"].nunique()
            out.append((f"published-table configurations also at seeds "
                        f"{', '.join(map(str, extra))}",
                        f"{int((complete == len(extra)).sum())} / {len(table)}"))
        return out

    def _table_keys(self) -> set:
        return {tuple(configuration({"activation": r.activation, "loss": r.loss,
                                     "depth": int(r.depth)})[k] for k in CONFIG_KEYS)
                for r in self.published.itertuples()}

    def published_rows(self) -> pd.DataFrame:
        """One row per published cell with our runs of that configuration (all seeds)."""
        recs = []
        for p in self.published.to_dict("records"):
            key = tuple(configuration({"activation": p["activation"], "loss": p["loss"],
                                       "depth": p["depth"]})[k] for k in CONFIG_KEYS)
            mine = self.runs[self.runs["key"] == key]
            recs.append({**p, "runs": mine, "ours": mine["test_acc"].mean() if len(mine)
                         else math.nan, "epochs": int(mine["epochs"].min()) if len(mine) else 0})
        out = pd.DataFrame(recs)
        out["delta_pts"] = (out["ours"] - out["test_acc"]) * 100
        return out

    def status_block(self) -> str:
        rows = [{"": what, "count": n} for what, n in self.coverage()]
        pub = self.published_rows()
        at = pub[pub["epochs"] >= PROTOCOL.epochs]
        seeds = sorted({int(s) for r in at["runs"] for s in r["seed"]})
        within = int((at["delta_pts"].abs().round(9) <= PROTOCOL.tolerance_pts).sum())
        over = f"our mean over seeds {', '.join(map(str, seeds))}, " if seeds else ""
        rows.append({"": f"published test accuracies reproduced within ±"
                         f"{PROTOCOL.tolerance_pts:g} points ({over}{PROTOCOL.epochs} epochs)",
                     "count": f"{within} / {len(pub)}"})
        counts = pd.Series([j.verdict.value for _, j in self.judgements]).value_counts()
        rows.append({"": "findings", "count": ", ".join(
            f"{counts[v.value]} {v.value}" for v in Verdict if v.value in counts)})
        rows.append({"": "timing pass", "count": self.timing_line()})
        return _md(pd.DataFrame(rows))

    def timing_line(self) -> str:
        if self.timing is None:
            return "not run (`python scripts/reproduce.py --timing`)"
        m = self.ev.manifest.get("timing", {})
        t = self.timing
        lim = t["train_limit"].max() if "train_limit" in t else math.nan
        data = f" on the first {int(lim)} training examples" if pd.notna(lim) else ""
        return (f"{len(t)} configurations, {int(t['epochs'].max())} epochs each{data} (the "
                f"median epoch after the first), each alone on "
                f"{m.get('blas_threads', 1)} BLAS thread; other processes used at most "
                f"{t['other_cpu'].max():.2f} cores; {machine_text(m)}")

    def findings_table(self) -> str:
        """One row per finding: the claim, the verdict and each part's mark; the evidence
        is in the finding's own section."""
        rows = []
        for f, j in self.judgements:
            rows.append({"#": f"[{f.number}](#{_anchor(f)})", "finding": f"**{f.topic}**: {f.claim}",
                         "verdict": f"**{j.verdict.value}**" + (
                             f" ({j.why})" if j.why and j.verdict is Verdict.NOT_MEASURED
                             else ""),
                         "parts": "; ".join(f"{p.claim}: {p.mark}" for p in j.parts) or "—",
                         "runs": j.runs})
        return _md(pd.DataFrame(rows))

    def seeds_text(self) -> str:
        """How many of the study's configurations ran at how many seeds."""
        if self.runs.empty:
            return "none run yet"
        per = self.runs.groupby("key")["seed"].nunique()
        counts = per.value_counts().sort_index(ascending=False)
        return ", ".join(f"{n} of the {len(self.study)} configurations at {k} seed"
                         f"{'s' if k > 1 else ''}" for k, n in counts.items())

    def empty_cells(self) -> str:
        """Which columns of the evidence's runs are empty, and why."""
        runs = self.ev.runs
        why = {"cpu_s": "runs recorded before the CPU time of a run was logged",
               "diverged_epoch": "runs that did not diverge",
               "train_limit": "runs on the full training set",
               "test_limit": "runs on the full test set"}
        parts = [f"`{c}` in {int(runs[c].isna().sum())} of {len(runs)} ({w})"
                 for c, w in why.items() if c in runs and runs[c].isna().any()]
        return ("Empty cells of `runs.csv`: " + "; ".join(parts) + "; a loss's or "
                "optimizer's own parameters in the runs of the others.") if parts else ""

    def deviations(self) -> list[str]:
        """Where this reproduction differs from the study on purpose, as bullet lines."""
        selu = self.published[(self.published["activation"] == "selu")
                              & (self.published["depth"] == 1)]
        selu_text = (f" (read as train loss {selu['train_loss'].iloc[0]:.4f}, test loss "
                     f"{selu['test_loss'].iloc[0]:.4f}, train accuracy "
                     f"{selu['train_acc'].iloc[0]:.4f}, test accuracy "
                     f"{selu['test_acc'].iloc[0]:.4f})") if len(selu) else ""
        return [
            "- **Seeds.** The study ran each configuration once; here "
            f"{self.seeds_text()} (seeds 0, 1, 2), and verdicts compare means against the "
            "seeds' spread; a part whose configurations ran at one seed cannot resolve a "
            "difference and says so.",
            "- **GELU's gradient.** Ours is the analytic derivative of the tanh "
            "approximation; the study's code took a finite difference, which it gave as the "
            "reason GELU was the slowest per epoch (finding 1). Our per-epoch times cannot "
            "carry that part of the claim over.",
            "- **Dropout.** The `dropout` grid is standard inverted dropout (a new mask each "
            "step, survivors scaled by 1 / 0.8, no mask at test time). The study's code kept "
            "a fixed random 80% of the hidden units for the whole run, also at test time, "
            "without rescaling; that is the grid `dropout_fixed_mask` (`dropout_mask=fixed`), "
            "and finding 10 is judged on it. The study masked the kept units' incoming "
            "weights, so a dropped unit still passed on its activated bias, a constant the "
            "next layer's bias absorbs; ours masks the unit's output.",
            "- **Train accuracy.** As in the study, the train loss and accuracy are means over "
            "the epoch's mini-batches, measured before each update (with inverted dropout: "
            "with the training mask on, which lowers them). The dropout runs also evaluate "
            "the whole training set as the test set is, every 5 epochs "
            "(`eval_train=true`); finding 10's train/test gap uses that.",
            "- **The published SELU row** (1 hidden layer) had its columns printed out of "
            f"order; it is read in the column order of the other rows{selu_text}.",
            "- **MSE's gradient scale.** The published tables are reproduced with the study's "
            "convention (MSE's gradient of the batch mean, the other losses' of the batch "
            "sum); the variant with the same step for every loss is "
            "[reported separately](#the-gradient-scaling-variant).",
        ]

    # details -----------------------------------------------------------------------------------
    def published_tables(self) -> str:
        pub = self.published_rows()
        out = []
        for (table, depth), part in pub.groupby(["table", "depth"], sort=False):
            rows = []
            for p in part.to_dict("records"):
                r = p["runs"]
                rows.append({
                    "activation": p["activation"], "loss": p["loss"],
                    "train loss (pub / ours)": f"{p['train_loss']:.4f} / {_pm(r['train_loss'])}",
                    "test loss (pub / ours)": f"{p['test_loss']:.4f} / {_pm(r['test_loss'])}",
                    "train acc (pub / ours)": f"{p['train_acc']:.4f} / {_pm(r['train_acc'])}",
                    "test acc (pub / ours)": f"{p['test_acc']:.4f} / {_pm(r['test_acc'])}",
                    "ours − pub (pts)": "—" if math.isnan(p["delta_pts"])
                    else f"{p['delta_pts']:+.2f}",
                    "runs": f"{len(r)} × {p['epochs']} epochs" if len(r) else "not run"})
            name = "activations" if table == "activation" else "losses"
            out.append(f"### Table: {name}, {depth} hidden layer{'s' if depth > 1 else ''}\n\n"
                       + _md(pd.DataFrame(rows)))
        return "\n\n".join(out)

    def same_step(self) -> str:
        rows = []
        r = self.runs
        for depth in (1, 2):
            for loss in ("mse", "cross_entropy", "hinge", "focal"):
                study = r[r["key"] == self._key(loss=loss, depth=depth)]
                same = r[r["key"] == self._key(loss=loss, depth=depth, reduction="sum")]
                rows.append({"depth": depth, "loss": loss,
                             "study's convention: test acc": _pm(study["test_acc"]),
                             "same step for all: test acc": _pm(same["test_acc"]),
                             "gradient of": "mean → sum (lr 1e-4)" if loss == "mse"
                             else "sum (lr 1e-4), unchanged"})
        return _md(pd.DataFrame(rows))

    @staticmethod
    def _key(loss: str, depth: int, reduction: str | None = None) -> tuple:
        o = {"loss": loss, "depth": depth}
        if reduction:
            o["loss.reduction"] = reduction
        c = configuration(o)
        return tuple(c[k] for k in CONFIG_KEYS)

    def finding_section(self, f, j: Judgement) -> list[str]:
        lines = [f"### {f.number}. {f.topic}", "", f"*Claim:* {f.claim}", "",
                 f"**Verdict: {j.verdict.value}**" + (f" ({j.why})" if j.why and
                                                        j.verdict is Verdict.NOT_MEASURED
                                                        else "") + f". Runs: {j.runs}.", ""]
        lines += [f"- {p.text()}" for p in j.parts] + [""]
        sel = runs_for(f, self.runs)
        if f.factor and not sel.empty:
            lines += [_md(_plain(tables.comparison(sel, f.table_by))), "",
                      "Mean ± standard deviation over the seeds. *Run time*: the wall time "
                      "of each whole run, two runs at a time on the machine's 2 cores, so "
                      "it varies with what ran beside it; the timing pass (below) times "
                      "configurations alone.", ""]
            lines += [f"![{f.topic}]({fig})" for fig in self.figures(f, sel)] + [""]
        if f.number == 3 and not sel.empty:  # the study's two-layer comparison figures
            from mlp_sweeps.read.figures import plot_depth_pairs
            tab = sel[sel["key"].isin(self._table_keys()) | sel["key"].isin(
                {tuple(configuration({"activation": r.activation, "loss": r.loss, "depth": 2})[k]
                       for k in CONFIG_KEYS) for r in self.published.itertuples()})]
            plot_depth_pairs(tab, self.fig_dir / "depth_pairs",
                             title="1 against 2 hidden layers of 784, the published tables' "
                                   f"configurations ({describe_runs(tab)})")
            lines += ["![Depth](figures/depth_pairs.png)", ""]
        if f.number == 8 and self.timing is not None and "epoch_s_min" in self.timing:
            from mlp_sweeps.read.figures import plot_time_against
            t = self.timing[(self.timing["depth"] == 1) & (self.timing["activation"] == "relu")
                            & (self.timing["loss"] == "cross_entropy")
                            & (self.timing["batch_size"] == 100)]
            if t["hidden_size"].nunique() > 2:
                plot_time_against(t, "hidden_size", self.fig_dir / "hidden_size_time",
                                  title="training time against width (the timing pass: each "
                                        "alone, 1 BLAS thread)")
                lines += ["![Hidden size: time](figures/hidden_size_time.png)", ""]
        if f.number == 9:
            from mlp_sweeps.read.figures import plot_focal_loss
            plot_focal_loss(self.fig_dir / "focal_loss")
            lines += ["![focal loss](figures/focal_loss.png)", ""]
        return lines

    def figures(self, f, sel: pd.DataFrame) -> list[str]:
        """The finding's learning curves and, for a numeric factor, final test accuracy
        against it; paths relative to the report."""
        from mlp_sweeps.read.figures import plot_against, plot_step_curves, plot_sweep_curves

        name = f.topic.lower().replace(" ", "_")
        where = ", 1 hidden layer" if f.where.get("depth") == 1 else ""
        drawn, labels, factors = sel, None, f.table_by
        if f.factor == "loss":  # one activation: the losses' curves, not five pooled
            drawn, where = sel[sel["activation"] == "relu"], where + ", ReLU"
            factors, labels = ["loss"], lambda row: row["loss"].replace("_", " ")
        if f.factor == "dropout":  # as the claim says it: keep probability, and which mask
            labels = _dropout_label
        plot_sweep_curves(drawn, self.ev.curves, factors, self.fig_dir / f"{name}_curves",
                          title=f"{f.topic} ({describe_runs(drawn)}{where}; mean over "
                                f"seeds, band: lowest to highest seed)", labels=labels)
        out = [f"figures/{name}_curves.png"]
        if f.factor == "batch_size" and not self.ev.steps.empty:
            have = sel[sel["run_id"].isin(set(self.ev.steps["run_id"]))]
            if have[f.factor].nunique() == sel[f.factor].nunique():
                plot_step_curves(have, self.ev.steps, f.factor,
                                 self.fig_dir / f"{name}_training_curves",
                                 title="batch train loss every 50 iterations, as the study "
                                       "plotted its training curves")
                out.append(f"figures/{name}_training_curves.png")
        if pd.api.types.is_numeric_dtype(sel[f.factor]) and sel[f.factor].nunique() > 2:
            plot_against(sel, f.factor, ["test_acc"], self.fig_dir / f"{name}_vs_{f.factor}",
                         title=f"final test accuracy against {f.factor}")
            out.append(f"figures/{name}_vs_{f.factor}.png")
        return out

    def time_table(self) -> str:
        if self.timing is None:
            return "No timing pass (`python scripts/reproduce.py --timing`)."
        limit = self.timing["train_limit"].max() if "train_limit" in self.timing else math.nan
        if pd.notna(limit):
            return (f"The timing pass ran on the first {int(limit)} training examples: not "
                    "comparable with the published times of whole runs.")
        rows = []
        for p in self.published.to_dict("records"):
            c = configuration({"activation": p["activation"], "loss": p["loss"],
                               "depth": p["depth"]})
            t = self.timing
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
        return _md(pd.DataFrame(rows)) if rows else "The timing pass has none of these."

    # the document ------------------------------------------------------------------------------
    def write(self, header: str) -> Path:
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        for old in (*self.fig_dir.glob("*.png"), *self.fig_dir.glob("*.svg")):
            old.unlink()  # figures of an earlier report that this one may not draw
        counts = pd.Series([j.verdict.value for _, j in self.judgements]).value_counts()
        tally = ", ".join(f"{counts[v.value]} {v.value}" for v in Verdict if v.value in counts)
        lines = ["# Reproduction of the MNIST MLP study", "",
                 f"A published student study trained a NumPy multilayer perceptron on MNIST "
                 f"and drew {len(self.judgements)} findings from grids of activations, "
                 f"losses, depth and hyperparameters. This report trains every configuration "
                 f"of those grids again with mlp-sweeps ({self.seeds_text()}), and judges "
                 f"each finding from the runs: {tally}. The published tables are set beside ours, "
                 f"and the places where this reproduction deliberately differs from the "
                 f"study are listed. How the runs were made and how to rebuild this report: "
                 f"[the appendix](#how-this-report-was-made).", "",
                 "## Status", "", self.status_block(), "",
                 "## Findings", "",
                 f"Verdicts: *holds* (every part of the claim), *partly*, *does not hold*, "
                 f"*not measured* (what is missing is said). A part is *not resolved* when "
                 f"the seeds' noise does not let the runs decide. The rules: a difference of "
                 f"two means is *resolved* when it exceeds {NOISE:g} standard errors of the "
                 f"difference, from the spread of the 3 seeds of each side; \"clearly\" "
                 f"needs a resolved difference; \"about x\" means within ±{ABOUT:.0%} of x "
                 f"(and resolved from 0), and does not hold when the measured change is "
                 f"outside that band and resolved from x. \"Reproduced\" means our mean within "
                 f"±{PROTOCOL.tolerance_pts:g} accuracy points of the published single run. A "
                 f"verdict needs every configuration of its grids run for the study's "
                 f"{PROTOCOL.epochs} epochs. Times per epoch come from the timing pass only. "
                 f"Each finding's evidence is in [its section](#each-finding).", "",
                 self.findings_table(), "",
                 "## Where this reproduction differs from the study", "",
                 *self.deviations(), "",
                 "## Published tables beside ours", "",
                 f"Ours: mean ± standard deviation over the seeds run (see the runs column); "
                 f"the difference is our mean minus the published single run, in accuracy "
                 f"points (reproduced: within ±{PROTOCOL.tolerance_pts:g}).", "",
                 self.published_tables(), "",
                 "## The gradient-scaling variant", "",
                 "The published code took the gradient of the batch *sum* for cross-entropy, "
                 "hinge and focal loss, but of the batch *mean* for MSE: MSE trained with a "
                 "100× smaller effective step. Here MSE is also trained on the sum gradient "
                 "(lr 1e-4), the same effective step as the other losses (grid "
                 "`mse_same_step`; the other losses' runs are the same configurations).", "",
                 self.same_step(), "",
                 "## Each finding", ""]
        for f, j in self.judgements:
            lines += self.finding_section(f, j)
        lines += ["## Time per run", "",
                  "Published: whole 100-epoch runs on a 4-core Intel i7-1185G7 laptop. Ours: "
                  f"the timing pass's median epoch × {PROTOCOL.epochs} plus "
                  f"{PROTOCOL.epochs // PROTOCOL.test_every} test evaluations; the last column "
                  "is how many times faster ours is.", "", self.time_table(), "",
                  "## How this report was made", "", header, "", self.empty_cells(), ""]
        path = self.out / "REPORT.md"
        path.write_text("\n".join(lines))
        return path


def _dropout_label(row) -> str:
    if not row["dropout"]:
        return "no dropout"
    kind = "the study's fixed mask" if row.get("dropout_mask") == "fixed" else "inverted"
    return f"keep {1 - row['dropout']:g}, {kind}"


def _anchor(f) -> str:
    """The Markdown heading anchor of a finding's section."""
    return f"{f.number}-{f.topic.lower().replace(' ', '-')}"


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """A comparison table for readers: plain column names, no status column when every
    row finished, the run's wall time named as such."""
    out = table.copy()
    if "status" in out and (out["status"] == "finished").all():
        out = out.drop(columns="status")
    return out.rename(columns=lambda c: {"time (s)": "run time (s)"}.get(c, c.replace("_", " ")))


def machine_text(m: dict) -> str:
    if not m:
        return "machine not recorded"
    kernel = m.get("kernel") or "?"
    forced = f", forced by OPENBLAS_CORETYPE={m['forced_kernel']}" if m.get("forced_kernel") \
        else ""
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('blas', '?')} "
            f"{m.get('blas_version', '')} with the {kernel} kernel{forced}, NumPy "
            f"{m.get('numpy', '?')}")
