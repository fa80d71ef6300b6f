"""The ``mlp`` Hydra sweeper: grid sweeps with planning, validation and tracking up front.

What it adds to Hydra's basic sweeper (whose grid syntax it keeps):

- ``grids``: a named union of grids (each a cartesian product, like ``params``), so one
  file can run every grid of the study; identical configurations are run once;
- every job's config is composed and validated *before* anything runs or is recorded: a
  bad value in any job fails the whole sweep within seconds, with the job named;
- in the launching process, before workers start: the MLflow experiment and one parent
  run per multirun (parallel workers creating them on SQLite race: mlflow #4123, #10334);
  each job gets ``tracking.parent_run_id`` and its share of BLAS threads as overrides,
  which works with any launcher (joblib, Ray, SLURM);
- resume by rerunning the same command: a job whose configuration (``config_hash``) already
  FINISHED in the experiment is skipped (``hydra.sweeper.rerun=true`` forces it); FAILED
  and KILLED ones run again; one left RUNNING by a process that no longer exists is marked
  KILLED and run again;
- failed jobs do not stop the others; the sweep ends with a one-screen summary (planned,
  finished, diverged, failed) checked against the store, logged on the parent run, and a
  non-zero exit status if any job failed.
"""


import logging
import os
import time
import socket
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from mlp_sweeps import workers
from mlp_sweeps.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class MlpSweeperConf:
    _target_: str = "hydra_plugins.mlp_sweeps_sweeper.mlp_sweeper.MlpSweeper"
    max_batch_size: Optional[int] = None
    # one grid: key -> comma-separated values (Hydra's sweep syntax)
    params: Optional[Dict[str, str]] = None
    # a union of named grids: name -> {key -> values}; ``params`` apply to every grid
    grids: Optional[Dict[str, Dict[str, Any]]] = None
    # plan and validate only: print the jobs, run and record nothing
    dry_run: bool = False
    # rerun configurations already FINISHED in the experiment (default: skip them)
    rerun: bool = False
    # run only these of the ``grids`` (null: all)
    only: Optional[List[str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="mlp", node=MlpSweeperConf,
                             provider="mlp_sweeps")


@dataclass
class Job:
    overrides: List[str]
    grids: List[str]
    config_hash: str = ""
    previous: str = ""  # what the store had for this configuration: "", failed, killed, ...
    cost: float = 0.0  # relative training cost, to start the longest jobs first
    extra: List[str] = field(default_factory=list)


class InvalidSweep(UserError):
    """A job of the sweep has an invalid configuration (nothing was run or recorded)."""


class SweepFailed(UserError):
    """Some jobs of the sweep failed (the others finished and are recorded)."""


class MlpSweeper(Sweeper):
    def __init__(self, max_batch_size: Optional[int] = None,
                 params: Optional[Dict[str, str]] = None,
                 grids: Optional[Dict[str, Dict[str, Any]]] = None, dry_run: bool = False,
                 rerun: bool = False, only: Optional[List[str]] = None):
        self.max_batch_size = max_batch_size
        self.only = list(only) if only else None
        self.dry_run = dry_run
        self.rerun = rerun
        self.params = dict(params or {})
        self.grids = {k: dict(v or {}) for k, v in (grids or {}).items()}
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # planning ----------------------------------------------------------------------------
    def _expand(self, overrides: List[str]) -> List[List[str]]:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(overrides), None)
        return jobs

    def plan(self, arguments: List[str]) -> List[Tuple[List[str], List[str]]]:
        """Every job's overrides and the grids it belongs to, duplicates merged."""
        base = [f"{k}={v}" for k, v in self.params.items()]
        if not self.grids:
            return [(job, []) for job in self._expand(base + list(arguments))]
        planned: Dict[tuple, List[str]] = {}
        if self.only:
            unknown = [g for g in self.only if g not in self.grids]
            if unknown:
                raise InvalidSweep(f"hydra.sweeper.only: unknown grid(s) {', '.join(unknown)}; "
                                   f"this sweep's grids: {', '.join(self.grids)}")
        for gname, grid in self.grids.items():
            if self.only and gname not in self.only:
                continue
            grid_ov = [f"{k}={v}" for k, v in grid.items()]
            for job in self._expand(grid_ov + base + list(arguments)):
                planned.setdefault(tuple(job), []).append(gname)
        return [(list(job), names) for job, names in planned.items()]

    def _compose(self, overrides: Sequence[str]) -> DictConfig:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.pop("hydra", None)
        return cfg

    def validate(self, planned: List[Tuple[List[str], List[str]]]) -> List[Job]:
        """Compose and validate each job; merge jobs that train the same configuration."""
        from mlp import ConfigError, TrainConfig
        from mlp_sweeps.run import config_hash

        from mlp.data import DataError
        from mlp.train import load_data

        by_hash: Dict[str, Job] = {}
        data_ok: Dict[tuple, bool] = {}
        for overrides, grids in planned:
            try:
                cfg = self._compose(overrides)
                tcfg = TrainConfig.from_dict(OmegaConf.to_container(cfg, resolve=True))
                tcfg.validate()
            except (ConfigError, ValueError) as e:
                raise InvalidSweep(f"job {' '.join(overrides)}: {e}\n"
                                   f"Nothing was run or recorded.") from None
            d = tcfg.data
            key = (d.name, d.root, d.normalize)
            if key not in data_ok:  # verified (and decoded into the shared cache) once, here
                try:
                    load_data(tcfg)
                except (DataError, ValueError) as e:
                    raise InvalidSweep(f"job {' '.join(overrides)}: {e}\n"
                                       f"Nothing was run or recorded.") from None
                data_ok[key] = True
            h = config_hash(tcfg)
            if h in by_hash:  # the same training configuration from another grid
                by_hash[h].grids.extend(g for g in grids if g not in by_hash[h].grids)
            else:
                by_hash[h] = Job(list(overrides), list(grids), h, cost=_cost(tcfg))
        return list(by_hash.values())

    def _threads(self, n_jobs_total: int) -> Optional[int]:
        """BLAS threads per job unless the user set them: the job's CPU allotment where the
        launcher reserves CPUs per job (Ray: ``num_cpus_per_job``; submitit/SLURM:
        ``cpus_per_task``), else cores / parallel jobs (joblib: ``n_jobs``)."""
        if self.config.get("blas_threads") is not None:
            return None
        for key in ("num_cpus_per_job", "cpus_per_task"):
            per_job = OmegaConf.select(self.config, f"hydra.launcher.{key}", default=None)
            if per_job is not None:
                return max(1, int(per_job))
        n_jobs = OmegaConf.select(self.config, "hydra.launcher.n_jobs", default=None)
        cores = os.cpu_count() or 1
        if n_jobs is None:  # a sequential launcher
            parallel = 1
        else:
            parallel = cores if int(n_jobs) < 1 else int(n_jobs)
        return max(1, cores // max(1, min(parallel, n_jobs_total)))

    # resuming ----------------------------------------------------------------------------
    def _resume(self, tracker, exp_id: str, jobs: List[Job]) -> Tuple[List[Job], List[Job]]:
        """Split jobs into (to run, already finished) from what the experiment holds."""
        from mlp_sweeps.tracking import run_is_orphaned

        hashes = {j.config_hash for j in jobs}
        latest: Dict[str, Any] = {}
        for r in tracker.runs(exp_id):
            h = r.data.tags.get("config_hash")
            if h not in hashes:
                continue
            if r.info.status == "RUNNING" and run_is_orphaned(r):
                tracker.set_tags(r.info.run_id, {"status": "killed",
                                                 "error": "its process died (found by a rerun)"})
                tracker.end_run(r.info.run_id, "KILLED")
                log.warning("Run %s (%s) was left RUNNING by a dead process: marked KILLED",
                            r.info.run_id, r.info.run_name)
                continue
            prev = latest.get(h)
            if prev is None or _rank(r) > _rank(prev):
                latest[h] = r
        todo, done = [], []
        for j in jobs:
            r = latest.get(j.config_hash)
            if r is None:
                todo.append(j)
                continue
            j.previous = r.data.tags.get("status", r.info.status.lower())
            if r.info.status == "FINISHED" and not self.rerun:
                done.append(j)
                had = [g for g in r.data.tags.get("grid", "").split(",") if g]
                if set(j.grids) - set(had):  # reused by another grid: say so on the run
                    tracker.set_tags(r.info.run_id, {"grid": ",".join(had + [
                        g for g in j.grids if g not in had])})
            elif r.info.status == "RUNNING":
                done.append(j)  # alive elsewhere: do not start it twice
                log.warning("Not starting %s: run %s is RUNNING in another live process",
                            " ".join(j.overrides), r.info.run_id)
            else:
                todo.append(j)
        return todo, done

    # sweeping ----------------------------------------------------------------------------
    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        t0 = time.perf_counter()
        jobs = self.validate(self.plan(list(arguments)))
        log.info("Planned and validated %d jobs in %.2f s", len(jobs), time.perf_counter() - t0)
        # the workers start (and import) while this process opens the store
        warm = None if self.dry_run else workers.prewarm(self.launcher, len(jobs))
        tracking = self.config.tracking
        tracker = parent = exp_id = None
        todo, done = list(jobs), []
        if tracking.enabled:
            from mlp_sweeps.tracking import Tracker

            try:
                tracker = Tracker(tracking.uri)
                exp_id = tracker.experiment_id(tracking.experiment)
                todo, done = self._resume(tracker, exp_id, jobs)
            except BaseException:  # e.g. an unreachable store: no workers left behind
                if warm is not None:
                    workers.release(self.launcher)
                raise
        if self.dry_run:
            for i, j in enumerate(jobs):
                state = " (finished: skip)" if j in done else (f" (was {j.previous})" if j.previous else "")
                log.info("  #%d %s%s%s", i, " ".join(j.overrides),
                         f"  [{', '.join(j.grids)}]" if j.grids else "", state)
            log.info("Dry run: %d jobs planned, %d to run; nothing was run or recorded.",
                     len(jobs), len(todo))
            return []

        if warm is not None:
            warm.join()
            if not todo:
                workers.release(self.launcher)
        prepare = getattr(self.launcher, "prepare", None)  # e.g. Ray: connect to the cluster
        if todo and callable(prepare):
            prepare()  # an unreachable cluster fails here, before any run is recorded
        threads = self._threads(len(todo))
        for j in todo:
            if threads is not None:
                j.extra.append(f"blas_threads={threads}")
            if j.grids:
                j.extra.append(f"tracking.grid=[{','.join(j.grids)}]")
        if tracker is not None:
            parent = tracker.start_run(exp_id, f"{tracking.experiment} sweep", tags={
                "sweep": "parent",
                "sweep_dir": str(self.config.hydra.sweep.dir),
                "overrides": " ".join(arguments),
                "planned": len(jobs),
                "grids": ",".join(self.grids),
                "status": "running",
                "host": socket.gethostname(),
                "pid": os.getpid(),
            })
            tracker.log_params(parent, {"sweep.params": self.params, "sweep.grids": self.grids,
                                        "sweep.arguments": " ".join(arguments)})
            for j in todo:
                j.extra.append(f"tracking.parent_run_id={parent}")
            log.info("Sweep recorded in %s, experiment %r, parent run %s",
                     tracker.uri, tracking.experiment, parent)
        if done:
            log.info("Skipping %d jobs already finished in experiment %r "
                     "(hydra.sweeper.rerun=true runs them again)", len(done), tracking.experiment)

        # longest first: on parallel workers the sweep then ends soonest (LPT scheduling)
        todo = sorted(todo, key=lambda j: -j.cost)
        outcome: Dict[str, Any] = {}  # config hash -> JobReturn, or "killed" (worker lost)
        status = "KILLED"
        try:
            self._launch_all(todo, outcome, tracker, exp_id, parent)
            status = "FINISHED"
            workers.release(self.launcher)  # idle now: not waited for at exit
        finally:
            if tracker is not None and status != "FINISHED":
                self._kill_in_flight(tracker, exp_id, parent, "the sweep was interrupted")
            summary = self._summarize(jobs, todo, done, outcome, tracker, exp_id, parent)
            if tracker is not None:
                bad = summary["failed"] + summary["killed"] + summary["missing"]
                tracker.log_metrics(parent, {k: v for k, v in summary.items()
                                             if isinstance(v, int)})
                final = "FAILED" if status == "FINISHED" and bad else status
                tracker.set_tags(parent, {"status": final.lower()})
                tracker.end_run(parent, final)
                self._report(tracking, parent)
        if summary["failed"] or summary["killed"] or summary["missing"]:
            parts = [f"{summary[k]} {k}" for k in ("failed", "killed", "missing") if summary[k]]
            raise SweepFailed(
                f"{', '.join(parts)} of {summary['planned']} jobs; the others are recorded (see "
                f"the summary above). Rerun the same command to run those again.")
        return [[r for r in outcome.values() if isinstance(r, JobReturn)]]

    def _launch_all(self, todo: List[Job], outcome: Dict[str, Any], tracker, exp_id,
                    parent) -> None:
        """Launch in batches. If a worker process dies (SIGKILL, OOM), the launcher loses
        the whole batch (joblib #3458 / a broken pool): the jobs that finished are kept
        (read from the store), the runs in flight are marked KILLED, and the unfinished
        jobs are launched again; a job in flight at two worker losses is given up."""
        pending = list(todo)
        losses: Dict[str, int] = {}
        idx = 0
        while pending:
            size = self.max_batch_size or len(pending)
            batch, pending = pending[:size], pending[size:]
            try:
                rets = self.launcher.launch([j.overrides + j.extra for j in batch],
                                            initial_job_idx=idx)
            except Exception as e:  # noqa: BLE001 - only worker loss is handled, re-raised otherwise
                if not _is_worker_loss(e) or tracker is None:
                    raise
                log.error("A worker process died (%s: %s); recovering the batch",
                          type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                # a launcher may say which jobs it lost and why ({position in the batch:
                # why}), and that they are not to be relaunched (SLURM: scancel, time limit)
                why = {batch[i].config_hash: w for i, w in getattr(e, "why", {}).items()}
                relaunch = getattr(e, "relaunch", True)
                completed = set()  # ended on their own: finished, diverged or failed
                for r in tracker.children(exp_id, parent):
                    h = r.data.tags.get("config_hash")
                    if r.info.status in ("FINISHED", "FAILED"):
                        completed.add(h)
                    elif r.info.status == "RUNNING" or h in why:  # in flight when lost
                        losses[h] = losses.get(h, 0) + 1
                        tracker.set_tags(r.info.run_id, {
                            "status": "killed",
                            "error": why.get(h) or f"its worker process died ({type(e).__name__}"
                                     f"); worker loss #{losses[h]} for this configuration"})
                        if r.info.status == "RUNNING":  # (else closed by its SIGTERM handler)
                            tracker.end_run(r.info.run_id, "KILLED")
                retry, given_up = [], 0
                for j in batch:
                    if j.config_hash in completed:
                        outcome[j.config_hash] = "completed"
                    elif losses.get(j.config_hash, 0) >= 2 or (
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

    def _report(self, tracking, parent: str) -> None:
        """Comparison tables and figures of the sweep, as artifacts of its parent run. A
        failure here is logged, never allowed to hide the sweep's own result."""
        try:
            from mlp_sweeps.export import sweep_report

            files = sweep_report(tracking.uri, tracking.experiment, parent)
            if files:
                log.info("Logged %s on the parent run", ", ".join(map(str, files)))
        except Exception:  # noqa: BLE001 - reporting must not fail a finished sweep
            log.exception("Could not build the sweep's tables and figures")

    @staticmethod
    def _kill_in_flight(tracker, exp_id: str, parent: str, why: str) -> None:
        """Interrupted (Ctrl-C): the children still RUNNING will not finish."""
        for r in tracker.children(exp_id, parent):
            if r.info.status == "RUNNING":
                tracker.set_tags(r.info.run_id, {"status": "killed", "error": why})
                tracker.end_run(r.info.run_id, "KILLED")

    def _summarize(self, jobs: List[Job], todo: List[Job], done: List[Job],
                   outcome: Dict[str, Any], tracker, exp_id, parent) -> Dict[str, Any]:
        """Counts per outcome, from the store when tracking (the truth), else from the
        launcher's returns; an integrity check of planned against recorded."""
        counts = {"planned": len(jobs), "skipped": len(done),
                  "resumed": sum(1 for j in todo if j.previous), "run": len(outcome),
                  "finished": 0, "diverged": 0, "failed": 0, "killed": 0, "missing": 0}
        errors = {j.config_hash: r._return_value for j in todo
                  if isinstance(r := outcome.get(j.config_hash), JobReturn)
                  and r.status != JobStatus.COMPLETED}
        lines = ["", "Sweep summary", "-------------"]
        if tracker is not None:
            latest: Dict[str, Any] = {}
            for r in tracker.children(exp_id, parent):
                h = r.data.tags.get("config_hash")
                if h not in latest or _rank(r) > _rank(latest[h]):
                    latest[h] = r
            for j in todo:
                r = latest.get(j.config_hash)
                if j.config_hash not in outcome:
                    continue  # never launched (interrupted)
                if r is None:
                    counts["missing"] += 1
                    lines.append(f"MISSING from the store: {' '.join(j.overrides)}")
                    continue
                st = r.data.tags.get("status", "?")
                key = st if st in ("finished", "diverged", "failed", "killed") else "failed"
                counts[key] += 1
                if key in ("failed", "killed"):
                    err = errors.get(j.config_hash)
                    if err is not None:
                        why = f"{type(err).__name__}: {err}"
                    else:
                        tail = r.data.tags.get("error", "").strip().splitlines()
                        why = tail[-1] if tail else "?"
                    lines.append(f"{key.upper()} {' '.join(j.overrides)}: {why}")
        else:
            for j in todo:
                r = outcome.get(j.config_hash)
                if r is None:
                    continue
                if r == "killed":
                    counts["killed"] += 1
                elif r == "completed" or r.status == JobStatus.COMPLETED:
                    st = "finished" if r == "completed" else \
                        (r._return_value or {}).get("status", "finished")
                    counts["diverged" if st == "diverged" else "finished"] += 1
                else:
                    counts["failed"] += 1
                    lines.append(f"FAILED {' '.join(j.overrides)}: "
                                 f"{type(r._return_value).__name__}: {r._return_value}")
        order = ("planned", "skipped", "resumed", "run", "finished", "diverged", "failed",
                 "killed")
        lines.insert(3, "  ".join(f"{k}: {counts[k]}" for k in order))
        not_run = len(todo) - len(outcome)
        if not_run:
            lines.append(f"not run (interrupted): {not_run}; rerun the same command to resume")
        if tracker is not None:
            lines.append(f"store: experiment {self.config.tracking.experiment!r}, parent run "
                         f"{parent}" + (f"; {len(done)} earlier finished runs reused"
                                        if done else ""))
        log.info("\n".join(lines))
        return counts


def _is_worker_loss(e: BaseException) -> bool:
    """A launcher error meaning a worker process died (joblib/loky, concurrent.futures,
    Ray), as opposed to an error in a job, which the launcher returns per job."""
    names = {type(x).__name__ for x in (e, e.__cause__, e.__context__) if x is not None}
    return bool(names & {"TerminatedWorkerError", "BrokenProcessPool", "WorkerCrashedError",
                         "RayTaskError", "NodeDiedError", "SlurmJobsLost"})


def _cost(tcfg) -> float:
    """Rough training cost: epochs x weights touched per sample, plus per-step overhead
    (which makes small batches slow)."""
    h, d = tcfg.hidden_size, tcfg.depth
    weights = 784 * h + (d - 1) * h * h + h * 10 if d else 7840
    return tcfg.epochs * (weights + 20000 / tcfg.batch_size * 100)


def _rank(run) -> tuple:
    """Which of several runs of one configuration counts: finished > running > other,
    then the latest."""
    order = {"FINISHED": 2, "RUNNING": 1}
    return (order.get(run.info.status, 0), run.info.start_time or 0)
