"""Our joblib launcher (hydra_plugins/mlp_sweeps_joblib): worker processes started ahead of
the jobs and released after them, a dead worker raised as WorkerLost; real loky workers, a
real multirun."""

from __future__ import annotations

import importlib
import os
import re
import time

import pytest
from hydra_plugins.mlp_sweeps_joblib import _core
from hydra_plugins.mlp_sweeps_joblib.joblib_launcher import JoblibLauncher
from joblib import Parallel, delayed
from mlflow.tracking import MlflowClient

from mlp_sweeps.errors import WorkerLost
from mlp_sweeps.launch.sweep import _offered, is_worker_loss

from test_sweeps import SMALL, run_train, store_args

pytestmark = pytest.mark.slow


def _launcher(n_jobs: int) -> JoblibLauncher:
    """The launcher as Hydra makes it: from its module as loaded now. (Hydra's plugin scan,
    once per process, executes the plugin modules again: a class imported before it, as
    this module's import at collection is when another test composed a config first, is
    not the class of the launchers Hydra makes after it.)"""
    launcher_class = importlib.import_module(JoblibLauncher.__module__).JoblibLauncher
    # the arguments hydra-joblib-launcher's defaults give it
    return launcher_class(n_jobs=n_jobs, backend=None, prefer="processes", require=None,
                          verbose=0, timeout=None, pre_dispatch="2*n_jobs",
                          batch_size="auto", temp_folder=None, max_nbytes=None,
                          mmap_mode="r")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped) is gone too
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


def test_prewarmed_workers_are_the_ones_the_launcher_uses_then_released():
    launcher = _launcher(2)
    warm = launcher.prewarm(4)
    assert warm is not None
    warm.join()
    assert warm.error is None
    assert len(set(warm.pids)) == 2 and os.getpid() not in warm.pids
    # what the launcher does with the same settings: loky reuses the warm executor
    settings = _core.joblib_settings(launcher)
    used = Parallel(**settings)(delayed(os.getpid)() for _ in range(6))
    assert set(used) <= set(warm.pids)
    launcher.release()
    deadline = time.time() + 30
    while any(_alive(p) for p in warm.pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in warm.pids)


def test_no_prewarm_for_in_process_or_single_jobs():
    assert _launcher(1).prewarm(4) is None  # joblib runs n_jobs=1 in-process
    assert _launcher(2).prewarm(1) is None
    assert _offered(object(), "prewarm", 4) is None  # a launcher that offers none: left alone


def test_a_worker_process_that_dies_is_raised_as_worker_lost():
    with pytest.raises(WorkerLost, match="a joblib worker process died") as info:
        with _core.worker_loss():
            Parallel(n_jobs=2, backend="loky")(delayed(os._exit)(3) for _ in range(2))
    assert type(info.value.__cause__).__name__ == "TerminatedWorkerError"
    assert is_worker_loss(info.value)
    assert not is_worker_loss(ValueError("an error in a job"))


def test_sweep_jobs_run_in_the_prewarmed_workers(tmp_path):
    r = run_train("-m", "seed=0,1,2", *SMALL, "hydra.launcher.n_jobs=2",
                  "hydra.verbose=hydra_plugins.mlp_sweeps_joblib._core", *store_args(tmp_path, "warm"),
                  tmp=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    m = re.search(r"Workers \[(\d+), (\d+)\] warm in", out)
    assert m, out
    warm_pids = {m.group(1), m.group(2)}
    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("warm")
    runs = [x for x in client.search_runs([exp.experiment_id])
            if x.data.tags.get("sweep") != "parent"]
    assert len(runs) == 3 and all(x.info.status == "FINISHED" for x in runs)
    assert {x.data.tags["pid"] for x in runs} <= warm_pids
