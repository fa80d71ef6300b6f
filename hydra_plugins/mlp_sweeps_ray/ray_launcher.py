"""``hydra/launcher=ray``: every job of a sweep runs as a Ray task on a Ray cluster.

    python train.py -m sweep=losses hydra/launcher=ray hydra.launcher.address=HEAD:6379

Each job is ``ray.remote(num_cpus=num_cpus_per_job)`` calling Hydra's ``run_job`` the way
the joblib launcher does (globals, Singleton state, the job's sweep config, the sweep
directory keys). The mlp sweeper gives each job ``blas_threads`` equal to that CPU
allotment, so a node runs as many jobs as it has CPUs, each with its share of threads.

Ray is imported only when a sweep uses this launcher (the optional ``ray`` extra).
(No ``from __future__ import annotations``: Hydra's plugin scan executes this module
outside ``sys.modules``, where dataclasses cannot resolve string annotations.)
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class RayLauncherConf:
    _target_: str = "hydra_plugins.mlp_sweeps_ray.ray_launcher.RayLauncher"
    # The cluster: "HOST:PORT" of a Ray head's GCS (6379 unless `ray start --port`), or
    # "ray://HOST:10001" (Ray Client). null: $RAY_ADDRESS, else the cluster `ray start`
    # started on this machine, else a new local one for the duration of the sweep.
    address: Optional[str] = None
    # CPUs each job reserves on the cluster; its BLAS threads are the same number
    num_cpus_per_job: float = 1
    # give up on an unreachable or silent head after this many seconds (no hang)
    connect_timeout_s: float = 10
    # extra keyword arguments of ray.init, e.g. {num_cpus: 4} for a local cluster,
    # {runtime_env: {...}}, {_node_ip_address: ...}
    init: Dict[str, Any] = field(default_factory=dict)
    # extra options of each job's task (ray.remote): memory, resources, scheduling_strategy,
    # ... Ray does not retry a lost task (its retry would record a second run, leaving the
    # first RUNNING): the launcher raises the loss and the mlp sweeper relaunches the job.
    remote: Dict[str, Any] = field(default_factory=lambda: {"max_retries": 0})


ConfigStore.instance().store(group="hydra/launcher", name="ray", node=RayLauncherConf,
                             provider="mlp_sweeps")


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
