"""The values the options around training take (the run's, tracking's, checkpointing's, the
sweeper's): each option's rule, in one table, checked before anything runs or is recorded.

The training settings are :class:`mlp.config.TrainConfig`'s (its ``validate``); the typed
schema (:mod:`mlp_sweeps.plan.schema`) already refuses values of the wrong type. What a type
cannot say is here: ``blas_threads=0``, ``checkpoint_every=-1``,
``hydra.sweeper.max_batch_size=0``, an empty experiment name, a tracking URI MLflow has no
store for. A bad value is an :class:`~mlp_sweeps.errors.InvalidConfig` naming the option,
the value and what it may be.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

from omegaconf import OmegaConf

from mlp_sweeps.errors import InvalidConfig

__all__ = ["RUN", "SWEEPER", "TRACKING_SCHEMES", "check", "check_run", "check_sweeper",
           "available_memory", "check_memory"]

# the URI schemes MLflow has a tracking store for (and a plain path: a local folder)
TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql",
                    "databricks")


def _int_at_least(lo: int, null_ok: bool = True) -> tuple[Callable[[Any], bool], str]:
    ok = (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= lo)) \
        if null_ok else (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo)
    return ok, f"an integer >= {lo}" + (" or null" if null_ok else "")


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _uri(v: Any) -> bool:
    if v is None:
        return True
    if not isinstance(v, str) or not v.strip():
        return False
    scheme, sep, _ = v.partition("://")
    if not sep:  # a path, or "sqlite:" forms without //
        return ":" not in v.split("/")[0] or v.startswith(("sqlite:", "file:"))
    return scheme.split("+")[0] in TRACKING_SCHEMES  # e.g. postgresql+psycopg2


def _experiment(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


# option -> (rule, what it may be)
RUN: dict[str, tuple[Callable[[Any], bool], str]] = {
    "blas_threads": _int_at_least(1),
    "checkpoint_every": _int_at_least(0),
    "log_every_steps": _int_at_least(0, null_ok=False),
    "eval_train": ((lambda v: isinstance(v, bool)), "true or false"),
    "stop_at_epoch": _int_at_least(1),
    "tracking.rung": _int_at_least(0),
    "tracking.reopen": ((lambda v: v is None or (isinstance(v, str) and v.count("@") == 1
                         and v.split("@")[1].isdigit())), "null or <run id>@<epoch>"),
    "tracking.uri": (_uri, f"null, a path, or a URI of {', '.join(TRACKING_SCHEMES)}"),
    "tracking.experiment": (_experiment, "a non-empty name"),
    "tracking.heartbeat_timeout_s": (_positive, "a number of seconds > 0"),
}
def _one_of(*choices: Any, null_ok: bool = False) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: (null_ok and v is None) or v in choices),
            "one of " + ", ".join(map(str, choices)) + (" or null" if null_ok else ""))


def _samplers() -> tuple[str, ...]:
    from mlp_sweeps.plan.samplers import SAMPLERS

    return SAMPLERS


#: what a search may rank by: the curves a run logs (val_* with data.val_size > 0)
RANKED = ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss")

SWEEPER: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_batch_size": _int_at_least(1),
    "sampler": _one_of(*_samplers()),
    "n_trials": _int_at_least(1),
    "seed": _int_at_least(0),
    "metric": _one_of(*RANKED),
    "mode": _one_of("max", "min", null_ok=True),
    "scheduler": _one_of("none", "asha"),
    "asha.eta": _int_at_least(2, null_ok=False),
    "asha.min_epochs": _int_at_least(1, null_ok=False),
}


def check(values: Mapping[str, Any], rules: Mapping[str, tuple], prefix: str = "") -> None:
    """Raise :class:`InvalidConfig` for the first option of ``rules`` whose value in
    ``values`` (dotted keys looked up; a missing key is not checked) breaks its rule."""
    for key, (ok, what) in rules.items():
        value = OmegaConf.select(values, key, default=_MISSING) if OmegaConf.is_config(values) \
            else _lookup(values, key)
        if value is _MISSING:
            continue
        if not ok(value):
            raise InvalidConfig(f"{prefix}{key}={value!r} is not valid: it must be {what}")


def check_run(config) -> None:
    """The run's options of a composed config (a job's, or a single run's)."""
    check(config, RUN)


def check_sweeper(settings) -> None:
    """The sweeper's settings (``hydra.sweeper.*``), and what they need of each other."""
    check({k: getattr(settings, k) for k in {k.split(".")[0] for k in SWEEPER}
           if hasattr(settings, k)}, SWEEPER, "hydra.sweeper.")
    sampler = getattr(settings, "sampler", "grid")
    if sampler != "grid":
        if getattr(settings, "n_trials", None) is None:
            raise InvalidConfig(f"hydra.sweeper.sampler={sampler} draws configurations: say "
                                f"how many with hydra.sweeper.n_trials=N (an integer >= 1)")
        if getattr(settings, "grids", None):
            raise InvalidConfig(f"hydra.sweeper.sampler={sampler} samples one search space "
                                f"(hydra.sweeper.params and the command line), not a union "
                                f"of grids ({', '.join(settings.grids)})")
    elif getattr(settings, "n_trials", None) is not None:
        raise InvalidConfig(f"hydra.sweeper.n_trials={settings.n_trials} applies to the "
                            f"random and tpe samplers; a grid runs every combination "
                            f"(hydra.sweeper.sampler=random or tpe to draw N of them)")


def ranked_mode(metric: str, mode: str | None) -> str:
    """``mode``, else what the metric wants: max for an accuracy, min for a loss."""
    return mode or ("max" if metric.endswith("acc") else "min")


def check_ranked(metric: str, val_size: int) -> None:
    """A ranked metric the runs log: val_* needs a validation set."""
    if metric.startswith("val_") and not val_size:
        raise InvalidConfig(f"hydra.sweeper.metric={metric} is not logged by these runs: they "
                            f"have no validation set (data.val_size=0). Hold one out of the "
                            f"training set (e.g. data.val_size=5000), or rank by "
                            f"{metric.replace('val_', 'test_')} (the choice then uses the "
                            f"test set)")


def available_memory() -> int | None:
    """Bytes of memory available to a new process now (Linux's MemAvailable), else the
    physical memory, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(tcfg, n_features: int, n_classes: int, available: int | None = None) -> None:
    """Refuse a configuration whose training would not fit in the memory available
    (:func:`mlp.train.memory_bytes`), before anything allocates it."""
    from mlp.train import memory_bytes

    need = memory_bytes(tcfg, n_features, n_classes)
    have = available_memory() if available is None else available
    if have is not None and need > have:
        raise InvalidConfig(
            f"hidden_size={tcfg.hidden_size}, depth={tcfg.depth}, batch_size="
            f"{tcfg.batch_size}: training needs about {need / 2**30:,.1f} GiB of memory, "
            f"this machine has {have / 2**30:,.1f} GiB available")


_MISSING = object()


def _lookup(values: Mapping[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node
