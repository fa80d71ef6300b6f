"""What the joblib launcher adds to hydra-joblib-launcher's: worker processes started early
and released promptly, short jobs batched, a lost worker process raised as ``WorkerLost``.

A sweep's fixed cost is mostly start-up: loky spawns its worker processes only when the
launcher submits the first job, and each worker then imports NumPy, SciPy, Hydra and
MLflow (~2.3 s; not matplotlib: a run draws no figure) before its first run can start;
at the end, the launching process waits at exit for the idle workers to shut down
(~1-2 s). Here:

- :func:`prewarm` starts the workers in a background thread, *while* the launching
  process plans the sweep and opens the store, by running :func:`warm` once per worker
  through ``joblib.Parallel`` with the launcher's own settings: loky's reusable executor
  is then reused by the launcher (same arguments), workers warm;
- :meth:`Prewarm.join`, when the jobs are about to start, also imports in the background
  what the launching process needs for the sweep's report (matplotlib, the tables): it
  would otherwise import them after the last job, on the sweep's critical path, while
  during the jobs it only waits;
- :func:`release` stops the idle workers once the last job has returned;
- :func:`worker_loss`: loky's and concurrent.futures' public types for a worker process
  that died, raised as :class:`~mlp_sweeps.errors.WorkerLost` (hydra-joblib-launcher
  raises what joblib raises).
"""

from __future__ import annotations

import logging
import os
import contextlib
import threading
import time
from typing import Any, Iterator

from mlp_sweeps.errors import WorkerLost
from mlp_sweeps.record.faults import first_line

log = logging.getLogger(__name__)


def warm() -> tuple[int, float]:
    """Import what a job needs (run in a worker); returns (pid, seconds taken).

    Nothing is opened in the store: the launching process may be creating it (two
    processes creating one SQLite store race MLflow's schema migration)."""
    t0 = time.perf_counter()
    import gc

    import hydra.core.utils  # noqa: F401  (run_job)

    import mlp_sweeps.run.job  # noqa: F401  (numpy, threadpoolctl, the core)
    from mlp_sweeps.record import tracking

    tracking.preload()

    # the imported modules live as long as the worker: out of the cyclic GC's way
    gc.freeze()
    return os.getpid(), time.perf_counter() - t0


def joblib_settings(launcher: Any) -> dict[str, Any] | None:
    """The ``joblib.Parallel`` arguments hydra-joblib-launcher will use, or None if it runs
    jobs in-process (``n_jobs=1``)."""
    settings = getattr(launcher, "joblib", None)
    if settings is None:  # not set up yet (Hydra calls setup() before the sweep starts)
        return None
    cfg = dict(settings)
    cfg["backend"] = "loky"  # as the launcher does
    for k in ("pre_dispatch", "batch_size", "max_nbytes"):  # numbers given as text, read
        if cfg.get(k):  # as the launcher reads them ("2*n_jobs", "auto", "1M" stay text)
            try:
                cfg[k] = int(cfg[k])
            except (TypeError, ValueError):
                pass
    return cfg if _n_workers(cfg) > 1 else None


def _n_workers(settings: dict[str, Any]) -> int:
    """The worker processes joblib starts for ``n_jobs``."""
    from mlp_sweeps.plan.parallelism import parallel_jobs

    return parallel_jobs(settings.get("n_jobs"))


class Prewarm:
    """Workers being started in the background; :meth:`join` before launching jobs."""

    def __init__(self, settings: dict[str, Any], n_workers: int):
        self.settings, self.n = settings, n_workers
        self.pids: list[int] = []
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="prewarm-workers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from joblib import Parallel, delayed

        t0 = time.perf_counter()
        try:
            out = Parallel(**self.settings)(delayed(warm)() for _ in range(self.n))
            self.pids = [pid for pid, _ in out]
        except BaseException as e:  # noqa: BLE001 - warming is an optimisation only
            self.error = e
        self.seconds = time.perf_counter() - t0

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            log.warning("Could not start the workers ahead of the jobs (%s: %s); the launcher "
                        "starts them", type(self.error).__name__, self.error)
        else:
            log.debug("Workers %s warm in %.2f s", self.pids, self.seconds)
        threading.Thread(target=_import_report, name="prewarm-report", daemon=True).start()


def _import_report() -> None:
    """Import the modules of the sweep's report (run in the launching process)."""
    try:
        import mlp_sweeps.report.export  # noqa: F401  (tables, results)
        import mlp_sweeps.read.figures  # noqa: F401  (matplotlib)
    except Exception as e:  # noqa: BLE001 - an optimisation only; the report imports them
        log.debug("Could not import the report's modules ahead: %s", e)


def prewarm(launcher: Any, n_jobs: int) -> Prewarm | None:
    """Start (at most ``n_jobs``) joblib workers now, in the background; None if the
    launcher runs jobs in-process."""
    settings = joblib_settings(launcher)
    if settings is None or n_jobs < 2:
        return None
    return Prewarm(settings, min(_n_workers(settings), n_jobs))


def batch_short_jobs(launcher: Any, run_seconds: list[float], n_workers: int) -> int:
    """Hand the joblib launcher's workers short jobs several at a time
    (:func:`mlp_sweeps.plan.parallelism.dispatch_batch` of their runs' estimated seconds) unless the
    user set ``hydra.launcher.batch_size``; the batch size, 1 if unchanged. joblib pickles
    a batch once: the sweep's state (config, Hydra's singletons) travels and is restored
    once per batch, not once per job."""
    settings = joblib_settings(launcher)
    if settings is None or str(settings.get("batch_size", "auto")) != "auto":
        return 1
    from mlp_sweeps.plan.parallelism import dispatch_batch

    size = dispatch_batch(run_seconds, n_workers)
    if size > 1:
        launcher.joblib["batch_size"] = size
        log.info("Short jobs: each worker is handed %d at a time (hydra.launcher.batch_size "
                 "sets it)", size)
    return size


def release(launcher: Any) -> None:
    """Stop the joblib launcher's idle workers now (after the sweep's last job) instead of
    at interpreter exit, where the launching process waits for them to shut down.

    loky offers no public way to reach the reusable executor joblib made without making
    one (``get_reusable_executor`` with other arguments replaces it): its module's
    ``_executor`` is read here, the one private name this launcher uses."""
    if joblib_settings(launcher) is None:
        return
    try:
        from joblib.externals.loky import reusable_executor

        executor = getattr(reusable_executor, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, kill_workers=True)
    except Exception as e:  # noqa: BLE001 - an optimisation only
        log.debug("Could not release the workers: %s", e)


@contextlib.contextmanager
def worker_loss() -> Iterator[None]:
    """Raise loky's and concurrent.futures' errors for a worker process that died (killed,
    out of memory) as :class:`~mlp_sweeps.errors.WorkerLost`, the loss as its cause."""
    from concurrent.futures.process import BrokenProcessPool

    from joblib.externals.loky.process_executor import TerminatedWorkerError

    try:
        yield
    except (TerminatedWorkerError, BrokenProcessPool) as e:
        raise WorkerLost(f"a joblib worker process died: {first_line(e)}") from e

