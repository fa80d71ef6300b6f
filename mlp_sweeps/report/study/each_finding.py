"""Each finding's section of the reproduction report: its verdict and parts, its runs
compared, and the figures drawn from them. Functions of a
:class:`~mlp_sweeps.report.study.document.Report` (its runs, curves, timing pass, figure
folder)."""

from __future__ import annotations

import pandas as pd

from mlp_sweeps.read import tables
from mlp_sweeps.report.study.beside_published import table_keys
from mlp_sweeps.report.study.findings import Judgement, Verdict, describe_runs, runs_for
from mlp_sweeps.report.study.protocol import CONFIG_KEYS, configuration
from mlp_sweeps.report.study.text import dropout_label, markdown, plain

__all__ = ["finding_section", "figures"]


def finding_section(report, f, j: Judgement) -> list[str]:
    lines = [f"### {f.number}. {f.topic}", "", f"*Claim:* {f.claim}", "",
             f"**Verdict: {j.verdict.value}**" + (f" ({j.why})" if j.why and
                                                    j.verdict is Verdict.NOT_MEASURED
                                                    else "") + f". Runs: {j.runs}.", ""]
    lines += [f"- {p.text()}" for p in j.parts] + [""]
    sel = runs_for(f, report.runs)
    if f.factor and not sel.empty:
        lines += [markdown(plain(tables.comparison(sel, f.table_by))), "",
                  "Mean ± standard deviation over the seeds. *Run time*: the wall time "
                  "of each whole run, two runs at a time on the machine's 2 cores, so "
                  "it varies with what ran beside it; the timing pass (below) times "
                  "configurations alone.", ""]
        lines += [f"![{f.topic}]({fig})" for fig in figures(report, f, sel)] + [""]
    if f.number == 3 and not sel.empty:  # the study's two-layer comparison figures
        from mlp_sweeps.read.figures import plot_depth_pairs
        tab = sel[sel["key"].isin(table_keys(report)) | sel["key"].isin(
            {tuple(configuration({"activation": r.activation, "loss": r.loss, "depth": 2})[k]
                   for k in CONFIG_KEYS) for r in report.published.itertuples()})]
        plot_depth_pairs(tab, report.fig_dir / "depth_pairs",
                         title="1 against 2 hidden layers of 784, the published tables' "
                               f"configurations ({describe_runs(tab)})")
        lines += ["![Depth](figures/depth_pairs.png)", ""]
    if f.number == 8 and report.timing is not None and "epoch_s_min" in report.timing:
        from mlp_sweeps.read.figures import plot_time_against
        t = report.timing[(report.timing["depth"] == 1) & (report.timing["activation"] == "relu")
                        & (report.timing["loss"] == "cross_entropy")
                        & (report.timing["batch_size"] == 100)]
        if t["hidden_size"].nunique() > 2:
            plot_time_against(t, "hidden_size", report.fig_dir / "hidden_size_time",
                              title="training time against width (the timing pass: each "
                                    "alone, 1 BLAS thread)")
            lines += ["![Hidden size: time](figures/hidden_size_time.png)", ""]
    if f.number == 9:
        from mlp_sweeps.read.figures import plot_focal_loss
        plot_focal_loss(report.fig_dir / "focal_loss")
        lines += ["![focal loss](figures/focal_loss.png)", ""]
    return lines

def figures(report, f, sel: pd.DataFrame) -> list[str]:
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
        labels = dropout_label
    plot_sweep_curves(drawn, report.ev.curves, factors, report.fig_dir / f"{name}_curves",
                      title=f"{f.topic} ({describe_runs(drawn)}{where}; mean over "
                            f"seeds, band: lowest to highest seed)", labels=labels)
    out = [f"figures/{name}_curves.png"]
    if f.factor == "batch_size" and not report.ev.steps.empty:
        have = sel[sel["run_id"].isin(set(report.ev.steps["run_id"]))]
        if have[f.factor].nunique() == sel[f.factor].nunique():
            plot_step_curves(have, report.ev.steps, f.factor,
                             report.fig_dir / f"{name}_training_curves",
                             title="batch train loss every 50 iterations, as the study "
                                   "plotted its training curves")
            out.append(f"figures/{name}_training_curves.png")
    if pd.api.types.is_numeric_dtype(sel[f.factor]) and sel[f.factor].nunique() > 2:
        plot_against(sel, f.factor, ["test_acc"], report.fig_dir / f"{name}_vs_{f.factor}",
                     title=f"final test accuracy against {f.factor}")
        out.append(f"figures/{name}_vs_{f.factor}.png")
    return out
