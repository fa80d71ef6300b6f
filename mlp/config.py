"""The training configuration as plain dataclasses, and its validation.

The core reads only these; the Hydra layer (``conf/``) builds its typed schema from the
same registries and converts its composed config with :meth:`TrainConfig.from_dict`.
Defaults are the published study's baseline.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from . import activations, losses, optim
from .data import DATASETS, NORMALIZATIONS, n_classes
from .layers import DROPOUT_MASKS, INITS
from .network import DTYPES

__all__ = ["ConfigError", "DataConfig", "TrainConfig"]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names it and the valid choices."""


@dataclass
class DataConfig:
    name: str = "mnist"  # the dataset (mlp.data.DATASETS)
    # the folder with its four IDX files (gzip or raw); null: the dataset's own (MNIST:
    # data/mnist in the project; Fashion-MNIST: /usr/share/datasets/fashion-mnist)
    root: str | None = None
    # the pixels' scaling: study ((x - 128) / 255), unit (x / 255), none
    normalize: str = "study"
    train_limit: int | None = None  # use only the first N training examples (null: all)
    test_limit: int | None = None  # use only the first N test examples (null: all)
    # examples held out of the training set (its last ones: the same for every configuration
    # and seed), evaluated like the test set as val_loss / val_acc; 0: none (the study's data)
    val_size: int = 0


@dataclass
class TrainConfig:
    activation: str = "relu"
    loss: str = "cross_entropy"
    # reduction (None: the study's for that loss) and the loss's own parameters
    loss_params: dict[str, Any] = field(default_factory=dict)
    depth: int = 1  # number of hidden layers (0: a linear model)
    hidden_size: int = 784  # width of each hidden layer
    # probability of zeroing a hidden unit in training, inverted dropout (PyTorch's meaning:
    # the study's "keep 0.8" is 0.2)
    dropout: float = 0.0
    # how units are dropped: inverted (a new mask each step, survivors scaled by 1 / (1 - p),
    # none in evaluation) or fixed (the study's: one random 1 - p of the units kept for the
    # whole run, in evaluation too, unscaled). Left out of to_dict() when inverted.
    dropout_mask: str = "inverted"
    # the weights' initialisation: normal (N(0, 0.01^2), the study's), he, xavier; biases 0
    init: str = "normal"
    lr: float = 1e-4  # learning rate
    # SGD's momentum: v <- momentum v + (g + weight_decay p); p <- p - lr v
    momentum: float = 0.9
    # L2 decay added to every gradient (biases included), for every optimizer
    weight_decay: float = 1e-3
    # the update rule (mlp.optim's registry) and its own settings (Adam: beta1, beta2, eps);
    # lr, momentum (SGD's) and weight_decay above are shared. Left out of to_dict() at their
    # defaults, so SGD configurations keep the identity (config hash) they had before.
    optimizer: str = "sgd"
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 100  # examples per step (the last batch of an epoch may be smaller)
    epochs: int = 100  # passes over the training set
    test_every: int = 5  # evaluate on the test (and validation) set every N epochs, and last
    # the seed of the initialisation, the shuffling and the dropout masks
    seed: int = 0
    dtype: str = "float32"  # float32 or float64 (gradient checks)
    data: DataConfig = field(default_factory=DataConfig)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping (e.g. a resolved Hydra config).

        ``activation`` may be a name or ``{"name": ...}``; ``loss`` a name or
        ``{"name": ..., "reduction": ..., <params>}``; ``optimizer`` a name or
        ``{"name": ..., <params>}``. Keys that are not training settings (``tracking``,
        ``hydra``, ...) are ignored.
        """
        d = dict(d)
        kw: dict[str, Any] = {}
        act = d.get("activation", cls.activation)
        kw["activation"] = act["name"] if isinstance(act, Mapping) else act
        loss = d.get("loss", cls.loss)
        if isinstance(loss, Mapping):
            loss = dict(loss)
            kw["loss"] = loss.pop("name")
            kw["loss_params"] = {k: v for k, v in loss.items() if v is not None or k != "reduction"}
        else:
            kw["loss"] = loss
            kw["loss_params"] = dict(d.get("loss_params") or {})
        opt = d.get("optimizer", cls.optimizer)
        if isinstance(opt, Mapping):
            opt = dict(opt)
            kw["optimizer"] = opt.pop("name")
            kw["optimizer_params"] = opt
        else:
            kw["optimizer"] = opt
            kw["optimizer_params"] = dict(d.get("optimizer_params") or {})
        kw["data"] = _data_config(d.get("data") or {})
        for f in fields(cls):
            if f.name not in kw and f.name in d:
                kw[f.name] = d[f.name]
        return cls(**kw)

    def __post_init__(self):
        self.data = _data_config(self.data)  # e.g. TrainConfig(data={"train_limit": 5000})
        if self.optimizer in optim.names():  # its settings resolved: one identity per config
            self.optimizer_params = {**optim.params(self.optimizer), **self.optimizer_params}

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data: what identifies a configuration (its hash, a
        checkpoint's match). The optimizer appears only when it is not SGD (with its own
        settings, defaults filled in), so an SGD configuration's dict, and hash, are those
        it had before optimizers were selectable."""
        d = asdict(self)
        if self.optimizer == "sgd" and not self.optimizer_params:
            del d["optimizer"], d["optimizer_params"]
        if not self.data.val_size:  # the identity configurations had before it existed
            del d["data"]["val_size"]
        if self.dropout_mask == "inverted":  # likewise
            del d["dropout_mask"]
        return d

    def make_optimizer(self, params: list) -> optim.Optimizer:
        """The configured optimizer over ``params`` (a network's parameters)."""
        return optim.get(self.optimizer, params, lr=self.lr, momentum=self.momentum,
                         weight_decay=self.weight_decay, **self.optimizer_params)

    def config_hash(self) -> str:
        """Identity of what is trained: 16 hex digits of the SHA-256 of :meth:`to_dict` as
        sorted JSON (seed included). Runs of one configuration share it, whatever tracked
        or launched them; changing this formula orphans every recorded run."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def reduction(self) -> str:
        return self.loss_params.get("reduction") or losses.study_reduction(self.loss)

    def make_loss(self) -> losses.Loss:
        params = {k: v for k, v in self.loss_params.items() if k != "reduction"}
        return losses.get(self.loss, reduction=self.reduction, **params)

    def validate(self) -> "TrainConfig":
        """Check every value before any work; raise :class:`ConfigError` naming the first
        bad one with its valid range or choices. Returns ``self``."""
        _choice("activation", self.activation, activations.names())
        _choice("loss", self.loss, losses.names())
        red = self.loss_params.get("reduction")
        if red is not None:
            _choice("loss.reduction", red, losses.REDUCTIONS)
        try:
            loss = self.make_loss()
        except ValueError as e:
            raise ConfigError(f"loss: {e}") from None
        _int("depth", self.depth, 0)
        _int("hidden_size", self.hidden_size, 1)
        _num("dropout", self.dropout, 0.0, 1.0, "[0, 1)", lo_open=False, hi_open=True)
        _choice("dropout_mask", self.dropout_mask, list(DROPOUT_MASKS))
        _choice("init", self.init, INITS)
        _num("lr", self.lr, 0.0, math.inf, "> 0", lo_open=True)
        _num("momentum", self.momentum, 0.0, 1.0, "[0, 1)", lo_open=False, hi_open=True)
        _num("weight_decay", self.weight_decay, 0.0, math.inf, ">= 0", lo_open=False)
        _choice("optimizer", self.optimizer, optim.names())
        try:
            self.make_optimizer([])
        except ValueError as e:
            raise ConfigError(f"optimizer: {e}") from None
        _int("batch_size", self.batch_size, 1)
        _int("epochs", self.epochs, 1)
        _int("test_every", self.test_every, 1)
        _int("seed", self.seed, 0)
        _choice("dtype", self.dtype, DTYPES)
        _choice("data.name", self.data.name, list(DATASETS))
        try:  # e.g. focal alpha: one weight per class of the data
            loss.check_classes(n_classes(self.data.name))
        except ValueError as e:
            raise ConfigError(f"loss: {e} (data={self.data.name})") from None
        _choice("data.normalize", self.data.normalize, list(NORMALIZATIONS))
        for k in ("train_limit", "test_limit"):
            v = getattr(self.data, k)
            if v is not None:
                _int(f"data.{k}", v, 1, none_ok=True)
        _int("data.val_size", self.data.val_size, 0)
        n_train = DATASETS[self.data.name]["train"]
        if self.data.val_size >= n_train:
            raise ConfigError(f"data.val_size={self.data.val_size} leaves no training data: "
                              f"{self.data.name} has {n_train} training examples; it must be "
                              f"< {n_train}")
        return self


def _data_config(data: Mapping[str, Any] | DataConfig) -> DataConfig:
    """A :class:`DataConfig` from a mapping; an unknown key is an error naming the valid ones."""
    if isinstance(data, DataConfig):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"data must be a mapping of data settings or a DataConfig, got "
                          f"{data!r}")
    names = [f.name for f in fields(DataConfig)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"unknown data setting(s) {', '.join(map(repr, unknown))}; valid: "
                          f"{', '.join(names)}")
    return DataConfig(**dict(data))


def _choice(key: str, value: Any, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(valid)}")


def _int(key: str, value: Any, lo: int, none_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value!r} must be an integer >= {lo}"
                          + (" or null" if none_ok else ""))
    if value < lo:
        raise ConfigError(f"{key}={value!r} is out of range: must be an integer >= {lo}")


def _num(key: str, value: Any, lo: float, hi: float, rng: str, lo_open: bool = False,
         hi_open: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} must be a finite number {rng}")
    if (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi):
        raise ConfigError(f"{key}={value!r} is out of range: must be {rng}")
