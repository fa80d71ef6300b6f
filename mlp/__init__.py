"""mlp-sweeps' NumPy core: an MLP with exact gradients, trained on MNIST-format data.

NumPy, SciPy's BLAS, threadpoolctl (BLAS's threads) and the standard library; Hydra and
MLflow wrap it from outside.
"""

from . import activations, checkpoint, losses, optim
from .config import ConfigError, DataConfig, TrainConfig
from .train import Result, train

__all__ = ["activations", "losses", "optim", "ConfigError", "DataConfig", "TrainConfig", "Result",
           "train"]
__version__ = "0.1.0"
