"""mlp_sweeps.ledger: which run counts, which runs are alive, how runs close; on a real
SQLite store and real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from mlflow.entities import Run, RunData, RunInfo, RunTag

from mlp_sweeps import ledger as ledger_mod
from mlp_sweeps import tracking
from mlp_sweeps.ledger import Ledger, Outcome, RunStatus, Tag, latest_by_config, outcome_of


def _run(run_id: str, mlflow_status: str, start_s: float, **tags) -> Run:
    """An MLflow run entity as a search returns it (no store needed for pure rules)."""
    info = RunInfo(run_id, "1", "me", mlflow_status, int(start_s * 1000), None, "active",
                   run_name=run_id)
    return Run(info, RunData(tags=[RunTag(k, str(v)) for k, v in tags.items()]))


def test_which_run_counts_for_a_configuration():
    runs = [
        _run("a-finished", "FINISHED", 1, config_hash="a", status="finished"),
        _run("a-failed-later", "FAILED", 2, config_hash="a", status="failed"),
        _run("b-killed", "KILLED", 1, config_hash="b", status="killed"),
        _run("b-running", "RUNNING", 0, config_hash="b", status="running"),
        _run("c-diverged", "FINISHED", 1, config_hash="c", status="diverged"),
        _run("c-rerun", "FINISHED", 5, config_hash="c", status="finished"),
        _run("d-failed", "FAILED", 1, config_hash="d", status="failed"),
        _run("d-killed", "KILLED", 3, config_hash="d", status="killed"),
        _run("parent", "FINISHED", 9, config_hash="a", sweep="parent"),
        _run("no-hash", "FINISHED", 9),
    ]
    counts = {h: r.info.run_id for h, r in latest_by_config(runs).items()}
    assert counts == {"a": "a-finished", "b": "b-running", "c": "c-rerun", "d": "d-killed"}


def test_outcome_of_a_run():
    assert outcome_of(_run("r", "RUNNING", 0, status="finished")) == "running"
    assert outcome_of(_run("r", "FINISHED", 0, status="diverged")) == "diverged"
    assert outcome_of(_run("r", "KILLED", 0)) == "killed"  # no status tag


@pytest.fixture
def sleeper():
    t0 = time.time()
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p, t0
    p.kill()
    p.wait()


def test_process_start_time_is_when_the_process_started(sleeper):
    proc, t0 = sleeper
    time.sleep(2.5)  # /proc/<pid> is first looked up now, 2.5 s after the start
    started = ledger_mod.process_start_time(proc.pid)
    assert t0 - 1.5 <= started <= t0 + 1.5
    assert ledger_mod.process_start_time(2 ** 22 + 12345) is None  # no such process


def test_a_running_run_is_alive_only_while_its_own_process_runs(sleeper):
    proc, t0 = sleeper
    host = socket.gethostname()
    time.sleep(0.5)
    assert ledger_mod.process_alive(_run("own", "RUNNING", t0 + 0.3, host=host, pid=proc.pid))
    # the pid now belongs to a process started 30 s after the run began: reused, the run's
    # own process is gone
    assert not ledger_mod.process_alive(_run("reused", "RUNNING", t0 - 30, host=host, pid=proc.pid))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    assert not ledger_mod.process_alive(_run("dead", "RUNNING", t0, host=host, pid=dead))
    # another machine's run cannot be checked from here: taken as alive
    assert ledger_mod.process_alive(_run("elsewhere", "RUNNING", t0, host=host + "-other", pid=dead))


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tracking, "PAGE_SIZE", 2)  # several pages with a few runs
        yield tracking.Tracker(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


@pytest.fixture
def store(tracker, request):
    return Ledger(tracker, request.node.name)  # an experiment per test


def test_queries_read_every_page_and_runs_close_with_their_outcome(store):
    parent = store.start("sweep", {Tag.SWEEP: "parent"})
    ids = [store.start(f"job{i}", {Tag.CONFIG_HASH: "h" if i < 3 else f"h{i}"}, parent=parent)
           for i in range(5)]
    assert len(store.runs()) == 6
    assert {r.info.run_id for r in store.runs(parent=parent)} == set(ids)
    same = store.runs(config_hash="h", newest_first=True)
    assert [r.info.run_id for r in same] == ids[:3][::-1]

    store.close(ids[0], Outcome.DIVERGED)
    store.close(ids[1], Outcome.FAILED, error="Traceback ...\nValueError: boom")
    store.mark_killed(ids[2], "its worker process died")
    got = {r.info.run_id: r for r in store.runs(config_hash="h")}
    assert got[ids[0]].info.status == RunStatus.FINISHED
    assert got[ids[0]].data.tags[Tag.STATUS] == "diverged"
    assert got[ids[1]].info.status == RunStatus.FAILED
    assert got[ids[1]].data.tags[Tag.ERROR].endswith("ValueError: boom")
    assert got[ids[2]].info.status == RunStatus.KILLED
    assert got[ids[2]].data.tags[Tag.STATUS] == "killed"
    assert got[ids[2]].data.tags[Tag.ERROR] == "its worker process died"


def test_settle_closes_runs_left_running_by_a_dead_process(store):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = socket.gethostname()
    orphan = store.start("orphan", {Tag.CONFIG_HASH: "h", Tag.HOST: host, Tag.PID: dead})
    live = store.start("live", {Tag.CONFIG_HASH: "g", Tag.HOST: host, Tag.PID: os.getpid()})
    latest = store.latest_by_config()
    assert latest["h"].info.run_id == orphan and latest["h"].info.status == RunStatus.KILLED
    assert latest["h"].data.tags[Tag.STATUS] == "killed"
    assert latest["g"].info.run_id == live and latest["g"].info.status == RunStatus.RUNNING
