"""mlp_sweeps.plan.parallelism: jobs at once and BLAS threads per job, joblib's n_jobs meaning."""

from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from mlp_sweeps.plan import parallelism
from mlp_sweeps.errors import InvalidConfig

CORES = os.cpu_count() or 1


def test_n_jobs_follows_joblib():
    assert parallelism.parallel_jobs(None) == 1  # a sequential launcher
    assert parallelism.parallel_jobs(3) == 3
    assert parallelism.parallel_jobs(-1) == CORES  # one per core
    assert parallelism.parallel_jobs(-2) == max(1, CORES - 1)  # all but one (was: all)
    assert parallelism.parallel_jobs(-CORES - 5) == 1
    with pytest.raises(InvalidConfig, match="n_jobs=0 has no meaning"):
        parallelism.parallel_jobs(0)


@pytest.mark.skipif(CORES < 2, reason="-2 and -1 differ only with 2+ cores")
def test_all_but_one_core_is_not_all_cores():
    assert parallelism.parallel_jobs(-2) == CORES - 1 < parallelism.parallel_jobs(-1)


def test_threads_per_job_share_the_cores():
    assert parallelism.threads_per_job(1) == CORES
    assert parallelism.threads_per_job(CORES) == 1
    assert parallelism.threads_per_job(4 * CORES) == 1


def test_launcher_threads():
    assert parallelism.launcher_threads(OmegaConf.create({"n_jobs": -1}), 100) == 1
    assert parallelism.launcher_threads(OmegaConf.create({"n_jobs": -1}), 1) == CORES
    assert parallelism.launcher_threads(OmegaConf.create({"num_cpus_per_job": 0.5}), 9) == 1
    assert parallelism.launcher_threads(OmegaConf.create({"cpus_per_task": 4}), 9) == 4
    assert parallelism.launcher_threads(OmegaConf.create({}), 9) == CORES  # sequential


def test_short_runs_are_handed_to_workers_in_batches():
    d = parallelism.dispatch_batch
    assert d([300.0] * 71, 2) == 1  # the study's runs: one at a time
    assert d([2.5] * 100, 2) == 1  # runs of seconds: the dispatch is small beside them
    assert d([0.5] * 100, 2) == 4  # 2 s of training per batch
    # tiny runs: as many as keep 4 batches per worker, so the sweep's tail stays short
    assert d([0.01] * 100, 2) == 13 and d([0.01] * 1000, 2) == 125
    assert d([0.01] * 10, 2) == 2 and d([0.01] * 3, 2) == 1
    assert d([0.01] * 49 + [100.0] * 50, 2) == 1  # the typical (median) run decides
    assert d([0.01] * 100, 1) == 1 and d([], 4) == 1  # one worker: nothing to dispatch
