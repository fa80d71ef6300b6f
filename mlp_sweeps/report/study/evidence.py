"""The evidence a reproduction report rests on, as compact files beside the report, so that
anyone can check every number, the report can be regenerated without the tracking store,
and a new machine loses no finished run.

``<report dir>/evidence/``:

- ``runs.csv``: one row per completed run (finished or diverged; the one that counts for
  its configuration): identity, grids, training settings, final metrics, time;
- ``curves.csv.gz``: their per-epoch metrics (run_id, key, epoch, value);
- ``steps.csv.gz``: the batch metrics of runs that logged them every ``log_every_steps``
  training steps (run_id, key, iteration, value): the study's training curves;
- ``timing.csv``: the controlled timing pass (:mod:`mlp_sweeps.report.study.timing`);
- ``manifest.json``: the commands whose runs these are, the machine and BLAS kernel of the
  timing pass.

:func:`restore` writes the runs back into a tracking store as FINISHED runs with their
config hash, so a sweep there skips them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlp.metrics import CURVES, STEP_CURVES, TRAIN_EVAL_CURVES
from mlp_sweeps.claim.ledger import RESULTS, RunStatus, Tag
from mlp_sweeps.read.results import (CONFIG_COLUMNS, METRICS, load_runs, metric_histories,
                                     DEFAULTS, param_values, with_defaults)
from mlp_sweeps.report.study.protocol import CONFIG_KEYS

RUN_COLUMNS = ["run_id", "run_name", "status", "config_hash", "grid", "start_time",
               *CONFIG_COLUMNS, *METRICS.values()]
CURVE_KEYS = (*CURVES, *TRAIN_EVAL_CURVES)  # the last two: runs with eval_train
STEP_KEYS = STEP_CURVES
STEP_COLUMNS = ["run_id", "key", "iteration", "value"]


@dataclass
class Evidence:
    runs: pd.DataFrame
    curves: pd.DataFrame
    timing: pd.DataFrame = field(default_factory=pd.DataFrame)
    manifest: dict = field(default_factory=dict)
    steps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STEP_COLUMNS))

    @classmethod
    def from_store(cls, uri: str | None, experiment: str) -> "Evidence":
        """The completed runs of ``experiment`` (the one that counts per configuration)."""
        runs = load_runs(uri, experiment)
        runs = runs[runs["status"].isin(RESULTS)][RUN_COLUMNS].reset_index(drop=True)
        curves = metric_histories(uri, runs["run_id"], CURVE_KEYS)
        steps = metric_histories(uri, runs["run_id"], STEP_KEYS).rename(
            columns={"epoch": "iteration"})
        return cls(runs, curves, steps=steps)

    @classmethod
    def read(cls, folder: Path) -> "Evidence":
        folder = Path(folder)
        if not (folder / "runs.csv").exists():
            return cls(pd.DataFrame(columns=RUN_COLUMNS),
                       pd.DataFrame(columns=["run_id", "key", "epoch", "value"]))
        runs = pd.read_csv(folder / "runs.csv", dtype={"run_id": str, "config_hash": str,
                                                       "grid": str, "loss.alpha": str})
        runs["grid"] = runs["grid"].fillna("")
        for col in RUN_COLUMNS:  # evidence written before a column existed (e.g. cpu_s)
            if col not in runs.columns:
                runs[col] = math.nan
        runs = with_defaults(runs)  # a setting the run did not record: its default
        curves = pd.read_csv(folder / "curves.csv.gz")
        timing = pd.read_csv(folder / "timing.csv") if (folder / "timing.csv").exists() \
            else pd.DataFrame()
        for col in CONFIG_KEYS:  # a timing pass from before a setting existed: its default
            if not timing.empty and col not in timing.columns and col in DEFAULTS:
                timing[col] = DEFAULTS[col]
        manifest = json.loads((folder / "manifest.json").read_text()) \
            if (folder / "manifest.json").exists() else {}
        steps = pd.read_csv(folder / "steps.csv.gz") if (folder / "steps.csv.gz").exists() \
            else pd.DataFrame(columns=STEP_COLUMNS)
        return cls(runs, curves, timing, manifest, steps)

    def write(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        runs = with_defaults(self.runs).sort_values(["grid", "run_name", "seed"], kind="stable")
        runs.to_csv(folder / "runs.csv", index=False, float_format="%.10g")
        curves = self.curves.sort_values(["run_id", "key", "epoch"], kind="stable")
        # mtime 0: the same curves give the same bytes
        curves.to_csv(folder / "curves.csv.gz", index=False, float_format="%.8g",
                      compression={"method": "gzip", "mtime": 0})
        if not self.steps.empty:
            steps = self.steps.sort_values(["run_id", "key", "iteration"], kind="stable")
            steps.to_csv(folder / "steps.csv.gz", index=False, float_format="%.8g",
                         compression={"method": "gzip", "mtime": 0})
        if not self.timing.empty:
            self.timing.to_csv(folder / "timing.csv", index=False, float_format="%.6g")
        (folder / "manifest.json").write_text(json.dumps(self.manifest, indent=2,
                                                         sort_keys=True) + "\n")

    def merged(self, newer: "Evidence") -> "Evidence":
        """These runs updated by ``newer``'s: per configuration, newer wins, and belongs to
        the grids of both (a configuration rerun for one grid stays in the others)."""
        def concat(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
            # typed as if read from one file (an empty side would make every column object)
            return pd.concat([f for f in (a, b) if not f.empty] or [a]).infer_objects()

        runs = concat(self.runs, newer.runs)
        grids = runs.groupby("config_hash", sort=False)["grid"].agg(_union)
        runs = runs.drop_duplicates("config_hash", keep="last").copy()
        runs["grid"] = runs["config_hash"].map(grids)
        keep = set(runs["run_id"])
        curves = concat(self.curves, newer.curves)
        curves = curves[curves["run_id"].isin(keep)].drop_duplicates(
            ["run_id", "key", "epoch"], keep="last")
        steps = concat(self.steps, newer.steps)
        steps = steps[steps["run_id"].isin(keep)].drop_duplicates(
            ["run_id", "key", "iteration"], keep="last")
        return Evidence(runs.reset_index(drop=True), curves.reset_index(drop=True),
                        self.timing, self.manifest, steps.reset_index(drop=True))


def restore(uri: str | None, experiment: str, evidence: Evidence) -> int:
    """Record the evidence's runs in ``experiment`` of the store as the ledger records runs
    (settings as the tracker logs them, final and per-epoch metrics, tags ``config_hash``,
    ``grid``, ``status`` and ``restored_from``), skipping configurations that already
    finished there. Returns how many were restored."""
    from mlp_sweeps.claim.ledger import Ledger
    from mlp_sweeps.record.tracking import Tracker

    if evidence.runs.empty:
        return 0
    ledger = Ledger(Tracker(uri), experiment)
    have = {r.data.tags.get(Tag.CONFIG_HASH) for r in ledger.tracker.runs(ledger.experiment_id)
            if r.info.status == RunStatus.FINISHED}
    by_run = {rid: c for rid, c in evidence.curves.groupby("run_id")}
    steps_of = {rid: c for rid, c in evidence.steps.groupby("run_id")}
    n = 0
    for row in evidence.runs.to_dict("records"):
        if row["config_hash"] in have:
            continue
        rid = ledger.start(row["run_name"], {
            Tag.CONFIG_HASH: row["config_hash"], Tag.GRID: row["grid"],
            Tag.RESTORED_FROM: f"evidence run {row['run_id']}"})
        ledger.tracker.log_params(rid, param_values(row))
        finals = {key: float(row[col]) for key, col in METRICS.items() if not _missing(row[col])}
        curve = by_run.get(row["run_id"])
        steps = [] if curve is None else [
            (dict(zip(c["key"], c["value"].astype(float))), int(epoch))
            for epoch, c in curve.groupby("epoch")]
        batch = steps_of.get(row["run_id"])
        if batch is not None:  # the batch curves, at their iterations, as a run logs them
            steps += [(dict(zip(c["key"], c["value"].astype(float))), int(it))
                      for it, c in batch.groupby("iteration")]
        ledger.close(rid, row["status"], metrics=[(finals, 0), *steps])
        n += 1
    return n


def _union(grids: pd.Series) -> str:
    """The grid tags of one configuration's rows as one tag, each grid once, in order."""
    seen: dict[str, None] = {}
    for tag in grids:
        for g in str(tag).split(","):
            if g and g != "nan":
                seen.setdefault(g)
    return ",".join(seen)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
