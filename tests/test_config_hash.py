"""The identity of a configuration (``config_hash``) does not move across versions: a study's
finished runs are found by it, so a change of these values would rerun them all."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mlp import TrainConfig
from mlp_sweeps.plan import schema

config_hash = TrainConfig.config_hash

CONF = Path(__file__).resolve().parent.parent / "conf"

# Computed on main before optimizers became selectable (commit 79ab734), from the config
# composed by Hydra as a sweep composes it.
PINNED = [
    ([], "5da26091e285b0c7"),
    (["activation=gelu", "loss=hinge"], "e5850976d4ebd832"),
    (["loss=focal", "loss.gamma=1.0", "momentum=0.0", "weight_decay=0", "dtype=float64",
      "depth=2", "batch_size=10", "seed=3"], "53e1906c883032e9"),
    (["loss=mse", "lr=0.01", "dropout=0.2", "data=fashion_mnist"], "15a230c9b702989e"),
]


def test_the_baselines_hash_is_unchanged():
    assert config_hash(TrainConfig()) == "d9522a3aa8c3a950"


@pytest.mark.parametrize("overrides, expected", PINNED, ids=[",".join(o) or "baseline"
                                                              for o, _ in PINNED])
def test_hashes_of_composed_sgd_configs_are_unchanged(overrides, expected):
    schema.register()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=overrides)
    tcfg = TrainConfig.from_dict(OmegaConf.to_container(cfg, resolve=True))
    assert config_hash(tcfg) == expected
    # choosing SGD explicitly is the same configuration
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        explicit = compose("config", overrides=[*overrides, "optimizer=sgd"])
    assert config_hash(TrainConfig.from_dict(OmegaConf.to_container(explicit, resolve=True))) \
        == expected


def test_another_optimizer_is_another_configuration():
    base = TrainConfig()
    adam = TrainConfig(optimizer="adam")
    assert config_hash(adam) != config_hash(base)
    assert config_hash(adam) != config_hash(TrainConfig(optimizer="adam",
                                                        optimizer_params={"beta2": 0.99}))
    # its defaults written out or not: the same configuration
    assert config_hash(adam) == config_hash(TrainConfig(optimizer="adam",
                                                        optimizer_params={"eps": 1e-8}))
