"""Reading an experiment's runs, read-only: straight from a SQLite store, else through MLflow.

Everything that only *reads* a study (a dry run, the estimate, ``mlp-export``, the
evidence of a reproduction) goes through :func:`read`. Its answer is a list of runs shaped
like MLflow's ``Run`` (``run.info.run_id / run_name / status / start_time / end_time /
experiment_id``, ``run.data.tags / params / metrics``), so every rule of
:mod:`mlp_sweeps.claim.ledger` applies to it unchanged.

For a ``sqlite:///`` store it reads MLflow's tables (``experiments``, ``runs``, ``tags``,
``params``, ``latest_metrics``) in one read transaction on a read-only connection:

- nothing is created or written: a store or an experiment that does not exist is
  ``None``, where opening it through MLflow would create and migrate the store;
- MLflow is not imported (about 2 s of a dry run), and the runs are not built one by one
  through MLflow's ORM (``search_runs`` pages of 1,000): at 10,000 runs this is the
  difference between seconds and minutes;
- the same runs as ``MlflowClient.search_runs`` (active ones; a run's metrics are its
  latest values, NaN where MLflow stored NaN), checked against it on real stores by
  ``tests/test_snapshot.py``.

Any other store (a tracking server, PostgreSQL) is read through MLflow, and so is a SQLite
store whose tables are MLflow's with other columns (a newer schema): the answer is the same
either way, only slower. A SQLite file that is not an MLflow store is refused
(:class:`TrackingError`), never handed to MLflow, which would add its tables to it.
"""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from mlp_sweeps.errors import TrackingError
from mlp_sweeps.record.store import BUSY_TIMEOUT_S, sqlite_path

__all__ = ["Run", "RunInfo", "RunData", "read", "experiment_names"]

#: the columns this module reads, by table: a store without them is read through MLflow
COLUMNS = {
    "experiments": {"experiment_id", "name", "lifecycle_stage"},
    "runs": {"run_uuid", "name", "status", "start_time", "end_time", "lifecycle_stage",
             "experiment_id"},
    "tags": {"key", "value", "run_uuid"},
    "params": {"key", "value", "run_uuid"},
    "latest_metrics": {"key", "value", "is_nan", "run_uuid"},
}


@dataclass
class RunInfo:
    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None


@dataclass
class RunData:
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    info: RunInfo
    data: RunData


class _NotOurSchema(Exception):
    """The SQLite file is not an MLflow store as this module knows it."""


def read(uri: str, experiments: Iterable[str],
         tags: Mapping[str, str] | None = None) -> list[Any] | None:
    """Every active run of the named experiments, oldest first, optionally only those with
    each of ``tags`` (key -> value, e.g. one configuration's hash, or a sweep's parent run);
    ``None`` if the store or none of the experiments exists (nothing is created)."""
    names, tags = list(experiments), dict(tags or {})
    db = sqlite_path(uri)
    if db is not None:
        if not db.exists():
            return None
        try:
            return _read_sqlite(db, names, tags)
        except _NotOurSchema:
            pass
    return _read_mlflow(uri, names, tags)


def experiment_names(uri: str) -> list[str] | None:
    """The store's active experiments (``None``: no store), for error messages."""
    db = sqlite_path(uri)
    if db is not None:
        if not db.exists():
            return None
        try:
            with closing(_connect(db)) as conn:
                if not _check_schema(conn):
                    return []
                return sorted(n for (n,) in conn.execute(
                    "SELECT name FROM experiments WHERE lifecycle_stage = 'active'"))
        except _NotOurSchema:
            pass
    from mlp_sweeps.record.tracking import Tracker

    return sorted(e.name for e in Tracker(uri).client.search_experiments())


def _connect(db) -> sqlite3.Connection:
    # as a URI (its path percent-encoded: a folder may hold '?', '#' or '%')
    conn = sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=ro", uri=True,
                           timeout=BUSY_TIMEOUT_S)
    conn.execute("PRAGMA query_only = 1")
    return conn


def _check_schema(conn: sqlite3.Connection) -> bool:
    """True for an MLflow store as this module reads it, False for an empty database (no
    store yet); :class:`_NotOurSchema` for MLflow's tables with other columns."""
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return False
    if "experiments" not in tables or "runs" not in tables:
        raise TrackingError(f"{conn.execute('PRAGMA database_list').fetchone()[2]} is not an "
                            f"MLflow store (its tables: {', '.join(sorted(tables)[:8])}); "
                            f"give tracking.uri a store of its own")
    for table, needed in COLUMNS.items():
        have = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        if not needed <= have:
            raise _NotOurSchema(f"{table}: missing {sorted(needed - have)}")
    return True


def _read_sqlite(db, names: list[str], tags: dict[str, str]) -> list[Run] | None:
    with closing(_connect(db)) as conn:
        if not _check_schema(conn):
            return None
        conn.execute("BEGIN")  # one snapshot across the five queries (WAL or not)
        marks = ",".join("?" * len(names))
        exp_ids = [i for (i,) in conn.execute(
            f"SELECT experiment_id FROM experiments WHERE name IN ({marks}) "
            "AND lifecycle_stage = 'active'", names)]
        if not exp_ids:
            return None
        emarks = ",".join("?" * len(exp_ids))
        where = f"r.experiment_id IN ({emarks}) AND r.lifecycle_stage = 'active'"
        args = list(exp_ids)
        for key, value in tags.items():
            where += " AND r.run_uuid IN (SELECT run_uuid FROM tags WHERE key = ? AND value = ?)"
            args += [str(key), str(value)]
        runs: dict[str, Run] = {}
        for rid, name, exp, status, start, end in conn.execute(
                f"SELECT r.run_uuid, r.name, r.experiment_id, r.status, r.start_time, "
                f"r.end_time FROM runs r WHERE {where} ORDER BY r.start_time, r.run_uuid",
                args):
            runs[rid] = Run(RunInfo(rid, name, str(exp), status, start, end), RunData())
        for table, attr in (("tags", "tags"), ("params", "params")):
            for rid, key, value in conn.execute(
                    f"SELECT t.run_uuid, t.key, t.value FROM {table} t "
                    f"JOIN runs r ON r.run_uuid = t.run_uuid WHERE {where}", args):
                getattr(runs[rid].data, attr)[key] = value
        for rid, key, value, is_nan in conn.execute(
                "SELECT m.run_uuid, m.key, m.value, m.is_nan FROM latest_metrics m "
                f"JOIN runs r ON r.run_uuid = m.run_uuid WHERE {where}", args):
            runs[rid].data.metrics[key] = math.nan if is_nan else float(value)
        conn.rollback()
    return list(runs.values())


def _read_mlflow(uri: str, names: list[str], tags: dict[str, str]) -> list[Any] | None:
    from mlp_sweeps.record.tracking import Tracker

    tracker = Tracker(uri)
    ids = [e.experiment_id for n in names
           if (e := tracker.client.get_experiment_by_name(n)) is not None]
    if not ids:
        return None
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return sorted(tracker.search(ids, where),
                  key=lambda r: (r.info.start_time or 0, r.info.run_id))
