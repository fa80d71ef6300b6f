"""``hydra/launcher=ray``: the Ray launcher's settings (``hydra.launcher.*``).

(No ``from __future__ import annotations``: Hydra's plugin scan executes this module
outside ``sys.modules``, where dataclasses cannot resolve string annotations.)
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


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
