"""``hydra/launcher=slurm``: every job of a sweep is one task of a SLURM job array.

    python train.py -m sweep=losses hydra/launcher=slurm hydra.launcher.partition=cpu

hydra-submitit-launcher's ``SlurmLauncher`` (the ``slurm`` extra) submits and runs the jobs;
this subclass adds what a sweep needs from it (the work is in ``_core.py``):

- :meth:`prepare` asks SLURM (``sbatch --test-only``) whether it accepts the jobs, before
  the sweep records anything: a bad partition or too much memory fails early with SLURM's
  message;
- job states come from ``squeue``, which needs no accounting (submitit's ``sacct`` does):
  a job SLURM ended (``scancel``, time limit, node failure) is seen to end, the others go
  on, and :meth:`launch` reports it to the mlp sweeper as a lost job with SLURM's reason;
- in the job, submitit's time-limit signal (checkpoint and requeue) is not used: the run
  ends KILLED at the limit and rerunning the sweep resumes it from its last checkpoint.

(No ``from __future__ import annotations``: see config.py.)
"""

from typing import Any, Sequence

from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # the 'slurm' extra is not installed: no launcher (and no warning)
    submitit_launcher = None

if submitit_launcher is not None:

    class SlurmLauncher(submitit_launcher.SlurmLauncher):
        def __init__(self, poll_s: float = 15, command_timeout_s: float = 60,
                     **params: Any) -> None:
            super().__init__(**params)  # submitit's and sbatch's parameters
            self.poll_s = float(poll_s)
            self.command_timeout_s = float(command_timeout_s)

        def prepare(self) -> None:
            """``sbatch --test-only`` with the sweep's job options; the mlp sweeper calls
            this before it records anything."""
            from . import _core

            _core.check_request(self)

        def launch(self, job_overrides: Sequence[Sequence[str]],
                   initial_job_idx: int) -> Sequence[JobReturn]:
            from . import _core

            return _core.launch(self, job_overrides, initial_job_idx)

        def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
            """One job, inside its SLURM job (where submitit unpickles this launcher)."""
            from . import _core

            _core.in_job()
            return super().__call__(*args, **kwargs)
