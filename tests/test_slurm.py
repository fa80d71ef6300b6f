"""Sweeps through ``hydra/launcher=slurm`` on a real one-node SLURM cluster (see
slurm_cluster.py: munge, slurmctld and slurmd on loopback, no accounting), into a real
SQLite store: a sweep of four jobs with one cancelled by ``scancel`` mid-run, then resumed
by rerunning the command; a job killed at its time limit; jobs SLURM refuses."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from slurm_cluster import slurm_cluster  # noqa: F401  (the session's cluster)
from polling import wait_for

# one SLURM cluster per session (a session fixture): its tests on one pytest-xdist worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

ROOT = Path(__file__).resolve().parent.parent
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=cpu",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
         "hydra.launcher.poll_s=1"]
# tiny jobs: on 3000 examples and one BLAS thread, ~0.02 s per epoch in batches of 500,
# ~0.2 s in batches of 4
SMALL = ["data.train_limit=3000", "data.test_limit=300", "hidden_size=32", "lr=1e-3"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module's sweeps (one experiment each), created here: the
    tests poll it while sweeps run (two processes creating one store race its migration)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('slurm-store') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    return uri


@contextlib.contextmanager
def _sweep(cluster, cwd: Path, *args: str):
    """``python train.py -m ARGS`` with the cluster's SLURM_CONF, output in cwd/sweep.log;
    killed if the test fails before it ends (its jobs go with the cluster)."""
    env = dict(cluster.env, HYDRA_FULL_ERROR="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(cwd / "sweep.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", *args],
                                cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finish(proc: subprocess.Popen, cwd: Path, timeout: float = 180) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the sweep hung:\n{(cwd / 'sweep.log').read_text()[-3000:]}")
    return (cwd / "sweep.log").read_text()


_CLIENTS: dict = {}


def _runs(uri: str, experiment: str, parents: bool = False) -> list:
    client = _CLIENTS.setdefault(uri, MlflowClient(uri))  # one client: polls stay cheap
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if parents or r.data.tags.get("sweep") != "parent"]


def _slurm_job_of(run) -> str:
    """The SLURM job running ``run``, from the environment of its process (the run's ``pid``
    tag; ``scontrol pidinfo`` needs a process tracker other than linuxproc): ARRAY_TASK,
    as a job array's last task has the array's own id, which scancel takes for them all."""
    env = dict(v.split(b"=", 1) for v in Path(f"/proc/{run.data.tags['pid']}/environ")
               .read_bytes().split(b"\0") if b"=" in v)
    if b"SLURM_ARRAY_JOB_ID" in env:  # a sweep of several jobs
        return f"{env[b'SLURM_ARRAY_JOB_ID'].decode()}_{env[b'SLURM_ARRAY_TASK_ID'].decode()}"
    return env[b"SLURM_JOB_ID"].decode()


def _summary(log: str) -> dict:
    line = next(ln for ln in log.splitlines() if ln.startswith("planned:"))
    return {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", line)}


def _checkpointed(uri: str, experiment: str, batch_size: str, epoch: int):
    """The RUNNING run with this batch size once it has a checkpoint of ``epoch`` or later."""
    for r in _runs(uri, experiment):
        if r.data.params.get("batch_size") != batch_size:
            continue
        assert r.info.status == "RUNNING", \
            f"the run ended ({r.info.status}) before the test saw its checkpoint {epoch}"
        if int(r.data.tags.get("checkpoint_epoch", 0)) >= epoch:
            return r
    return None


def test_cancelled_job_is_killed_with_slurms_reason_and_resumed_by_rerun(
        slurm_cluster, store, tmp_path):  # noqa: F811
    """Four jobs as a SLURM array; the longest (~10 s of training, started first) is
    ``scancel``-ed once it has checkpointed epoch 20 of 50: the three others finish, the
    sweep ends (no hang) with that run KILLED and SLURM's reason; rerunning the command
    resumes it from its checkpoint: four FINISHED runs, one per configuration."""
    cmd = [*SLURM, *SMALL, "batch_size=100,200,500,4", "epochs=50",
           "checkpoint_every=20", "test_every=10", f"tracking.uri={store}",
           "tracking.experiment=cancel", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    t0 = time.monotonic()
    with _sweep(slurm_cluster, tmp_path, *cmd) as proc:
        victim = wait_for(lambda: _checkpointed(store, "cancel", "4", 20), timeout=150)
        slurm_cluster.run("scancel", _slurm_job_of(victim))
        log = _finish(proc, tmp_path)
    first_s = time.monotonic() - t0
    assert proc.returncode != 0, log[-3000:]
    assert _summary(log) == dict(planned=4, skipped=0, resumed=0, run=4, finished=3,
                                 diverged=0, failed=0, killed=1), log[-3000:]
    killed = re.search(r"^KILLED .*batch_size=4 .*: SLURM job \S+ CANCELLED", log, re.M)
    assert killed, log[-3000:]
    runs = _runs(store, "cancel")
    by_status = sorted((int(r.data.params["batch_size"]), r.info.status) for r in runs)
    assert by_status == [(4, "KILLED"), (100, "FINISHED"), (200, "FINISHED"),
                         (500, "FINISHED")]
    lost = next(r for r in runs if r.info.status == "KILLED")
    assert lost.data.tags["status"] == "killed"
    why = lost.data.tags["error"]
    assert why.startswith("SLURM job ") and "CANCELLED: cancelled (scancel)" in why, why
    # quiet: no accounting errors, one line about where the states come from
    assert "sacct" not in log and log.count("states from squeue") == 1, log[-3000:]

    t1 = time.monotonic()
    with _sweep(slurm_cluster, tmp_path, *cmd) as proc:
        log = _finish(proc, tmp_path)
    rerun_s = time.monotonic() - t1
    assert proc.returncode == 0, log[-3000:]
    assert _summary(log) == dict(planned=4, skipped=3, resumed=1, run=1, finished=1,
                                 diverged=0, failed=0, killed=0), log[-3000:]
    assert "sacct" not in log and "WARNING" not in log, log[-3000:]
    runs = _runs(store, "cancel")
    finished = sorted(int(r.data.params["batch_size"]) for r in runs
                      if r.info.status == "FINISHED")
    assert finished == [4, 100, 200, 500]  # each configuration once: no duplicate
    resumed = next(r for r in runs if r.info.status == "FINISHED"
                   and r.data.params["batch_size"] == "4")
    assert resumed.data.tags["resumed_from"] == lost.info.run_id
    assert int(resumed.data.tags["resumed_epoch"]) in (20, 40)
    print(f"cancel sweep {first_s:.1f} s, rerun {rerun_s:.1f} s")


def test_job_past_its_time_limit_is_killed_with_the_reason(slurm_cluster, store,
                                                          tmp_path):  # noqa: F811
    """SLURM's time limits are whole minutes (``--time=0:20`` is rounded up to 1:00), and
    slurmctld enforces them every 30 s: instead of waiting 60-90 s, the job's end time is
    brought forward to now with ``scontrol update`` (what an administrator does; slurmctld
    then ends it exactly as at its limit: state TIMEOUT, reason TimeLimit) at its next
    check, within 30 s. The job trains far longer than that. Its limit is 5 minutes, not 1:
    SLURM may send the warning signal (USR2, 2 minutes before the limit) up to 60 s early,
    and at a 1-minute limit it came 1 s after the job started, killing it before its run
    began (seen once, with the other tests running beside it)."""
    cmd = [*SLURM, *SMALL, "hydra.launcher.timeout_min=5", "epochs=100000",
           "checkpoint_every=0", f"tracking.uri={store}", "tracking.experiment=timeout",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    with _sweep(slurm_cluster, tmp_path, *cmd) as proc:
        run = wait_for(lambda: next((r for r in _runs(store, "timeout")
                                      if r.info.status == "RUNNING"), None), timeout=150)
        slurm_cluster.run("scontrol", "update", f"JobId={_slurm_job_of(run)}", "EndTime=now")
        t0 = time.monotonic()
        log = _finish(proc, tmp_path, timeout=120)
    print(f"ended {time.monotonic() - t0:.1f} s after its end time")
    assert proc.returncode != 0, log[-3000:]
    assert _summary(log)["killed"] == 1, log[-3000:]
    (run,) = _runs(store, "timeout")
    assert run.info.status == "KILLED" and run.data.tags["status"] == "killed"
    why = run.data.tags["error"]
    assert "TIMEOUT: killed at its time limit" in why and "TimeLimit" in why, why
    assert re.search(r"^KILLED .*: SLURM job \S+ TIMEOUT", log, re.M), log[-3000:]


@pytest.mark.parametrize("bad, message", [
    ("hydra.launcher.partition=gpu", "invalid partition specified: gpu"),
    ("hydra.launcher.mem_gb=100000", "Requested node configuration is not available"),
], ids=["bad-partition", "too-much-memory"])
def test_jobs_slurm_refuses_fail_early_with_its_message(slurm_cluster, store, tmp_path,  # noqa: F811
                                                        bad, message):
    experiment = f"refused-{bad.split('.')[-1].split('=')[0]}"
    t0 = time.monotonic()
    with _sweep(slurm_cluster, tmp_path, *SLURM, *SMALL, bad, "seed=0,1", "epochs=1",
                f"tracking.uri={store}", f"tracking.experiment={experiment}",
                f"hydra.sweep.dir={tmp_path / 'sweep'}") as proc:
        log = _finish(proc, tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "SLURM refuses the sweep's jobs" in log and message in log, log[-3000:]
    assert "Partitions here: cpu* (1 node, 2 CPUs" in log  # what there is instead
    assert "Nothing was run or recorded" in log and "Traceback" not in log
    assert _runs(store, experiment, parents=True) == []  # no run, no parent run
    assert not (tmp_path / "sweep" / ".submitit").exists()  # nothing submitted
    assert slurm_cluster.run("squeue", "--noheader").stdout.strip() == ""
    print(f"refused in {time.monotonic() - t0:.1f} s")


def test_asha_on_slurm_promotes_each_configuration_in_its_own_run_from_the_store(
        slurm_cluster, store, tmp_path):  # noqa: F811
    """Successive halving with every job a SLURM job: 9 configurations, rungs at 1, 3 and 9
    epochs, 2 at once. A promoted configuration is a new SLURM job that reopens its run and
    continues from the checkpoint in the store's artifacts: one run per configuration, each
    epoch logged once, the best one's final metrics those of the configuration trained
    straight through."""
    exp = "slurm-asha"
    grid = ["lr=0.003,0.01,0.03", "momentum=0.0,0.5,0.9", "epochs=9", "data.train_limit=2000",
            "data.test_limit=300", "data.val_size=300", "hidden_size=16", "test_every=1",
            "progress=false"]
    cmd = [*SLURM, "hydra.launcher.array_parallelism=2", "hydra.sweeper.scheduler=asha",
           *grid, f"tracking.uri={store}", f"tracking.experiment={exp}",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    with _sweep(slurm_cluster, tmp_path, *cmd) as proc:
        log = _finish(proc, tmp_path, timeout=400)
    assert proc.returncode == 0, log[-3000:]
    runs = _runs(store, exp)
    assert len({r.data.tags["config_hash"] for r in runs}) == len(runs) == 9, log[-3000:]
    assert {r.data.tags["status"] for r in runs} <= {"finished", "stopped"}
    client = _CLIENTS[store]
    for r in runs:  # stopped at a rung or trained to the end, each epoch once, in one run
        done = int(r.data.metrics["epochs_completed"])
        assert done in (1, 3, 9) and (done == 9) == (r.data.tags["status"] == "finished")
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(1, done + 1)), (r.info.run_name, steps)
    best = max((r for r in runs if r.data.tags["status"] == "finished"),
               key=lambda r: r.data.metrics["final_val_acc"])
    assert best.data.tags["reopened"] == "2"  # two SLURM jobs continued it
    assert "rung 0 (  1 epochs):   9 configurations" in log
    ov = [o for o in best.data.tags["overrides"].split() if o.split("=")[0] in ("lr", "momentum")]
    straight = [*SLURM, *ov, *grid[2:], f"tracking.uri={store}",
                "tracking.experiment=slurm-straight", f"hydra.sweep.dir={tmp_path / 'ref'}"]
    with _sweep(slurm_cluster, tmp_path, *straight) as proc:
        log = _finish(proc, tmp_path)
    assert proc.returncode == 0, log[-3000:]
    (ref,) = _runs(store, "slurm-straight")
    keys = ("final_train_loss", "final_test_acc", "final_val_acc", "epochs_completed")
    assert {k: ref.data.metrics[k] for k in keys} == {k: best.data.metrics[k] for k in keys}


def test_asha_jobs_slurm_ends_before_they_return_are_given_up_and_the_sweep_fails(
        slurm_cluster, store, tmp_path):  # noqa: F811
    """Every job dies in its batch script, before Python starts (``setup: [exit 3]``):
    SLURM ends it, the ladder gives each configuration up at once (a SLURM loss is not
    relaunched) and the sweep fails, naming them killed, instead of ending as if
    interrupted."""
    cmd = [*SLURM, "hydra.launcher.array_parallelism=2", "hydra.sweeper.scheduler=asha",
           "+hydra.launcher.setup=[exit 3]", "lr=0.003,0.01", "momentum=0.0,0.9", "epochs=3",
           "data.train_limit=500", "data.test_limit=100", "data.val_size=100",
           "hidden_size=8", "progress=false", f"tracking.uri={store}",
           "tracking.experiment=slurm-asha-lost", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    with _sweep(slurm_cluster, tmp_path, *cmd) as proc:
        log = _finish(proc, tmp_path)
    assert proc.returncode != 0, log[-3000:]
    assert _summary(log)["killed"] == 4, log[-3000:]
    assert log.count("given up in this sweep (a rerun continues it)") == 4, log[-3000:]
    assert "4 killed of 4 jobs" in log, log[-3000:]
