"""The ``mlp`` Hydra sweeper: grid sweeps planned, validated and tracked up front.

A thin plugin (settings in ``config.py``); the sweep's life (plan, resume, launch,
summary) is :func:`mlp_sweeps.launch.sweep.run`, and what a grid is, :mod:`mlp_sweeps.plan.jobs`.
Only Hydra's public API is used.
"""

from typing import Any, Dict, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mlp_sweeps_sweeper.config import MlpSweeperConf  # noqa: F401  (registers it)


class MlpSweeper(Sweeper):
    def __init__(self, params: Optional[Dict[str, str]] = None,
                 grids: Optional[Dict[str, Dict[str, Any]]] = None,
                 only: Optional[List[str]] = None, asha: Any = None, **settings: Any):
        from mlp_sweeps.launch.sweep import Settings

        plain = OmegaConf.to_container(OmegaConf.create({"p": params or {}, "g": grids or {},
                                                         "a": asha or {}}))
        self.settings = Settings(params=dict(plain["p"]),
                                 grids={k: dict(v or {}) for k, v in plain["g"].items()},
                                 only=list(only) if only else None, asha=dict(plain["a"]),
                                 **settings)
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from mlp_sweeps.plan.job_config import SweepConfigLoader
        from mlp_sweeps.run.job_return import LeanReturns

        # for every launcher: each job's config composed once per distinct set of
        # config-group choices, not from the files again per job (mlp_sweeps/plan/job_config.py);
        # its return sent back without its config (mlp_sweeps/run/job_return.py)
        hydra_context = HydraContext(config_loader=SweepConfigLoader(hydra_context.config_loader),
                                     callbacks=LeanReturns(hydra_context.callbacks))
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from mlp_sweeps.plan import jobs as plan
        from mlp_sweeps.launch import sweep

        assert self.config is not None and self.launcher is not None
        loader = self.hydra_context.config_loader
        parser = OverridesParser.create(config_loader=loader)
        return sweep.run(self.settings, self.config, self.launcher,
                         plan.composer(loader, self.config, parser), arguments, parser)
