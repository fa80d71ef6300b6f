"""``hydra/sweeper=mlp``: the sweeper's settings (``hydra.sweeper.*``).

(No ``from __future__ import annotations``: Hydra's plugin scan executes this module
outside ``sys.modules``, where dataclasses cannot resolve string annotations.)
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class AshaConf:
    # a configuration goes on from a rung if it is in the top 1/eta of those ranked there
    eta: int = 3
    # the first rung; then min_epochs * eta^k, up to epochs (the last rung)
    min_epochs: int = 1


@dataclass
class MlpSweeperConf:
    _target_: str = "hydra_plugins.mlp_sweeps_sweeper.mlp_sweeper.MlpSweeper"
    # launch at most this many jobs per launcher call (null: all that are ready at once)
    max_batch_size: Optional[int] = None
    # one grid: key -> comma-separated values (Hydra's sweep syntax)
    params: Optional[Dict[str, str]] = None
    # a union of named grids: name -> {key -> values}; ``params`` apply to every grid
    grids: Optional[Dict[str, Dict[str, Any]]] = None
    # plan and validate only: print the jobs, run and record nothing
    dry_run: bool = False
    # rerun configurations already FINISHED in the experiment (default: skip them)
    rerun: bool = False
    # run only these of the ``grids`` (null: all)
    only: Optional[List[str]] = None
    # configurations held by live runs of other launchers: false (default) waits for them
    # and takes over any whose holder dies, so the sweep ends with every configuration
    # done; true leaves them to those runs and exits when this launcher's jobs end
    leave_to_others: bool = False
    # which configurations: grid (every combination), or drawn by Optuna: random, tpe
    sampler: str = "grid"
    # how many configurations random and tpe draw (distinct; each run once per seed)
    n_trials: Optional[int] = None
    # the sampler's seed: the same command draws the same configurations
    seed: int = 0
    # what a search ranks by (its best configuration; what TPE is told): a curve the runs
    # log, its last value, the mean over seeds; val_* needs data.val_size > 0
    metric: str = "val_acc"
    # max or min; null: max for an accuracy, min for a loss
    mode: Optional[str] = None
    # none: every configuration trains all its epochs; asha: successive halving, paused
    # configurations promoted from their checkpoints (see the docs, Adaptive sweeps)
    scheduler: str = "none"
    asha: AshaConf = field(default_factory=AshaConf)


ConfigStore.instance().store(group="hydra/sweeper", name="mlp", node=MlpSweeperConf,
                             provider="mlp_sweeps")
