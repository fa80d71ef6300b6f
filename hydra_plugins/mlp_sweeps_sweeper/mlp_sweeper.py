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

        by_hash: Dict[str, Job] = {}
        for overrides, grids in planned:
            try:
                cfg = self._compose(overrides)
                tcfg = TrainConfig.from_dict(OmegaConf.to_container(cfg, resolve=True))
                tcfg.validate()
            except (ConfigError, ValueError) as e:
                raise InvalidSweep(f"job {' '.join(overrides)}: {e}\n"
                                   f"Nothing was run or recorded.") from None
            h = config_hash(tcfg)
            if h in by_hash:  # the same training configuration from another grid
                by_hash[h].grids.extend(g for g in grids if g not in by_hash[h].grids)
            else:
                by_hash[h] = Job(list(overrides), list(grids), h, cost=_cost(tcfg))
        return list(by_hash.values())

    def _threads(self, n_jobs_total: int) -> Optional[int]:
        """BLAS threads per job (cores / parallel jobs) unless the user set them."""
        if self.config.get("blas_threads") is not None:
            return None
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
        tracking = self.config.tracking
        tracker = parent = exp_id = None
        todo, done = jobs, []
        if tracking.enabled:
            from mlp_sweeps.tracking import Tracker

            tracker = Tracker(tracking.uri)
            exp_id = tracker.experiment_id(tracking.experiment)
            todo, done = self._resume(tracker, exp_id, jobs)
        if self.dry_run:
            for i, j in enumerate(jobs):
                state = " (finished: skip)" if j in done else (f" (was {j.previous})" if j.previous else "")
                log.info("  #%d %s%s%s", i, " ".join(j.overrides),
                         f"  [{', '.join(j.grids)}]" if j.grids else "", state)
            log.info("Dry run: %d jobs planned, %d to run; nothing was run or recorded.",
                     len(jobs), len(todo))
            return []

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
        batch_all = [j.overrides + j.extra for j in todo]
        size = self.max_batch_size or max(1, len(batch_all))
        returns: List[JobReturn] = []
        status = "KILLED"
        try:
            for i in range(0, len(batch_all), size):
                returns.extend(self.launcher.launch(batch_all[i:i + size], initial_job_idx=i))
            status = "FINISHED"
        finally:
            if tracker is not None and status != "FINISHED":
                self._kill_in_flight(tracker, exp_id, parent)
            summary = self._summarize(jobs, todo, done, returns, tracker, exp_id, parent)
            if tracker is not None:
                failed = summary["failed"] + summary["missing"]
                tracker.log_metrics(parent, {k: v for k, v in summary.items()
                                             if isinstance(v, int)})
                final = "FAILED" if status == "FINISHED" and failed else status
                tracker.set_tags(parent, {"status": final.lower()})
                tracker.end_run(parent, final)
        if summary["failed"] or summary["missing"]:
            raise SweepFailed(
                f"{summary['failed']} of {summary['planned']} jobs failed"
                + (f" and {summary['missing']} are missing from the store" if summary["missing"] else "")
                + "; the others are recorded (see the summary above); rerun the same command "
                  "to run the failed ones again")
        return [returns]

    @staticmethod
    def _kill_in_flight(tracker, exp_id: str, parent: str) -> None:
        """Interrupted (Ctrl-C): the children still RUNNING will not finish."""
        for r in tracker.children(exp_id, parent):
            if r.info.status == "RUNNING":
                tracker.set_tags(r.info.run_id, {"status": "killed",
                                                 "error": "the sweep was interrupted"})
                tracker.end_run(r.info.run_id, "KILLED")

    def _summarize(self, jobs: List[Job], todo: List[Job], done: List[Job],
                   returns: List[JobReturn], tracker, exp_id, parent) -> Dict[str, Any]:
        counts = {"planned": len(jobs), "skipped": len(done),
                  "resumed": sum(1 for j in todo if j.previous), "run": len(returns),
                  "finished": 0, "diverged": 0, "failed": 0, "missing": 0}
        failures = []
        for j, r in zip(todo, returns):
            if r.status == JobStatus.COMPLETED:
                st = (r._return_value or {}).get("status", "finished")
                counts["diverged" if st == "diverged" else "finished"] += 1
            else:
                counts["failed"] += 1
                failures.append((j.overrides, r._return_value))
        not_run = len(todo) - len(returns)
        order = ("planned", "skipped", "resumed", "run", "finished", "diverged", "failed")
        lines = ["", "Sweep summary", "-------------", "  ".join(f"{k}: {counts[k]}" for k in order)]
        if not_run:
            lines.append(f"not run (interrupted): {not_run}; rerun the same command to resume")
        for overrides, err in failures:
            lines.append(f"FAILED {' '.join(overrides)}: {type(err).__name__}: {err}")
        if tracker is not None:
            runs = tracker.children(exp_id, parent)
            by_status: Dict[str, int] = {}
            for r in runs:
                st = r.data.tags.get("status", "?")
                by_status[st] = by_status.get(st, 0) + 1
            counts["missing"] = max(0, len(returns) - len(runs))
            lines.append(f"store: {len(runs)} runs under parent {parent} "
                         f"({', '.join(f'{k}: {v}' for k, v in sorted(by_status.items()))})"
                         + (f", {len(done)} earlier finished runs reused" if done else ""))
            if counts["missing"]:
                lines.append(f"MISSING from the store: {counts['missing']} runs")
        log.info("\n".join(lines))
        return counts


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
