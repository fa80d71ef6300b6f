"""Train one configuration, or a sweep with ``-m``; every run is tracked in MLflow.

    python train.py                                   # the study's baseline, one run
    python train.py -m activation=selu,swish,gelu,relu,sigmoid
    python train.py -m sweep=activations              # a grid of the study (sweeps/)

The work is in :func:`mlp_sweeps.run.job.run` (tracking) and :func:`mlp.train` (the core).
"""

import atexit
import gc

import hydra
from omegaconf import DictConfig

from mlp_sweeps.plan import schema
from mlp_sweeps.run.job import run

schema.register()
# At exit the interpreter garbage-collects every module object (MLflow, pandas, matplotlib:
# ~0.6-1 s); frozen, they are freed without those passes.
atexit.register(gc.freeze)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    return run(cfg)


if __name__ == "__main__":
    main()
