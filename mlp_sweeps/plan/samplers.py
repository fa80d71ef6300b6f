"""Which configurations a search tries: Optuna's samplers through its ask-and-tell interface.

- ``random``: Optuna's ``RandomSampler(seed)``; its ``n_trials`` configurations are drawn up
  front, so the same command (same space, same ``hydra.sweeper.seed``) draws the same ones,
  and a rerun of an interrupted search skips those that finished, as a grid's does;
- ``tpe``: Optuna's ``TPESampler(seed, constant_liar=True)`` (the trials in flight count as
  bad ones, so the trials drawn together differ); it draws a round of configurations per
  free worker, is told each one's result from the store and draws the next. A resumed
  search is first told every finished trial of the space in the experiment (the store is
  the one record: Optuna's study lives in memory only), and draws what is left of
  ``n_trials``.

A trial is one configuration of the space; with several seeds, its runs are its seeds and
its value is their mean (:func:`trials`). A draw that repeats a configuration already drawn
is told that configuration's value (or, in flight, skipped) and drawn again, so ``n_trials``
counts distinct configurations (fewer when the space has fewer: said once).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from mlp_sweeps.plan.space import Space

log = logging.getLogger(__name__)

__all__ = ["SAMPLERS", "Search", "Trial", "trials", "key_of"]

#: ``hydra.sweeper.sampler``: grid (every combination, no Optuna) or one of Optuna's samplers
SAMPLERS = ("grid", "random", "tpe")
#: draws per wanted configuration before a small space is said to be exhausted
ATTEMPTS = 50


def key_of(params: Mapping[str, Any]) -> tuple:
    """A configuration's identity within one space (its sampled values)."""
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


@dataclass
class Trial:
    """A configuration of the space as the store has it: its runs' outcomes and values."""

    params: dict[str, Any]
    values: list[float]  # the ranked metric of each finished run (a seed) that logged it
    finished: int  # runs that ended as results (finished or diverged)
    runs: int  # runs of it in the experiment that count (one per seed)

    @property
    def value(self) -> float | None:
        """The mean over its seeds (None while any seed has no value)."""
        if not self.values or len(self.values) < self.finished or self.finished < self.runs:
            return None
        return sum(self.values) / len(self.values)


def trials(runs: Iterable, space: Space, metric: str, parser=None) -> dict[tuple, Trial]:
    """The space's configurations recorded in ``runs`` (the counting run of each
    configuration and seed: :func:`mlp_sweeps.claim.ledger.latest_by_config`), by :func:`key_of`."""
    from mlp_sweeps.claim.ledger import RESULTS, Tag, latest_by_config, outcome_of

    out: dict[tuple, Trial] = {}
    for r in latest_by_config(runs).values():
        params = space.trial_of(r.data.tags.get(Tag.OVERRIDES, "").split(), parser)
        if params is None:
            continue
        t = out.setdefault(key_of(params), Trial(params, [], 0, 0))
        t.runs += 1
        if outcome_of(r) in RESULTS:
            t.finished += 1
            v = r.data.metrics.get(metric)
            if v is not None and math.isfinite(v):
                t.values.append(float(v))
    return out


class Search:
    """One sampler over one space (``name``: ``random`` or ``tpe``), seeded."""

    def __init__(self, name: str, space: Space, seed: int | None, maximize: bool):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.RandomSampler(seed=seed) if name == "random" else \
            optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        self.name, self.space = name, space
        self.study = optuna.create_study(sampler=sampler,
                                         direction="maximize" if maximize else "minimize")
        self.known: dict[tuple, Any] = {}  # key -> its value (None: in flight)
        self.asked: dict[tuple, Any] = {}  # key -> the Optuna trial drawn for it (in flight)
        self.exhausted = False

    def tell_recorded(self, recorded: Mapping[tuple, Trial]) -> None:
        """Tell the study the trials the store holds whose every seed ended (with the mean
        value; failed without one); the others are left to the sweep to run again."""
        n_seeds = max(1, len(self.space.seeds))
        for key, t in recorded.items():
            if t.finished < n_seeds or (key in self.known and key not in self.asked):
                continue  # not ended yet (run again by the sweep), or told already
            self.tell(key, t.value, t.params)

    def tell(self, key: tuple, value: float | None,
             params: Mapping[str, Any] | None = None) -> None:
        """A drawn configuration's result (None: no value, e.g. it failed, or diverged
        before its first evaluation: told as failed). One drawn by an earlier sweep and run
        again here (``params``) is added to the study."""
        from optuna.trial import TrialState, create_trial

        trial = self.asked.pop(key, None)
        self.known[key] = value
        if trial is not None:
            if value is None:
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                self.study.tell(trial, value)
        elif params is not None:
            self.study.add_trial(create_trial(
                params=dict(params), distributions=self.space.dims, value=value,
                state=TrialState.COMPLETE if value is not None else TrialState.FAIL))

    def add(self, params: Mapping[str, Any], state: str,
            values: Mapping[int, float] | None = None, value: float | None = None) -> None:
        """A configuration run elsewhere told as an Optuna trial in ``state``:
        ``complete`` with its ``value``, ``pruned`` with its
        ``values`` per epoch as intermediate values, ``running`` (the constant liar's), or
        ``fail``; never drawn again."""
        from optuna.trial import TrialState, create_trial

        st = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED,
              "running": TrialState.RUNNING, "fail": TrialState.FAIL}[state]
        self.study.add_trial(create_trial(
            params=dict(params), distributions=self.space.dims, state=st,
            value=value if st == TrialState.COMPLETE else None,
            intermediate_values=dict(values or {}) if st == TrialState.PRUNED else None))
        self.known[key_of(params)] = value

    def ask(self, n: int) -> list[dict[str, Any]]:
        """Up to ``n`` configurations not drawn before (fewer once the space is exhausted)."""
        from optuna.trial import TrialState

        out: list[dict[str, Any]] = []
        attempts = 0
        while len(out) < n and attempts < ATTEMPTS * n:
            attempts += 1
            trial = self.study.ask(self.space.dims)
            key = key_of(trial.params)
            if key in self.known or key in self.asked:  # drawn before: told, drawn again
                v = self.known.get(key)
                if v is None:
                    self.study.tell(trial, state=TrialState.FAIL)
                else:
                    self.study.tell(trial, v)
                continue
            self.asked[key] = trial
            out.append(dict(trial.params))
        if len(out) < n and not self.exhausted:
            self.exhausted = True
            size = self.space.size()
            log.warning("The %s sampler found no new configuration in %d draws: the space "
                        "has %s configurations, %d drawn", self.name, attempts,
                        size if size is not None else "few new", len(self.known) + len(self.asked))
        return out


def best(recorded: Mapping[tuple, Trial], maximize: bool) -> Trial | None:
    """The trial with the best value (None: none has one)."""
    valued = [t for t in recorded.values() if t.value is not None]
    if not valued:
        return None
    return (max if maximize else min)(valued, key=lambda t: t.value)


def params_text(params: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    from mlp_sweeps.plan.space import _text

    return " ".join(f"{k}={_text(params[k])}" for k in (keys or params))


class Searcher:
    """A sweep's search: its space, its sampler, and the jobs it draws (``random``: all
    ``n_trials`` at planning; ``tpe``: a round per free worker, told between rounds).

    ``compose`` and ``parser`` are the sweep's (:func:`mlp_sweeps.plan.jobs.composer`); every
    job drawn is validated as a grid's are (:func:`mlp_sweeps.plan.jobs.validate`)."""

    def __init__(self, settings, arguments: Sequence[str], compose, parser=None):
        from mlp_sweeps.plan import options
        from mlp_sweeps.plan.space import InvalidSpace, parse

        base = [f"{k}={v}" for k, v in (settings.params or {}).items()] + list(arguments)
        self.space = parse(base, parser)
        if not self.space.dims:
            raise InvalidSpace(f"hydra.sweeper.sampler={settings.sampler}: nothing to search "
                               f"(no override is a list a,b, a choice(...), a range(...) or an "
                               f"interval(a,b)): {' '.join(base) or '(no overrides)'}")
        self.name, self.n_trials = settings.sampler, int(settings.n_trials)
        self.metric = settings.metric
        self.maximize = options.ranked_mode(settings.metric, settings.mode) == "max"
        self.seed = settings.seed
        self.compose, self.parser = compose, parser
        self.search = Search(self.name, self.space, self.seed, self.maximize)
        self.adaptive = self.name == "tpe"

    # planning -----------------------------------------------------------------------------
    def probes(self) -> list:
        """Validated jobs at the corners of the space (every key at its low end, at its high
        end, and each choice): a bad bound fails the sweep before anything is recorded."""
        from mlp_sweeps.plan import options

        def at(pick) -> dict[str, Any]:
            return {k: pick(d) for k, d in self.space.dims.items()}

        lows = at(lambda d: d.choices[0] if hasattr(d, "choices") else d.low)
        highs = at(lambda d: d.choices[-1] if hasattr(d, "choices") else d.high)
        corners = [lows, highs] + [{**lows, k: c} for k, d in self.space.dims.items()
                                   for c in getattr(d, "choices", ())[1:-1]]
        jobs = self._validated(corners)
        options.check_ranked(self.metric, jobs[0].config.data.val_size)
        return jobs

    def first_jobs(self) -> list:
        """The jobs known at planning: random's ``n_trials`` draws (tpe draws later)."""
        if self.adaptive:
            return []
        draws = self.search.ask(self.n_trials)
        return self._validated(draws)

    def _validated(self, draws: list[dict[str, Any]]) -> list:
        from mlp_sweeps.plan import jobs as plan

        return plan.validate([(ov, []) for p in draws for ov in self.space.overrides(p)],
                             self.compose)

    # tpe's rounds ---------------------------------------------------------------------------
    def recorded(self, runs) -> dict[tuple, Trial]:
        return trials(runs, self.space, self.metric, self.parser)

    def first_round(self, runs, n_workers: int) -> list:
        """TPE told every finished trial of the space in ``runs`` (the experiment's): the
        recorded trials without a result (to run again, as a grid's killed ones are) and
        new draws for the free workers, up to what is left of ``n_trials``."""
        recorded = self.recorded(runs)
        self.search.tell_recorded(recorded)
        n_seeds = max(1, len(self.space.seeds))
        unfinished = [t.params for t in recorded.values() if t.finished < n_seeds]
        for p in unfinished:  # in flight again: told when they end (next_round)
            self.search.known.pop(key_of(p), None)
            self.search.asked[key_of(p)] = None
        if len(recorded):
            log.info("Search: %d configurations of this space recorded in the experiment "
                     "(%d with a result), %d to draw (hydra.sweeper.n_trials=%d)",
                     len(recorded), len(recorded) - len(unfinished),
                     max(0, self.n_trials - len(recorded)), self.n_trials)
        left = max(0, self.n_trials - len(recorded))
        return self._validated(unfinished + self.search.ask(min(max(1, n_workers), left)))

    def next_round(self, runs, n_workers: int) -> list:
        """The results of the configurations in flight told (from ``runs``, the
        experiment's); the next draws (none once ``n_trials`` configurations are drawn)."""
        recorded = self.recorded(runs)
        n_seeds = max(1, len(self.space.seeds))
        for key in list(self.search.asked):
            t = recorded.get(key)
            ended = t is not None and t.finished >= n_seeds
            self.search.tell(key, t.value if ended else None, t.params if t else None)
        left = self.n_trials - len(self.search.known) - len(self.search.asked)
        if left <= 0:
            return []
        return self._validated(self.search.ask(min(max(1, n_workers), left)))

    # under successive halving ----------------------------------------------------------------
    def jobs_of(self, params: Mapping[str, Any]) -> list:
        """One configuration's validated jobs (one per seed)."""
        return self._validated([dict(params)])

    def stand_ins(self) -> list:
        """``n_trials`` configurations drawn at random from the space (this search's seed):
        what an estimate sizes a tpe search by before TPE has drawn anything."""
        return self._validated(Search("random", self.space, self.seed, self.maximize)
                               .ask(self.n_trials))

    def draw_for_ladder(self, told: Sequence[tuple[Mapping[str, Any], str, Mapping[int, float],
                                                   float | None]], salt: int
                        ) -> dict[str, Any] | None:
        """TPE under successive halving: one new configuration, drawn by a study told the
        whole ladder anew (``told``: each configuration's params, state, values per rung
        epoch and value at the last rung; :meth:`Search.add`). A configuration paused or
        stopped at a rung is a pruned trial with its rungs' values as intermediate values:
        Optuna's TPE ranks those by how far they got, then by their last value. The
        study's seed is this search's plus ``salt`` (the configurations so far), so a
        draw depends on the ladder's state only; None once the space has no new one."""
        search = Search(self.name, self.space, (self.seed or 0) + salt, self.maximize)
        for params, state, values, value in told:
            search.add(params, state, values, value)
        got = search.ask(1)
        return got[0] if got else None

    # after ----------------------------------------------------------------------------------
    def summary(self, runs) -> list[str]:
        """Lines for the sweep's summary: what was searched and the best configuration."""
        recorded = self.recorded(runs)
        top = best(recorded, self.maximize)
        seeds = len(self.space.seeds) or 1
        lines = [f"search: {self.name} (hydra.sweeper.seed={self.seed}), {len(recorded)} of "
                 f"{self.n_trials} configurations recorded"
                 + (f", {seeds} seeds each" if seeds > 1 else "")
                 + f"; ranked by {self.metric} ({'max' if self.maximize else 'min'}"
                 + (", mean over seeds" if seeds > 1 else "") + ")"]
        if self.metric.startswith("test_"):
            lines.append(f"note: ranked by {self.metric}: the choice used the test set "
                         f"(data.val_size=N and hydra.sweeper.metric=val_acc keep it out)")
        if top is None:
            lines.append("best: none yet (no configuration has a result)")
        else:
            test = _mean_of(runs, self.space, top, "test_acc", self.parser)
            lines.append(f"best: {params_text(top.params)}: {self.metric} {top.value:.4f}"
                         + (f", test_acc {test:.4f}" if test is not None
                            and self.metric != "test_acc" else ""))
        return lines


def _mean_of(runs, space: Space, trial: Trial, metric: str, parser=None) -> float | None:
    """The mean of ``metric`` over the recorded runs of one trial's configuration."""
    t = trials(runs, space, metric, parser).get(key_of(trial.params))
    return t.value if t is not None else None
