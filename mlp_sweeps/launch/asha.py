"""``hydra.sweeper.scheduler=asha``: successive halving on the ledger, launched as workers
free up.

The decisions are :mod:`mlp_sweeps.launch.halving`'s, made from the store each time a worker is
free (every launcher of the sweep reads the same store, so they agree); this module hands
them to the launcher and records what came of them:

- each of ``n_workers`` threads of the launching process asks for the next job and launches
  it alone (``launcher.launch([job])``: any Hydra launcher, joblib's workers reused, Ray's
  tasks, SLURM jobs), so no worker waits for another's job (no batch barrier);
- a job trains its configuration to its rung (``stop_at_epoch``, ``tracking.rung``), new,
  or continuing its paused run (``tracking.reopen``: claimed in the store, the same MLflow
  run, one continuous curve); a job that lost its claim to another launcher is simply
  followed by the next decision;
- a worker loss (the job's process died) leaves its run RUNNING, settled KILLED at the next
  read, and continued from its checkpoint; one configuration-rung lost twice is given up;
- when nothing is due and nothing is in flight (here or in another launcher), the sweep is
  over: the paused configurations are marked ``stopped`` and the ladder is summarized.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import threading
import time
from typing import Any, Callable, Sequence

from mlp_sweeps.launch import halving
from mlp_sweeps.errors import UserError
from mlp_sweeps.claim.ledger import Ledger, Outcome, Tag

log = logging.getLogger(__name__)

__all__ = ["Asha", "trial_key", "InvalidSchedule"]

POLL_S = 0.25  # a free worker with nothing due looks again this often
PROGRESS_EVERY_S = 10.0
MAX_LOSSES = 2  # a configuration-rung whose worker died this many times is given up


class InvalidSchedule(UserError):
    """Settings successive halving cannot run with (nothing was run or recorded)."""

    before_anything = True


def trial_key(overrides: Sequence[str]) -> tuple:
    """A job's configuration without its seed: the seeds of one trial share it."""
    return tuple(o for o in overrides if not o.startswith("seed="))


class Asha:
    """One launcher's share of an ASHA sweep over ``jobs`` (validated, one per seed)."""

    def __init__(self, jobs: Sequence[Any], eta: int, min_epochs: int, metric: str,
                 maximize: bool, ledger: Ledger, seed: int = 0, search: Any = None):
        # search: a tpe Searcher that draws the configurations as workers free up (``jobs``:
        # its space's probes, which only fix the epochs); None: ``jobs`` are the sweep's
        self.search = search if search is not None and search.adaptive else None
        self.prepare: Callable[[list], None] = lambda jobs: None  # what each drawn job gets
        epochs = {j.config.epochs for j in jobs}
        if len(epochs) != 1:
            raise InvalidSchedule(f"hydra.sweeper.scheduler=asha: every configuration must train "
                                  f"the same epochs (the last rung); this sweep has "
                                  f"{', '.join(map(str, sorted(epochs)))}")
        self.epochs = epochs.pop()
        check(eta, min_epochs, self.epochs)
        self.ladder = halving.rungs(min_epochs, eta, self.epochs)
        self.eta, self.metric, self.maximize, self.ledger = eta, metric, maximize, ledger
        by_key: dict[tuple, list[Any]] = {}
        for j in jobs if self.search is None else ():
            by_key.setdefault(trial_key(j.overrides), []).append(j)
        # new configurations start in a seeded random order (hydra.sweeper.seed): successive
        # halving assumes they arrive in no particular order; a grid's own order (e.g. worst
        # learning rate first) would make each newcomer the best so far, promoted at once
        # (measured: 21 of 27 grid configurations went on from the first rung in grid order)
        order = list(by_key)
        random.Random(seed).shuffle(order)
        self.trials: dict[tuple, list[Any]] = {k: by_key[k] for k in order}
        keys = [dict(o.partition("=")[::2] for o in k) for k in self.trials]
        # the overrides that tell the configurations apart (how they are named here)
        self.varying = [k for k in keys[0] if len({d.get(k) for d in keys}) > 1] if keys else []
        self.params: dict[tuple, dict[str, Any]] = {}  # tpe: each trial's sampled values
        self.seen: set = set()  # tpe: the sampled values already in the ladder (key_of)
        if self.search is not None:
            self.varying = list(self.search.space.dims)
            self.n_trials = self.search.n_trials
        self.lock = threading.Lock()
        self.taken: set = set()  # (key, seed, rung) handed out here, not ended
        self.given_up: set = set()
        self.losses: dict[tuple, int] = {}
        self.outcome: dict[str, Any] = {}  # config hash -> the last JobReturn
        self.busy_s = 0.0
        self.wall_s = 0.0
        self.jobs_run = 0
        self._said = 0.0

    # the store's view -----------------------------------------------------------------------
    def read(self) -> dict[tuple, halving.Trial]:
        runs = self.ledger.runs()
        if self.search is not None:  # what other launchers (or an earlier sweep) drew
            for params in self.search.recorded(runs).values():
                self._add(params.params)
        hashes = {j.config_hash for js in self.trials.values() for j in js}
        runs = [r for r in runs if r.data.tags.get(Tag.CONFIG_HASH) in hashes]
        from mlp_sweeps.claim.ledger import latest_by_config

        return halving.read(self.trials, latest_by_config(self.ledger.settle(runs)),
                            self.ladder)

    def _add(self, params: dict[str, Any]) -> tuple | None:
        """A configuration of the tpe search into the ladder (its jobs prepared); None if
        it is in already."""
        from mlp_sweeps.plan.samplers import key_of

        seen = key_of(params)
        if seen in self.seen:  # (read on every decision: composed once, not each time)
            return None
        self.seen.add(seen)
        jobs = self.search.jobs_of(params)
        key = trial_key(jobs[0].overrides)
        if key in self.trials:
            return None
        self.prepare(jobs)
        self.trials[key], self.params[key] = jobs, dict(params)
        return key

    def _take(self) -> tuple[halving.Work, list[str]] | None:
        with self.lock:
            state = self.read()
            w = halving.next_work(state, self.ladder, self.eta, self.metric, self.maximize,
                                  self.taken | self.given_up)
            if w is None and self.search is not None and len(self.trials) < self.n_trials:
                state = self._draw(state)  # nothing due: a new configuration, told the ladder
                w = halving.next_work(state, self.ladder, self.eta, self.metric,
                                      self.maximize, self.taken | self.given_up)
            if w is None:
                return None
            self.taken.add((w.key, w.seed, w.rung))
            return w, self.overrides(w)

    def _draw(self, state: dict[tuple, halving.Trial]) -> dict[tuple, halving.Trial]:
        """One configuration drawn by TPE, told every configuration of the ladder
        (:meth:`~mlp_sweeps.plan.samplers.Searcher.draw_for_ladder`); the state with it."""
        told = []
        for key, t in state.items():
            values = {e: v for e in self.ladder if (v := t.value(e, self.metric)) is not None
                      and math.isfinite(v)}
            states = {s.state for s in t.seeds}
            last = values.get(self.ladder[-1])
            if states <= {"finished"} and last is not None:
                told.append((self.params[key], "complete", values, last))
            elif states & {"new", "running"} or any(
                    (key, i, r) in self.taken for i in range(len(t.seeds))
                    for r in range(len(self.ladder))):
                told.append((self.params[key], "running", values, None))
            elif values:
                told.append((self.params[key], "pruned", values, None))
            else:  # failed, or diverged before its first rung
                told.append((self.params[key], "fail", values, None))
        params = self.search.draw_for_ladder(told, salt=len(state))
        key = self._add(params) if params is not None else None
        if key is None:  # the space has no configuration left to draw
            self.n_trials = len(self.trials)
            return state
        return {**state, **halving.read({key: self.trials[key]}, {}, self.ladder)}

    def overrides(self, w: halving.Work) -> list[str]:
        """A job's overrides: its configuration's, what the sweep adds, and its rung."""
        job = self.trials[w.key][w.seed]
        ov = list(job.overrides) + list(job.extra) + [f"tracking.rung={w.rung}"]
        if w.rung < len(self.ladder) - 1:
            ov.append(f"stop_at_epoch={self.ladder[w.rung]}")
        if w.run_id is not None:
            ov.append(f"tracking.reopen={w.run_id}@{w.epoch}")
        return ov

    # launching ------------------------------------------------------------------------------
    def run(self, launcher: Any, n_workers: int, is_worker_loss: Callable, job_error: Callable,
            parent: str | None = None) -> None:
        """Launch until the sweep is over (see the module). Returns when every thread has
        nothing left; the first unexpected error of a thread is raised here."""
        t0 = time.perf_counter()
        counter = itertools.count()
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                while not errors:
                    got = self._take()
                    if got is None:
                        with self.lock:
                            mine = len(self.taken)
                            flying = halving.in_flight(self.read()) if mine == 0 else mine
                        if flying == 0:
                            return  # nothing due, nothing in flight anywhere: over
                        time.sleep(POLL_S)
                        continue
                    w, ov = got
                    k = (w.key, w.seed, w.rung)
                    start = time.perf_counter()
                    ret = None
                    try:
                        with self.lock:
                            idx = next(counter)
                        ret = launcher.launch([ov], initial_job_idx=idx)[0]
                    except Exception as e:  # noqa: BLE001 - a worker loss is handled
                        if not is_worker_loss(e):
                            raise
                        # lost twice, or lost for good (a launcher that says its jobs
                        # are not to be relaunched: SLURM's scancel, a time limit): given
                        # up, counted killed in the summary (a rerun resumes it)
                        with self.lock:
                            self.losses[k] = self.losses.get(k, 0) + 1
                            gone = self.losses[k] >= MAX_LOSSES or not getattr(
                                e, "relaunch", True)
                            if gone:
                                self.given_up.add(k)
                                self.outcome[self.trials[w.key][w.seed].config_hash] = "killed"
                        log.error("A worker process died (%s) training %s to rung %d; %s",
                                  type(e).__name__, self.name(w.key), w.rung,
                                  "given up in this sweep (a rerun continues it)" if gone else
                                  "its run is continued from its checkpoint")
                    finally:
                        with self.lock:
                            self.busy_s += time.perf_counter() - start
                            self.taken.discard(k)
                            self.jobs_run += 1
                    if ret is not None:
                        job = self.trials[w.key][w.seed]
                        self.outcome[job.config_hash] = ret
                        if job_error(ret) is not None:  # failed: not handed out again here
                            with self.lock:
                                self.given_up.add(k)
                    self._progress(t0)
            except BaseException as e:  # noqa: BLE001 - raised in the launching thread
                errors.append(e)

        threads = [threading.Thread(target=worker, name=f"asha-{i}", daemon=True)
                   for i in range(max(1, n_workers))]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)  # Ctrl-C reaches the launching thread
        finally:
            self.wall_s = time.perf_counter() - t0
        if errors:
            raise errors[0]

    def _progress(self, t0: float) -> None:
        now = time.perf_counter()
        if now - self._said < PROGRESS_EVERY_S:
            return
        self._said = now
        try:
            with self.lock:  # (a tpe search's read adds what other launchers drew)
                state = self.read()
            line = self.line(state)
        except Exception:  # noqa: BLE001 - a progress line must not stop a sweep
            return
        log.info("%s | %s", line, self.eta_text(state, now - t0))

    def eta_text(self, state: dict[tuple, halving.Trial], elapsed: float) -> str:
        """``21/81 epochs of the budget | elapsed 0:12 | ETA 0:30``: the epochs trained at
        the rungs reached (a running job counts once it ends) against successive halving's
        budget (:func:`~mlp_sweeps.plan.cost.schedule.ladder_share`), the ETA at the pace so
        far. Asynchronous promotions can train past the budget: then no ETA."""
        from mlp_sweeps.plan.cost.schedule import ladder_share

        seeds = [s for t in state.values() for s in t.seeds]
        done = sum(self.ladder[s.rung] if s.state in ("idle", "finished") else
                   self.ladder[s.rung - 1] if s.state == "running" and s.rung > 0 else 0
                   for s in seeds)
        budget = round(ladder_share(self.ladder, self.eta) * len(seeds) * self.epochs)
        text = f"{done}/{budget} epochs of the budget | elapsed {_clock(elapsed)}"
        if 0 < done < budget:
            text += f" | ETA {_clock(elapsed * (budget - done) / done)}"
        return text

    def line(self, state: dict[tuple, halving.Trial]) -> str:
        """``rung 2/4: 9 running, 3 promoted, 12 paused, 4 finished``."""
        seeds = [s for t in state.values() for s in t.seeds]
        top = max((s.rung for s in seeds if s.state != "new"), default=0)
        promoted = sum(1 for s in seeds if s.rung > 0)
        return (f"rung {top + 1}/{len(self.ladder)}: "
                f"{sum(s.state == 'running' for s in seeds)} running, {promoted} promoted, "
                f"{sum(s.state == 'idle' for s in seeds)} paused, "
                f"{sum(s.state == 'finished' for s in seeds)} finished, "
                f"{sum(s.state == 'new' for s in seeds)} not started")

    def name(self, key: tuple) -> str:
        """A configuration by the overrides that tell it apart from the others."""
        return " ".join(o for o in key if o.partition("=")[0] in self.varying) or " ".join(key)

    # after ------------------------------------------------------------------------------------
    def stop_paused(self) -> int:
        """Mark the paused configurations of an ended sweep ``stopped`` (at their rung): those
        paused, and those killed after they reached their rung (its metrics and checkpoint
        recorded, the pause not: a launcher killed between the two)."""
        n = 0
        for t in self.read().values():
            for s in t.seeds:
                status = s.run.data.tags.get(Tag.STATUS) if s.run is not None else None
                reached = status == Outcome.KILLED and s.rung >= 0 and (
                    s.target is None or s.target <= s.rung)
                if s.state == "idle" and (status == Outcome.PAUSED or reached):
                    self.ledger.tracker.set_tags(s.run.info.run_id,
                                                 {Tag.STATUS: Outcome.STOPPED})
                    n += 1
        return n

    def summary(self, n_workers: int) -> list[str]:
        """The ladder, the best configuration, the epochs trained against the grid's, the
        Pareto front of the ranked metric against training time, how busy the workers were."""
        state = self.read()
        lines = ["", "Successive halving (ASHA)", "-------------------------",
                 f"rungs at epochs {', '.join(map(str, self.ladder))} (eta {self.eta}); "
                 f"ranked by {self.metric} ({'max' if self.maximize else 'min'})"
                 + (", mean over seeds" if any(len(t.seeds) > 1 for t in state.values())
                    else "")]
        for r in halving.ladder(state, self.ladder, self.metric, self.maximize):
            best = f"{r['best']:.4f}" if r["best"] is not None else "-"
            lines.append(f"  rung {r['rung']} ({r['epochs']:>3} epochs): {r['trials']:>3} "
                         f"configurations, {r['promoted']:>3} went on, best {best}")
        top = self.ladder[-1]
        done = [t for t in state.values() if t.value(top, self.metric) is not None]
        if done:
            best = (max if self.maximize else min)(done, key=lambda t: t.value(top, self.metric))
            test = best.value(top, "test_acc")
            lines.append(f"best: {self.name(best.key)}: {self.metric} "
                         f"{best.value(top, self.metric):.4f}"
                         + (f", test_acc {test:.4f}" if test is not None
                            and self.metric != "test_acc" else ""))
        if self.metric.startswith("test_"):
            lines.append(f"note: ranked by {self.metric}: the choice used the test set "
                         f"(data.val_size=N and hydra.sweeper.metric=val_acc keep it out)")
        trained = sum(int(s.run.data.metrics.get("epochs_completed", 0)) for t in state.values()
                      for s in t.seeds if s.run is not None)
        grid = self.epochs * sum(len(t.seeds) for t in state.values())
        lines.append(f"epochs trained: {trained:,} of the full grid's {grid:,} "
                     f"({trained / grid:.1%})" if grid else "epochs trained: 0")
        front = pareto(state, top, self.metric, self.maximize)
        if front:
            lines.append(f"Pareto front ({self.metric} against training time, at {top} epochs):")
            lines += [f"  {v:.4f}  {s:8.1f} s  {self.name(t.key)}" for t, v, s in front]
        if self.wall_s > 0:
            lines.append(f"workers busy {self.busy_s / (self.wall_s * max(1, n_workers)):.0%} of "
                         f"{n_workers} x {self.wall_s:.1f} s wall ({self.jobs_run} jobs launched "
                         f"here)")
        return lines


    def figure(self, parent: str, folder) -> list:
        """The ladder's figure (:func:`mlp_sweeps.read.figures.plot_ladder`: each configuration's
        ranked-metric curve from the store, stopped ones faded), logged on the parent run."""
        from pathlib import Path

        from mlp_sweeps.read.figures import plot_ladder

        client = self.ledger.tracker.client
        curves = []
        for t in self.read().values():
            for s in t.seeds:
                if s.run is None:
                    continue
                hist = client.get_metric_history(s.run.info.run_id, self.metric)
                curves.append((self.name(t.key) + (f" {s.job.overrides[-1]}" if len(t.seeds) > 1
                                                   else ""),
                               [(m.step, m.value) for m in hist], s.state == "finished"))
        path = plot_ladder(curves, self.ladder, self.metric, Path(folder) / "ladder.png")
        self.ledger.tracker.log_artifacts(parent, [path])
        return [path]


def pareto(state, epoch: int, metric: str, maximize: bool) -> list[tuple]:
    """(trial, value, mean training time) of the trials at ``epoch`` that no other beats
    on both, fastest first."""
    pts = []
    for t in state.values():
        v = t.value(epoch, metric)
        times = [s.run.data.metrics.get("train_time_s") for s in t.seeds if s.run is not None]
        if v is None or not times or any(x is None for x in times):
            continue
        pts.append((t, v, sum(times) / len(times)))
    pts.sort(key=lambda p: (p[2], -p[1] if maximize else p[1]))
    front, best = [], -math.inf if maximize else math.inf
    for p in pts:
        if (p[1] > best) if maximize else (p[1] < best):
            front.append(p)
            best = p[1]
    return front


def check(eta: Any, min_epochs: Any, epochs: int) -> None:
    """Successive halving's settings, against the configurations' epochs."""
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise InvalidSchedule(f"hydra.sweeper.asha.eta={eta!r} is not valid: it must be an "
                              f"integer >= 2 (3: a third of each rung goes on)")
    if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 1:
        raise InvalidSchedule(f"hydra.sweeper.asha.min_epochs={min_epochs!r} is not valid: it "
                              f"must be an integer >= 1")
    if min_epochs >= epochs:
        raise InvalidSchedule(f"hydra.sweeper.asha.min_epochs={min_epochs} must be < epochs="
                              f"{epochs} (the first rung comes before the last)")


def _clock(s: float) -> str:
    m, s = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
