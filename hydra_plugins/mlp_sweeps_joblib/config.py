"""The joblib launcher's options: hydra-joblib-launcher's (n_jobs, backend, batch_size, ...),
its defaults kept. Registered as ``hydra/launcher=mlp_joblib``, the default
(``conf/config.yaml``). ``hydra/launcher=joblib`` is hydra-joblib-launcher's own: the jobs
run, without what ours adds. (A config file of ours named ``joblib`` would not replace it:
Hydra merges a file and a structured config of the same name, and the two classes clash.)

(No ``from __future__ import annotations``: Hydra's plugin scan executes this module
outside ``sys.modules``, where dataclasses cannot resolve string annotations.)
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf


@dataclass
class JoblibLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.mlp_sweeps_joblib.joblib_launcher.JoblibLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="mlp_joblib",
                             node=JoblibLauncherConf, provider="mlp_sweeps")
