"""How many jobs run at once, and how many BLAS threads each gets: the one rule.

A launcher's ``n_jobs`` follows joblib: ``None`` runs one job at a time, ``-1`` one per core,
``-2`` all cores but one (``cores + 1 + n_jobs``), and ``0`` means nothing. Each job then
gets ``cores // parallel jobs`` BLAS threads (at least one), unless its launcher reserves
CPUs per job (Ray's ``num_cpus_per_job``, SLURM's ``cpus_per_task``): it gets those.
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import OmegaConf

from mlp_sweeps.errors import InvalidConfig

# launcher settings that reserve CPUs for each job: its BLAS threads
_PER_JOB_CPUS = ("num_cpus_per_job", "cpus_per_task")


def cores() -> int:
    return os.cpu_count() or 1


def parallel_jobs(n_jobs: Any) -> int:
    """Jobs at once for a launcher's ``n_jobs`` (joblib's meaning, see the module)."""
    if n_jobs is None:
        return 1
    n = int(n_jobs)
    if n == 0:
        raise InvalidConfig("hydra.launcher.n_jobs=0 has no meaning; use a positive number of "
                            "parallel jobs, -1 for one per core, -2 for all cores but one")
    return n if n > 0 else max(1, cores() + 1 + n)


def threads_per_job(parallel: int) -> int:
    """BLAS threads for each of ``parallel`` jobs sharing this machine's cores."""
    return max(1, cores() // max(1, parallel))


def launcher_threads(launcher: Any, n_jobs_total: int) -> int:
    """BLAS threads per job under a launcher config (``hydra.launcher``) that runs
    ``n_jobs_total`` jobs: its per-job CPU reservation, else cores / jobs at once."""
    for key in _PER_JOB_CPUS:
        per_job = OmegaConf.select(launcher, key, default=None) if launcher is not None else None
        if per_job is not None:
            return max(1, int(per_job))
    n_jobs = OmegaConf.select(launcher, "n_jobs", default=None) if launcher is not None else None
    return threads_per_job(min(parallel_jobs(n_jobs), max(1, n_jobs_total)))


def sweep_threads(config: Any, n_jobs_total: int) -> int | None:
    """BLAS threads each job of a sweep is given (``config``: the sweep's composed config
    with ``hydra``), or None where the user set ``blas_threads`` (kept as it is)."""
    if config.get("blas_threads") is not None:
        return None
    return launcher_threads(OmegaConf.select(config, "hydra.launcher"), n_jobs_total)


def launcher_workers(launcher: Any, n_jobs_total: int) -> int:
    """Jobs of a sweep of ``n_jobs_total`` running at once under a launcher config
    (``hydra.launcher``): SLURM's ``array_parallelism``, Ray's cores / ``num_cpus_per_job``
    (this machine's, a local cluster), else its ``n_jobs``."""
    sel = (lambda k: OmegaConf.select(launcher, k, default=None)) if launcher is not None \
        else (lambda k: None)
    if sel("array_parallelism") is not None:
        n = int(sel("array_parallelism"))
    elif sel("num_cpus_per_job") is not None:
        n = max(1, int(cores() // max(float(sel("num_cpus_per_job")), 1e-9)))
    else:
        n = parallel_jobs(sel("n_jobs"))
    return max(1, min(n, max(1, n_jobs_total)))


#: seconds of (estimated) training a worker is handed at once when runs are short
#: (joblib's own batching aims at 0.2-2 s per batch, but only batches calls under 0.2 s)
BATCH_S = 2.0
#: a sweep's jobs go out in at least this many batches per worker (its tail stays short)
BATCHES_PER_WORKER = 4


def dispatch_batch(run_seconds: list[float], n_workers: int) -> int:
    """How many jobs to hand a worker at once: 1 unless the runs are short (median
    estimated training time under :data:`BATCH_S`), then as many as make :data:`BATCH_S`
    seconds of training, at most so many that every worker still gets
    :data:`BATCHES_PER_WORKER` batches. A job sent alone costs its worker a dispatch of
    its own (the sweep's state sent and restored: 0.1-0.2 s), which for a run of a few
    tenths of a second is most of its time."""
    if n_workers < 2 or not run_seconds:
        return 1
    typical = sorted(run_seconds)[len(run_seconds) // 2]
    if typical >= BATCH_S:
        return 1
    by_time = int(BATCH_S // max(typical, 1e-3))
    by_balance = -(-len(run_seconds) // (BATCHES_PER_WORKER * n_workers))
    return max(1, min(by_time, by_balance))
