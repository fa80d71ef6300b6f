"""One tracked training run from a composed Hydra config: the body of ``train.py``.

:func:`run` wires the parts: validate the config and load the data (before any run is
created), resolve the BLAS threads, find a checkpoint to resume from, then train inside a
:class:`~mlp_sweeps.run.tracked.TrackedRun` (the run's life in the store) with a callback
logging every epoch, and write the artifacts into the job's Hydra output folder.
"""

from __future__ import annotations

import csv
import json
import logging
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import ThreadpoolController

from mlp import ConfigError, TrainConfig, checkpoint, train
from mlp.data import DataError
from mlp.files import PROJECT_ROOT
from mlp.metrics import CURVES, EPOCH, STEP_CURVES, VAL_CURVES
from mlp.train import load_data

from mlp_sweeps.claim import liveness
from mlp_sweeps.plan import options
from mlp_sweeps.plan import parallelism
from mlp_sweeps.errors import InvalidConfig
from mlp_sweeps.record.faults import MachineFault, diagnose
from mlp_sweeps.record.store import resolve_uri
from mlp_sweeps.claim.ledger import CLAIMED, Ledger, Outcome, RunStatus, Tag, outcome_of
from mlp_sweeps.plan.space import NOT_IN_NAME  # overrides that do not change what is trained
from mlp_sweeps.run.tracked import TrackedRun, UntrackedRun, tracked_run

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and track one configuration; returns its summary metrics and status. A fault
    of the machine (a full disk, a store that cannot be written) is raised as
    :class:`~mlp_sweeps.record.faults.MachineFault`, one message naming the path and the fix."""
    try:
        return _run(cfg)
    except MachineFault:
        raise
    except Exception as e:
        why = diagnose(e, resolve_uri(cfg.tracking.uri) if cfg.tracking.enabled else None)
        if why is None:
            raise
        raise MachineFault(why) from None


def _run(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True)
    try:  # checked, then verified and memory-mapped, before any run is created
        tcfg = TrainConfig.from_dict(container).validate()
        options.check_run(container)
        job = HydraJob.current()
        threads = blas_threads(cfg.get("blas_threads"), job.parallel)
        data = load_data(tcfg)
        options.check_memory(tcfg, data.n_features, data.n_classes)
    except (ConfigError, DataError) as e:
        raise InvalidConfig(str(e)) from None
    tr = cfg.tracking
    name = tr.run_name or run_name(job.overrides)
    ledger = None
    if tr.enabled:
        from mlp_sweeps.record.tracking import Tracker

        ledger = Ledger(Tracker.shared(tr.uri), tr.experiment, tr.heartbeat_timeout_s)
    # BLAS at one thread: the run's threads split its steps (mlp.split), BLAS's own pools
    # would compete with them and with each other (NumPy's and SciPy's)
    with _blas().limit(limits=1, user_api="blas"):
        tags = _tags(tcfg, job, tr, threads)
        resume_state = None
        reopen = _reopened(tr.get("reopen"))
        stop_at = cfg.get("stop_at_epoch")
        if stop_at is not None and stop_at >= tcfg.epochs:
            stop_at = None  # the last rung: train to the end
        if tr.get("rung") is not None:
            tags[Tag.RUNG] = tr.rung
        if reopen is not None:  # continued in its own run, from its checkpoint
            if ledger is None:
                raise InvalidConfig("tracking.reopen continues a run of the store: it needs "
                                    "tracking.enabled=true")
            resume_state = _checkpoint_of(ledger, reopen[0], tcfg) if reopen[1] else None
            for k in (Tag.OVERRIDES, Tag.CONFIG_HASH, Tag.GIT_COMMIT):
                tags.pop(k, None)  # the run's own, from its first start
        elif ledger is not None and cfg.get("resume", True) and tr.get("rung") is None:
            # (a successive halving job is new, or continues its own run: tracking.reopen)
            resume_state, source = _find_checkpoint(ledger, tcfg)
            if resume_state is not None:
                tags.update({Tag.RESUMED_FROM: source, Tag.RESUMED_EPOCH: resume_state["epoch"]})
                log.info("%s: resuming from epoch %d of run %s", name, resume_state["epoch"],
                         source)
        # a sweep's job claims its configuration: several launchers may run one sweep
        with tracked_run(ledger, name, tags, parent=tr.parent_run_id,
                         claim=bool(tr.parent_run_id), since=tr.read_at,
                         params={k: v for k, v in container.items() if k != "tracking"},
                         reopen=reopen) as tracked:
            if tracked.claimed_by is not None:
                log.info("%s: not run, claimed by run %s (%s)", name,
                         tracked.claimed_by.info.run_id, outcome_of(tracked.claimed_by))
                return {"status": CLAIMED, "claimed_by": tracked.claimed_by.info.run_id,
                        "run_name": name}
            if reopen is None:  # a continued run has its dataset and earlier epochs
                tracked.log_dataset(tcfg)
                for rec in (resume_state or {}).get("history", []):  # complete curves
                    tracked.log_epoch(rec)
            result = _train(cfg, tcfg, data, job, name, tracked, resume_state, threads,
                            stop_at)
            summary = _summary(tcfg, data, result, threads)
            tracked.log_metrics(summary, step=len(result.history))
            if job.out_dir is not None and ledger is not None and result.status != "paused":
                tracked.log_artifacts(_artifacts(cfg, result, job.out_dir))
            tracked.outcome = result.status
            if stop_at is not None or reopen is not None or tr.get("rung") is not None:
                tracked.close_tags[Tag.RUNG_METRICS] = _rung_metrics(
                    tracked.reopened, result.history)
        summary.update(status=result.status, run_id=tracked.run_id, run_name=name)
        log.info("%s: %s, final test acc %s; recorded as %s", name, result.status,
                 summary.get("final_test_acc"), tracked.where)
        return summary


@dataclass
class HydraJob:
    """What a run needs from the current Hydra job (none: a plain function call)."""

    out_dir: Path | None = None
    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    parallel: int = 1  # jobs running at once on this machine

    @classmethod
    def current(cls) -> "HydraJob":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return cls()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        parallel = parallelism.parallel_jobs(OmegaConf.select(hc, "launcher.n_jobs",
                                                              default=None)) if multirun else 1
        return cls(Path(hc.runtime.output_dir), list(hc.overrides.task), multirun, parallel)


def run_name(overrides: list[str]) -> str:
    """``activation=gelu,loss=hinge`` from a job's overrides; ``baseline`` if none."""
    keep = [o for o in overrides if not o.lstrip("+~").startswith(NOT_IN_NAME)]
    return ",".join(o.lstrip("+") for o in keep) or "baseline"


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5)
        sha = out.stdout.strip()
        if out.returncode == 0 and sha:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
            return sha + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def node_name() -> str:
    """Where this run executes: the hostname, or inside a Ray task the Ray node
    (``ray:<node ip>:<node id>``; ``host`` holds the hostname)."""
    ray = sys.modules.get("ray")  # imported in a Ray worker; never imported here
    if ray is not None and ray.is_initialized():
        try:
            ctx = ray.get_runtime_context()
            return f"ray:{ray.util.get_node_ip_address()}:{ctx.get_node_id()}"
        except Exception:  # noqa: BLE001 - a tag must not fail the run
            pass
    return socket.gethostname()


def blas_threads(requested: int | None, n_parallel: int) -> int:
    """The user's ``blas_threads``, else this machine's share for one of ``n_parallel``
    jobs (:mod:`mlp_sweeps.plan.parallelism`)."""
    if requested is not None:  # checked by mlp_sweeps.plan.options
        return requested
    return parallelism.threads_per_job(n_parallel)


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    """threadpoolctl's view of the thread pools loaded in this process (NumPy's BLAS), made
    once: each ``threadpool_limits`` call would scan the loaded libraries again (a few ms a
    job for a worker running many)."""
    return ThreadpoolController()


def _tags(tcfg: TrainConfig, job: HydraJob, tr, threads: int) -> dict[str, Any]:
    """A training run's tags at its start."""
    return {
        Tag.OVERRIDES: " ".join(job.overrides),
        Tag.CONFIG_HASH: tcfg.config_hash(),
        Tag.GIT_COMMIT: git_commit(),
        **liveness.here(),  # host, boot id, pid: whether it is alive is known at once there
        Tag.NODE: node_name(),
        Tag.BLAS_THREADS: str(threads),  # the run's threads (its steps split across them)
        Tag.SWEEP_PARENT_ID: tr.parent_run_id or "",
        Tag.GRID: ",".join(tr.grid or []),
        Tag.STATUS: Outcome.RUNNING,
    }


def _train(cfg: DictConfig, tcfg: TrainConfig, data, job: HydraJob, name: str,
           tracked: TrackedRun | UntrackedRun, resume_state: dict[str, Any] | None, threads: int,
           stop_at: int | None = None):
    """:func:`mlp.train` with every epoch logged (and shown), checkpoints saved and logged."""
    bar = _progress(tcfg.epochs, enabled=cfg.get("progress", True) and not job.multirun,
                    desc=name)

    def on_epoch(rec: dict[str, Any]) -> None:
        tracked.log_epoch(rec)
        if bar is not None:
            bar.set_postfix({k: f"{rec[k]:.4f}" for k in CURVES if k in rec}, refresh=False)
            bar.update(1)
        elif job.multirun:
            log.info("%s epoch %d %s", name, rec["epoch"],
                     {k: round(v, 4) for k, v in rec.items() if k != "epoch"})

    def on_steps(rec: dict[str, Any]) -> None:  # sent with the epochs, in batches
        tracked.log_metrics({k: rec[k] for k in STEP_CURVES}, step=rec["iteration"])

    every = cfg.get("checkpoint_every")
    if every is None:
        every = 10 if tcfg.epochs >= 20 else 0
    ck_dir = job.out_dir if job.out_dir is not None else Path(tempfile.mkdtemp())

    def on_checkpoint(state: dict[str, Any]) -> None:
        path = checkpoint.save(ck_dir / "checkpoint.npz", state)
        tracked.flush()  # the store's curves reach at least the checkpoint's epoch
        tracked.log_artifacts([path], "checkpoint")
        tracked.set_tags({Tag.CHECKPOINT_EPOCH: state["epoch"]})

    try:
        ck_dir.mkdir(parents=True, exist_ok=True)
        return train(tcfg, callback=on_epoch, data=data, checkpoint_every=every,
                     on_checkpoint=on_checkpoint, resume=resume_state, threads=threads,
                     log_every_steps=int(cfg.get("log_every_steps") or 0), on_steps=on_steps,
                     stop_at=stop_at, eval_train=bool(cfg.get("eval_train", False)))
    finally:
        if bar is not None:
            bar.close()


def _summary(tcfg: TrainConfig, data, result, threads: int | None = None) -> dict[str, Any]:
    """The run's summary metrics: the core's, its time split, its distance to the floor."""
    summary = dict(result.metrics)
    for k, v in result.timing.items():
        summary[f"time_{k}_s"] = v
    summary.update(_efficiency(tcfg, data, result.history, threads))
    return summary


def write_metrics_csv(history: list[dict[str, Any]], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(EPOCH), extrasaction="ignore")
        w.writeheader()
        w.writerows(history)
    return path


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", dynamic_ncols=True)


def _efficiency(tcfg: TrainConfig, data, history: list[dict[str, Any]],
                threads: int | None = None) -> dict[str, float]:
    """The epoch's matrix products alone (estimated from 30 batches with the run's shapes,
    ``floor_epoch_s``, once per shape and BLAS threads in a process: a worker running many
    jobs of one shape measures it once) and the median epoch's ratio to it
    (``epoch_floor_ratio``): how close to the BLAS floor the run trained."""
    from statistics import median

    if not history:
        return {}
    sizes = (data.n_features,) + (tcfg.hidden_size,) * tcfg.depth + (data.n_classes,)
    floor = floor_epoch_s(sizes, data.x_train.shape[0], tcfg.batch_size, tcfg.dtype, threads)
    epoch = median(r["epoch_time_s"] for r in history)
    return {"floor_epoch_s": floor, "epoch_floor_ratio": epoch / floor}


@lru_cache(maxsize=64)
def floor_epoch_s(sizes: tuple[int, ...], n: int, batch_size: int, dtype: str,
                  threads: int | None) -> float:
    """An epoch's matrix products alone, in seconds, NumPy's BLAS on ``threads`` threads
    (its own threading: the floor the run's split step is measured against)."""
    from mlp.perf import MatmulFloor

    with _blas().limit(limits=threads or 1, user_api="blas"):
        return MatmulFloor(list(sizes), n, batch_size, dtype).run(30)


def _reopened(value: str | None) -> tuple[str, int] | None:
    """``tracking.reopen`` ("<run id>@<epoch>", checked by mlp_sweeps.plan.options) as a pair."""
    if not value:
        return None
    run_id, epoch = value.split("@")
    return run_id, int(epoch)


def _checkpoint_of(ledger: Ledger, run_id: str, tcfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint a paused run left (its configuration checked)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = ledger.tracker.download(run_id, "checkpoint/checkpoint.npz", tmp)
        state = checkpoint.load(path)
    checkpoint.check_matches(state, tcfg.to_dict())
    return state


def _rung_metrics(reopened, history: list[dict[str, Any]]) -> str:
    """The ``rung_metrics`` tag: the paused run's, with this job's last epoch added."""
    got = json.loads(reopened.data.tags.get(Tag.RUNG_METRICS, "{}")) if reopened else {}
    if history:
        last = history[-1]
        got[str(last["epoch"])] = {k: last[k] for k in (*CURVES, *VAL_CURVES) if k in last}
    return json.dumps(got, sort_keys=True)


def _find_checkpoint(ledger: Ledger, tcfg: TrainConfig):
    """(state, run id) of the newest checkpoint left by an unfinished run of this
    configuration (KILLED, FAILED, or RUNNING with its process gone), else (None, None)."""
    runs = ledger.settle(ledger.runs(config_hash=tcfg.config_hash(), newest_first=True))
    for r in runs:
        if r.info.status not in (RunStatus.KILLED, RunStatus.FAILED) \
                or not r.data.tags.get(Tag.CHECKPOINT_EPOCH):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = ledger.tracker.download(r.info.run_id, "checkpoint/checkpoint.npz",
                                               tmp)
                state = checkpoint.load(path)
                checkpoint.check_matches(state, tcfg.to_dict())
            except Exception as e:  # noqa: BLE001 - a bad checkpoint is skipped, and said so
                log.warning("Not resuming from run %s: %s", r.info.run_id, e)
                continue
        return state, r.info.run_id
    return None, None


def _artifacts(cfg: DictConfig, result, out_dir: Path) -> list[Path]:
    """The run's resolved config, its per-epoch metrics and final weights. (Its learning
    curves are drawn on demand from the metrics: ``mlp-export --figures``.)"""
    cfg_path = out_dir / "config.yaml"
    OmegaConf.save(cfg, cfg_path, resolve=True)
    csv_path = write_metrics_csv(result.history, out_dir / "metrics.csv")
    model_path = out_dir / "model.npz"
    np.savez(model_path, **result.model.state_dict())  # the final weights
    return [cfg_path, csv_path, model_path]
