"""mlp_sweeps.claim.ledger: which run counts, which runs are alive, how runs close; on a real
SQLite store and real processes."""

from __future__ import annotations

import time

import pytest
from mlflow.entities import Run, RunData, RunInfo, RunTag

from mlp_sweeps.record import tracking
from mlp_sweeps.claim.ledger import Ledger, Outcome, RunStatus, Tag, latest_by_config, outcome_of


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


def test_a_running_run_is_alive_while_its_heartbeat_is_recent():
    ledger = Ledger.__new__(Ledger)
    ledger.heartbeat_timeout_s = 10.0
    now = time.time()
    assert ledger.is_alive(_run("beating", "RUNNING", now - 3600, heartbeat=now - 2))
    assert not ledger.is_alive(_run("stopped", "RUNNING", now - 3600, heartbeat=now - 11))
    # a run without a heartbeat (an older version's): judged from its start
    assert ledger.is_alive(_run("young", "RUNNING", now - 2))
    assert not ledger.is_alive(_run("old", "RUNNING", now - 11))


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

    # the last metrics go with the outcome (one request), 1200 of them: two requests
    store.close(ids[0], Outcome.DIVERGED,
                metrics=[({"train_loss": 1.0 / s}, s) for s in range(1, 1200)]
                + [({"final_test_acc": 0.5, "status": "no number"}, 7)])
    store.close(ids[1], Outcome.FAILED, error="Traceback ...\nValueError: boom")
    store.mark_killed(ids[2], "its worker process died")
    got = {r.info.run_id: r for r in store.runs(config_hash="h")}
    assert got[ids[0]].info.status == RunStatus.FINISHED
    assert got[ids[0]].data.tags[Tag.STATUS] == "diverged"
    assert got[ids[0]].data.metrics == {"train_loss": 1.0 / 1199, "final_test_acc": 0.5}
    history = store.tracker.client.get_metric_history(ids[0], "train_loss")
    assert sorted(m.step for m in history) == list(range(1, 1200))
    assert got[ids[1]].info.status == RunStatus.FAILED
    assert got[ids[1]].data.tags[Tag.ERROR].endswith("ValueError: boom")
    assert got[ids[2]].info.status == RunStatus.KILLED
    assert got[ids[2]].data.tags[Tag.STATUS] == "killed"
    assert got[ids[2]].data.tags[Tag.ERROR] == "its worker process died"


def test_settle_closes_runs_whose_heartbeat_stopped_on_any_host(store):
    store.heartbeat_timeout_s = 1.5
    orphan = store.start("orphan", {Tag.CONFIG_HASH: "h", Tag.HOST: "elsewhere"})
    live = store.start("live", {Tag.CONFIG_HASH: "g", Tag.HOST: "elsewhere"})
    beat = store.heartbeat(live)  # every 0.25 s
    try:
        time.sleep(2.5)
        latest = store.latest_by_config()
    finally:
        beat.stop()
    assert latest["h"].info.run_id == orphan and latest["h"].info.status == RunStatus.KILLED
    assert latest["h"].data.tags[Tag.STATUS] == "killed"
    assert "no heartbeat for" in latest["h"].data.tags[Tag.ERROR]
    assert latest["g"].info.run_id == live and latest["g"].info.status == RunStatus.RUNNING


def test_concurrent_claims_of_one_configuration_have_one_winner(store):
    """8 threads (separate clients, as separate launchers would be) claim the same
    configuration at once, 5 times over: each time exactly one wins and trains; the losers
    leave nothing behind; a claim after a finished run of the sweep loses to it."""
    from concurrent.futures import ThreadPoolExecutor

    from mlp_sweeps.record.tracking import Tracker

    uri = store.tracker.uri
    ledgers = [Ledger(Tracker(uri), store.experiment) for _ in range(8)]
    parent = store.start("sweep", {Tag.SWEEP: "parent"})
    for round_ in range(5):
        h = f"cfg{round_}"
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda lg: lg.claim("job", {Tag.CONFIG_HASH: h}, parent),
                                ledgers))
        winners = [rid for rid, _ in got if rid is not None]
        assert len(winners) == 1, got
        # each loser names the claim it lost to (the winner, or an earlier claim that
        # lost in turn), never itself
        assert all(by.data.tags[Tag.CONFIG_HASH] == h for rid, by in got if rid is None)
        left = store.runs(config_hash=h)
        assert [r.info.run_id for r in left] == winners
        assert left[0].data.tags[Tag.CLAIM] == "won"
        store.close(winners[0], Outcome.FINISHED)
        rid, by = ledgers[0].claim("late", {Tag.CONFIG_HASH: h}, parent)
        assert rid is None and by.info.run_id == winners[0]


def test_a_claim_counts_finished_runs_started_since_the_sweep_read_the_store(store):
    """``since`` (the sweep's ``read_at``, passed with each job) decides which FINISHED run
    of the configuration is a rival: one started after it (not skipped by that sweep) is;
    one started before it (the sweep decided to rerun it) is not. A won claim carries the
    run's params, written with its ``claim=won`` tag."""
    parent = store.start("sweep", {Tag.SWEEP: "parent"})
    done = store.start("earlier", {Tag.CONFIG_HASH: "h"}, parent=parent)
    store.close(done, Outcome.FINISHED)
    started = store.tracker.client.get_run(done).info.start_time
    rid, by = store.claim("job", {Tag.CONFIG_HASH: "h"}, parent, since=started + 1,
                          params={"lr": 0.1, "loss.name": "mse"})
    assert by is None and rid is not None  # the finished run predates the read: rerun
    run = store.tracker.client.get_run(rid)
    assert run.data.tags[Tag.CLAIM] == "won"
    assert run.data.params == {"lr": "0.1", "loss.name": "mse"}
    store.close(rid, Outcome.FINISHED)
    rid2, by2 = store.claim("again", {Tag.CONFIG_HASH: "h"}, parent, since=started)
    assert rid2 is None and by2.info.run_id in (done, rid)  # finished since the read
    assert len(store.runs(config_hash="h")) == 2  # the lost claim left nothing


def test_a_process_opens_a_store_once(tmp_path):
    """``Tracker.shared``: a worker running many jobs opens the store for the first only.
    Opening takes the store's lock (``<db>.lock``): held by another process, a second
    ``shared`` does not wait for it."""
    import subprocess
    import sys

    from mlp_sweeps.record.store import lock_path

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    first = tracking.Tracker.shared(uri)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         "FileLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)",
         str(lock_path(db))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        again = tracking.Tracker.shared(uri)
        assert time.monotonic() - t0 < 1.0
        assert again is first
        Ledger(again, "e").start("a run", {})  # and it works
    finally:
        holder.kill()
        holder.wait()


def test_a_run_started_in_an_experiment_deleted_meanwhile_restores_it(store):
    """The experiment's id is looked up once per Tracker; if the experiment is deleted
    meanwhile (in the UI, say), the next run restores it, as a lookup would have."""
    from mlflow import MlflowClient

    other = MlflowClient(store.tracker.uri)
    other.delete_experiment(store.experiment_id)
    rid = store.start("after the deletion", {})
    exp = other.get_experiment(store.experiment_id)
    assert exp.lifecycle_stage == "active"
    assert other.get_run(rid).info.experiment_id == exp.experiment_id
