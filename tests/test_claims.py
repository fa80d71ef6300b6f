"""Launchers cooperating through the store, with real processes and a real SQLite store:
several launchers of one sweep split it (each configuration trained once), and the share
of a launcher killed mid-way is finished by a rerun once its heartbeats have stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from polling import freeze_when
from postgres_cluster import postgres  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# tiny jobs, one at a time in each launcher: the tests are about who runs what
TINY = ["data.train_limit=500", "data.test_limit=200", "hidden_size=16", "blas_threads=1",
        "hydra.launcher.n_jobs=1"]


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One SQLite store for the module, created once (an experiment per test)."""
    from mlp_sweeps.record.tracking import Tracker

    return Tracker(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}").uri


def _env() -> dict:
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _launch(args: list[str], tmp: Path, name: str) -> subprocess.Popen:
    """A launcher in its own session (to kill it with its workers), output to a file."""
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args,
                             f"hydra.sweep.dir={tmp / name}"], cwd=tmp,
                            stdout=open(tmp / f"{name}.log", "w"), stderr=subprocess.STDOUT,
                            text=True, env=_env(), start_new_session=True)


def _runs(client: MlflowClient, experiment: str) -> tuple[list, list]:
    """(sweep parent runs, job runs) of the experiment."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return [], []
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    return parents, [r for r in runs if r.data.tags.get("sweep") != "parent"]


def _one_finished_run_per_config(jobs: list, n: int) -> None:
    finished = [r.data.tags["config_hash"] for r in jobs if r.info.status == "FINISHED"]
    assert len(finished) == n and len(set(finished)) == n, sorted(finished)
    assert not [r for r in jobs if r.info.status == "RUNNING"]


def test_three_launchers_of_one_sweep_train_each_configuration_once(tmp_path, store_uri):
    uri = store_uri
    args = ["-m", "seed=0,1,2,3,4,5", "lr=0.05,0.1", "epochs=1", *TINY,
            f"tracking.uri={uri}", "tracking.experiment=three"]
    t0 = time.perf_counter()
    procs = [_launch(args, tmp_path, f"l{i}") for i in range(3)]
    codes = [p.wait(timeout=400) for p in procs]
    wall = time.perf_counter() - t0
    logs = [(tmp_path / f"l{i}.log").read_text() for i in range(3)]
    assert codes == [0, 0, 0], "\n\n".join(logs)
    parents, jobs = _runs(MlflowClient(uri), "three")
    _one_finished_run_per_config(jobs, 12)
    assert len(parents) == 3 and all(p.info.status == "FINISHED" for p in parents)
    # every job counted once across the launchers: what each ran, found or left to others
    ran = [int(p.data.metrics["run"]) for p in parents]
    assert sum(ran) == 12, (ran, logs)
    for p in parents:
        m = p.data.metrics
        assert m["run"] + m["skipped"] + m["elsewhere"] == 12
    assert all("this launcher ran" in log for log in logs)
    print(f"\n3 launchers of a 12-job sweep: {wall:.1f} s wall; ran {ran}")


def _kill_when_training(proc: subprocess.Popen, client: MlflowClient, experiment: str,
                        log: Path) -> list:
    """SIGKILL ``proc``'s process group (the launcher and its workers, no cleanup) once a
    run finished and a claim it won is training (one worker: joblib runs the jobs in the
    launching process, whose pid the runs record); the runs it left RUNNING."""
    try:
        def training() -> list:  # a finished run, and a claim won and training
            assert proc.poll() is None, log.read_text()
            jobs = _runs(client, experiment)[1]
            if any(r.info.status == "FINISHED" for r in jobs):
                return [r for r in jobs if r.info.status == "RUNNING"
                        and r.data.tags.get("claim") == "won"
                        and r.data.tags.get("pid") == str(proc.pid)]
            return []

        freeze_when(proc.pid, training, timeout=300)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return [r for r in _runs(client, experiment)[1] if r.info.status == "RUNNING"
            and r.data.tags.get("pid") == str(proc.pid)]


def test_a_killed_launchers_share_is_finished_by_a_rerun_at_once(tmp_path, store_uri):
    """SIGKILL a sweep and rerun it right away, its dead runs' heartbeats still fresh (the
    default 60 s timeout): on this host their processes are known to be gone, so the
    rerun runs their configurations and ends with one finished run per configuration."""
    uri = store_uri
    # jobs of ~1 s of training: a job of a few ms is RUNNING for less than the test's
    # look at the store takes, and the victim can finish all four between two looks
    args = ["-m", "seed=0,1,2,3", "epochs=400", *TINY, f"tracking.uri={uri}",
            "tracking.experiment=kill"]
    client = MlflowClient(uri)
    victim = _launch(args, tmp_path, "victim")
    left = _kill_when_training(victim, client, "kill", tmp_path / "victim.log")
    assert left and len([r for r in _runs(client, "kill")[1]
                         if r.info.status == "FINISHED"]) < 4
    t0 = time.perf_counter()
    again = subprocess.run([sys.executable, str(ROOT / "train.py"), *args,
                            f"hydra.sweep.dir={tmp_path / 'again'}"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300, env=_env())
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert "left RUNNING by a dead process" in out
    assert "claimed by" not in out and "left to live runs" not in out
    _, jobs = _runs(client, "kill")
    _one_finished_run_per_config(jobs, 4)
    dead = {r.info.run_id: r for r in jobs if r.info.status == "KILLED"}
    assert {r.info.run_id for r in left} <= set(dead)
    assert all("is gone" in r.data.tags["error"] for r in dead.values())
    print(f"\nrerun at once after SIGKILL: {time.perf_counter() - t0:.1f} s")


def test_survivors_of_three_launchers_finish_a_killed_ones_share_without_a_rerun(
        tmp_path, store_uri):
    """Three launchers of one sweep, one SIGKILLed mid-sweep: the two others wait for the
    configurations it held, take them over as soon as its processes are gone, and end
    with every configuration trained once and exit status 0."""
    uri = store_uri
    args = ["-m", "seed=0,1,2,3,4,5", "epochs=300", *TINY, f"tracking.uri={uri}",
            "tracking.experiment=survivors"]
    client = MlflowClient(uri)
    procs = [_launch(args, tmp_path, f"s{i}") for i in range(3)]
    left = _kill_when_training(procs[0], client, "survivors", tmp_path / "s0.log")
    assert left
    codes = [p.wait(timeout=400) for p in procs[1:]]
    logs = [(tmp_path / f"s{i}.log").read_text() for i in (1, 2)]
    assert codes == [0, 0], "\n\n".join(logs)
    parents, jobs = _runs(client, "survivors")
    _one_finished_run_per_config(jobs, 6)
    killed = [r for r in jobs if r.info.status == "KILLED"]
    assert {r.info.run_id for r in left} <= {r.info.run_id for r in killed}
    for p in parents:  # each survivor speaks for the whole sweep
        if p.info.status == "FINISHED":
            m = p.data.metrics
            assert m["run"] + m["skipped"] + m["elsewhere"] == 6 and m["finished"] == 6, m
    assert sum(p.info.status == "FINISHED" for p in parents) == 2


def test_two_launchers_on_postgresql_train_each_configuration_once(postgres, tmp_path):
    """The claims on the production backend, PostgreSQL, read and written through MLflow
    (no SQLite shortcut): two launchers of one sweep split it."""
    from mlp_sweeps.record.tracking import Tracker

    uri = Tracker(postgres[0]).uri  # the schema created once, as a server would have
    args = ["-m", "seed=0,1,2,3", "epochs=1", *TINY, f"tracking.uri={uri}",
            "tracking.experiment=pg"]
    procs = [_launch(args, tmp_path, f"l{i}") for i in range(2)]
    codes = [p.wait(timeout=400) for p in procs]
    logs = [(tmp_path / f"l{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(logs)
    parents, jobs = _runs(MlflowClient(uri), "pg")
    _one_finished_run_per_config(jobs, 4)
    assert sum(int(p.data.metrics["run"]) for p in parents) == 4, logs


def test_a_jobs_claim_counts_every_finished_run_unless_the_sweep_reruns_them(tmp_path):
    """What a sweep tells its jobs' claims (``tracking.read_at``): which FINISHED runs of
    their configuration are rivals. By default all of them (0): the sweep's read saw none
    finished for a job it runs, so any finished one was written after that read, whatever
    its start time says (a run stamped just before the read, written just after it, while
    its writer waited for SQLite's lock, was trained twice by three launchers). With
    ``rerun``, those started since the sweep's read (its parent's ``read_at``)."""
    from test_sweeps import SMALL, run_train, store_args

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"

    def read_at_of_jobs() -> set:
        return {OmegaConf.load(p).tracking.read_at
                for p in (tmp_path / "multirun").glob("*/.hydra/config.yaml")}

    args = ["-m", "seed=0,1", *SMALL, "epochs=1", *store_args(tmp_path, "since")]
    r = run_train(*args, tmp=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert read_at_of_jobs() == {0}
    r = run_train(*args, "hydra.sweeper.rerun=true", tmp=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "run: 2  finished: 2" in r.stdout + r.stderr
    client = MlflowClient(uri)
    parents = [p for p in client.search_runs(
        [client.get_experiment_by_name("since").experiment_id], order_by=["start_time DESC"])
        if p.data.tags.get("sweep") == "parent"]
    assert len(parents) == 2
    assert read_at_of_jobs() == {int(parents[0].data.tags["read_at"])}
