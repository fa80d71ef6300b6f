"""A job's full config (with its ``hydra`` node) where it runs, without a Hydra composition
per job.

Every launcher (joblib's in each worker process, Ray's and SLURM's in the launching one)
gets a job's config from ``config_loader.load_sweep_config(master, overrides)``, which
composes the whole config from the files again: about 0.2 s per job, more than a tiny run
trains. :class:`SweepConfigLoader` wraps Hydra's loader and answers the same call by
composing each distinct set of the overrides that change what is composed (config group
choices, ``+``/``~``/``@package`` overrides, ``hydra.*``: :func:`structural`) once per
process, then applying the job's plain ``key=value`` overrides to a copy exactly as Hydra
applies them (``OmegaConf.update(cfg, key, value, merge=True)``, in order, on the config
in struct mode) and setting what Hydra derives from the overrides (``hydra.overrides.task``,
``hydra.job.override_dirname``). Anything it does not handle falls back to Hydra's own
composition, which also gives Hydra's error for a bad override.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = ["SweepConfigLoader", "structural"]

# per process: (loader token, structural overrides) -> the composed config; and parsed
# overrides by their text
_BASES: dict[tuple[str, tuple[str, ...]], DictConfig] = {}
_PARSED: dict[str, Any] = {}
_PARSER: list[Any] = []  # Hydra's override parser, made once
_MAX_BASES = 256


def structural(override, groups: set[str]) -> bool:
    """Whether an override (Hydra's parsed ``Override``) changes what is composed, not
    only a value of the composed config."""
    key = override.key_or_group
    return (override.package is not None or override.is_add() or override.is_delete()
            or override.is_force_add() or key in groups or "/" in key or key == "hydra"
            or key.startswith("hydra."))


class SweepConfigLoader:
    """Hydra's ``ConfigLoader`` with a fast :meth:`load_sweep_config` (module docstring);
    every other attribute is the wrapped loader's. Pickled with its loader (joblib and Ray
    ship it to each worker); the cache stays in each process."""

    def __init__(self, loader):
        self._loader = loader
        self._token = uuid.uuid4().hex  # one sweep's bases are never another's
        self._groups: set[str] | None = None

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_loader", "_token", "_groups"):
            raise AttributeError(name)
        return getattr(self._loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]):
        try:
            return self._compose(master_config, list(sweep_overrides))
        except Exception:  # noqa: BLE001 - Hydra's own composition says what is wrong
            return self._loader.load_sweep_config(master_config, list(sweep_overrides))

    def _compose(self, master: DictConfig, overrides: list[str]) -> DictConfig:
        from hydra._internal.config_loader_impl import get_overrides_dirname

        if self._groups is None:
            self._groups = set(self._loader.list_groups(""))
        parsed = [_parse(o) for o in overrides]
        fixes = [structural(p, self._groups) for p in parsed]
        fixed = tuple(o for o, f in zip(overrides, fixes) if f)
        key = (self._token, fixed)
        base = _BASES.get(key)
        if base is None:
            if len(_BASES) >= _MAX_BASES:
                _BASES.clear()
            base = _BASES[key] = self._loader.load_sweep_config(master, list(fixed))
        cfg = copy.deepcopy(base)
        OmegaConf.copy_cache(from_config=master, to_config=cfg)
        for p, f in zip(parsed, fixes):
            if not f:
                OmegaConf.update(cfg, p.key_or_group, p.value(), merge=True)
        app = [p for p in parsed if not p.is_hydra_override()]
        hc = cfg.hydra
        with open_dict(hc):
            hc.overrides.task = [p.input_line for p in app]
            dirname = hc.job.config.override_dirname
            hc.job.override_dirname = get_overrides_dirname(
                overrides=app, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep,
                exclude_keys=dirname.exclude_keys)
        return cfg


def _parse(text: str):
    p = _PARSED.get(text)
    if p is None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if not _PARSER:
            _PARSER.append(OverridesParser.create())
        p = _PARSED[text] = _PARSER[0].parse_override(text)
    return p
