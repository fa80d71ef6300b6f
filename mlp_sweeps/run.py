"""One tracked training run from a composed Hydra config: the body of ``train.py``.

Validates the config (before any run is created), sets the BLAS threads, opens an MLflow
run (a child of the sweep's parent run in a multirun), trains with :func:`mlp.train`
logging every epoch, writes the artifacts into the job's Hydra output folder and logs
them, and closes the run in ``finally`` with the right status. Exceptions are recorded on
the run (status FAILED, traceback in a tag) and re-raised.
"""

from __future__ import annotations

import csv
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_info, threadpool_limits

from mlp import ConfigError, TrainConfig, checkpoint, train
from mlp.data import DataError
from mlp.files import PROJECT_ROOT
from mlp.train import load_data

from .errors import InvalidConfig

log = logging.getLogger(__name__)

# overrides that do not change what is trained: left out of run names
_NOT_IN_NAME = ("tracking.", "hydra.", "sweep=", "blas_threads=", "progress=")


def run_name(overrides: list[str]) -> str:
    """``activation=gelu,loss=hinge`` from a job's overrides; ``baseline`` if none."""
    keep = [o for o in overrides if not o.lstrip("+~").startswith(_NOT_IN_NAME)]
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
    """Threads per job so that jobs x threads <= cores."""
    cores = os.cpu_count() or 1
    if requested is not None:
        if requested < 1:
            raise InvalidConfig(f"blas_threads={requested!r} must be an integer >= 1 or null")
        return requested
    return max(1, cores // max(1, n_parallel))


def _hydra_context() -> tuple[Path | None, list[str], bool, int]:
    """(output dir, task overrides, is multirun, parallel jobs) of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, [], False, 1
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    n_parallel = 1
    if multirun:
        n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=None)  # None: sequential
        if n_jobs is not None:
            n_parallel = (os.cpu_count() or 1) if int(n_jobs) < 1 else int(n_jobs)
    return Path(hc.runtime.output_dir), list(hc.overrides.task), multirun, n_parallel


def write_metrics_csv(history: list[dict[str, Any]], path: Path) -> Path:
    cols = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time_s",
            "eval_time_s"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(history)
    return path


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's preemption): closes the run as KILLED."""


def _on_sigterm(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and track one configuration; returns its summary metrics and status."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    container = OmegaConf.to_container(cfg, resolve=True)
    try:
        tcfg = TrainConfig.from_dict(container).validate()  # before anything else
    except ConfigError as e:
        raise InvalidConfig(str(e)) from None
    out_dir, overrides, multirun, n_parallel = _hydra_context()
    threads = blas_threads(cfg.get("blas_threads"), n_parallel)
    tr = cfg.tracking
    name = tr.run_name or run_name(overrides)
    try:  # verified and memory-mapped before any run is created
        data = load_data(tcfg)
    except DataError as e:
        raise InvalidConfig(str(e)) from None

    tracker = run_id = None
    if tr.enabled:
        from .tracking import Tracker, flatten

        tracker = Tracker(tr.uri)
        exp_id = tracker.experiment_id(tr.experiment)

    with threadpool_limits(limits=threads, user_api="blas"):
        actual = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        tags = {
            "overrides": " ".join(overrides),
            "config_hash": tcfg.config_hash(),
            "git_commit": git_commit(),
            "host": socket.gethostname(),
            "node": node_name(),
            "pid": os.getpid(),
            "blas_threads": ",".join(map(str, actual)) or "none",
            "sweep_parent": tr.parent_run_id or "",
            "grid": ",".join(tr.grid or []),
            "status": "running",
        }
        resume_state = None
        if tracker is not None and cfg.get("resume", True):
            resume_state, source = _find_checkpoint(tracker, exp_id, tags["config_hash"], tcfg)
            if resume_state is not None:
                tags.update(resumed_from=source, resumed_epoch=resume_state["epoch"])
                log.info("%s: resuming from epoch %d of run %s", name, resume_state["epoch"],
                         source)
        if tracker is not None:
            run_id = tracker.start_run(exp_id, name, tags, parent_run_id=tr.parent_run_id)
            log.info("%s: tracking as run %s in %s (experiment %r)", name, run_id, tracker.uri,
                     tr.experiment)
        status = "FAILED"
        try:
            if tracker is not None:
                params = flatten({k: v for k, v in container.items() if k != "tracking"})
                tracker.log_params(run_id, params)
                for rec in (resume_state or {}).get("history", []):  # complete curves
                    tracker.log_metrics(run_id, {k: v for k, v in rec.items() if k != "epoch"},
                                        step=rec["epoch"])
            bar = _progress(tcfg.epochs, enabled=cfg.get("progress", True) and not multirun,
                            desc=name)

            def on_epoch(rec: dict[str, Any]) -> None:
                if tracker is not None:
                    tracker.log_metrics(run_id, {k: v for k, v in rec.items() if k != "epoch"},
                                        step=rec["epoch"])
                if bar is not None:
                    bar.set_postfix({k: f"{rec[k]:.4f}" for k in
                                     ("train_loss", "train_acc", "test_loss", "test_acc")
                                     if k in rec}, refresh=False)
                    bar.update(1)
                elif multirun:
                    log.info("%s epoch %d %s", name, rec["epoch"],
                             {k: round(v, 4) for k, v in rec.items() if k != "epoch"})

            every = cfg.get("checkpoint_every")
            if every is None:
                every = 10 if tcfg.epochs >= 20 else 0
            ck_dir = out_dir if out_dir is not None else Path(tempfile.mkdtemp())

            def on_checkpoint(state: dict[str, Any]) -> None:
                path = checkpoint.save(ck_dir / "checkpoint.npz", state)
                if tracker is not None:
                    tracker.log_artifacts(run_id, [path], "checkpoint")
                    tracker.set_tags(run_id, {"checkpoint_epoch": state["epoch"]})

            try:
                ck_dir.mkdir(parents=True, exist_ok=True)
                result = train(tcfg, callback=on_epoch, data=data, checkpoint_every=every,
                               on_checkpoint=on_checkpoint, resume=resume_state)
            finally:
                if bar is not None:
                    bar.close()
            summary = dict(result.metrics)
            for k, v in result.timing.items():
                summary[f"time_{k}_s"] = v
            summary.update(_efficiency(tcfg, data, result.history))
            if tracker is not None:
                tracker.log_metrics(run_id, summary, step=len(result.history))
                if out_dir is not None:
                    out_dir.mkdir(parents=True, exist_ok=True)
                    files = _artifacts(cfg, result, out_dir)
                    tracker.log_artifacts(run_id, files)
                tracker.set_tags(run_id, {"status": result.status})
            status = "FINISHED"
            summary.update(status=result.status, run_id=run_id, run_name=name)
            where = f"run {run_id} in {tracker.uri}" if tracker else "(tracking disabled)"
            log.info("%s: %s, final test acc %s; recorded as %s", name, result.status,
                     summary.get("final_test_acc"), where)
            return summary
        except BaseException as e:
            if tracker is not None:
                interrupted = isinstance(e, KeyboardInterrupt)
                status = "KILLED" if interrupted else "FAILED"
                tracker.set_tags(run_id, {"status": "killed" if interrupted else "failed",
                                          "error": "".join(traceback.format_exception(e))[-5000:]})
            raise
        finally:
            if tracker is not None:
                tracker.end_run(run_id, status)


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", dynamic_ncols=True)


def _efficiency(tcfg: TrainConfig, data, history: list[dict[str, Any]]) -> dict[str, float]:
    """The epoch's matrix products alone (estimated from 30 batches with the run's shapes,
    ``floor_epoch_s``) and the median epoch's ratio to it (``epoch_floor_ratio``): how close
    to the BLAS floor the run trained."""
    from statistics import median

    from mlp.perf import MatmulFloor

    if not history:
        return {}
    sizes = [data.n_features] + [tcfg.hidden_size] * tcfg.depth + [data.n_classes]
    floor = MatmulFloor(sizes, data.x_train.shape[0], tcfg.batch_size, tcfg.dtype).run(30)
    epoch = median(r["epoch_time_s"] for r in history)
    return {"floor_epoch_s": floor, "epoch_floor_ratio": epoch / floor}


def _find_checkpoint(tracker, exp_id: str, config_hash: str, tcfg: TrainConfig):
    """(state, run id) of the newest checkpoint left by an unfinished run of this
    configuration (KILLED, FAILED, or RUNNING with its process gone), else (None, None)."""
    from .tracking import run_is_orphaned

    for r in tracker.same_config(exp_id, config_hash):
        if r.info.status == "RUNNING" and run_is_orphaned(r):
            tracker.set_tags(r.info.run_id, {"status": "killed", "error": "its process died"})
            tracker.end_run(r.info.run_id, "KILLED")
        elif r.info.status not in ("KILLED", "FAILED"):
            continue
        if not r.data.tags.get("checkpoint_epoch"):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = tracker.client.download_artifacts(r.info.run_id,
                                                         "checkpoint/checkpoint.npz", tmp)
                state = checkpoint.load(path)
                checkpoint.check_matches(state, tcfg.to_dict())
            except Exception as e:  # noqa: BLE001 - a bad checkpoint is skipped, and said so
                log.warning("Not resuming from run %s: %s", r.info.run_id, e)
                continue
        return state, r.info.run_id
    return None, None


def _artifacts(cfg: DictConfig, result, out_dir: Path) -> list[Path]:
    from .figures import plot_learning_curves

    cfg_path = out_dir / "config.yaml"
    OmegaConf.save(cfg, cfg_path, resolve=True)
    csv_path = write_metrics_csv(result.history, out_dir / "metrics.csv")
    model_path = out_dir / "model.npz"
    np.savez(model_path, **result.model.state_dict())  # the final weights
    files = [cfg_path, csv_path, model_path]
    if result.history:
        files.append(plot_learning_curves(result.history, out_dir / "learning_curves.png"))
    return files
