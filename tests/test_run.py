"""mlp_sweeps.run: a tracked run's life (TrackedRun) on a real SQLite store, and run()."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from mlp_sweeps.plan import schema
from mlp_sweeps.record import tracking
from mlp_sweeps.claim.ledger import Ledger, RunStatus, Tag
from mlp_sweeps.run.job import run
from mlp_sweeps.run.tracked import Terminated, TrackedRun, UntrackedRun, tracked_run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    return tracking.Tracker(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


@pytest.fixture
def ledger(tracker, request):
    return Ledger(tracker, request.node.name)


@pytest.fixture
def own_sigterm_handler():
    """A SIGTERM handler of the caller's, to be found in place after a run."""
    def handler(signum, frame):  # pragma: no cover - never called
        pass

    before = signal.signal(signal.SIGTERM, handler)
    yield handler
    signal.signal(signal.SIGTERM, before)


def _only_run(ledger):
    (r,) = ledger.runs()
    return r


def test_a_run_closes_with_its_outcome(ledger, own_sigterm_handler):
    with TrackedRun(ledger, "ok", {Tag.CONFIG_HASH: "h"}) as tracked:
        assert signal.getsignal(signal.SIGTERM) is not own_sigterm_handler
        assert ledger.runs()[0].info.status == RunStatus.RUNNING
        tracked.log_metrics({"final_test_acc": 0.5})
        tracked.outcome = "diverged"
    r = _only_run(ledger)
    assert r.info.status == RunStatus.FINISHED and r.data.tags[Tag.STATUS] == "diverged"
    assert r.data.metrics["final_test_acc"] == 0.5
    assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler


def test_an_exception_fails_the_run_with_its_traceback_and_propagates(ledger,
                                                                      own_sigterm_handler):
    with pytest.raises(ZeroDivisionError):
        with TrackedRun(ledger, "bad", {}):
            1 / 0
    r = _only_run(ledger)
    assert r.info.status == RunStatus.FAILED and r.data.tags[Tag.STATUS] == "failed"
    assert "Traceback" in r.data.tags[Tag.ERROR]
    assert r.data.tags[Tag.ERROR].rstrip().endswith("ZeroDivisionError: division by zero")
    assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler


def test_sigterm_kills_the_run(ledger, own_sigterm_handler):
    with pytest.raises(Terminated):
        with TrackedRun(ledger, "terminated", {}):
            os.kill(os.getpid(), signal.SIGTERM)
    r = _only_run(ledger)
    assert r.info.status == RunStatus.KILLED and r.data.tags[Tag.STATUS] == "killed"
    assert "terminated by signal" in r.data.tags[Tag.ERROR]
    assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler


def test_without_tracking_sigterm_still_ends_the_run_and_nothing_is_recorded(
        own_sigterm_handler, tmp_path, monkeypatch):
    """tracking.enabled=false: the null run keeps the signal handling, and writes nothing
    (no default store in the folder it runs in)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(Terminated):
        with tracked_run(None, "untracked", {}) as run:
            assert isinstance(run, UntrackedRun) and run.where == "(tracking disabled)"
            run.log_epoch({"epoch": 1, "train_loss": 0.5})
            run.log_metrics({"x": 1.0})
            run.flush()
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler
    assert run.run_id is None and list(tmp_path.iterdir()) == []


def test_run_restores_the_callers_sigterm_handler(own_sigterm_handler, tmp_path):
    schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "data.train_limit=200", "data.test_limit=100", "hidden_size=8", "epochs=1",
            "tracking.enabled=false", "progress=false"])
    GlobalHydra.instance().clear()
    summary = run(cfg)
    assert summary["status"] == "finished" and summary["run_id"] is None
    assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler
