"""Opening a SQLite store (mlp_sweeps/record/store.py) with real processes and real stores: the
schema is MLflow's own, a reader meanwhile never sees half of it, an interrupted creation
leaves nothing broken, and 8 sweeps started at once into one new store all succeed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.store.db.base_sql_model import Base
from mlflow.tracking import MlflowClient

from mlp_sweeps.record.store import lock_path, open_client, sqlite_path, with_busy_timeout

ROOT = Path(__file__).resolve().parent.parent


def _schema(db: Path) -> dict:
    """Every schema object's definition as a sorted list of its clauses (MLflow's own
    creation orders a table's constraints differently from one process to the next)."""
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return {(t, n, tn): sorted(x.strip().rstrip(",") for x in (sql or "").splitlines())
            for t, n, tn, sql in rows}


def _env() -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _wait_for(pred, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _creating(db: Path) -> subprocess.Popen:
    """``python -m mlp_sweeps.record.store`` creating ``db`` in its own process, MLflow building
    the schema (an empty cache folder: no schema kept from an earlier store)."""
    env = dict(_env(), MLP_SWEEPS_CACHE=str(db.parent / "empty-cache"))
    return subprocess.Popen([sys.executable, "-m", "mlp_sweeps.record.store", f"sqlite:///{db}"],
                            cwd=db.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _building(db: Path) -> bool:
    """The creator holds the store's exclusive transaction and MLflow builds the schema."""
    return any(db.parent.glob(f".{db.name}.*.new"))


def test_uri_helpers():
    assert sqlite_path("sqlite:////a/m.db?timeout=3") == Path("/a/m.db")
    assert sqlite_path("sqlite:///:memory:") is None and sqlite_path("http://h:5000") is None
    assert lock_path(Path("/a/m.db")) == Path("/a/m.db.lock")
    assert with_busy_timeout("sqlite:////a/m.db") == "sqlite:////a/m.db?timeout=60"
    assert with_busy_timeout("sqlite:////a/m.db?timeout=3") == "sqlite:////a/m.db?timeout=3"


def test_a_new_store_has_mlflows_own_schema_and_the_busy_timeout(tmp_path):
    plain, ours = tmp_path / "plain.db", tmp_path / "ours.db"
    MlflowClient(f"sqlite:///{plain}").search_experiments()  # MLflow creating it in place
    client = open_client(f"sqlite:///{ours}")
    assert client.tracking_uri.endswith("?timeout=60")
    assert _schema(plain) == _schema(ours)
    with sqlite3.connect(plain) as a, sqlite3.connect(ours) as b:
        q = "SELECT * FROM alembic_version"
        assert a.execute(q).fetchall() == b.execute(q).fetchall()
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert lock_path(ours).exists() and not list(tmp_path.glob(".*.new"))


def test_a_store_from_the_kept_schema_is_the_store_mlflow_builds(tmp_path, monkeypatch):
    """The second new store of a process's MLflow version is made from the schema the
    first one's migrations built (kept in the cache folder), with the same tables, indexes
    and rows; an unreadable kept schema is built again."""
    from mlp_sweeps.record import store

    monkeypatch.setenv("MLP_SWEEPS_CACHE", str(tmp_path / "cache"))
    built, kept, again = tmp_path / "built.db", tmp_path / "kept.db", tmp_path / "again.db"
    assert not store._schema_cache().exists()
    open_client(f"sqlite:///{built}")
    assert store._schema_cache().exists()
    calls = []
    monkeypatch.setattr(store, "_migrate", lambda db: calls.append(db) or pytest.fail("built"))
    client = open_client(f"sqlite:///{kept}")
    assert calls == []
    with sqlite3.connect(built) as a, sqlite3.connect(kept) as b:
        q = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
        assert a.execute(q).fetchall() == b.execute(q).fetchall()
        for (name,) in a.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                                 "name NOT IN ('experiments', 'experiment_tags')"):
            assert a.execute(f'SELECT * FROM "{name}"').fetchall() == \
                b.execute(f'SELECT * FROM "{name}"').fetchall(), name
    exp = client.create_experiment("x")
    run = client.create_run(exp).info.run_id
    client.log_metric(run, "m", 1.5)
    assert client.get_run(run).data.metrics == {"m": 1.5}
    monkeypatch.undo()
    monkeypatch.setenv("MLP_SWEEPS_CACHE", str(tmp_path / "cache"))
    store._schema_cache().write_text('{"objects": [')  # cut short
    open_client(f"sqlite:///{again}")
    assert _schema(again) == _schema(built)
    assert json.loads(store._schema_cache().read_text())["objects"]  # built and kept again


def test_a_reader_during_creation_waits_and_sees_every_table(tmp_path):
    db = tmp_path / "m.db"
    proc = _creating(db)
    _wait_for(lambda: _building(db) or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()[0]
    # a process that does not take the lock (as `mlflow ui`): blocked until the commit
    with sqlite3.connect(db, timeout=300) as reader:
        tables = {r[0] for r in reader.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(Base.metadata.tables) <= tables
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out


def test_a_creation_killed_midway_leaves_a_store_the_next_process_creates(tmp_path):
    db = tmp_path / "m.db"
    proc = _creating(db)
    _wait_for(lambda: _building(db) or proc.poll() is not None)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    with sqlite3.connect(db) as c:  # rolled back: no table at all, not half of them
        assert c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    client = open_client(f"sqlite:///{db}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert not list(tmp_path.glob(".*.new"))  # the killed creator's file is cleaned up


@pytest.mark.slow
def test_eight_sweeps_started_at_once_into_one_new_store_all_succeed(tmp_path):
    """The issue's reproduction: before the lock, 8 of 8 (2 of 2: 1) exited 1 with
    MLflow's migration tracebacks (``table ... already exists``, ``Online migration
    expected to match one row``)."""
    db = tmp_path / "store" / "m.db"
    names = "abcdefgh"
    procs = {}
    for e in names:
        out = open(tmp_path / f"{e}.log", "w")
        procs[e] = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "-m", "seed=0", "epochs=1",
             "data.train_limit=300", "data.test_limit=100", "hidden_size=16",
             "hydra.launcher.n_jobs=1", f"tracking.uri=sqlite:///{db}",
             f"tracking.experiment={e}", f"hydra.sweep.dir={tmp_path / e}"],
            cwd=tmp_path, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    codes = {e: p.wait(timeout=600) for e, p in procs.items()}
    logs = {e: (tmp_path / f"{e}.log").read_text() for e in names}
    assert all(c == 0 for c in codes.values()), {e: logs[e][-3000:] for e in names
                                                 if codes[e]}
    client = MlflowClient(f"sqlite:///{db}")
    metrics = {}
    for e in names:
        exp = client.get_experiment_by_name(e)
        runs = client.search_runs([exp.experiment_id])
        assert sorted(r.data.tags.get("sweep", "job") for r in runs) == ["job", "parent"], e
        assert all(r.info.status == "FINISHED" for r in runs), e
        (job,) = [r for r in runs if r.data.tags.get("sweep") != "parent"]
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert [m.step for m in client.get_metric_history(job.info.run_id, key)] == [1]
        metrics[e] = sorted(job.data.metrics)
    # one configuration (seed 0) in every experiment: the same metrics, none lost
    assert all(m == metrics["a"] for m in metrics.values()) and "final_test_acc" in metrics["a"]
    waits = sum(log.count("Waited") for log in logs.values())
    print(f"\n8 sweeps into one new store: all exit 0; {len(metrics['a'])} metrics per run; "
          f"{waits} waited for another process to open the store")


def _journal(db: Path) -> str:
    with sqlite3.connect(db) as c:
        return c.execute("PRAGMA journal_mode").fetchone()[0]


def _synchronous(client: MlflowClient) -> int:
    """PRAGMA synchronous on a connection of the client's own store engine (1 NORMAL,
    2 FULL: SQLite's default)."""
    with client._tracking_client.store.engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA synchronous").scalar()


def test_a_store_keeps_a_write_ahead_log_and_a_copy_of_its_file_has_every_run(tmp_path):
    db = tmp_path / "mlflow.db"
    client = open_client(f"sqlite:///{db}")
    assert _journal(db) == "wal"
    assert _synchronous(client) == 1  # commits append to the log, no wait for the disk
    # another process records a run and exits: its log is emptied into the file, so a
    # copy of mlflow.db alone has the run (MLflow leaves its connections open to the end)
    code = ("import sys; from mlp_sweeps.record.store import open_client\n"
            "c = open_client(sys.argv[1]); e = c.create_experiment('x')\n"
            "c.set_terminated(c.create_run(e).info.run_id)\n")
    subprocess.run([sys.executable, "-c", code, f"sqlite:///{db}"], env=_env(), check=True,
                   cwd=tmp_path, timeout=120)
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "copy" / "mlflow.db"
    copy.parent.mkdir()
    copy.write_bytes(db.read_bytes())
    with sqlite3.connect(copy) as c:
        assert c.execute("SELECT count(*), max(status) FROM runs").fetchone() == (1, "FINISHED")


def test_an_older_store_is_switched_to_the_log_unless_another_process_holds_it(tmp_path):
    db = tmp_path / "mlflow.db"
    assert _creating(db).wait(timeout=120) == 0  # made by another process, which exited
    with sqlite3.connect(db) as c:  # as stores were made before: rollback journal
        assert c.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM experiments").fetchone()  # holds a shared lock
    t0 = time.monotonic()
    client = open_client(f"sqlite:///{db}")  # cannot switch now: waits briefly, goes on
    assert time.monotonic() - t0 < 30
    reader.execute("COMMIT")
    reader.close()
    assert _journal(db) == "delete"
    assert _synchronous(client) == 2  # SQLite's default: NORMAL is unsafe in this mode
    assert client.search_experiments()  # the store works as it is
    open_client(f"sqlite:///{db}")  # the next opening switches it
    assert _journal(db) == "wal"
