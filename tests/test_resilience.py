"""Resilience with real processes and real stores: a sweep killed with SIGKILL and resumed,
a job raising and a worker killed in the same sweep, concurrent writers on one SQLite
store, and bad inputs that must leave the store unchanged."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from memory_limit import TOO_BIG, limit_memory
from mlflow.tracking import MlflowClient
from polling import freeze_when, wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# long enough per job (full training set, a few epochs) to be caught mid-way
JOB = ["data.test_limit=500", "hidden_size=32", "epochs=6", "test_every=3", "lr=1e-3"]


def _env() -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _start(args: list[str], cwd: Path, preexec_fn=None) -> subprocess.Popen:
    """The sweep in its own session (to kill it with its workers), output to a file (a pipe
    nobody reads while the test polls would fill up and block the sweep)."""
    log = open(cwd / "sweep.log", "w")
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd,
                            stdout=log, stderr=subprocess.STDOUT, text=True, env=_env(),
                            start_new_session=True, preexec_fn=preexec_fn)


_CLIENTS: dict = {}


def _wait_store_ready(cwd: Path) -> None:
    """Until the sweep has created its store, experiment and parent run: a second process
    opening a SQLite store while MLflow creates its tables races the schema migration."""
    wait_for(lambda: "Sweep recorded in" in (cwd / "sweep.log").read_text())


def _runs(uri: str, experiment: str):
    if uri not in _CLIENTS:  # one client: polling stays cheap
        _CLIENTS[uri] = MlflowClient(uri)
    client = _CLIENTS[uri]
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("sweep") != "parent"]


def _second_wave_running(runs) -> bool:
    ends = [r.info.end_time for r in runs if r.info.status == "FINISHED"]
    return bool(ends) and any(r.info.status == "RUNNING" and r.info.start_time > min(ends)
                              for r in runs)


def test_sigkilled_sweep_resumes_to_every_run_finished_exactly_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # the default heartbeat timeout (60 s): the rerun comes at once, its dead runs'
    # heartbeats still fresh; on this host their processes are known to be gone
    args = ["-m", "seed=0,1,2,3,4,5", *JOB, f"tracking.uri={uri}", "tracking.experiment=kill",
            f"hydra.sweep.dir={tmp_path / 'ms'}"]
    proc = _start(args, tmp_path)
    try:
        _wait_store_ready(tmp_path)
        # mid-way: some runs finished, and a run of the next wave in flight, seen with the
        # sweep's processes stopped: exactly what the kill leaves
        freeze_when(proc.pid, lambda: _second_wave_running(_runs(uri, "kill")))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers, no cleanup
        proc.wait()
    before = _runs(uri, "kill")
    finished_before = {r.data.tags["config_hash"] for r in before if r.info.status == "FINISHED"}
    assert 1 <= len(finished_before) < 6
    assert any(r.info.status == "RUNNING" for r in before)  # left behind by the kill

    again = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=900, env=_env())
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert f"skipped: {len(finished_before)}" in out
    assert "left RUNNING by a dead process: marked KILLED" in out
    after = _runs(uri, "kill")
    finished = [r for r in after if r.info.status == "FINISHED"]
    hashes = [r.data.tags["config_hash"] for r in finished]
    assert len(hashes) == 6 and len(set(hashes)) == 6  # every planned run, exactly once
    assert {r.data.params["seed"] for r in finished} == {str(i) for i in range(6)}
    assert not any(r.info.status == "RUNNING" for r in after)
    killed = [r for r in after if r.info.status == "KILLED"]
    assert killed and all(r.data.tags["status"] == "killed" for r in killed)


def test_exception_and_sigkilled_worker_do_not_take_the_other_jobs_down(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # hidden_size=TOO_BIG does not fit the sweep's memory limit: those 3 jobs raise
    # MemoryError at run time; the test SIGKILLs the worker process running (seed 1,
    # hidden 32) once it is mid-way
    args = ["-m", "seed=0,1,2", f"hidden_size=32,{TOO_BIG}", "data.test_limit=500",
            "epochs=20", "test_every=5", "lr=1e-3", f"tracking.uri={uri}", "tracking.experiment=crash",
            f"hydra.sweep.dir={tmp_path / 'ms'}", "hydra.launcher.n_jobs=2"]
    proc = _start(args, tmp_path, preexec_fn=limit_memory)
    _wait_store_ready(tmp_path)

    def victim():
        for r in _runs(uri, "crash"):
            if (r.info.status == "RUNNING" and r.data.params.get("seed") == "1"
                    and r.data.params.get("hidden_size") == "32"):
                return int(r.data.tags["pid"])
        return None

    pid = wait_for(victim)
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=900)
    out = (tmp_path / "sweep.log").read_text()
    assert proc.returncode != 0, out  # a job failed: the sweep says so
    assert "A worker process died" in out
    assert "3 failed of 6 jobs" in out and "MemoryError" in out
    runs = _runs(uri, "crash")
    ok = [r for r in runs if r.data.params["hidden_size"] == "32"]
    finished = {r.data.params["seed"] for r in ok if r.info.status == "FINISHED"}
    assert finished == {"0", "1", "2"}  # the killed job was relaunched; no job was lost
    killed = [r for r in ok if r.info.status == "KILLED"]
    assert any(r.data.params["seed"] == "1" for r in killed)
    assert all("worker process died" in r.data.tags["error"] for r in killed)
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 3 and all("MemoryError" in r.data.tags["error"] for r in failed)


WRITER = textwrap.dedent("""
    import sys
    from mlp_sweeps.record.tracking import Tracker
    uri, exp_id, idx, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    t = Tracker(uri)
    rid = t.start_run(exp_id, f"writer-{idx}", tags={"writer": idx})
    t.log_params(rid, {f"p{i}": i for i in range(30)})
    for e in range(1, epochs + 1):  # one log_batch per epoch, as a training run does
        t.log_metrics(rid, {"train_loss": 1.0 / e, "train_acc": e / epochs, "test_loss": idx + e,
                            "test_acc": idx / 10, "epoch_time_s": 0.01 * e}, step=e)
    t.set_tags(rid, {"status": "finished"})
    t.end_run(rid, "FINISHED")
""")


def test_eight_concurrent_writers_lose_nothing(tmp_path):
    from mlp_sweeps.record.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)
    exp = tracker.experiment_id("writers")  # created once, in the parent, as the sweeper does
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    n_proc, epochs, keys = 8, 100, 5
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(script), uri, exp, str(i), str(epochs)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env()) for i in range(n_proc)]
    results = [p.communicate(timeout=600) for p in procs]
    elapsed = time.perf_counter() - t0
    errors = [err for p, (_, err) in zip(procs, results) if p.returncode != 0]
    assert not errors, errors[0][-2000:]
    runs = tracker.runs(exp)
    assert len(runs) == n_proc and all(r.info.status == "FINISHED" for r in runs)
    written = n_proc * epochs * keys
    read = 0
    for r in runs:
        idx = int(r.data.tags["writer"])
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_time_s"):
            hist = tracker.client.get_metric_history(r.info.run_id, key)
            assert sorted(m.step for m in hist) == list(range(1, epochs + 1)), (idx, key)
            read += len(hist)
        steps = {m.step: m.value for m in tracker.client.get_metric_history(r.info.run_id,
                                                                            "test_loss")}
        assert all(steps[e] == idx + e for e in range(1, epochs + 1))
    assert read == written
    print(f"\n{n_proc} processes wrote {written} metric values in {elapsed:.1f} s; "
          f"read back {read}; errors: 0")


# ---------------------------------------------------------------------------------------
# bad inputs: an early, named error; the store unchanged
# ---------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def _snapshot(db: Path) -> tuple:
    client = MlflowClient(f"sqlite:///{db}")
    runs = []
    for e in client.search_experiments():
        runs += [(r.info.run_id, r.info.status, tuple(sorted(r.data.metrics.items())))
                 for r in client.search_runs([e.experiment_id])]
    return tuple(sorted(runs))


@pytest.fixture
def populated_store(tmp_path):
    """A store holding one finished run, to check that bad input changes nothing."""
    db = tmp_path / "store" / "mlflow.db"
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "data.train_limit=500",
                        "data.test_limit=100", "hidden_size=8", "epochs=1",
                        f"tracking.uri=sqlite:///{db}", f"hydra.run.dir={tmp_path / 'run0'}"],
                       capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    return db


def _corrupt_root(tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "corrupt"
    shutil.copytree(ROOT / "data" / "mnist", root)
    f = root / "t10k-images.idx3-ubyte.gz"
    os.chmod(f, 0o644)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the gzip CRC or the content breaks
    f.write_bytes(bytes(data))
    return root


BAD_INPUTS = {
    # name: (overrides or a callable(tmp_path) -> overrides, words the error must contain)
    "bad value": (["-m", "lr=1e-3,-1"], ["lr=-1"]),
    "unknown key": (["-m", "activation=relu,gelu", "learning_rate=0.1"], ["learning_rate"]),
    "focal alpha not one per class": (["-m", "loss=focal", "loss.alpha=[0.1,0.2,0.3]"],
                                      ["alpha=[0.1, 0.2, 0.3]", "10 classes"]),
    "unreachable server": (lambda t: ["-m", "activation=relu,gelu",
                                      f"tracking.uri=http://127.0.0.1:{_closed_port()}"],
                           ["not reachable", "127.0.0.1"]),
    "data root without files": (lambda t: ["-m", "activation=relu,gelu",
                                           f"data.root={t / 'nothing'}"],
                                ["missing", "Copy the four IDX files"]),
    "corrupted IDX file": (lambda t: ["-m", "activation=relu,gelu",
                                      f"data.root={_corrupt_root(t)}"],
                           ["t10k-images", "damaged"]),
    "sweep file with an unknown key": (lambda t: _bad_sweep_file(t), ["lrr"]),
}


def _bad_sweep_file(tmp: Path) -> list[str]:
    d = tmp / "extra" / "sweep"
    d.mkdir(parents=True)
    (d / "typo.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n"
                                 "      activation: relu,gelu\nlrr: 0.1\n")
    return ["-m", "sweep=typo", f"hydra.searchpath=[file://{tmp / 'extra'}]"]


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_early_and_leaves_the_store_unchanged(populated_store, tmp_path, case):
    args, words = BAD_INPUTS[case]
    args = args(tmp_path) if callable(args) else list(args)
    if not any(a.startswith("tracking.uri=") for a in args):
        args.append(f"tracking.uri=sqlite:///{populated_store}")
    before = _snapshot(populated_store)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *args,
                        f"hydra.sweep.dir={tmp_path / 'ms'}"], capture_output=True, text=True,
                       timeout=120, env=_env(), cwd=tmp_path)
    elapsed = time.perf_counter() - t0
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    for w in words:
        assert w in out, f"{w!r} missing from:\n{out}"
    assert elapsed < 60, elapsed  # seconds, not a hang
    assert _snapshot(populated_store) == before


def test_killed_run_resumes_from_its_checkpoint_bit_identical(tmp_path):
    """A single run SIGKILLed after a checkpoint (epoch >= 4), then rerun at once with the same
    command (its heartbeat still fresh), resumes its own run's checkpoint (no orphan left) and
    ends with the same per-epoch metrics and the same final weights, bit for bit, as an
    uninterrupted run of the same config in another store."""
    import numpy as np

    job = ["hidden_size=128", "epochs=16", "test_every=2", "checkpoint_every=2", "lr=1e-3",
           "dropout=0.2", "data.test_limit=500", "blas_threads=1", "progress=false",
           "tracking.experiment=ck"]  # the default heartbeat timeout: rerun at once

    def cmd(store: str, run_dir: str) -> list[str]:
        return [*job, f"tracking.uri=sqlite:///{tmp_path / store / 'mlflow.db'}",
                f"hydra.run.dir={tmp_path / run_dir}"]

    ref = subprocess.run([sys.executable, str(ROOT / "train.py"), *cmd("ref", "r0")],
                         capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
    assert ref.returncode == 0, ref.stdout + ref.stderr

    uri = f"sqlite:///{tmp_path / 'kill' / 'mlflow.db'}"
    log = open(tmp_path / "sweep.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *cmd("kill", "r1")],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                            start_new_session=True)
    # the store exists and its tables are created (a second process opening it while MLflow
    # creates them races the schema migration)
    wait_for(lambda: "tracking as run" in (tmp_path / "sweep.log").read_text())

    def checkpointed():
        return any(int(r.data.tags.get("checkpoint_epoch", 0)) >= 4 for r in _runs(uri, "ck"))

    wait_for(checkpointed)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = _runs(uri, "ck")
    assert len(killed) == 1 and killed[0].info.status == "RUNNING"
    assert len(MlflowClient(uri).get_metric_history(killed[0].info.run_id, "train_loss")) < 16

    again = subprocess.run([sys.executable, str(ROOT / "train.py"), *cmd("kill", "r2")],
                           capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from epoch" in again.stdout + again.stderr
    runs = {r.info.status: r for r in _runs(uri, "ck")}
    assert set(runs) == {"KILLED", "FINISHED"}
    new = runs["FINISHED"]
    assert new.data.tags["resumed_from"] == runs["KILLED"].info.run_id
    resumed_at = int(new.data.tags["resumed_epoch"])
    assert resumed_at >= 4

    ref_client = MlflowClient(f"sqlite:///{tmp_path / 'ref' / 'mlflow.db'}")
    ref_run = [r for r in ref_client.search_runs(
        [ref_client.get_experiment_by_name("ck").experiment_id])][0]
    client = MlflowClient(uri)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        a = sorted((m.step, m.value) for m in client.get_metric_history(new.info.run_id, key))
        b = sorted((m.step, m.value) for m in ref_client.get_metric_history(ref_run.info.run_id,
                                                                              key))
        assert a == b, key  # every epoch, the restored ones and the new ones
    for key in ("final_test_acc", "final_train_loss", "final_test_loss"):
        assert new.data.metrics[key] == ref_run.data.metrics[key]
    w_new = np.load(client.download_artifacts(new.info.run_id, "model.npz", str(tmp_path / "a")))
    w_ref = np.load(ref_client.download_artifacts(ref_run.info.run_id, "model.npz",
                                                  str(tmp_path / "b")))
    assert sorted(w_new.files) == sorted(w_ref.files) == ["W1", "W2", "b1", "b2"]
    for k in w_ref.files:
        assert np.array_equal(w_new[k], w_ref[k]), k
