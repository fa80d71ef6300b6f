"""A sweep file -> the list of jobs to train: what a grid is, and which jobs are the same.

- a grid is a cartesian product of ``key=v1,v2,...`` overrides (Hydra's sweep syntax,
  parsed by Hydra's public override parser); a later override of a key replaces an earlier
  one, so command-line arguments override a sweep file's values;
- a sweep is one grid (``hydra.sweeper.params``) or a union of named grids
  (``hydra.sweeper.grids``, of which ``hydra.sweeper.only`` may pick some);
- every job is composed and validated before anything runs (a bad value fails the whole
  sweep naming the job, :class:`InvalidSweep`), its data verified once per dataset;
- jobs that train the same configuration (:meth:`mlp.TrainConfig.config_hash`) are merged
  into one that belongs to each of their grids;
- launched longest first (:func:`longest_first`): by the sweep's estimate of each job when
  there is one (:mod:`mlp_sweeps.plan.cost`, so the wall time it prints is for the order the
  jobs are launched in), else by the same work model's matrix-product flops (:func:`cost`).

Pure: composing a job's config is a function passed in (Hydra's config loader in a sweep,
``hydra.compose`` in tests); nothing here launches, tracks or writes.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from omegaconf import OmegaConf

from mlp import ConfigError, TrainConfig
from mlp.data import DataError, data_sizes
from mlp.train import load_data

from mlp_sweeps.plan import options
from mlp_sweeps.errors import UserError
from mlp_sweeps.plan.job_config import structural as _structural

__all__ = ["Job", "InvalidSweep", "expand", "grid_jobs", "validate", "plan", "composer",
           "Composer", "longest_first", "cost", "grid_names", "grids", "composing",
           "train_configs"]


class InvalidSweep(UserError):
    """A job of the sweep has an invalid configuration (nothing was run or recorded)."""

    before_anything = True


@dataclass
class Job:
    """One configuration to train: its overrides and the grids it belongs to."""

    overrides: list[str]
    grids: list[str]
    config_hash: str = ""
    cost: float = 0.0  # relative training cost, to start the longest jobs first
    previous: str = ""  # what the store had for this configuration: "", failed, killed, ...
    extra: list[str] = field(default_factory=list)  # overrides added at launch
    config: TrainConfig | None = None  # the validated configuration (for the estimate)

    @property
    def name(self) -> str:
        return " ".join(self.overrides)


def expand(overrides: Sequence[str], parser=None) -> list[list[str]]:
    """The jobs of one grid: the cartesian product of the sweep overrides, in order of
    each key's first appearance; a later override of a key replaces an earlier one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = parser or OverridesParser.create()
    choices: dict[str, list[str]] = {}
    for o in parser.parse_overrides(list(overrides)):
        key = o.get_key_element()
        if not o.is_sweep_override():
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise InvalidSweep(f"{o.input_line}: an interval has no finite grid; a grid takes "
                               f"lists (a,b,c), choice(...) and range(...); draw from an "
                               f"interval with hydra.sweeper.sampler=random or tpe and "
                               f"hydra.sweeper.n_trials=N")
    return [list(job) for job in itertools.product(*choices.values())]


def grid_jobs(params: Mapping[str, Any] | None, grids: Mapping[str, Mapping[str, Any]] | None,
              arguments: Sequence[str], only: Sequence[str] | None = None,
              parser=None) -> list[tuple[list[str], list[str]]]:
    """(overrides, grid names) of every job of a sweep, duplicates (by overrides) merged.

    ``params`` apply to every grid; ``arguments`` (the command line) override both."""
    base = [f"{k}={v}" for k, v in (params or {}).items()]
    if not grids:
        return [(job, []) for job in expand(base + list(arguments), parser)]
    unknown = [g for g in (only or []) if g not in grids]
    if unknown:
        raise InvalidSweep(f"hydra.sweeper.only: unknown grid(s) {', '.join(unknown)}; "
                           f"this sweep's grids: {', '.join(grids)}")
    planned: dict[tuple, list[str]] = {}
    for name, grid in grids.items():
        if only and name not in only:
            continue
        grid_ov = [f"{k}={v}" for k, v in (grid or {}).items()]
        for job in expand(grid_ov + base + list(arguments), parser):
            planned.setdefault(tuple(job), []).append(name)
    return [(list(job), names) for job, names in planned.items()]


def validate(planned: Iterable[tuple[list[str], list[str]]],
             compose: Callable[[list[str]], Any]) -> list[Job]:
    """Compose (``compose(overrides)`` -> the job's config) and validate each job, verify
    each dataset once; merge jobs that train the same configuration."""
    by_hash: dict[str, Job] = {}
    data_ok: set[tuple] = set()
    for overrides, grids in planned:
        job = " ".join(overrides)
        try:
            cfg = compose(list(overrides))
            container = OmegaConf.to_container(cfg, resolve=True) \
                if OmegaConf.is_config(cfg) else cfg
            tcfg = TrainConfig.from_dict(container).validate()
            options.check_run(container)  # the run's, tracking's, checkpointing's options
            options.check_memory(tcfg, *data_sizes(tcfg.data)[2:])
        except (ConfigError, ValueError) as e:
            raise InvalidSweep(f"job {job}: {e}") from None
        d = tcfg.data
        if (d.name, d.root, d.normalize) not in data_ok:  # decoded into the shared cache here
            try:
                load_data(tcfg)
            except (DataError, ValueError) as e:
                raise InvalidSweep(f"job {job}: {e}") from None
            data_ok.add((d.name, d.root, d.normalize))
        h = tcfg.config_hash()
        if h in by_hash:  # the same training configuration from another grid
            by_hash[h].grids.extend(g for g in grids if g not in by_hash[h].grids)
        else:
            by_hash[h] = Job(list(overrides), list(grids), h, cost=cost(tcfg), config=tcfg)
    return list(by_hash.values())


def plan(params, grids, arguments: Sequence[str], compose: Callable[[list[str]], Any],
         only: Sequence[str] | None = None, parser=None) -> list[Job]:
    """The validated, merged jobs of a sweep, in the order of its grids."""
    return validate(grid_jobs(params, grids, arguments, only, parser), compose)


def composer(config_loader, sweep_config, parser=None) -> Callable[[list[str]], Any]:
    """``compose(overrides)``: a job's config, without its ``hydra`` node, as the launcher
    will compose it, in milliseconds per job (:class:`Composer`)."""
    return Composer(config_loader, sweep_config, parser)


class Composer:
    """A sweep's jobs composed as Hydra composes each of them, without a Hydra composition
    per job.

    A job's overrides split into those that change what is composed (a config group's
    choice such as ``activation=gelu`` or ``data=fashion_mnist``, ``+``/``~``/``@package``
    overrides, ``hydra.*``) and plain values (``lr=0.1``, ``loss.gamma=2``). Hydra composes
    the config once per distinct combination of the former (cached), then applies the
    latter as Hydra does (``OmegaConf.update`` on the composed config, so the typed schema
    converts and checks each value). Each distinct ``key=value`` is applied once, on a
    scratch copy of its combination's config; a job's config is then a copy of the plain
    composed dict with its converted values set. When the config or a value has
    interpolations (a value depending on another key), the job's overrides are applied to a
    copy of the composed config instead. Any error falls back to Hydra's own composition of
    the job, so a bad value fails with Hydra's message, naming it.
    """

    def __init__(self, config_loader, sweep_config, parser=None):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.loader, self.sweep_config = config_loader, sweep_config
        self.parser = parser or OverridesParser.create()
        self.groups = set(config_loader.list_groups(""))
        self._parsed: dict[str, Any] = {}
        self._bases: dict[tuple[str, ...], tuple[Any, dict, bool]] = {}
        self._values: dict[tuple, Any] = {}
        self._scratch: dict[tuple, Any] = {}

    def full(self, overrides: list[str]):
        """Hydra's composition of one job (what the launcher does), without ``hydra``."""
        from omegaconf import open_dict

        cfg = self.loader.load_sweep_config(self.sweep_config, list(overrides))
        with open_dict(cfg):
            cfg.pop("hydra", None)
        return cfg

    def _parse(self, o: str):
        p = self._parsed.get(o)
        if p is None:
            m = _PLAIN_INT.fullmatch(o)  # e.g. seed=17 of seed=range(10000): no grammar
            p = self._parsed[o] = _Int(m[1], int(m[2])) if m and m[1] not in self.groups \
                and m[1] != "hydra" else self.parser.parse_override(o)
        return p

    def _base(self, structural: tuple[str, ...]):
        b = self._bases.get(structural)
        if b is None:
            cfg = self.full(list(structural))
            raw = OmegaConf.to_container(cfg, resolve=False)
            b = self._bases[structural] = (cfg, OmegaConf.to_container(cfg, resolve=True),
                                           "${" in repr(raw))
        return b

    def _value(self, structural: tuple[str, ...], key: str, value: Any, o: str):
        """``key=value`` applied to the combination's config as Hydra applies it: the
        converted value (a KeyError/ValueError if the schema refuses it)."""
        k = (structural, o)
        if k not in self._values:
            scratch = self._scratch.get((structural, key))
            if scratch is None:
                scratch = self._scratch[(structural, key)] = copy.deepcopy(
                    self._base(structural)[0])
            OmegaConf.update(scratch, key, value, merge=False)
            node = OmegaConf.select(scratch, key, throw_on_missing=True)
            self._values[k] = OmegaConf.to_container(node, resolve=True) \
                if OmegaConf.is_config(node) else node
        return self._values[k]

    def __call__(self, overrides: list[str]):
        try:
            parsed = [self._parse(o) for o in overrides]
            fixes = [_structural(p, self.groups) for p in parsed]
            structural = tuple(o for o, f in zip(overrides, fixes) if f)
            plain = [(o, p) for o, p, f in zip(overrides, parsed, fixes) if not f]
            cfg, container, interpolated = self._base(structural)
            values = [(p.key_or_group, p.value()) for _, p in plain]
            if interpolated or any("${" in o or isinstance(v, (dict, list)) for (o, _), (_, v)
                                   in zip(plain, values)):  # applied as Hydra does
                job = copy.deepcopy(cfg)
                for key, value in values:
                    OmegaConf.update(job, key, value, merge=True)
                return OmegaConf.to_container(job, resolve=True)
            out = _copy(container)
            for (o, _), (key, value) in zip(plain, values):
                *path, last = key.split(".")
                node = out
                for part in path:
                    node = node[part]
                if last not in node:
                    raise KeyError(key)
                node[last] = _copy(self._value(structural, key, value, o))
            return out
        except Exception:  # noqa: BLE001 - Hydra's own composition says what is wrong
            return self.full(overrides)


# ``key=<integer>`` as Hydra's override grammar reads it (an INT: no leading zero)
_PLAIN_INT = re.compile(r"([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*)=([+-]?(?:0|[1-9][0-9]*))")


@dataclass(frozen=True)
class _Int:
    """A parsed ``key=<integer>`` override (the part of Hydra's ``Override`` used here)."""

    key_or_group: str
    _value: int
    package: None = None

    def value(self) -> int:
        return self._value

    def is_add(self) -> bool:
        return False

    is_delete = is_force_add = is_add


def _copy(x):
    """A copy of plain config data (dicts, lists, scalars)."""
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_copy(v) for v in x]
    return x


def cost(tcfg: TrainConfig) -> float:
    """A job's cost before this machine's rates are known: the flops of its matrix products,
    training and evaluation, from the estimate's work model and the real data sizes. The
    sweep replaces it by the estimate's run time (:func:`mlp_sweeps.plan.cost.schedule.for_jobs`)."""
    from mlp_sweeps.plan.cost.work import work

    return work(tcfg).flops


def longest_first(jobs: Iterable[Job]) -> list[Job]:
    """Launch order: on parallel workers the sweep then ends soonest (LPT scheduling)."""
    return sorted(jobs, key=lambda j: -j.cost)


def grid_names(sweep: str = "study") -> list[str]:
    """Names of the grids of sweep file ``sweep`` (``sweeps/<sweep>.yaml``), as composed by
    Hydra: ``[]`` for a single-grid sweep."""
    return list(grids(sweep))


def grids(sweep: str = "study") -> dict[str, dict[str, str]]:
    """The named grids of sweep file ``sweep`` as composed by Hydra: grid -> {key: its
    sweep values, e.g. ``"relu,gelu"``}; ``{}`` for a single-grid sweep."""
    with composing() as compose:
        cfg = compose([f"sweep={sweep}"], return_hydra_config=True)
    return {name: {k: str(v) for k, v in (g or {}).items()}
            for name, g in OmegaConf.to_container(cfg.hydra.sweeper.grids or {}).items()}


@contextlib.contextmanager
def composing() -> Iterator[Callable[..., Any]]:
    """``compose(overrides, **kw)``: Hydra's composition of the project's ``conf/config``
    (the schema registered) with ``overrides``, as ``train.py`` composes a run; inside a
    running Hydra app its own, else Hydra initialised for the block."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mlp.files import PROJECT_ROOT

    from mlp_sweeps.plan import schema

    schema.register()

    def one(overrides: Sequence[str] = (), **kw: Any) -> Any:
        return compose("config", overrides=list(overrides), **kw)

    if GlobalHydra.instance().is_initialized():
        yield one
        return
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        yield one


def train_configs(jobs: Iterable[Sequence[str]]) -> list[TrainConfig]:
    """Each job's (its overrides') training configuration, composed and validated as the
    run of that job would be (the benchmarks' estimates are of these)."""
    with composing() as compose:
        return [TrainConfig.from_dict(OmegaConf.to_container(compose(ov), resolve=True))
                .validate() for ov in jobs]
