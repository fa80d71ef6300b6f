"""The SLURM launcher's options: hydra-submitit-launcher's (partition, cpus_per_task, mem_gb,
timeout_min, ...) and two of ours. Registered as ``hydra/launcher=mlp_slurm``, the base of
``conf/hydra/launcher/slurm.yaml``; only when the ``slurm`` extra is installed.

(No ``from __future__ import annotations``: Hydra's plugin scan executes this module
outside ``sys.modules``, where dataclasses cannot resolve string annotations.)
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
except ImportError:  # the 'slurm' extra is not installed: no hydra/launcher=mlp_slurm
    SlurmQueueConf = None

if SlurmQueueConf is not None:

    @dataclass
    class SlurmLauncherConf(SlurmQueueConf):
        _target_: str = "hydra_plugins.mlp_sweeps_slurm.slurm_launcher.SlurmLauncher"
        # ask squeue for the jobs' states at least this often (seconds): how soon a job
        # that SLURM ended (scancel, time limit, node failure) is seen to have ended
        poll_s: float = 15
        # give up on sbatch / squeue after this many seconds (a controller that is down)
        command_timeout_s: float = 60

    ConfigStore.instance().store(group="hydra/launcher", name="mlp_slurm",
                                 node=SlurmLauncherConf, provider="mlp_sweeps")
