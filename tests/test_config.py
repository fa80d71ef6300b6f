"""TrainConfig: defaults, validation messages, from_dict with Hydra-shaped input."""

from __future__ import annotations

import dataclasses
import math

import pytest
from omegaconf import OmegaConf

from mlp import activations, losses, optim
from mlp.config import ConfigError, DataConfig, TrainConfig


def test_defaults_are_the_published_baseline_and_valid():
    cfg = TrainConfig()
    assert cfg.validate() is cfg
    # published_claims.md: 1 hidden layer of 784, ReLU, softmax cross-entropy, lr=1e-4,
    # weight_decay=1e-3, momentum=0.9, batch_size=100, 100 epochs, test every 5 epochs,
    # N(0, 0.01^2) init, pixels (x - 128) / 255, gradient of the batch sum for CE.
    assert (cfg.depth, cfg.hidden_size, cfg.activation, cfg.loss) == (1, 784, "relu",
                                                                      "cross_entropy")
    assert (cfg.lr, cfg.weight_decay, cfg.momentum) == (1e-4, 1e-3, 0.9)
    assert (cfg.batch_size, cfg.epochs, cfg.test_every) == (100, 100, 5)
    assert cfg.init == "normal" and cfg.dropout == 0.0
    assert cfg.data.name == "mnist" and cfg.data.normalize == "study"
    assert cfg.reduction == "sum"
    loss = cfg.make_loss()
    assert loss.name == "cross_entropy" and loss.reduction == "sum"


def test_reduction_defaults_to_the_study_choice_per_loss():
    for name in losses.names():
        assert TrainConfig(loss=name).reduction == losses.study_reduction(name)
    assert TrainConfig(loss="mse").reduction == "mean"
    assert TrainConfig(loss="mse", loss_params={"reduction": "sum"}).reduction == "sum"


# (overrides, text the message must contain)
BAD = [
    ({"activation": "foo"}, "'foo'"),
    ({"loss": "foo"}, "'foo'"),
    ({"loss_params": {"reduction": "avg"}}, "'avg'"),
    ({"loss_params": {"temperature": 1.0}}, "'temperature'"),
    ({"loss": "focal", "loss_params": {"gamma": -2}}, "-2"),
    ({"loss": "focal", "loss_params": {"alpha": -0.5}}, "-0.5"),
    # one weight per class of the data (10 for MNIST), known before any data is loaded
    ({"loss": "focal", "loss_params": {"alpha": [0.1, 0.2, 0.3]}}, "3 values but there are 10"),
    ({"loss": "hinge", "loss_params": {"margin": 0}}, "0"),
    ({"lr": -1}, "lr=-1"),
    ({"lr": 0}, "lr=0"),
    ({"lr": math.nan}, "lr=nan"),
    ({"lr": math.inf}, "lr=inf"),
    ({"lr": "0.1"}, "lr='0.1'"),
    ({"lr": True}, "lr=True"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"batch_size": 10.0}, "batch_size=10.0"),
    ({"batch_size": "100"}, "batch_size='100'"),
    ({"depth": -1}, "depth=-1"),
    ({"hidden_size": 0}, "hidden_size=0"),
    ({"dropout": 1.5}, "dropout=1.5"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"dropout": -0.1}, "dropout=-0.1"),
    ({"momentum": 1.0}, "momentum=1.0"),
    ({"momentum": -0.5}, "momentum=-0.5"),
    ({"weight_decay": -1}, "weight_decay=-1"),
    ({"dtype": "float16"}, "dtype='float16'"),
    ({"init": "bad"}, "init='bad'"),
    ({"epochs": 0}, "epochs=0"),
    ({"epochs": "ten"}, "epochs='ten'"),
    ({"test_every": 0}, "test_every=0"),
    ({"seed": -1}, "seed=-1"),
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop' is not valid; choose one of: adam, sgd"),
    ({"optimizer": "adam", "optimizer_params": {"beta3": 0.5}},
     "optimizer 'adam' has no setting 'beta3'; its settings: beta1, beta2, eps"),
    ({"optimizer": "adam", "optimizer_params": {"beta2": 1.0}}, "beta2 must be in [0, 1), got 1.0"),
    ({"optimizer": "adam", "optimizer_params": {"eps": 0}}, "eps must be > 0, got 0"),
    ({"optimizer_params": {"beta1": 0.9}}, "optimizer 'sgd' has no setting 'beta1'; its settings: "
                                          "none"),
    ({"data": DataConfig(name="cifar")}, "data.name='cifar'"),
    ({"data": DataConfig(normalize="zscore")}, "data.normalize='zscore'"),
    ({"data": DataConfig(train_limit=0)}, "data.train_limit=0"),
    ({"data": DataConfig(test_limit=2.5)}, "data.test_limit=2.5"),
]


@pytest.mark.parametrize("overrides, shown", BAD,
                         ids=[",".join(f"{k}={v!r}" for k, v in o.items()) for o, _ in BAD])
def test_bad_value_is_rejected_naming_it(overrides, shown):
    cfg = TrainConfig(**overrides)
    with pytest.raises(ConfigError) as exc:
        cfg.validate()
    assert shown in str(exc.value)
    assert isinstance(exc.value, ValueError)  # ConfigError is a ValueError


def test_bad_activation_message_lists_valid_names():
    with pytest.raises(ConfigError) as exc:
        TrainConfig(activation="foo").validate()
    for name in activations.names():
        assert name in str(exc.value)


def test_bad_optimizer_message_lists_valid_names():
    with pytest.raises(ConfigError) as exc:
        TrainConfig(optimizer="foo").validate()
    for name in optim.names():
        assert name in str(exc.value)


def test_bad_loss_message_lists_valid_names():
    with pytest.raises(ConfigError) as exc:
        TrainConfig(loss="foo").validate()
    for name in losses.names():
        assert name in str(exc.value)


@pytest.mark.parametrize("overrides", [
    {"activation": name} for name in activations.names()
] + [{"loss": name} for name in losses.names()] + [
    {"depth": 0}, {"dropout": 0.0}, {"dropout": 0.999}, {"momentum": 0.0},
    {"weight_decay": 0}, {"dtype": "float64"}, {"init": "he"}, {"init": "xavier"},
    {"loss": "focal", "loss_params": {"gamma": 0, "alpha": [0.1] * 10, "reduction": "mean"}},
    {"data": DataConfig(name="fashion_mnist", normalize="unit", train_limit=10)},
] + [{"optimizer": name} for name in optim.names()] + [
    {"optimizer": "adam", "optimizer_params": {"beta1": 0.0, "beta2": 0.99, "eps": 1e-6}},
])
def test_valid_values_are_accepted(overrides):
    TrainConfig(**overrides).validate()


HYDRA_LIKE = {
    "activation": {"name": "gelu"},
    "loss": {"name": "hinge", "reduction": "mean", "margin": 3.0},
    "depth": 2,
    "hidden_size": 64,
    "dropout": 0.2,
    "lr": 0.01,
    "momentum": 0.5,
    "weight_decay": 0.0,
    "batch_size": 50,
    "epochs": 3,
    "test_every": 1,
    "seed": 7,
    "dtype": "float64",
    "data": {"name": "mnist", "normalize": "unit", "train_limit": 100, "test_limit": None},
    # keys that are not training settings are ignored
    "tracking": {"experiment": "x", "uri": "file:./mlruns"},
    "hydra": {"run": {"dir": "outputs"}},
}


def test_from_dict_with_hydra_shape():
    cfg = TrainConfig.from_dict(HYDRA_LIKE).validate()
    assert cfg.activation == "gelu"
    assert cfg.loss == "hinge"
    assert cfg.loss_params == {"reduction": "mean", "margin": 3.0}
    assert cfg.reduction == "mean"
    loss = cfg.make_loss()
    assert (loss.name, loss.reduction, loss.margin) == ("hinge", "mean", 3.0)
    assert (cfg.depth, cfg.hidden_size, cfg.dropout, cfg.lr) == (2, 64, 0.2, 0.01)
    assert (cfg.momentum, cfg.weight_decay, cfg.batch_size) == (0.5, 0.0, 50)
    assert (cfg.epochs, cfg.test_every, cfg.seed, cfg.dtype) == (3, 1, 7, "float64")
    assert cfg.data == DataConfig(name="mnist", normalize="unit", train_limit=100)
    assert HYDRA_LIKE["loss"]["name"] == "hinge"  # the input is not modified


def test_from_dict_null_reduction_means_the_study_one():
    cfg = TrainConfig.from_dict({"loss": {"name": "focal", "reduction": None, "gamma": 1.0}})
    assert cfg.loss_params == {"gamma": 1.0}
    assert cfg.reduction == "sum"
    assert cfg.make_loss().gamma == 1.0


def test_from_dict_with_plain_names_and_defaults():
    cfg = TrainConfig.from_dict({"activation": "selu", "loss": "mse",
                                 "loss_params": {"reduction": "sum"}})
    assert (cfg.activation, cfg.loss, cfg.reduction) == ("selu", "mse", "sum")
    assert cfg.data == DataConfig()
    assert TrainConfig.from_dict({}) == TrainConfig()


def test_from_dict_accepts_an_omegaconf_config():
    cfg = TrainConfig.from_dict(OmegaConf.create(HYDRA_LIKE)).validate()
    assert cfg == TrainConfig.from_dict(HYDRA_LIKE)


def test_to_dict_round_trips():
    cfg = TrainConfig.from_dict(HYDRA_LIKE)
    d = cfg.to_dict()
    assert d["data"]["train_limit"] == 100
    assert TrainConfig.from_dict(d) == cfg
    # SGD, the default optimizer, and inverted dropout, the default mask, are left out:
    # those configurations keep their identity
    assert set(d) == {f.name for f in dataclasses.fields(TrainConfig)} - {
        "optimizer", "optimizer_params", "dropout_mask"}
    adam = TrainConfig.from_dict({**HYDRA_LIKE, "optimizer": {"name": "adam", "beta2": 0.99}})
    d = adam.to_dict()
    assert d["optimizer"] == "adam"
    assert d["optimizer_params"] == {"beta1": 0.9, "beta2": 0.99, "eps": 1e-8}
    assert TrainConfig.from_dict(d) == adam
    assert set(d) == {f.name for f in dataclasses.fields(TrainConfig)} - {"dropout_mask"}
    fixed = TrainConfig.from_dict({**HYDRA_LIKE, "dropout": 0.2, "dropout_mask": "fixed"})
    assert fixed.to_dict()["dropout_mask"] == "fixed"
    assert TrainConfig.from_dict(fixed.to_dict()) == fixed
    assert fixed.config_hash() != TrainConfig.from_dict({**HYDRA_LIKE, "dropout": 0.2}).config_hash()


def test_data_settings_as_a_mapping_are_checked_by_name():
    assert TrainConfig(data={"train_limit": 500}).data == DataConfig(train_limit=500)
    with pytest.raises(ConfigError, match=r"unknown data setting\(s\) 'train_limt'; valid: "
                                          r"name, root, normalize, train_limit, test_limit"):
        TrainConfig.from_dict({"data": {"train_limt": 500}})
    with pytest.raises(ConfigError, match="'train_limt'"):
        TrainConfig(data={"train_limt": 500})
    with pytest.raises(ConfigError, match="data must be a mapping of data settings or a "
                                          "DataConfig, got 5"):
        TrainConfig(data=5)


def test_config_hash_of_recorded_configurations_is_unchanged():
    # Values computed by the formula every recorded run was tagged with: a change here
    # would make every sweep rerun (and every checkpoint unreachable) in existing stores.
    assert TrainConfig().config_hash() == "d9522a3aa8c3a950"  # the study's baseline
    focal = TrainConfig(activation="gelu", loss="focal", loss_params={"gamma": 2.0, "alpha": 0.1},
                        depth=2, seed=3)
    assert focal.config_hash() == "f0eee6d95d5c2ca5"


def test_config_hash_is_the_identity_of_what_is_trained():
    base = TrainConfig()
    assert TrainConfig.from_dict({"activation": {"name": "relu"},
                                  "loss": {"name": "cross_entropy", "reduction": None},
                                  "data": {"name": "mnist"}}).config_hash() == base.config_hash()
    assert TrainConfig(seed=1).config_hash() != base.config_hash()
    assert TrainConfig(data={"train_limit": 10}).config_hash() != base.config_hash()
