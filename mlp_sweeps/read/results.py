"""Tracked runs as a pandas DataFrame: one row per training run, typed columns.

Columns: the training config (``activation``, ``loss``, ``loss.reduction``, ``depth``,
``hidden_size``, ``lr``, ..., ``seed``), the summary metrics (``train_loss``, ``test_loss``,
``train_acc``, ``test_acc``, ``best_test_acc``, ``time_s``, ``epochs_done``, ...), the run's
``status`` (finished / diverged / failed / killed / running), ``grid`` and identity
(``run_id``, ``run_name``, ``config_hash``, ``parent_run_id``, ``start_time``).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from typing import Any, Iterable

import numpy as np
import pandas as pd

from mlp import DataConfig, TrainConfig, losses, optim
from mlp.metrics import CURVES

from mlp_sweeps.record import snapshot
from mlp_sweeps.claim.ledger import SWEEP_PARENT, Tag, latest_by_config, outcome_of
from mlp_sweeps.record.store import resolve_uri


def _column_type(annotation: Any, default: Any) -> type:
    """The frame's type for a config value: str, int, or float (also for an optional
    number: None becomes NaN)."""
    text = str(annotation)
    if "None" in text:
        return float if ("int" in text or "float" in text) else str
    if isinstance(default, bool) or "bool" in text:
        return str
    for kind in (int, float):
        if text in (kind.__name__, str(kind)):
            return kind
    return str


def _is_int(annotation: Any) -> bool:
    """Whether a config field holds an int (``int``, ``int | None``), whatever its column's
    type (an optional int's column is float: None becomes NaN)."""
    text = str(annotation)
    return "int" in text and "float" not in text and "bool" not in text


def _params() -> tuple[dict[str, tuple[str, type]], set[str]]:
    """MLflow param key -> (column, type), generated from the core's configuration: the
    activation, the loss with its reduction and every loss's parameters (numbers as float,
    e.g. focal's alpha, a number or a list, as str), the optimizer and every optimizer's
    parameters, the flat training settings, then the data settings (``data.name`` as
    ``data``; the folder is left out); and the keys of the settings that are ints."""
    out: dict[str, tuple[str, type]] = {"activation.name": ("activation", str),
                                        "loss.name": ("loss", str),
                                        "loss.reduction": ("loss.reduction", str)}
    for name in losses.names():
        sig = inspect.signature(losses.loss_class(name).__init__).parameters
        for p, default in losses.params(name).items():
            number = isinstance(default, (int, float)) and "Sequence" not in str(sig[p].annotation)
            out.setdefault(f"loss.{p}", (f"loss.{p}", float if number else str))
    out["optimizer.name"] = ("optimizer", str)
    for name in optim.names():
        for p in optim.params(name):
            out.setdefault(f"optimizer.{p}", (f"optimizer.{p}", float))
    ints: set[str] = set()
    for f in fields(TrainConfig):
        if f.name not in ("activation", "loss", "loss_params", "optimizer", "optimizer_params",
                          "data"):
            out[f.name] = (f.name, _column_type(f.type, f.default))
            ints |= {f.name} if _is_int(f.type) else set()
    for f in fields(DataConfig):
        if f.name == "name":
            out["data.name"] = ("data", str)
        elif f.name != "root":
            out[f"data.{f.name}"] = (f.name, _column_type(f.type, f.default))
            ints |= {f"data.{f.name}"} if _is_int(f.type) else set()
    return out, ints


# MLflow param key -> column, with its type; the keys of int settings
PARAMS, INT_PARAMS = _params()


def _defaults() -> dict[str, Any]:
    """Column -> the value a run that does not log the setting was trained with: the core's
    default for every training and data setting and the optimizer (runs recorded before a
    setting existed had its default behaviour); loss and optimizer parameters have none
    (they belong to one loss or optimizer)."""
    cfg = TrainConfig()
    out = {"optimizer": cfg.optimizer}
    for key, (column, _) in PARAMS.items():
        if "." not in key and hasattr(cfg, key):
            out[column] = getattr(cfg, key)
        elif key.startswith("data.") and key != "data.name":
            out[column] = getattr(cfg.data, key.split(".", 1)[1])
    return out


#: column -> what a run that has no such param was trained with
DEFAULTS = _defaults()


def with_defaults(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a setting a run does not record filled with :data:`DEFAULTS` (a column
    of evidence written before the setting existed, or an empty cell)."""
    runs = runs.copy()
    for column, default in DEFAULTS.items():
        if default is None:
            continue
        if column not in runs.columns:
            runs[column] = default
        else:
            runs[column] = runs[column].where(runs[column].notna(), default)
    return runs
METRICS = {
    "final_train_loss": "train_loss",
    "final_test_loss": "test_loss",
    "final_train_acc": "train_acc",
    "final_test_acc": "test_acc",
    "best_test_acc": "best_test_acc",
    "train_time_s": "time_s",
    "cpu_time_s": "cpu_s",
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


def param_values(row) -> dict[str, Any]:
    """A runs-frame row's settings as the tracker logged them: MLflow param key (:data:`PARAMS`)
    -> the config's value (None where the row has none), the inverse of the frame's typing:
    an int setting read as a float column (an optional one: a data limit) is an int again,
    a list setting (focal's per-class alpha) a list."""
    out: dict[str, Any] = {}
    for key, (column, _) in PARAMS.items():
        value = row.get(column)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out[key] = None
            continue
        value = value.item() if isinstance(value, np.generic) else value
        if key in INT_PARAMS and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, str) and value[:1] == "[":
            value = json.loads(value)
        out[key] = value
    return out


def train_config(row) -> TrainConfig | None:
    """The :class:`TrainConfig` a runs-frame row was trained with (:func:`param_values`), a
    setting the row does not hold being TrainConfig's default; None if the row's values do
    not make one."""
    nested: dict[str, Any] = {}
    for key, value in param_values(row).items():
        if value is None:
            continue
        *path, leaf = key.split(".")
        node = nested
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return TrainConfig.from_dict(nested)
    except (TypeError, ValueError, KeyError):
        return None


def load_runs(uri: str | None = None, experiment: str | Iterable[str] = "mlp-sweeps",
              parent_run_id: str | None = None, filter_string: str = "",
              latest_per_config: bool = True) -> pd.DataFrame:
    """Training runs of ``experiment`` (one name or several), optionally only the children of
    a sweep's parent run and/or matching an MLflow ``filter_string``.

    With ``latest_per_config``, several runs of one configuration (``config_hash``, e.g. a
    failed run and its successful rerun) collapse to the one that counts: finished over
    others, then the latest.

    Read-only (:mod:`mlp_sweeps.record.snapshot`: a SQLite store is read directly, without MLflow);
    a ``filter_string`` is MLflow's search syntax, so it is read through MLflow.
    """
    uri = resolve_uri(uri)
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    if filter_string:
        runs = _search(uri, names, filter_string)
    else:
        runs = snapshot.read(uri, names)
        missing = [] if runs is None else \
            sorted(set(names) - _existing_names(uri, names))
        if runs is None or missing:
            _no_experiment(uri, names if runs is None else missing)
    if parent_run_id:
        runs = [r for r in runs if r.data.tags.get(Tag.PARENT) == parent_run_id]
    return frame(runs, latest_per_config)


def _existing_names(uri: str, names: list[str]) -> set[str]:
    """The names among ``names`` that exist (a snapshot of several experiments is None
    only when none exists)."""
    if len(names) == 1:
        return set(names)
    known = set(snapshot.experiment_names(uri) or [])
    return {n for n in names if n in known}


def _no_experiment(uri: str, names: list[str]):
    known = snapshot.experiment_names(uri) or []
    raise ValueError(f"no experiment {names[0]!r} in {uri}; experiments there: "
                     f"{', '.join(known) or '(none)'}")


def _search(uri: str, names: list[str], filter_string: str) -> list:
    from mlp_sweeps.record.tracking import Tracker

    tracker = Tracker(uri)
    exps = []
    for n in names:
        e = tracker.client.get_experiment_by_name(n)
        if e is None:
            _no_experiment(uri, [n])
        exps.append(e.experiment_id)
    return list(tracker.search(exps, filter_string))


def frame(runs: Iterable, latest_per_config: bool = True) -> pd.DataFrame:
    """The runs (MLflow's or :mod:`mlp_sweeps.record.snapshot`'s) as the typed frame, sweep parent
    runs left out; with ``latest_per_config``, only the run that counts per configuration."""
    runs = [r for r in runs if r.data.tags.get(Tag.SWEEP) != SWEEP_PARENT]
    if latest_per_config:
        counted = {r.info.run_id for r in latest_by_config(runs).values()}
        runs = [r for r in runs
                if r.info.run_id in counted or not r.data.tags.get(Tag.CONFIG_HASH)]
    rows = []
    for r in runs:
        tags = r.data.tags
        row = {"run_id": r.info.run_id, "run_name": r.info.run_name,
               "mlflow_status": r.info.status, "start_time": r.info.start_time,
               "status": outcome_of(r), "config_hash": tags.get(Tag.CONFIG_HASH),
               "grid": tags.get(Tag.GRID, ""), "parent_run_id": tags.get(Tag.PARENT),
               "error": tags.get(Tag.ERROR, ""), "experiment_id": r.info.experiment_id,
               "threads": _typed(tags.get(Tag.BLAS_THREADS), int),
               # successive halving: the rung it reached (with status paused, stopped,
               # finished), or trains to (running)
               "rung": _typed(tags.get(Tag.RUNG), int)}
        for key, (col, kind) in PARAMS.items():
            row[col] = _typed(r.data.params[key], kind) if key in r.data.params \
                else DEFAULTS.get(col, _typed(None, kind))
        for key, col in METRICS.items():
            row[col] = r.data.metrics.get(key, np.nan)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["run_id", "run_name", "status", "mlflow_status",
                                     "start_time", "config_hash", "grid", "parent_run_id",
                                     "error", "experiment_id", "threads", "rung",
                                     *CONFIG_COLUMNS,
                                     *METRICS.values()])
    return df.sort_values("start_time", kind="stable").reset_index(drop=True)


def metric_histories(uri: str | None, run_ids: Iterable[str],
                     keys: Iterable[str] = CURVES
                     ) -> pd.DataFrame:
    """Per-epoch metrics, long format: run_id, key, epoch, value."""
    from mlp_sweeps.record.tracking import Tracker

    client = Tracker(uri).client
    rows = [(rid, k, m.step, m.value) for rid in run_ids for k in keys
            for m in client.get_metric_history(rid, k)]
    return pd.DataFrame(rows, columns=["run_id", "key", "epoch", "value"])
