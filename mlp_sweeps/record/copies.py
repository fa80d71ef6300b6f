"""Copies of recorded runs in a SQLite store, made in SQL: a store filled to N runs without
training them, what reading N runs costs (``scripts/bench_scale.py --fill``).

MLflow has no API to copy a run with its metrics' history; its SQLite schema is written
directly here (the tables ``runs``, ``tags``, ``params``, ``metrics``, ``latest_metrics``,
columns read from the store itself), for benchmark stores only: never on a store a sweep
is writing.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

__all__ = ["copy_store", "fill"]


def copy_store(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite store (SQLite's backup: what its write-ahead log holds
    included)."""
    with closing(sqlite3.connect(src)) as a, closing(sqlite3.connect(dst)) as b:
        a.backup(b)


def fill(db: Path, experiment: str, target: int, hash_of_seed=None) -> int:
    """Copy the experiment's training runs (rows of MLflow's SQLite schema: the run, its
    tags, params and metrics) until it holds ``target`` of them; the number it holds.

    Each copy's ``config_hash`` is made unique; with ``hash_of_seed`` (seed -> the hash of
    the sweep's job of that seed), the copies instead become the runs of the seeds after
    the recorded ones (copy ``i`` of the run of seed ``s``: seed ``s + i * runs``, its
    hash), so that the sweep of ``seed=range(target)`` finds every job finished."""
    with closing(sqlite3.connect(db)) as c:
        exp = c.execute("select experiment_id from experiments where name=?",
                        (experiment,)).fetchone()[0]
        src = [r[0] for r in c.execute(
            "select r.run_uuid from runs r join tags t on t.run_uuid=r.run_uuid "
            "where r.experiment_id=? and t.key='mlflow.parentRunId'", (exp,))]
        seed = dict(c.execute("select run_uuid, cast(value as integer) from params "
                              "where key='seed'"))
        src.sort(key=lambda r: seed.get(r, 0))  # a partial last round copies the lowest seeds
        i = 0
        while (i + 1) * len(src) < target:
            i += 1
            ids = src[:target - i * len(src)]
            sfx, q = f"c{i:05d}", ",".join("?" * len(ids))
            cols = {t: [r[1] for r in c.execute(f"pragma table_info({t})")]
                    for t in ("runs", "tags", "params", "metrics", "latest_metrics")}
            for table, names in cols.items():
                sel = [f"run_uuid||'{sfx}'" if n == "run_uuid" else
                       f"case when key='config_hash' then value||'{sfx}' else value end"
                       if (table, n) == ("tags", "value") else
                       f"{n}+{i}" if n in ("start_time", "end_time") else n for n in names]
                c.execute(f"insert into {table} ({','.join(names)}) select {','.join(sel)} "
                          f"from {table} where run_uuid in ({q})", ids)
        if hash_of_seed is not None:
            for i in range(1, target // max(len(src), 1) + 1):
                for rid in src:
                    new = seed[rid] + i * len(src)
                    if new >= target:
                        continue
                    copy = f"{rid}c{i:05d}"
                    c.execute("update params set value=? where run_uuid=? and key='seed'",
                              (str(new), copy))
                    c.execute("update tags set value=? where run_uuid=? and key='config_hash'",
                              (hash_of_seed(new), copy))
        c.commit()
        return c.execute("select count(*) from tags t join runs r on r.run_uuid=t.run_uuid where "
                         "r.experiment_id=? and t.key='mlflow.parentRunId'", (exp,)).fetchone()[0]
