"""Reading a study read-only (mlp_sweeps.record.snapshot): a real SQLite store read directly gives
what MLflow's own search gives, creates nothing, and a dry run reads through it without
writing anything."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from mlp_sweeps.read import results
from mlp_sweeps.record import snapshot
from mlp_sweeps.errors import TrackingError
from mlp_sweeps.claim.ledger import Outcome, RunStatus, Tag
from mlp_sweeps.launch.sweep import split
from mlp_sweeps.record.tracking import Tracker

from test_sweeps import SMALL, run_train, store_args


def _store(tmp_path: Path) -> tuple[str, Tracker]:
    """A real store holding what a study holds: finished, failed, running, deleted, parent
    and child runs, metrics logged at several steps and a NaN, in two experiments."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    t = Tracker(uri)
    a, b = t.experiment_id("a"), t.experiment_id("b")
    parent = t.start_run(a, "a sweep", {Tag.SWEEP: "parent"})
    for i, status in enumerate(["FINISHED", "FAILED", "RUNNING", "KILLED", "FINISHED"]):
        rid = t.start_run(a, f"job {i}", {Tag.CONFIG_HASH: f"h{i % 3}", Tag.STATUS: "x" * i},
                          parent_run_id=parent if i % 2 else None)
        t.log_params(rid, {"lr": 10.0 ** -i, "activation.name": "relu", "depth": 1 + i % 2})
        for step in range(3):
            t.log_metrics(rid, {"final_test_acc": 0.1 * step + i, "train_time_s": step},
                          step=step)
        if i == 4:
            t.log_metrics(rid, {"diverged_epoch": float("nan")}, step=0)
        if status != "RUNNING":
            t.end_run(rid, status)
        time.sleep(0.002)  # distinct start times
    gone = t.start_run(a, "deleted", {Tag.CONFIG_HASH: "h9"})
    t.client.delete_run(gone)
    t.start_run(b, "other experiment", {Tag.CONFIG_HASH: "hb"})
    return uri, t


def _as_plain(run) -> dict:
    m = {k: ("nan" if math.isnan(v) else v) for k, v in run.data.metrics.items()}
    return {"id": run.info.run_id, "name": run.info.run_name, "status": run.info.status,
            "start": run.info.start_time, "end": run.info.end_time,
            "exp": run.info.experiment_id, "tags": dict(run.data.tags),
            "params": dict(run.data.params), "metrics": m}


@pytest.mark.parametrize("names", [["a"], ["a", "b"]])
def test_snapshot_reads_what_mlflow_search_reads(tmp_path, names):
    uri, t = _store(tmp_path)
    ours = snapshot.read(uri, names)
    exps = [t.client.get_experiment_by_name(n).experiment_id for n in names]
    theirs = sorted(t.search(exps), key=lambda r: (r.info.start_time, r.info.run_id))
    assert len(ours) == len(theirs) == (6 if names == ["a"] else 7)  # the deleted run is out
    assert [_as_plain(r) for r in ours] == [_as_plain(r) for r in theirs]
    assert {r.info.status for r in ours} >= {"FINISHED", "FAILED", "RUNNING", "KILLED"}
    assert any(math.isnan(r.data.metrics.get("diverged_epoch", 0.0)) for r in ours)


def test_load_runs_reads_the_same_frame_without_mlflow_and_through_it(tmp_path):
    uri, _ = _store(tmp_path)
    for latest in (True, False):
        direct = results.load_runs(uri, "a", latest_per_config=latest)
        # a filter string is MLflow's search syntax: that read goes through MLflow
        through = results.load_runs(uri, "a", latest_per_config=latest,
                                    filter_string="attributes.status != 'SCHEDULED'")
        assert len(direct) == (3 if latest else 5)
        pd.testing.assert_frame_equal(direct, through)


def test_missing_store_or_experiment_reads_none_and_creates_nothing(tmp_path):
    db = tmp_path / "nothing" / "mlflow.db"
    assert snapshot.read(f"sqlite:///{db}", ["a"]) is None
    assert not db.parent.exists()
    uri, _ = _store(tmp_path)
    assert snapshot.read(uri, ["no such experiment"]) is None
    with pytest.raises(ValueError, match=r"no experiment 'zz' in .*experiments there: .*a, b"):
        results.load_runs(uri, "zz")


def test_a_sqlite_file_that_is_not_a_store_is_refused_untouched(tmp_path):
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE notes (text TEXT)")
    before = db.read_bytes()
    with pytest.raises(TrackingError, match=r"notes.db is not an MLflow store .*notes"):
        snapshot.read(f"sqlite:///{db}", ["a"])
    assert db.read_bytes() == before


def _run(status: str, config_hash: str, beat_age: float, start: int) -> snapshot.Run:
    tags = {Tag.CONFIG_HASH: config_hash, Tag.HEARTBEAT: f"{time.time() - beat_age:.3f}"}
    if status != RunStatus.RUNNING:
        tags[Tag.STATUS] = status.lower()
    return snapshot.Run(snapshot.RunInfo(f"r{start}", "", "1", status, start, None),
                        snapshot.RunData(tags=tags))


class _Job:
    def __init__(self, h: str, grids=()):
        self.config_hash, self.grids, self.name, self.previous = h, list(grids), h, None


def test_the_resume_rule_read_only_finished_alive_dead_failed():
    jobs = [_Job(h, ["lr"]) for h in ("done", "alive", "dead", "failed", "new")]
    runs = [_run("FINISHED", "done", 0, 1), _run("RUNNING", "alive", 5, 2),
            _run("RUNNING", "dead", 999, 3), _run("FAILED", "failed", 0, 4),
            _run("KILLED", "done", 0, 5)]  # a later killed rerun does not hide a finished one
    todo, done, regrid = split(jobs, runs, rerun=False, heartbeat_timeout_s=60)
    assert [j.config_hash for j in done] == ["done", "alive"]
    assert [j.config_hash for j in todo] == ["dead", "failed", "new"]
    assert [j.previous for j in jobs] == ["finished", "running", Outcome.KILLED, "failed", None]
    assert regrid == {"r1": "lr"}  # the finished run is reused by grid lr: say so on it
    todo, done, _ = split(jobs, runs, rerun=True, heartbeat_timeout_s=60)
    assert [j.config_hash for j in done] == ["alive"]


@pytest.mark.slow
def test_dry_run_reads_the_store_and_writes_nothing(tmp_path):
    args = store_args(tmp_path, "dry")
    first = run_train("-m", "seed=0", *SMALL, *args, tmp=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    db = tmp_path / "store" / "mlflow.db"
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    dry = run_train("-m", "seed=0,1,2", *SMALL, *args, "hydra.sweeper.dry_run=true",
                    tmp=tmp_path)
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    assert "Dry run: 3 jobs planned, 2 to run; nothing was run or recorded." in out
    assert "seed=0" in out and "(finished: skip)" in out
    assert "estimate: " in out and " s wall on " in out
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    # a store that does not exist yet is not created by a dry run
    fresh = tmp_path / "fresh" / "mlflow.db"
    dry = run_train("-m", "seed=0,1", *SMALL, f"tracking.uri=sqlite:///{fresh}",
                    "hydra.sweeper.dry_run=true", tmp=tmp_path)
    assert dry.returncode == 0, (dry.stdout + dry.stderr)[-3000:]
    assert "2 jobs planned, 2 to run" in dry.stdout + dry.stderr
    assert not fresh.parent.exists()


def test_a_store_in_a_folder_with_uri_characters_is_read(tmp_path):
    """The read-only connection is a URI: '#', '%' and spaces in the folder are escaped."""
    import sqlite3
    from contextlib import closing

    uri, _ = _store(tmp_path)
    odd = tmp_path / "runs #1 100%" / "mlflow.db"
    odd.parent.mkdir()
    # a copy of a store in use (this process wrote it and keeps MLflow's connections):
    # SQLite's backup, which includes what its write-ahead log holds
    with closing(sqlite3.connect(tmp_path / "store" / "mlflow.db")) as src, \
            closing(sqlite3.connect(odd)) as dst:
        src.backup(dst)
    runs = snapshot.read(f"sqlite:///{odd}", ["a"])
    assert runs is not None and len(runs) == len(snapshot.read(uri, ["a"])) == 6
