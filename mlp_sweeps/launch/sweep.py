"""A sweep's life: plan -> resume -> launch -> summary, for any Hydra launcher.

The ``mlp`` sweeper plugin (``hydra_plugins/mlp_sweeps_sweeper``) only hands its settings,
the composed config, its launcher and a compose function to :func:`run`. Here, in the
launching process:

1. plan and validate every job (:mod:`mlp_sweeps.plan.jobs`); a bad value fails the whole
   sweep, naming the job, before anything is recorded;
2. the MLflow experiment, and what it already holds, read in one paginated query
   (:mod:`mlp_sweeps.claim.ledger`): a configuration that FINISHED is skipped (``rerun`` forces
   it), FAILED and KILLED ones run again, one claimed by a live run (another launcher of
   the same sweep, on any host) is left to it, a run whose heartbeat stopped is closed
   KILLED and run again; each job claims its configuration when it starts
   (:meth:`Ledger.claim`), so launchers started at once split the sweep;
3. one parent run per multirun, created before any worker starts (parallel workers
   creating it on SQLite race: mlflow #4123, #10334); each job gets
   ``tracking.parent_run_id``, its grids and its share of BLAS threads as overrides, which
   works with any launcher (joblib, Ray, SLURM);
4. launch, longest first; a dead worker process (SIGKILL, OOM) loses the launcher's batch:
   the jobs that ended are kept, the runs in flight closed KILLED and relaunched (a job in
   flight at two worker losses is given up); Ctrl-C closes the runs in flight KILLED;
5. a one-screen summary checked against the store, logged on the parent run with the
   sweep's tables and figures; :class:`SweepFailed` (a non-zero exit) if any job failed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from mlp_sweeps.claim import liveness
from mlp_sweeps.plan import parallelism
from mlp_sweeps.plan import jobs as plan
from mlp_sweeps.report import progress
from mlp_sweeps.record import snapshot
from mlp_sweeps.errors import UserError, WorkerLost
from mlp_sweeps.plan import options
from mlp_sweeps.record.faults import MachineFault, diagnose, first_line
from mlp_sweeps.claim.ledger import (CLAIMED, HALTED, RESULTS, SWEEP_PARENT, Ledger, Outcome, RunStatus, Tag, alive,
                     latest_by_config, outcome_of)
from mlp_sweeps.record.store import resolve_uri

log = logging.getLogger(__name__)

MAX_WORKER_LOSSES = 2  # a job in flight at this many worker losses is given up
COUNTS = ("planned", "skipped", "resumed", "run", "finished", "diverged", "failed", "killed")


class SweepFailed(UserError):
    """Some jobs of the sweep failed (the others finished and are recorded)."""


@dataclass
class Settings:
    """The sweeper's settings (``hydra.sweeper``; see the plugin's ``config.py``)."""

    max_batch_size: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    grids: dict[str, dict[str, Any]] = field(default_factory=dict)
    dry_run: bool = False
    rerun: bool = False
    only: list[str] | None = None
    leave_to_others: bool = False
    sampler: str = "grid"
    n_trials: int | None = None
    seed: int = 0
    metric: str = "val_acc"
    mode: str | None = None
    scheduler: str = "none"
    asha: dict[str, Any] = field(default_factory=lambda: {"eta": 3, "min_epochs": 1})


def run(settings: Settings, config: DictConfig, launcher: Any,
        compose: Callable[[list[str]], Any], arguments: Sequence[str], parser=None) -> list:
    """Plan, resume, launch and summarize the sweep; Hydra's list of job returns. A fault
    of the machine (full disk, unwritable or removed store) is one message naming the
    path and the fix (:class:`~mlp_sweeps.record.faults.MachineFault`), after the summary."""
    try:
        return _run(settings, config, launcher, compose, arguments, parser)
    except UserError:
        raise
    except Exception as e:
        tracking = config.tracking
        why = diagnose(e, resolve_uri(tracking.uri) if tracking.enabled else None)
        if why is None:
            raise
        raise MachineFault(why) from None


def _run(settings: Settings, config: DictConfig, launcher: Any,
         compose: Callable[[list[str]], Any], arguments: Sequence[str], parser=None) -> list:
    sweep = _Sweep(settings, config, launcher)
    sweep.plan(arguments, compose, parser)
    if settings.dry_run:  # read-only: nothing is created, written or started
        sweep.read_store()
        sweep.size()
        _list_plan(sweep.jobs, sweep.todo, sweep.done)
        return []
    sweep.open_store()
    sweep.size()
    sweep.prepare()
    sweep.start_parent(arguments)
    sweep.order()
    try:
        sweep.launch()
    finally:
        counts, faults = sweep.close()
    return sweep.result(counts, faults)


class _Sweep:
    """One sweep's state through its phases, in :func:`_run`'s order: planned (jobs, or a
    sampler's first draws, and the ASHA ladder), the store read (what is done, what another
    launcher holds), sized (workers, threads, the estimate), prepared (workers warm, the
    cluster reached), its parent run started, ordered (longest first), launched, closed (the
    summary, every fault said once)."""

    def __init__(self, settings: Settings, config: DictConfig, launcher: Any):
        self.settings, self.config, self.launcher = settings, config, launcher
        self.tracking = config.tracking
        self.t0 = time.perf_counter()
        self.search: Any = None  # a sampler's Searcher (random, tpe)
        self.halver: Any = None  # the ASHA ladder
        self.warm: Any = None  # workers being started (joblib)
        self.ledger: Ledger | None = None  # None: tracking disabled, or a dry run
        self.runs: Any = None  # the store's runs as read before launching
        self.read_ms = 0  # when the store was read (ms since the epoch)
        self.jobs: list[plan.Job] = []
        self.todo: list[plan.Job] = []
        self.done: list[plan.Job] = []
        self.elsewhere: list[plan.Job] = []  # held by live runs of other launchers
        self.wait = False  # for those, and run them here if their holder dies
        self.n_workers, self.threads, self.est = 1, None, None
        self.stand_ins: list[plan.Job] = []  # a tpe ladder's size: n_trials drawn at random
        self.quiet: list[str] = []
        self.parent: str | None = None
        self.heartbeat: Any = None
        self.since = 0
        self.outcome: dict[str, Any] = {}  # config hash -> JobReturn, or "completed" / "killed"
        self.others: dict[str, Any] = {}  # config hash -> the run of another launcher that has it
        self.status = RunStatus.KILLED

    def plan(self, arguments: Sequence[str], compose: Callable[[list[str]], Any],
             parser) -> None:
        """Every job planned and validated (a bad value fails the sweep, naming the job,
        before anything is recorded)."""
        settings, tracking = self.settings, self.tracking
        options.check_sweeper(settings)
        probes: list[plan.Job] = []
        if settings.sampler == "grid":
            self.jobs = plan.plan(settings.params, settings.grids, arguments, compose,
                                  settings.only, parser)
        else:  # drawn by a sampler: its space's corners validated first
            from mlp_sweeps.plan.samplers import Searcher

            self.search = Searcher(settings, arguments, compose, parser)
            if self.search.adaptive and not tracking.enabled:
                raise options.InvalidConfig(
                    "hydra.sweeper.sampler=tpe is told each result through the tracking store: "
                    "it needs tracking.enabled=true (random draws without it)")
            probes = self.search.probes()
            self.jobs = self.search.first_jobs()
        if settings.scheduler == "asha":  # (tpe: drawn as workers free up; probes give epochs)
            self.halver = _halver(settings, tracking, self.search,
                                  probes if self.drawn_by_ladder else self.jobs)
            self.halver.prepare = self.launching
        log.info("Planned and validated %d jobs in %.2f s", len(self.jobs),
                 time.perf_counter() - self.t0)
        self.todo = list(self.jobs)

    def read_store(self) -> None:
        """A dry run's read-only look at the store: what would be skipped or resumed."""
        tracking, search = self.tracking, self.search
        if tracking.enabled:
            self.runs = snapshot.read(resolve_uri(tracking.uri), [tracking.experiment]) or []
            self.todo, self.done, _ = split(self.jobs, self.runs, self.settings.rerun,
                                            float(tracking.heartbeat_timeout_s))
        if search is not None and search.adaptive and self.halver is None:
            more = search.first_round(self.runs or [],
                                      _search_workers(self.config, self.settings, search))
            self.jobs += more
            self.todo += more

    def open_store(self) -> None:
        """The workers started (they import while this process opens the store), the store
        opened and read: what finished is skipped, what another launcher holds noted."""
        settings, tracking, search, halver = self.settings, self.tracking, self.search, self.halver
        self.warm = _offered(self.launcher, "prewarm", len(self.jobs))
        if not tracking.enabled:
            return
        from mlp_sweeps.record.tracking import Tracker

        try:
            ledger = self.ledger = Ledger(Tracker(tracking.uri), tracking.experiment,
                                          tracking.heartbeat_timeout_s)
            # before the store is read: a run its jobs' claims must still count as a
            # rival if it finishes later (it was not seen finished or claimed by this read)
            self.read_ms = int(time.time() * 1000)
            self.todo, self.done, self.runs = resume(ledger, self.jobs, settings.rerun)
            if halver is not None:  # every configuration not finished: the ladder's
                halver.ledger = ledger
                self.todo = [j for j in self.jobs if j.previous not in RESULTS or settings.rerun]
                self.done = [j for j in self.jobs if j not in self.todo]
            if search is not None and search.adaptive and halver is None:
                more = search.first_round(self.runs,  # told the store's trials first
                                          _search_workers(self.config, settings, search))
                t, d, _ = split(more, self.runs, settings.rerun, ledger.heartbeat_timeout_s)
                self.jobs, self.todo, self.done = self.jobs + more, self.todo + t, self.done + d
        except BaseException:  # e.g. an unreachable store: no workers left behind
            if self.warm is not None:
                _offered(self.launcher, "release")
            raise

    def size(self) -> None:
        """Workers at once, BLAS threads per job, and the estimate for them (ASHA: its
        budget's, logged; the jobs' order and the closing comparison are the grid's only)."""
        config, halver = self.config, self.halver
        # a tpe ladder draws as it goes: sized by n_trials configurations drawn at random
        todo = self.stand_ins = self.search.stand_ins() if self.drawn_by_ladder else self.todo
        self.n_workers = parallelism.launcher_workers(OmegaConf.select(config, "hydra.launcher"),
                                                      len(todo))
        self.threads = parallelism.sweep_threads(config, len(todo))
        self.est = progress.estimate_sweep(
            todo, self.n_workers, self.threads or config.get("blas_threads"), self.runs,
            ladder=None if halver is None else (halver.ladder, halver.eta))

    def prepare(self) -> None:
        """Workers joined (released if nothing will run), the cluster reached (an unreachable
        one fails here, before any run is recorded)."""
        if self.halver is None:
            self.elsewhere = [j for j in self.done if j.previous == Outcome.RUNNING]
        self.wait = self.ledger is not None and not self.settings.leave_to_others
        may_launch = bool(self.todo) or self.drawn_by_ladder or (
            self.wait and bool(self.elsewhere))
        if self.warm is not None:
            self.warm.join()
            if not may_launch:
                _offered(self.launcher, "release")
        if may_launch:
            _offered(self.launcher, "prepare")  # e.g. Ray: connect to the cluster
        if self.ledger is not None:
            self.quiet = progress.quiet_job_overrides(self.config, self.n_workers)

    @property
    def drawn_by_ladder(self) -> bool:
        """A tpe search under ASHA: configurations drawn as workers free up, told the
        ladder (none planned)."""
        return self.settings.scheduler == "asha" and self.search is not None \
            and self.search.adaptive

    def launching(self, new: list[plan.Job]) -> None:
        """What every job gets at launch."""
        for j in new:
            j.extra += self.quiet  # their log lines in their log files; the progress line here
            if self.threads is not None:
                j.extra.append(f"blas_threads={self.threads}")
            if j.grids:
                j.extra.append(f"tracking.grid=[{','.join(j.grids)}]")
            if self.parent is not None:
                j.extra += [f"tracking.parent_run_id={self.parent}",
                            f"tracking.read_at={self.since}"]

    def start_parent(self, arguments: Sequence[str]) -> None:
        """The sweep's parent run (with its heartbeat and datasets), then the jobs' overrides."""
        ledger = self.ledger
        if ledger is not None:
            planned = self.stand_ins if self.drawn_by_ladder else self.jobs
            self.parent = _start_parent(ledger, self.settings, self.config, arguments,
                                        len(planned), self.read_ms)
            self.heartbeat = ledger.heartbeat(self.parent)
            progress.log_datasets(ledger, self.parent, planned)
            # a job's claim loses to a FINISHED run of its configuration that this sweep's
            # read did not skip: the read saw none finished for a job it runs, so every one
            # finished now is a rival (0), unless finished runs are rerun (those started
            # since the read). Not start times against read_ms by default: a run stamped
            # before the read can be written after it (a writer waiting for SQLite's lock),
            # and be trained twice.
            self.since = self.read_ms if self.settings.rerun else 0
        self.launching(self.todo + self.elsewhere)
        finished = [j for j in self.done if j.previous != Outcome.RUNNING]
        if finished:
            log.info("Skipping %d jobs already finished in experiment %r "
                     "(hydra.sweeper.rerun=true runs them again)", len(finished),
                     self.tracking.experiment)

    def order(self) -> None:
        """One cost model: jobs launched longest first, in the order the estimate timed them;
        short jobs handed to the workers several at a time."""
        est = self.est
        if est is not None:
            job_s = {e.config_hash: e.job_s for e in est.jobs}
            for j in self.todo:
                j.cost = job_s[j.config_hash]
        self.todo = plan.longest_first(self.todo)
        if est is not None:
            _offered(self.launcher, "batch_short_jobs", [j.run_s for j in est.jobs],
                     self.n_workers)

    def launch(self) -> None:
        """Every job run (ASHA: the ladder; tpe: round after round, each told the results
        before), then the configurations other launchers held, waited for."""
        settings, ledger, halver, search = self.settings, self.ledger, self.halver, self.search
        launcher, outcome, parent = self.launcher, self.outcome, self.parent
        if halver is not None:  # its own progress line; every launcher shares the ladder
            halver.run(launcher, self.n_workers, is_worker_loss, job_error)
            outcome.update(halver.outcome)
            halver.stop_paused()
            if self.drawn_by_ladder:  # the sweep's jobs: those the ladder drew (or read)
                self.jobs = self.todo = [j for js in halver.trials.values() for j in js]
        with progress.Progress(self.todo if halver is None else [], ledger, parent, self.est,
                               self.n_workers,
                               elsewhere=self.elsewhere if self.wait else ()) as prog:
            if halver is None:
                launch_all(launcher, self.todo, outcome, ledger, parent, settings.max_batch_size)
            while search is not None and search.adaptive and halver is None:  # tpe: told,
                # then the next round (under ASHA, the ladder drew them)
                new = search.next_round(ledger.runs(), self.n_workers)
                if not new:
                    break
                t, d, _ = split(new, ledger.settle(ledger.runs()), settings.rerun,
                                ledger.heartbeat_timeout_s)
                self.launching(t)
                self.jobs, self.todo, self.done = self.jobs + new, self.todo + t, self.done + d
                prog.add(t)
                launch_all(launcher, t, outcome, ledger, parent, settings.max_batch_size)
            if ledger is not None and halver is None:  # (asha: the ladder waits for them)
                self.elsewhere += _claimed_elsewhere(self.todo, outcome)
                if self.elsewhere and self.wait:
                    prog.elsewhere.update(j.config_hash for j in self.elsewhere)
                    log.info("Waiting for %d configurations held by live runs of other "
                             "launchers (hydra.sweeper.leave_to_others=true would leave them "
                             "to those runs)", len(self.elsewhere))
                    self.others = wait_for_others(launcher, self.elsewhere, outcome, ledger,
                                                  parent, settings.max_batch_size, prog)
        self.status = RunStatus.FINISHED
        _offered(launcher, "release")  # idle now: not waited for at exit

    def close(self) -> tuple[dict[str, int], "Faults"]:
        """Runs left running closed, the summary, the search's and the ladder's, the report,
        the parent run ended: each step attempted whatever happened before it. Machine faults
        met by the jobs or here (the store's writes may meet them too) are collected, to be
        said once, after the summary."""
        ledger, parent, outcome, halver, search = (self.ledger, self.parent, self.outcome,
                                                   self.halver, self.search)
        finished = self.status == RunStatus.FINISHED
        faults = Faults(ledger.tracker.uri if ledger is not None else None)
        for ret in outcome.values():
            faults.add(job_error(ret))
        if ledger is not None:
            faults.attempt(_close_left_running, ledger, parent, outcome, finished, faults.first())
        counts = faults.attempt(summarize, self.jobs, self.todo, self.done, outcome, ledger,
                                parent, self.others, halver is not None)
        if counts is None:  # the store cannot be read: from the launcher's returns
            counts = summarize(self.jobs, self.todo, self.done, outcome, None, parent,
                               self.others)
        if search is not None and ledger is not None:
            def search_summary():  # the best configuration, from the store
                return search.summary(ledger.runs())

            lines = faults.attempt(search_summary)
            if lines:
                log.info("\n".join(lines))
        if halver is not None and halver.ledger is not None:
            lines = faults.attempt(halver.summary, self.n_workers)
            if lines:
                log.info("\n".join(lines))
            if parent is not None and finished:
                files = faults.attempt(halver.figure, parent, self.config.hydra.sweep.dir)
                if files:
                    log.info("Logged the ladder's figure %s on the parent run", files[0])
        if self.todo or self.others:
            faults.attempt(progress.report, ledger, parent, time.perf_counter() - self.t0,
                           self.est)
        if ledger is not None:
            self.heartbeat.stop()
            faults.attempt(_end_parent, ledger, parent, counts, self.status)
        return counts, faults

    def result(self, counts: dict[str, int], faults: "Faults") -> list:
        """Hydra's list of job returns; or the machine's faults, or the failed jobs, as one
        error after the summary."""
        bad = [f"{counts[k]} {k}" for k in ("failed", "killed", "missing") if counts[k]]
        if faults:
            raise MachineFault(f"{faults}\n({', '.join(bad) or 'no job failed'} of "
                               f"{counts['planned']} jobs; see the summary above)")
        if bad:
            raise SweepFailed(
                f"{', '.join(bad)} of {counts['planned']} jobs; the others are recorded (see "
                f"the summary above). Rerun the same command to run those again.")
        return [[r for r in self.outcome.values() if isinstance(r, JobReturn)]]


def _halver(settings: Settings, tracking, search, jobs: list[plan.Job]):
    """The ASHA scheduler of a sweep, its settings checked (before anything is recorded)."""
    from mlp_sweeps.launch.asha import Asha, InvalidSchedule

    if not tracking.enabled:
        raise InvalidSchedule("hydra.sweeper.scheduler=asha keeps its rungs, promotions and "
                              "claims in the tracking store: it needs tracking.enabled=true")
    if not jobs:
        raise InvalidSchedule("hydra.sweeper.scheduler=asha: no configuration to train")
    options.check_ranked(settings.metric, jobs[0].config.data.val_size)
    eta, min_epochs = settings.asha.get("eta", 3), settings.asha.get("min_epochs", 1)
    halver = Asha(jobs, eta, min_epochs, settings.metric,
                  options.ranked_mode(settings.metric, settings.mode) == "max", None,
                  seed=settings.seed, search=search)
    n = halver.n_trials if halver.search is not None else len(halver.trials)
    need = eta ** (len(halver.ladder) - 1)
    if n < need:  # the top 1/eta of fewer than eta configurations is none
        log.warning("hydra.sweeper.scheduler=asha: %d configurations for %d rungs at eta %d: "
                    "fewer than %d (eta^%d) can leave the last rung (epochs=%d) empty, no "
                    "configuration trained to the end (more configurations, a larger "
                    "hydra.sweeper.asha.min_epochs or a smaller eta give fewer rungs)",
                    n, len(halver.ladder), eta, need, len(halver.ladder) - 1, halver.epochs)
    return halver


def _search_workers(config: DictConfig, settings: Settings, search) -> int:
    """Configurations a tpe round draws: the launcher's parallel jobs (seeds count)."""
    seeds = max(1, len(search.space.seeds))
    return max(1, parallelism.launcher_workers(OmegaConf.select(config, "hydra.launcher"),
                                               search.n_trials * seeds) // seeds)


def resume(ledger: Ledger, jobs: list[plan.Job], rerun: bool = False
           ) -> tuple[list[plan.Job], list[plan.Job], list]:
    """Split jobs into (to run, already finished or running elsewhere) from what the
    experiment holds, read in one paginated query (also returned: the estimate learns from
    it). Runs left RUNNING by a dead process are settled KILLED (run again); a finished run
    reused by another grid gets that grid added to its ``grid`` tag."""
    runs = ledger.settle(ledger.runs())
    todo, done, regrid = split(jobs, runs, rerun, ledger.heartbeat_timeout_s)
    for run_id, grids in regrid.items():
        ledger.tracker.set_tags(run_id, {Tag.GRID: grids})
    return todo, done, runs


def split(jobs: list[plan.Job], runs: Sequence[Any], rerun: bool, heartbeat_timeout_s: float
          ) -> tuple[list[plan.Job], list[plan.Job], dict[str, str]]:
    """The resume rule, reading only: (to run, finished or running elsewhere, run id ->
    the ``grid`` tag a reused finished run should have). A configuration that FINISHED is
    skipped (``rerun`` runs it again); one RUNNING with a live heartbeat is left to its run
    (``previous == "running"``); failed, killed and dead ones run again. Each job gets
    ``previous``, the outcome of its configuration's run that counts."""
    hashes = {j.config_hash for j in jobs}
    latest = {h: r for h, r in latest_by_config(runs).items() if h in hashes}
    todo, done, regrid = [], [], {}
    for j in jobs:
        r = latest.get(j.config_hash)
        if r is None:
            todo.append(j)
            continue
        j.previous = r.data.tags.get(Tag.STATUS, r.info.status.lower())
        if r.info.status == RunStatus.FINISHED and not rerun:
            done.append(j)
            had = [g for g in regrid.get(r.info.run_id, r.data.tags.get(Tag.GRID, "")
                                         ).split(",") if g]
            if set(j.grids) - set(had):  # reused by another grid: say so on the run
                regrid[r.info.run_id] = ",".join(had + [g for g in j.grids if g not in had])
        elif r.info.status == RunStatus.RUNNING and alive(r, heartbeat_timeout_s):
            done.append(j)  # alive elsewhere: do not start it twice
            log.info("Not starting %s: claimed by run %s, alive on host %s", j.name,
                     r.info.run_id, r.data.tags.get(Tag.HOST, "?"))
        else:
            if r.info.status == RunStatus.RUNNING:  # dead (a dry run reads, never settles)
                j.previous = Outcome.KILLED.value
            todo.append(j)
    return todo, done, regrid


def launch_all(launcher, todo: list[plan.Job], outcome: dict[str, Any], ledger: Ledger | None,
               parent: str | None, max_batch_size: int | None = None) -> None:
    """Launch in batches. If a worker process dies (SIGKILL, OOM), the launcher loses the
    whole batch (joblib #3458 / a broken pool): the jobs that ended are kept (read from the
    store), the runs in flight closed KILLED, and the unfinished jobs launched again; a job
    in flight at :data:`MAX_WORKER_LOSSES` worker losses is given up."""
    pending = list(todo)
    losses: dict[str, int] = {}
    idx = 0
    while pending:
        size = max_batch_size or len(pending)
        batch, pending = pending[:size], pending[size:]
        try:
            rets = launcher.launch([j.overrides + j.extra for j in batch], initial_job_idx=idx)
        except Exception as e:  # noqa: BLE001 - only worker loss is handled, re-raised otherwise
            if not is_worker_loss(e) or ledger is None:
                raise
            log.error("A worker process died (%s: %s); recovering the batch",
                      _loss_name(e), str(e).splitlines()[0] if str(e) else "")
            # a launcher may say which jobs it lost and why ({position in the batch: why}),
            # and that they are not to be relaunched (SLURM: scancel, time limit)
            why = {batch[i].config_hash: w for i, w in getattr(e, "why", {}).items()}
            relaunch = getattr(e, "relaunch", True)
            ended = set()  # on their own: finished, diverged or failed
            for r in ledger.runs(parent=parent):
                h = r.data.tags.get(Tag.CONFIG_HASH)
                if r.info.status in (RunStatus.FINISHED, RunStatus.FAILED):
                    ended.add(h)
                elif r.info.status == RunStatus.RUNNING or h in why:  # in flight when lost
                    losses[h] = losses.get(h, 0) + 1
                    # (a run not RUNNING was closed KILLED by its SIGTERM handler: the
                    # launcher's reason replaces its own)
                    ledger.mark_killed(r.info.run_id, why.get(h) or (
                        f"its worker process died ({_loss_name(e)}); worker loss "
                        f"#{losses[h]} for this configuration"))
            retry, given_up = [], 0
            for j in batch:
                if j.config_hash in ended:
                    outcome[j.config_hash] = "completed"
                elif losses.get(j.config_hash, 0) >= MAX_WORKER_LOSSES or (
                        j.config_hash in why and not relaunch):
                    outcome[j.config_hash] = "killed"
                    given_up += 1
                else:
                    retry.append(j)
            log.warning("Worker loss: %d jobs of the batch had ended, %d are relaunched, "
                        "%d given up (in flight at two worker losses, or lost for good)",
                        len(batch) - len(retry) - given_up, len(retry), given_up)
            pending = retry + pending
            idx += len(batch)
            continue
        for j, r in zip(batch, rets):
            outcome[j.config_hash] = r
        idx += len(batch)


class Faults:
    """The machine faults a sweep met (:func:`mlp_sweeps.record.faults.diagnose`), each message
    once; :meth:`attempt` runs a step of the sweep's ending that writes or reads the store,
    keeping a fault (or any other store error, logged in one line) from hiding the rest."""

    def __init__(self, uri: str | None):
        self.uri, self.messages = uri, []

    def add(self, e: BaseException | None) -> bool:
        why = diagnose(e, self.uri) if e is not None else None
        if why is not None and why not in self.messages:
            self.messages.append(why)
        return why is not None

    def first(self) -> str | None:
        return self.messages[0] if self.messages else None

    def attempt(self, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - said once; the sweep's result goes on
            if not self.add(e):
                log.error("%s failed: %s", fn.__name__.strip("_"), first_line(e))
            return None

    def __bool__(self) -> bool:
        return bool(self.messages)

    def __str__(self) -> str:
        return "\n".join(self.messages)


def _close_left_running(ledger: Ledger, parent: str, outcome: dict[str, Any], finished: bool,
                        fault: str | None) -> None:
    """Runs of the sweep still RUNNING once it ends: closed KILLED if the sweep was
    interrupted, else (their job ended without closing them: the store refused its last
    write) FAILED with the job's error."""
    for r in ledger.runs(parent=parent):
        if r.info.status != RunStatus.RUNNING:
            continue
        if not finished:  # in flight: will not finish
            ledger.mark_killed(r.info.run_id, "the sweep was interrupted")
            continue
        err = job_error(outcome.get(r.data.tags.get(Tag.CONFIG_HASH)))
        ledger.close(r.info.run_id, Outcome.FAILED, fault or (
            first_line(err) if err is not None else "its job ended without closing it"))


def _claimed_elsewhere(todo: list[plan.Job], outcome: dict[str, Any]) -> list[plan.Job]:
    """Jobs that lost their claim to another launcher's run (taken out of ``outcome``:
    they did not run here)."""
    out = []
    for j in todo:
        ret = outcome.get(j.config_hash)
        if job_error(ret) is None and isinstance(ret, JobReturn) \
                and isinstance(ret.return_value, dict) and ret.return_value.get("status") == CLAIMED:
            del outcome[j.config_hash]
            j.previous = Outcome.RUNNING.value
            out.append(j)
    return out


def wait_for_others(launcher, jobs: list[plan.Job], outcome: dict[str, Any], ledger: Ledger,
                    parent: str, max_batch_size: int | None, prog=None,
                    poll_s: float = progress.POLL_S) -> dict[str, Any]:
    """Wait until every configuration of ``jobs`` (held by live runs of other launchers)
    has a result; one whose holder died (found at once on this host, after the heartbeat
    timeout elsewhere: :meth:`Ledger.settle`) or was lost is launched here, into
    ``outcome``. Returns config hash -> the other launcher's run that ended it."""
    waiting = {j.config_hash: j for j in jobs}
    ended: dict[str, Any] = {}
    while waiting:
        latest = latest_by_config(ledger.settle(
            r for r in ledger.runs() if r.data.tags.get(Tag.CONFIG_HASH) in waiting))
        takeover = []
        for h, j in list(waiting.items()):
            r = latest.get(h)
            if r is not None and r.info.status == RunStatus.RUNNING:
                continue  # alive (settled): still theirs
            del waiting[h]
            if r is not None and r.info.status in (RunStatus.FINISHED, RunStatus.FAILED):
                ended[h] = r
            else:  # its holder died (KILLED), or no run holds it: run it here
                j.previous = Outcome.KILLED.value
                takeover.append(j)
        if takeover:
            log.warning("Taking over %d configurations whose runs elsewhere died: %s",
                        len(takeover), ", ".join(j.name for j in takeover))
            if prog is not None:
                prog.take_over(j.config_hash for j in takeover)
            launch_all(launcher, takeover, outcome, ledger, parent, max_batch_size)
            for j in _claimed_elsewhere(takeover, outcome):  # another launcher was first
                waiting[j.config_hash] = j
                if prog is not None:
                    prog.elsewhere.add(j.config_hash)
        elif waiting:
            time.sleep(poll_s)
    return ended


def _offered(launcher, name: str, *args):
    """``launcher.<name>(*args)`` if the launcher offers it (what a launcher may add to
    Hydra's API for a sweep: ``prepare``, ``prewarm``, ``batch_short_jobs``, ``release``,
    see hydra_plugins/), else None."""
    fn = getattr(launcher, name, None)
    return fn(*args) if callable(fn) else None


def is_worker_loss(e: BaseException) -> bool:
    """A launcher error meaning a worker died (each launcher raises ``WorkerLost`` for its
    own kind of loss), as opposed to an error in a job, which the launcher returns per job
    (also when a library re-raised it, as its cause or context)."""
    return any(isinstance(x, WorkerLost) for x in (e, e.__cause__, e.__context__))


def _loss_name(e: BaseException) -> str:
    """The loss a launcher saw (a ``WorkerLost``'s cause, e.g. Ray's WorkerCrashedError)."""
    return type(e.__cause__ if isinstance(e, WorkerLost) and e.__cause__ else e).__name__


def job_error(ret: Any) -> BaseException | None:
    """The exception a failed job raised, through JobReturn's public ``return_value``
    (which re-raises it, after a line on stderr that the summary makes redundant)."""
    if not isinstance(ret, JobReturn) or ret.status == JobStatus.COMPLETED:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ret.return_value
    except Exception as e:  # noqa: BLE001 - the job's own exception, whatever it is
        return e
    return None


def summarize(jobs: list[plan.Job], todo: list[plan.Job], done: list[plan.Job],
              outcome: dict[str, Any], ledger: Ledger | None, parent: str | None,
              others: dict[str, Any] | None = None, shared: bool = False) -> dict[str, int]:
    """Counts per outcome over the whole sweep, from the store when tracking (the truth),
    else from the launcher's returns: the jobs run here (``outcome``) and those another
    launcher's run ended (``others``); an integrity check of planned against recorded.
    ``elsewhere``: configurations ended by other launchers; ``left``: left to live runs of
    other launchers, unfinished (``leave_to_others``). Logged."""
    others = others or {}
    counts = dict.fromkeys((*COUNTS, "stopped", "missing", "elsewhere", "left"), 0)
    counts.update(planned=len(jobs), elsewhere=len(others),
                  skipped=sum(1 for j in done if j.previous != Outcome.RUNNING),
                  resumed=sum(1 for j in todo if j.previous))
    lines = ["", "Sweep summary", "-------------"]
    # shared (successive halving): a configuration's one run may be another launcher's,
    # continued here
    latest = latest_by_config(ledger.runs(parent=None if shared else parent)) \
        if ledger is not None else {}
    for j in jobs:
        h = j.config_hash
        ret = outcome.get(h)
        if h in others:
            r = others[h]
            st = outcome_of(r)
            key = Outcome(st) if st in (*RESULTS, Outcome.FAILED) else Outcome.FAILED
            tail = r.data.tags.get(Tag.ERROR, "").strip().splitlines()
            why = f"(run {r.info.run_id} of another launcher) " + (tail[-1] if tail else "?")
        elif ret is None:
            if j.previous == Outcome.RUNNING:
                counts["left"] += 1  # left to a live run of another launcher
            continue  # finished before, or never launched (interrupted)
        else:
            counts["run"] += 1
            err = job_error(ret)
            if ledger is not None:
                r = latest.get(h)
                if r is None and err is not None:  # failed before its run was recorded
                    key, why = Outcome.FAILED, first_line(err)
                elif r is None and ret == "killed":  # lost before its run was recorded
                    key, why = Outcome.KILLED, "its job was lost before it recorded a run"
                elif r is None:
                    counts["missing"] += 1
                    lines.append(f"MISSING from the store: {j.name}")
                    continue
                else:
                    st = r.data.tags.get(Tag.STATUS, "?")
                    key = "stopped" if st in HALTED else st if st in (
                        Outcome.FINISHED, Outcome.DIVERGED, Outcome.FAILED, Outcome.KILLED) \
                        else Outcome.FAILED
                    tail = r.data.tags.get(Tag.ERROR, "").strip().splitlines()
                    why = f"{type(err).__name__}: {err}" if err is not None else (
                        tail[-1] if tail else "?")
            elif ret == "killed":
                key, why = Outcome.KILLED, "its worker process died twice"
            elif err is not None:
                key, why = Outcome.FAILED, f"{type(err).__name__}: {err}"
            else:
                value = ret.return_value if isinstance(ret, JobReturn) else None
                key = Outcome.DIVERGED if (value or {}).get("status") == Outcome.DIVERGED \
                    else Outcome.FINISHED
        counts[key] += 1
        if key in (Outcome.FAILED, Outcome.KILLED):
            lines.append(f"{key.upper()} {j.name}: {why}")
    lines.insert(3, "  ".join(f"{k}: {counts[k]}" for k in COUNTS)
                 + (f"  stopped at a rung: {counts['stopped']}" if counts["stopped"] else ""))
    not_run = sum(1 for j in todo if j.config_hash not in outcome and j.config_hash not in
                  others and j.previous != Outcome.RUNNING)
    if not_run:
        lines.append(f"not run (interrupted): {not_run}; rerun the same command to resume")
    if ledger is not None:
        lines.append(f"this launcher ran {counts['run']}, found {counts['skipped']} finished"
                     + (f"; {counts['elsewhere']} ended by other launchers"
                        if counts["elsewhere"] else "")
                     + (f"; {counts['left']} left to live runs of other launchers "
                        "(hydra.sweeper.leave_to_others=true)" if counts["left"] else ""))
        lines.append(f"store: experiment {ledger.experiment!r}, parent run {parent}"
                     + (f"; {counts['skipped']} earlier finished runs reused"
                        if counts["skipped"] else ""))
    log.info("\n".join(lines))
    return counts


def _list_plan(jobs: list[plan.Job], todo: list[plan.Job], done: list[plan.Job]) -> None:
    for i, j in enumerate(jobs):
        state = (" (running elsewhere: skip)" if j.previous == Outcome.RUNNING
                 else " (finished: skip)") if j in done else (f" (was {j.previous})" if j.previous else "")
        log.info("  #%d %s%s%s", i, j.name, f"  [{', '.join(j.grids)}]" if j.grids else "", state)
    log.info("Dry run: %d jobs planned, %d to run; nothing was run or recorded.",
             len(jobs), len(todo))


def _start_parent(ledger: Ledger, settings: Settings, config: DictConfig,
                  arguments: Sequence[str], planned: int, read_ms: int) -> str:
    parent = ledger.start(f"{ledger.experiment} sweep", {
        Tag.READ_AT: read_ms,
        Tag.SWEEP: SWEEP_PARENT,
        Tag.SWEEP_DIR: str(config.hydra.sweep.dir),
        Tag.OVERRIDES: " ".join(arguments),
        Tag.PLANNED: planned,
        Tag.GRIDS: ",".join(settings.grids),
        Tag.STATUS: Outcome.RUNNING,
        **liveness.here(),
    })
    ledger.tracker.log_params(parent, {"sweep.params": settings.params,
                                       "sweep.grids": settings.grids,
                                       "sweep.arguments": " ".join(arguments)})
    log.info("Sweep recorded in %s, experiment %r, parent run %s",
             ledger.tracker.uri, ledger.experiment, parent)
    return parent


def _end_parent(ledger: Ledger, parent: str, counts: dict[str, int], status: str) -> None:
    """Counts as metrics, the final status, then the sweep's tables and figures (a failure
    there is logged, never allowed to hide the sweep's own result)."""
    ledger.tracker.log_metrics(parent, counts)
    bad = counts["failed"] + counts["killed"] + counts["missing"]
    final = RunStatus.FAILED if status == RunStatus.FINISHED and bad else RunStatus(status)
    ledger.tracker.set_tags(parent, {Tag.STATUS: final.lower()})
    ledger.tracker.end_run(parent, final)
    try:
        from mlp_sweeps.report.export import sweep_report

        files = sweep_report(ledger.tracker.uri, ledger.experiment, parent)
        if files:
            log.info("Logged %s on the parent run", ", ".join(map(str, files)))
    except Exception:  # noqa: BLE001 - reporting must not fail a finished sweep
        log.exception("Could not build the sweep's tables and figures")
