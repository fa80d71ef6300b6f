"""``hydra/launcher=mlp_joblib`` (the default): the jobs of a sweep in parallel worker
processes on this machine, through joblib's loky backend.

hydra-joblib-launcher's ``JoblibLauncher`` runs the jobs; this subclass adds what a sweep
asks of a launcher beyond Hydra's API (the work is in ``_core.py``):

- :meth:`prewarm` starts the workers while the sweep plans and opens the store, and
  :meth:`release` stops them when the last job has returned (not at interpreter exit);
- :meth:`batch_short_jobs` hands short jobs to the workers several at a time;
- :meth:`launch` raises :class:`~mlp_sweeps.errors.WorkerLost` when loky loses a worker
  process (the mlp sweeper then closes the runs in flight KILLED and launches them again).

(No ``from __future__ import annotations``: see config.py.)
"""

from typing import Any, Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher import joblib_launcher


class JoblibLauncher(joblib_launcher.JoblibLauncher):
    def prewarm(self, n_jobs: int) -> Any:
        """Start (at most ``n_jobs``) workers now, in the background: a
        :class:`~._core.Prewarm` to ``join()`` before the jobs, or None (``n_jobs=1`` runs
        in-process; a single job)."""
        from . import _core

        return _core.prewarm(self, n_jobs)

    def batch_short_jobs(self, run_seconds: list[float], n_workers: int) -> int:
        """Jobs per hand-off for runs of ``run_seconds`` on ``n_workers``; 1 if unchanged."""
        from . import _core

        return _core.batch_short_jobs(self, run_seconds, n_workers)

    def release(self) -> None:
        """Stop the idle workers now."""
        from . import _core

        _core.release(self)

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from . import _core

        with _core.worker_loss():
            return super().launch(job_overrides, initial_job_idx)
