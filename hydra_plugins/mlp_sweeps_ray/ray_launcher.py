"""``hydra/launcher=ray``: every job of a sweep runs as a Ray task on a Ray cluster.

    python train.py -m sweep=losses hydra/launcher=ray hydra.launcher.address=HEAD:6379

Each job is ``ray.remote(num_cpus=num_cpus_per_job)`` calling Hydra's ``run_job`` the way
the joblib launcher does (globals, Singleton state, the job's sweep config, the sweep
directory keys). The mlp sweeper gives each job ``blas_threads`` equal to that CPU
allotment, so a node runs as many jobs as it has CPUs, each with its share of threads.

Ray is imported only when a sweep uses this launcher (the optional ``ray`` extra).
Its settings are in ``config.py``; what a job does on the cluster, in ``_core.py``.
"""

from typing import Any, Dict, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mlp_sweeps_ray.config import RayLauncherConf  # noqa: F401  (registers it)


class RayLauncher(Launcher):
    def __init__(self, address: Optional[str] = None, num_cpus_per_job: float = 1,
                 connect_timeout_s: float = 10, init: Optional[Dict[str, Any]] = None,
                 remote: Optional[Dict[str, Any]] = None) -> None:
        self.address = address
        self.num_cpus_per_job = num_cpus_per_job
        self.connect_timeout_s = connect_timeout_s
        self.init = _plain(init)
        self.remote = _plain(remote)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def prepare(self) -> None:
        """Connect to the cluster (or start a local one). The mlp sweeper calls this before
        it records anything, so an unreachable cluster fails the sweep with nothing
        recorded; :meth:`launch` calls it too (a no-op once connected)."""
        from . import _core

        _core.connect(self)

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from . import _core

        return _core.launch(self, job_overrides, initial_job_idx)


def _plain(d: Any) -> Dict[str, Any]:
    if d is None:
        return {}
    if isinstance(d, DictConfig):
        return OmegaConf.to_container(d, resolve=True)  # type: ignore[return-value]
    return dict(d)
