"""A search space from Hydra's sweep syntax, as hydra-optuna-sweeper reads it.

Each ``key=...`` override of a sweep (the sweep file's ``hydra.sweeper.params``, then the
command line; a later override of a key replaces an earlier one) is one of:

- a fixed value (``epochs=20``): the same in every configuration;
- a choice (``activation=relu,gelu`` or ``choice(relu,gelu)``): Optuna's categorical
  distribution over the values;
- a range (``batch_size=range(50,550,50)``, Hydra's: the stop is left out): integers with
  that step (Optuna's ``IntDistribution``); a range of floats is a choice of its values;
- an interval (``momentum=interval(0.5,0.99)``): uniform on it; ``tag(log, interval(a,b))``
  log-uniform; ``tag(int, interval(a,b))`` integers (both tags may be given).

``seed`` is not searched: a choice of seeds (``seed=0,1,2``) makes every sampled
configuration run once per seed, and it is ranked by the mean over its seeds.

A configuration's overrides are the fixed ones followed by one ``key=value`` per searched
key (values written so that they read back exactly), then its seed: the ``overrides`` tag of
its runs, from which :meth:`Space.trial_of` reads it back (a resumed search is told what
finished). Pure: nothing here samples, launches or records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mlp_sweeps.errors import UserError

__all__ = ["Space", "InvalidSpace", "parse", "REPLICATE_KEY"]

#: the key whose values are replicates of each configuration, never searched
REPLICATE_KEY = "seed"
#: overrides that do not change what is trained (left out of run names and of a run's
#: identity as a trial): what a sweep adds at launch, and the run's own options
NOT_IN_NAME = ("tracking.", "hydra.", "sweep=", "blas_threads=", "progress=",
               "log_every_steps=", "eval_train=", "stop_at_epoch=")


class InvalidSpace(UserError):
    """A search space that cannot be sampled (nothing was run or recorded)."""

    before_anything = True


@dataclass
class Space:
    """Fixed overrides, searched keys (key -> Optuna distribution) and the seeds."""

    fixed: list[str] = field(default_factory=list)
    dims: dict[str, Any] = field(default_factory=dict)
    seeds: list[str] = field(default_factory=list)  # ``seed=...`` overrides ([] : default)

    def overrides(self, params: Mapping[str, Any]) -> list[list[str]]:
        """The jobs of one sampled configuration: one list of overrides per seed."""
        searched = [f"{k}={_text(params[k])}" for k in self.dims]
        return [self.fixed + searched + ([s] if s else []) for s in (self.seeds or [""])]

    def trial_of(self, overrides: Sequence[str], parser=None) -> dict[str, Any] | None:
        """The sampled values of a recorded run of this space, from its overrides (its
        ``overrides`` tag, split); None if it is not a configuration of this space (another
        fixed value, a missing or extra key, a value outside a distribution)."""
        got: dict[str, str] = {}
        for o in overrides:
            if o.lstrip("+~").startswith(NOT_IN_NAME):  # what a sweep adds at launch
                continue
            key, _, value = o.partition("=")
            got[key.lstrip("+~")] = value
        fixed = dict(o.partition("=")[::2] for o in self.fixed
                     if not o.lstrip("+~").startswith(NOT_IN_NAME))
        seed = got.pop(REPLICATE_KEY, None)
        if self.seeds and f"{REPLICATE_KEY}={seed}" not in self.seeds:
            return None
        if any(got.pop(k, None) != v for k, v in fixed.items()) or set(got) != set(self.dims):
            return None
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = parser or OverridesParser.create()
        params = {}
        for k, text in got.items():
            try:
                value = parser.parse_override(f"{k}={text}").value()
            except Exception:  # noqa: BLE001 - not a value this space wrote
                return None
            dist = self.dims[k]
            if type(dist).__name__ == "CategoricalDistribution":
                match = [c for c in dist.choices if _text(c) == text]
                if not match:
                    return None
                value = match[0]
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                return None
            elif not dist.low <= value <= dist.high or (
                    type(dist).__name__ == "IntDistribution"
                    and (value != int(value) or (int(value) - dist.low) % dist.step)):
                return None
            params[k] = value
        return params

    def size(self) -> int | None:
        """The number of distinct configurations (None: infinite, an interval)."""
        n = 1
        for d in self.dims.values():
            kind = type(d).__name__
            if kind == "CategoricalDistribution":
                n *= len(d.choices)
            elif kind == "IntDistribution" and not d.log:
                n *= (d.high - d.low) // d.step + 1
            else:
                return None
        return n


def _text(value: Any) -> str:
    """A value as an override writes it, read back exactly (``repr`` of a float)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse(overrides: Sequence[str], parser=None) -> Space:
    """The search space of a sweep's overrides (sweep file first, command line last)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    parser = parser or OverridesParser.create()
    fixed: dict[str, str] = {}
    dims: dict[str, Any] = {}
    seeds: list[str] = []
    for o in parser.parse_overrides(list(overrides)):
        key = o.get_key_element()
        fixed.pop(key, None)
        dims.pop(key, None)
        if key == REPLICATE_KEY:
            seeds = []
        if not o.is_sweep_override():
            fixed[key] = f"{key}={o.get_value_element_as_str()}"
            continue
        v = o.value()
        if key == REPLICATE_KEY:
            if not o.is_discrete_sweep():
                raise InvalidSpace(f"{o.input_line}: seeds are replicates of every "
                                   f"configuration, not searched: give a list (seed=0,1,2) "
                                   f"or a range (seed=range(3))")
            seeds = [f"{key}={s}" for s in o.sweep_string_iterator()]
            continue
        tags = set(getattr(v, "tags", set()) or ())
        unknown = tags - {"log", "int"}
        if unknown:
            raise InvalidSpace(f"{o.input_line}: unknown tag(s) {', '.join(sorted(unknown))}; "
                               f"valid: log, int")
        if isinstance(v, IntervalSweep):
            lo, hi = float(v.start), float(v.end)
            if not lo < hi:
                raise InvalidSpace(f"{o.input_line}: an interval needs start < end")
            if "log" in tags and lo <= 0:
                raise InvalidSpace(f"{o.input_line}: a log interval needs start > 0")
            if "int" in tags:
                if lo != int(lo) or hi != int(hi):
                    raise InvalidSpace(f"{o.input_line}: an int interval needs integer ends")
                dims[key] = IntDistribution(int(lo), int(hi), log="log" in tags)
            else:
                dims[key] = FloatDistribution(lo, hi, log="log" in tags)
        elif isinstance(v, RangeSweep) and not v.shuffle and all(
                isinstance(x, int) for x in (v.start, v.stop, v.step)) and "log" not in tags:
            values = list(o.sweep_iterator())
            if not values:
                raise InvalidSpace(f"{o.input_line}: an empty range")
            dims[key] = IntDistribution(values[0], values[-1], step=abs(v.step)) \
                if v.step > 0 else CategoricalDistribution(values)
        elif isinstance(v, (ChoiceSweep, RangeSweep)):
            if tags:
                raise InvalidSpace(f"{o.input_line}: tags apply to intervals and ranges only")
            values = list(o.sweep_iterator())
            if len(set(map(_text, values))) != len(values):
                raise InvalidSpace(f"{o.input_line}: a value is listed twice")
            dims[key] = CategoricalDistribution(values)
        else:
            raise InvalidSpace(f"{o.input_line}: {type(v).__name__} is not a search space")
    return Space(list(fixed.values()), dims, seeds)
