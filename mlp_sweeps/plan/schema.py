"""Typed Hydra schema, generated from the core's registries.

Registered in Hydra's ConfigStore by :func:`register` (idempotent):

- ``config_schema``: the top-level schema (flat training keys, ``tracking``);
- group ``activation``: one node per name in :func:`mlp.activations.names`;
- group ``loss``: one node per name in :func:`mlp.losses.names`, with the loss's own
  parameters (from its signature) and the study's gradient reduction as default;
- group ``optimizer``: one node per name in :func:`mlp.optim.names`, with its own settings
  (e.g. ``optimizer=adam optimizer.beta2=0.99``; ``lr``, ``momentum``, ``weight_decay`` stay
  top-level keys);
- group ``data``: ``mnist``, ``fashion_mnist``.

A new activation, loss or optimizer in ``mlp/`` therefore appears here, in ``--help`` and in the
valid-choices error without any config file to edit. Types are checked by OmegaConf at
composition (a misspelled key or a non-number fails there); ranges by
:meth:`mlp.TrainConfig.validate` before any run is created.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING as MISSING_DC
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, List, Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from mlp import DataConfig, TrainConfig, activations, losses, optim
from mlp.data import DATASETS
from mlp.files import PROJECT_ROOT

__all__ = ["Config", "DataConf", "TrackingConf", "register"]


@dataclass
class ActivationConf:
    name: str = MISSING


@dataclass
class TrackingConf:
    enabled: bool = True  # record the run in MLflow (false: train only, nothing recorded)
    # the MLflow store or server (sqlite:///..., http://HOST:PORT, postgresql://...); null:
    # $MLFLOW_TRACKING_URI if set, else sqlite:///<project>/mlruns/mlflow.db
    uri: Optional[str] = None
    experiment: str = "mlp-sweeps"  # the MLflow experiment; each sweep file sets its own
    run_name: Optional[str] = None  # null: from the overrides, e.g. "activation=gelu,loss=hinge"
    parent_run_id: Optional[str] = None  # set by the sweeper for each job of a multirun
    # set by the sweeper with the parent run: a claim's FINISHED rivals are the runs started
    # since (ms since the epoch; 0: all of them)
    read_at: Optional[int] = None
    grid: Optional[List[str]] = None  # set by the sweeper: the study grids a job belongs to
    rung: Optional[int] = None  # set by successive halving: the rung a job trains to
    # set by successive halving: the paused run a job continues ("<run id>@<epoch it paused
    # at>"), in which its epochs are recorded
    reopen: Optional[str] = None
    # a RUNNING run without a heartbeat for this long is dead, on any host (its configuration
    # is taken over by the next launcher; see Resuming, crashes and bad input)
    heartbeat_timeout_s: float = 60.0


@dataclass
class RunConf:
    """Settings of a run that do not change what is trained (not in ``config_hash``)."""

    # BLAS threads for this run; null: cores / parallel jobs (all cores for a single run)
    blas_threads: Optional[int] = None
    progress: bool = True  # live progress bar (single runs)
    # save a checkpoint every N epochs (0: never; null: every 10 when epochs >= 20)
    checkpoint_every: Optional[int] = None
    # continue from the checkpoint of an unfinished (killed/failed) run of the same config
    resume: bool = True
    # log the batch's train loss and accuracy every N training steps (0: never; the study's
    # dispfreq was 50), as metrics batch_train_loss / batch_train_acc at step = iteration
    log_every_steps: int = 0
    # on evaluation epochs, also evaluate the whole training set as the test set is (dropout
    # as in evaluation): metrics train_eval_loss / train_eval_acc
    eval_train: bool = False
    # pause after this epoch (evaluated, checkpointed, status "paused"; null: train all
    # epochs); set by successive halving (hydra.sweeper.scheduler=asha) for each rung
    stop_at_epoch: Optional[int] = None
    tracking: TrackingConf = field(default_factory=TrackingConf)


def _fields_of(cls: type, skip: tuple[str, ...] = ()) -> list[tuple]:
    hints = get_type_hints(cls)
    return [(f.name, hints[f.name], field(default=f.default) if f.default_factory is MISSING_DC
             else field(default_factory=f.default_factory))
            for f in fields(cls) if f.name not in skip]


# The data settings, as the core defines them (root null: the dataset's default folder;
# normalize study: (x - 128) / 255, unit: x / 255, none; *_limit: the first N examples).
DataConf = make_dataclass("DataConf", _fields_of(DataConfig))

# The top-level schema: the groups, the flat training settings (depth, lr, ...) with types
# and defaults from the core's TrainConfig (the study's baseline is written in one place),
# then the run settings.
Config = make_dataclass(
    "Config",
    [("activation", Any, field(default=MISSING)), ("loss", Any, field(default=MISSING)),
     ("optimizer", Any, field(default=MISSING)), ("data", DataConf, field(default=MISSING)),
     *_fields_of(TrainConfig, skip=("activation", "loss", "loss_params", "optimizer",
                                    "optimizer_params", "data")),
     *_fields_of(RunConf)])


def _type_of(default: Any, annotation: Any) -> Any:
    if "Sequence" in str(annotation) or "list" in str(annotation):
        return Any  # e.g. focal alpha: a number or one per class
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float  # loss parameters are real numbers
    return Any


def loss_schema(name: str) -> type:
    """A dataclass for loss ``name``: ``name``, ``reduction`` and its own parameters."""
    fields = [("name", str, field(default=name)),
              ("reduction", str, field(default=losses.study_reduction(name)))]
    sig = inspect.signature(losses.loss_class(name).__init__)
    for p, default in losses.params(name).items():
        fields.append((p, _type_of(default, sig.parameters[p].annotation), field(default=default)))
    cls_name = "".join(w.capitalize() for w in name.split("_")) + "LossConf"
    return make_dataclass(cls_name, fields)


def optimizer_schema(name: str) -> type:
    """A dataclass for optimizer ``name``: ``name`` and its own settings (real numbers)."""
    return make_dataclass(name.capitalize() + "OptimizerConf",
                          [("name", str, field(default=name)),
                           *((p, float, field(default=d)) for p, d in optim.params(name).items())])


def register() -> None:
    """Store the schema and groups; register the ``${project_root:}`` resolver."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for n in activations.names():
        cs.store(group="activation", name=n, node=ActivationConf(name=n))
    for n in losses.names():
        cs.store(group="loss", name=n, node=loss_schema(n))
    for n in optim.names():
        cs.store(group="optimizer", name=n, node=optimizer_schema(n))
    for n in DATASETS:
        cs.store(group="data", name=n, node=DataConf(name=n))
