"""Adaptive sweeps with real multiruns on a real SQLite store: random and TPE searches
(the same command draws the same configurations; killed and rerun, ``n_trials`` finished,
none twice) and successive halving (ASHA: a promoted configuration continues in its own run,
its final metrics and weights identical to the configuration trained straight through; two
launchers of one sweep, one of them SIGKILLed and rerun, share the ladder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from polling import freeze_when

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# small and fast: the tests are about what is drawn, continued and recorded
DATA = ["data.train_limit=2000", "data.test_limit=500", "data.val_size=500", "hidden_size=16",
        "test_every=1", "blas_threads=1", "progress=false"]
SPACE = ["lr=tag(log,interval(1e-4,1e-1))", "momentum=0.0,0.5,0.9", "epochs=2"]


def _env() -> dict:
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _store(tmp: Path, experiment: str) -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp / 'store' / 'mlflow.db'}",
            f"tracking.experiment={experiment}"]


def _train(tmp: Path, *args: str, name: str = "out", timeout: float = 600):
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *args,
                        f"hydra.sweep.dir={tmp / name}"], cwd=tmp, capture_output=True,
                       text=True, timeout=timeout, env=_env())
    return r.returncode, r.stdout + r.stderr


def _launch(tmp: Path, *args: str, name: str) -> subprocess.Popen:
    """A launcher in its own session (killed with its workers), its output in a file."""
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", *args,
                             f"hydra.sweep.dir={tmp / name}"], cwd=tmp,
                            stdout=open(tmp / f"{name}.log", "w"), stderr=subprocess.STDOUT,
                            text=True, env=_env(), start_new_session=True)


def _jobs(tmp: Path, experiment: str) -> list:
    """The experiment's training runs (sweep parents left out)."""
    client = MlflowClient(f"sqlite:///{tmp / 'store' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("sweep") != "parent"]


def _searched(run) -> tuple:
    """A run's sampled values, as its overrides wrote them."""
    ov = run.data.tags["overrides"].split()
    return tuple(sorted(o for o in ov if o.split("=")[0] in ("lr", "momentum")))


def _kill_when(proc: subprocess.Popen, tmp: Path, experiment: str, n_finished: int) -> None:
    """SIGKILL the launcher's process group once ``n_finished`` of its runs finished."""
    freeze_when(proc.pid, lambda: sum(r.info.status == "FINISHED"
                                      for r in _jobs(tmp, experiment)) >= n_finished)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


# ---------------------------------------------------------------------------------------
# random and TPE
# ---------------------------------------------------------------------------------------
def test_random_search_draws_the_same_configurations_and_a_rerun_skips_them(tmp_path):
    args = ["hydra.sweeper.sampler=random", "hydra.sweeper.n_trials=4",
            "hydra.sweeper.seed=7", *SPACE, *DATA]
    rc, out = _train(tmp_path, *args, *_store(tmp_path, "rnd"))
    assert rc == 0, out
    first = sorted(_searched(r) for r in _jobs(tmp_path, "rnd"))
    assert len(first) == 4 == len(set(first))
    assert "search: random (hydra.sweeper.seed=7), 4 of 4 configurations" in out
    assert "best: lr=" in out and "val_acc" in out
    # the same command draws the same four: all skipped, nothing trained again
    rc, out = _train(tmp_path, *args, *_store(tmp_path, "rnd"), name="again")
    assert rc == 0, out
    assert "planned: 4  skipped: 4" in out
    assert sorted(_searched(r) for r in _jobs(tmp_path, "rnd")) == first
    # into another experiment: the same draws again; another seed draws others
    rc, out = _train(tmp_path, *args, *_store(tmp_path, "rnd2"), name="other")
    assert rc == 0, out
    assert sorted(_searched(r) for r in _jobs(tmp_path, "rnd2")) == first
    rc, out = _train(tmp_path, *[a.replace("seed=7", "seed=8") for a in args],
                     *_store(tmp_path, "rnd3"), name="seed8")
    assert rc == 0, out
    assert not set(_searched(r) for r in _jobs(tmp_path, "rnd3")) & set(first)


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_killed_search_rerun_ends_with_n_trials_finished_none_twice(tmp_path, sampler):
    n = 6
    args = [f"hydra.sweeper.sampler={sampler}", f"hydra.sweeper.n_trials={n}", *SPACE,
            "epochs=3", *DATA, "hydra.launcher.n_jobs=2", *_store(tmp_path, sampler)]
    proc = _launch(tmp_path, *args, name="first")
    _kill_when(proc, tmp_path, sampler, 2)
    rc, out = _train(tmp_path, *args, name="rerun")
    assert rc == 0, out
    jobs = _jobs(tmp_path, sampler)
    finished = [r for r in jobs if r.info.status == "FINISHED"]
    assert len(finished) == n, [(r.info.status, _searched(r)) for r in jobs]
    assert len({_searched(r) for r in finished}) == n  # distinct configurations
    assert len({r.data.tags["config_hash"] for r in finished}) == n  # none trained twice
    assert not [r for r in jobs if r.info.status == "RUNNING"]
    assert f"{n} of {n} configurations recorded" in out
    if sampler == "tpe":  # the rerun was told what had finished, and drew only the rest
        assert "configurations of this space recorded in the experiment" in out


# ---------------------------------------------------------------------------------------
# successive halving
# ---------------------------------------------------------------------------------------
GRID = ["lr=0.003,0.01,0.03", "momentum=0.0,0.5,0.9", "epochs=9", *DATA]  # 9 configurations
ASHA = ["hydra.sweeper.scheduler=asha", "hydra.sweeper.asha.eta=3"]  # rungs 1, 3, 9


def _final(run) -> dict:
    keys = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc",
            "final_val_loss", "final_val_acc", "epochs_completed")
    return {k: run.data.metrics[k] for k in keys}


def _weights(tmp: Path, run) -> dict:
    client = MlflowClient(f"sqlite:///{tmp / 'store' / 'mlflow.db'}")
    path = client.download_artifacts(run.info.run_id, "model.npz", str(tmp / run.info.run_id))
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _check_ladder(tmp: Path, jobs: list, n: int) -> None:
    """One run per configuration, each finished or stopped at a rung, its epochs logged
    once each; and nothing left due: every configuration in the top third of a rung went on."""
    by_hash = {}
    for r in jobs:
        by_hash.setdefault(r.data.tags["config_hash"], []).append(r)
    assert len(by_hash) == n and all(len(v) == 1 for v in by_hash.values()), by_hash
    assert {r.data.tags["status"] for r in jobs} <= {"finished", "stopped"}
    ladder = [1, 3, 9]
    values = {r.info.run_id: {int(e): v["val_acc"] for e, v in
                              json.loads(r.data.tags["rung_metrics"]).items()} for r in jobs}
    for k, epoch in enumerate(ladder[:-1]):
        ranked = sorted((v[epoch], rid) for rid, v in values.items() if epoch in v)
        top = ranked[::-1][:len(ranked) // 3]
        for _, rid in top:
            assert ladder[k + 1] in values[rid], f"{rid} was due for rung {k + 1}"
    client = MlflowClient(f"sqlite:///{tmp / 'store' / 'mlflow.db'}")
    for r in jobs:  # stopped at its rung, or trained to the end; each epoch logged once
        done = int(r.data.metrics["epochs_completed"])
        assert done in ladder and (done == 9) == (r.data.tags["status"] == "finished")
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(1, done + 1)), (r.info.run_name, steps)


def test_asha_promotes_from_checkpoints_in_the_same_run_bit_for_bit(tmp_path):
    rc, out = _train(tmp_path, *ASHA, *GRID, "hydra.launcher.n_jobs=2",
                     *_store(tmp_path, "asha"))
    assert rc == 0, out
    jobs = _jobs(tmp_path, "asha")
    _check_ladder(tmp_path, jobs, 9)
    # synchronous halving would train 9 + 3*2 + 1*6 = 21 epochs of 81; asynchronous
    # promotions depend on the order results arrive in: what the summary says is the store's
    trained = sum(int(r.data.metrics["epochs_completed"]) for r in jobs)
    assert 21 <= trained < 81
    assert f"epochs trained: {trained} of the full grid's 81" in out
    # the budget estimated before it ran: synchronous halving's 21 epochs
    assert "successive halving (eta 3, rungs 1, 3, 9): about 21 epochs of 9 configurations, " \
        "26% of the grid's 81" in out and "] estimate: " in out
    went_on = sum(int(r.data.metrics["epochs_completed"]) > 1 for r in jobs)
    assert f"rung 0 (  1 epochs):   9 configurations, {went_on:>3} went on" in out
    assert "workers busy" in out and "Pareto front" in out
    # promotions download checkpoints without MLflow's progress bar, whose tqdm lock (a
    # named semaphore) a worker stopped at the end left "leaked" at exit
    assert "Downloading artifacts" not in out and "leaked semaphore" not in out
    assert "Logged the ladder's figure" in out and (tmp_path / "out" / "ladder.png").stat().st_size
    best = max((r for r in jobs if r.data.tags["status"] == "finished"),
               key=lambda r: r.data.metrics["final_val_acc"])
    assert best.data.tags["reopened"] == "2"  # promoted twice, in its own run
    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(best.info.run_id, "train_loss")]
    assert steps == list(range(1, 10))  # one continuous curve, each epoch once
    # the same configuration trained straight through: the same metrics and weights
    ov = [o for o in best.data.tags["overrides"].split() if o.split("=")[0] in ("lr", "momentum")]
    rc, out = _train(tmp_path, *ov, "epochs=9", *DATA, *_store(tmp_path, "straight"),
                     name="straight")
    assert rc == 0, out
    (straight,) = _jobs(tmp_path, "straight")
    assert _final(straight) == _final(best)
    a, b = _weights(tmp_path, straight), _weights(tmp_path, best)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _two_launchers_one_killed(tmp: Path, args: list, experiment: str) -> tuple[str, list]:
    """Two launchers of one ASHA sweep at once; one SIGKILLed once the first rung has 3
    paused configurations, the other left to end; then the command rerun. (The rerun's
    output, the experiment's runs.)"""
    procs = [_launch(tmp, *args, name=f"l{i}") for i in range(2)]
    freeze_when(procs[0].pid, lambda: sum(r.data.tags.get("status") == "paused"
                                          for r in _jobs(tmp, experiment)) >= 3)
    os.killpg(procs[0].pid, signal.SIGKILL)
    procs[0].wait(timeout=60)
    assert procs[1].wait(timeout=600) == 0, (tmp / "l1.log").read_text()
    rc, out = _train(tmp, *args, name="rerun")  # the killed one's share, if any left
    assert rc == 0, out
    return out, _jobs(tmp, experiment)


def test_two_asha_launchers_one_killed_and_rerun_share_the_ladder(tmp_path):
    args = [*ASHA, *GRID, "hydra.launcher.n_jobs=1", *_store(tmp_path, "two")]
    out, jobs = _two_launchers_one_killed(tmp_path, args, "two")
    _check_ladder(tmp_path, jobs, 9)
    assert not [r for r in jobs if r.info.status == "RUNNING"]
    # each finished configuration: its straight-through metrics
    for r in (r for r in jobs if r.data.tags["status"] == "finished"):
        ov = [o for o in r.data.tags["overrides"].split() if o.split("=")[0] in ("lr", "momentum")]
        rc, out = _train(tmp_path, *ov, "epochs=9", *DATA, *_store(tmp_path, "ref"), name="ref")
        assert rc == 0, out
        ref = next(x for x in _jobs(tmp_path, "ref")
                   if x.data.tags["config_hash"] == r.data.tags["config_hash"])
        assert _final(ref) == _final(r)


def test_tpe_under_asha_two_launchers_one_killed_draw_n_trials_each_trained_once(tmp_path):
    # TPE draws as workers free up, told the ladder (paused ones as pruned trials); two
    # launchers share one ladder through the store; one SIGKILLed and rerun
    args = ["hydra.sweeper.sampler=tpe", "hydra.sweeper.n_trials=9", *ASHA,
            "lr=tag(log,interval(1e-3,1e-1))", "momentum=0.0,0.5,0.9", "epochs=9", *DATA,
            "hydra.launcher.n_jobs=1", *_store(tmp_path, "tpeasha")]
    out, jobs = _two_launchers_one_killed(tmp_path, args, "tpeasha")
    _check_ladder(tmp_path, jobs, 9)  # 9 drawn in all, one run each, nothing left due
    assert len({_searched(r) for r in jobs}) == 9
    assert not [r for r in jobs if r.info.status == "RUNNING"]
    assert "search: tpe (hydra.sweeper.seed=0), 9 of 9 configurations recorded" in out
    assert "rung 0 (  1 epochs):   9 configurations" in out


def test_asha_warns_before_it_starts_when_too_few_configurations_can_reach_the_last_rung(
        tmp_path):
    rc, out = _train(tmp_path, *ASHA, "lr=0.003,0.01", "momentum=0.0,0.5,0.9,0.95", "epochs=9",
                     *DATA, "hydra.sweeper.dry_run=true", *_store(tmp_path, "few"))
    assert rc == 0, out
    assert "8 configurations for 3 rungs at eta 3: fewer than 9 (eta^2) can leave the last " \
        "rung (epochs=9) empty" in out
    assert not (tmp_path / "store").exists()  # a dry run: nothing recorded
