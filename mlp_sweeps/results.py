"""Tracked runs as a pandas DataFrame: one row per training run, typed columns.

Columns: the training config (``activation``, ``loss``, ``loss.reduction``, ``depth``,
``hidden_size``, ``lr``, ..., ``seed``), the summary metrics (``train_loss``, ``test_loss``,
``train_acc``, ``test_acc``, ``best_test_acc``, ``time_s``, ``epochs_done``, ...), the run's
``status`` (finished / diverged / failed / killed / running), ``grid`` and identity
(``run_id``, ``run_name``, ``config_hash``, ``parent_run_id``, ``start_time``).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .tracking import PARENT_TAG, Tracker

# MLflow param key -> column, with its type
PARAMS = {
    "activation.name": ("activation", str),
    "loss.name": ("loss", str),
    "loss.reduction": ("loss.reduction", str),
    "loss.margin": ("loss.margin", float),
    "loss.gamma": ("loss.gamma", float),
    "loss.alpha": ("loss.alpha", str),
    "depth": ("depth", int),
    "hidden_size": ("hidden_size", int),
    "dropout": ("dropout", float),
    "init": ("init", str),
    "lr": ("lr", float),
    "momentum": ("momentum", float),
    "weight_decay": ("weight_decay", float),
    "batch_size": ("batch_size", int),
    "epochs": ("epochs", int),
    "test_every": ("test_every", int),
    "seed": ("seed", int),
    "dtype": ("dtype", str),
    "data.name": ("data", str),
    "data.train_limit": ("train_limit", float),
    "data.test_limit": ("test_limit", float),
    "data.normalize": ("normalize", str),
}
METRICS = {
    "final_train_loss": "train_loss",
    "final_test_loss": "test_loss",
    "final_train_acc": "train_acc",
    "final_test_acc": "test_acc",
    "best_test_acc": "best_test_acc",
    "train_time_s": "time_s",
    "epochs_completed": "epochs_done",
    "samples_per_s": "samples_per_s",
    "diverged_epoch": "diverged_epoch",
}
CONFIG_COLUMNS = [c for c, _ in PARAMS.values()]


def _typed(value: str | None, kind):
    if value is None or value == "None":
        return np.nan if kind is not str else None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except ValueError:
        return value


def load_runs(uri: str | None = None, experiment: str | Iterable[str] = "mlp-sweeps",
              parent_run_id: str | None = None, filter_string: str = "",
              latest_per_config: bool = True) -> pd.DataFrame:
    """Training runs of ``experiment`` (one name or several), optionally only the children of
    a sweep's parent run and/or matching an MLflow ``filter_string``.

    With ``latest_per_config``, several runs of one configuration (``config_hash``, e.g. a
    failed run and its successful rerun) collapse to the one that counts: finished over
    others, then the latest.
    """
    tracker = Tracker(uri)
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    exps = []
    for n in names:
        e = tracker.client.get_experiment_by_name(n)
        if e is None:
            known = sorted(x.name for x in tracker.client.search_experiments())
            raise ValueError(f"no experiment {n!r} in {tracker.uri}; experiments there: "
                             f"{', '.join(known) or '(none)'}")
        exps.append(e.experiment_id)
    filters = [f for f in (filter_string,) if f]
    if parent_run_id:
        filters.append(f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
    runs, token = [], None
    while True:
        page = tracker.client.search_runs(exps, filter_string=" and ".join(filters),
                                          max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    rows = []
    for r in runs:
        tags = r.data.tags
        if tags.get("sweep") == "parent":
            continue
        row = {"run_id": r.info.run_id, "run_name": r.info.run_name,
               "mlflow_status": r.info.status, "start_time": r.info.start_time,
               "status": tags.get("status", r.info.status.lower()),
               "config_hash": tags.get("config_hash"), "grid": tags.get("grid", ""),
               "parent_run_id": tags.get(PARENT_TAG), "error": tags.get("error", ""),
               "experiment_id": r.info.experiment_id}
        if r.info.status == "RUNNING":
            row["status"] = "running"
        for key, (col, kind) in PARAMS.items():
            row[col] = _typed(r.data.params.get(key), kind)
        for key, col in METRICS.items():
            row[col] = r.data.metrics.get(key, np.nan)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["run_id", "run_name", "status", "mlflow_status",
                                     "start_time", "config_hash", "grid", "parent_run_id",
                                     "error", "experiment_id", *CONFIG_COLUMNS, *METRICS.values()])
    if latest_per_config and not df.empty:
        rank = df["status"].map({"finished": 3, "diverged": 3, "running": 2}).fillna(1)
        df = (df.assign(_rank=rank).sort_values(["_rank", "start_time"])
              .drop_duplicates("config_hash", keep="last").drop(columns="_rank"))
    return df.sort_values("start_time").reset_index(drop=True)


def metric_histories(uri: str | None, run_ids: Iterable[str],
                     keys: Iterable[str] = ("train_loss", "test_loss", "train_acc", "test_acc")
                     ) -> pd.DataFrame:
    """Per-epoch metrics, long format: run_id, key, epoch, value."""
    client = Tracker(uri).client
    rows = [(rid, k, m.step, m.value) for rid in run_ids for k in keys
            for m in client.get_metric_history(rid, k)]
    return pd.DataFrame(rows, columns=["run_id", "key", "epoch", "value"])
