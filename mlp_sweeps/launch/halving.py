"""What asynchronous successive halving (ASHA, Li et al., MLSys 2020) decides: the rungs,
and what a free worker does next, from what the store holds.

- Rungs at ``min_epochs * eta^k`` epochs, up to ``epochs`` (the last rung, whatever it is):
  ``min_epochs=1, eta=3, epochs=27`` -> 1, 3, 9, 27.
- A *trial* is one configuration of the sweep; with several seeds its jobs are its seeds,
  and its value at a rung is the mean of the ranked metric over them (known once every
  seed has reached the rung). Its seeds are promoted together.
- A free worker takes, highest rung first, a seed of a trial due for promotion: one in the
  top ``1/eta`` (``floor(n / eta)``) of the ``n`` trials with a value at its rung, idle
  there (paused, stopped or killed at it: not in flight anywhere, not promoted yet). Else a
  seed not yet started. Else nothing: it waits while anything is in flight (a result may
  make a promotion due), and the sweep is over when nothing is.
- Each seed's state is read from its configuration's run (the one that counts:
  :func:`mlp_sweeps.claim.ledger.latest_by_config`): its ``rung`` tag, ``rung_metrics`` (the
  ranked metrics at each epoch it paused at), outcome and checkpoint. The same reading, by
  every launcher of the sweep, gives the same decisions; the store's claims make sure each
  configuration-rung is trained once (:meth:`mlp_sweeps.claim.ledger.Ledger.reopen`).

Pure: nothing here launches or writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["rungs", "Seed", "Trial", "Work", "read", "next_work", "ladder"]


def rungs(min_epochs: int, eta: int, epochs: int) -> list[int]:
    """The epochs a configuration is ranked at: ``min_epochs * eta^k`` below ``epochs``,
    then ``epochs``."""
    out, r = [], min_epochs
    while r < epochs:
        out.append(r)
        r *= eta
    return out + [epochs]


@dataclass
class Seed:
    """One job of a trial (a seed) as the store has it."""

    job: Any  # plan.Job
    run: Any = None  # the run that counts for its configuration (None: not started)
    state: str = "new"  # new | running | idle | finished | failed
    rung: int = -1  # the last rung reached (idle, finished), or trained to (running)
    epoch: int = 0  # the checkpoint's epoch (idle): where it continues from
    target: int | None = None  # killed on its way to this rung: continued to it first
    values: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch -> metrics


@dataclass
class Trial:
    """A configuration of the sweep: its seeds."""

    key: tuple
    seeds: list[Seed]

    def value(self, epoch: int, metric: str) -> float | None:
        """Mean of ``metric`` over the seeds at ``epoch`` (None until every seed has it)."""
        got = [s.values.get(epoch, {}).get(metric) for s in self.seeds]
        if any(v is None for v in got):
            return None
        return sum(got) / len(got)

    def reached(self) -> int:
        """The highest rung every seed has reached (-1: not all started)."""
        return min(s.rung if s.state in ("idle", "finished") else
                   (s.rung - 1 if s.state == "running" else -1) for s in self.seeds)


@dataclass(frozen=True)
class Work:
    """A free worker's next job: train ``seed`` (of trial ``key``) to ``rung``, continuing
    ``run_id`` from its checkpoint at ``epoch`` (0: from the start; a run killed before
    its first checkpoint), None: a new run."""

    key: tuple
    seed: int
    rung: int
    run_id: str | None = None
    epoch: int = 0


def read(trials: Mapping[tuple, Sequence[Any]], latest: Mapping[str, Any],
         ladder_epochs: Sequence[int]) -> dict[tuple, Trial]:
    """Each trial's seeds' states from the runs that count (``latest``: config hash ->
    run, settled: a RUNNING one is alive)."""
    from mlp_sweeps.claim.ledger import Outcome, RunStatus, Tag, outcome_of

    out = {}
    for key, jobs in trials.items():
        seeds = []
        for job in jobs:
            s = Seed(job)
            r = latest.get(job.config_hash)
            if r is not None:
                s.run = r
                tags = r.data.tags
                s.values = {int(e): v for e, v in json.loads(tags.get(Tag.RUNG_METRICS) or "{}"
                                                             ).items()}
                rung = tags.get(Tag.RUNG)
                st = outcome_of(r)
                ck = tags.get(Tag.CHECKPOINT_EPOCH)
                if r.info.status == RunStatus.RUNNING:  # (settled: alive)
                    s.state = "running"
                    s.rung = int(rung) if rung not in (None, "") else len(ladder_epochs) - 1
                elif st in (Outcome.FINISHED, Outcome.DIVERGED):
                    s.state, s.rung = "finished", len(ladder_epochs) - 1
                    if not s.values and st == Outcome.FINISHED:  # trained straight through
                        s.values = {ladder_epochs[-1]: dict(r.data.metrics)}
                    if st == Outcome.DIVERGED:  # out of the ladder where it diverged
                        s.rung = max((i for i, e in enumerate(ladder_epochs) if e in s.values),
                                     default=-1)
                elif st in (Outcome.PAUSED, Outcome.STOPPED):
                    s.state = "idle"
                    s.epoch = int(ck) if ck else 0
                    s.rung = ladder_epochs.index(s.epoch) if s.epoch in ladder_epochs else -1
                elif st != Outcome.FAILED:  # killed in flight (or its end not recorded):
                    # continued to its rung from its checkpoint
                    s.state, s.epoch = "idle", int(ck) if ck else 0
                    reached = [i for i, e in enumerate(ladder_epochs) if e in s.values]
                    s.rung = max(reached, default=-1)
                    s.target = int(rung) if rung not in (None, "") else s.rung + 1
                else:  # failed: not retried by this sweep (a grid's failed runs are rerun
                    s.state = "failed"  # by the next sweep; so is this one)
            seeds.append(s)
        out[key] = Trial(key, seeds)
    return out


def _rank(trials: Iterable[Trial], epoch: int, metric: str, maximize: bool) -> list[Trial]:
    """Trials with a value at ``epoch``, best first."""
    valued = [(t.value(epoch, metric), t) for t in trials]
    valued = [(v, t) for v, t in valued if v is not None and math.isfinite(v)]
    valued.sort(key=lambda vt: -vt[0] if maximize else vt[0])
    return [t for _, t in valued]


def next_work(trials: Mapping[tuple, Trial], ladder_epochs: Sequence[int], eta: int,
              metric: str, maximize: bool, taken: set) -> Work | None:
    """What a free worker does next (see the module); ``taken``: the (key, seed, rung)
    this launcher has handed out and not seen end."""
    top_rung = len(ladder_epochs) - 1
    # a seed killed on its way to a rung: continued first (its trial was due)
    for t in trials.values():
        for i, s in enumerate(t.seeds):
            target = getattr(s, "target", None)
            if s.state == "idle" and target is not None and target > s.rung \
                    and (t.key, i, target) not in taken:
                return Work(t.key, i, target, s.run.info.run_id, s.epoch)
    for k in range(top_rung - 1, -1, -1):
        ranked = _rank(trials.values(), ladder_epochs[k], metric, maximize)
        for t in ranked[:len(ranked) // eta]:
            for i, s in enumerate(t.seeds):
                if s.state == "idle" and s.rung == k and (t.key, i, k + 1) not in taken:
                    return Work(t.key, i, k + 1, s.run.info.run_id, s.epoch)
    for t in trials.values():
        for i, s in enumerate(t.seeds):
            if s.state == "new" and (t.key, i, 0) not in taken:
                return Work(t.key, i, 0)
    return None


def in_flight(trials: Mapping[tuple, Trial]) -> int:
    return sum(s.state == "running" for t in trials.values() for s in t.seeds)


def ladder(trials: Mapping[tuple, Trial], ladder_epochs: Sequence[int], metric: str,
           maximize: bool) -> list[dict[str, Any]]:
    """Per rung: its epoch, the trials ranked there, how many went on, the best value."""
    out = []
    for k, e in enumerate(ladder_epochs):
        ranked = _rank(trials.values(), e, metric, maximize)
        on = sum(1 for t in ranked if any(s.rung > k for s in t.seeds))
        out.append({"rung": k, "epochs": e, "trials": len(ranked), "promoted": on,
                    "best": ranked[0].value(e, metric) if ranked else None,
                    "best_trial": ranked[0].key if ranked else None})
    return out
