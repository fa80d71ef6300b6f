"""The Ray launcher's work: connect (failing fast), run each job as a Ray task, collect.

Kept apart from ray_launcher.py so that Hydra's plugin scan never imports Ray.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (JobReturn, configure_log, filter_overrides, run_job,
                              setup_globals)
from omegaconf import OmegaConf, open_dict

from mlp_sweeps.errors import UserError, WorkerLost

log = logging.getLogger(__name__)

# what a job's process needs from the launching one that a Ray worker on another machine
# does not inherit: the tracking server and its credentials (MLFLOW_TRACKING_URI, ...)
_FORWARDED_ENV_PREFIXES = ("MLFLOW_",)


class RayJobsLost(WorkerLost):
    """Ray tasks of the batch lost with their worker or node (its RayError as the cause);
    the batch's other jobs have returned. The mlp sweeper launches them again."""


class RayUnavailable(UserError):
    """The Ray cluster cannot be reached or used; nothing was run or recorded."""

    before_anything = True


def _host_port(address: str) -> Tuple[str, int]:
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"hydra.launcher.address={address!r} is not HOST:PORT "
                             f"(e.g. 10.0.0.5:6379, or ray://10.0.0.5:10001)")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float) -> None:
    """Raise :class:`RayUnavailable` within about ``timeout`` seconds (twice that at most)
    unless a Ray head answers at ``address``. ``ray.init`` itself retries for minutes on a
    closed port, and forever on a port that is open but is not a Ray GCS."""
    host, port = _host_port(address)
    hint = (f"start the head (`ray start --head --port={port}`, docs/scaling.md), fix "
            f"hydra.launcher.address, or use hydra/launcher=mlp_joblib (this machine).")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise RayUnavailable(f"Ray cluster at {address} is not reachable "
                             f"({e.strerror or e}); {hint}") from None
    if address.startswith("ray://"):
        return  # Ray Client: a different protocol, checked by ray.init itself
    # Is it a Ray head of our Ray version? A separate process, so that a silent port
    # cannot hang this one.
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "health-check", "--address", address]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        raise RayUnavailable(f"{address} accepts connections but no Ray head answered in "
                             f"{timeout + 10:g} s (is it the GCS port of `ray start --head`, "
                             f"not the dashboard's?); {hint}") from None
    if r.returncode != 0:  # a Ray head, but: another Ray version, a missing token, ...
        lines = [ln for ln in (r.stderr + r.stdout).strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {r.returncode}"
        raise RayUnavailable(f"Ray cluster at {address} cannot be used: {why}\n(docs/scaling.md.)")


def connect(launcher) -> None:
    """``ray.init`` with the launcher's address (idempotent), failing fast."""
    import ray

    if ray.is_initialized():
        return
    address = launcher.address or os.environ.get("RAY_ADDRESS") or None
    t0 = time.perf_counter()
    if address not in (None, "auto", "local"):
        check_reachable(address, launcher.connect_timeout_s)
    kwargs = dict(launcher.init)
    kwargs.setdefault("log_to_driver", True)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
        raise RayUnavailable(f"Ray cluster at {address or 'local'} cannot be used: "
                             f"{type(e).__name__}: {e}") from None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [n.get("Resources", {}).get("CPU", 0) for n in nodes]
    log.info("Ray cluster %s: %d node(s), %g CPUs; %g CPU(s) per job (connected in %.1f s)",
             address or "local", len(nodes), sum(cpus), launcher.num_cpus_per_job,
             time.perf_counter() - t0)
    if not cpus or max(cpus) < launcher.num_cpus_per_job:
        log.warning("No node of the cluster has %g CPUs: the jobs wait until one joins "
                    "(hydra.launcher.num_cpus_per_job)", launcher.num_cpus_per_job)
    uri = (OmegaConf.select(launcher.config, "tracking.uri", default=None) if launcher.config
           else None) or os.environ.get("MLFLOW_TRACKING_URI") or ""
    enabled = launcher.config is None or OmegaConf.select(launcher.config, "tracking.enabled",
                                                          default=True)
    if enabled and len({n.get("NodeManagerAddress") for n in nodes}) > 1 \
            and not uri.startswith(("http://", "https://", "postgresql", "mysql")):
        log.warning("The cluster has several machines but tracking.uri is %s: each machine "
                    "would record into its own local store. Use a tracking server "
                    "(tracking.uri=http://HOST:PORT, docs/scaling.md).",
                    uri or "the project's local SQLite store")


def _execute(shared: Tuple[Any, Any, Dict[Any, Any], Dict[str, str]], sweep_config) -> JobReturn:
    """One job, inside its Ray task (in a Ray worker process, on any node)."""
    hydra_context, task_function, singleton_state, env = shared
    os.environ.update(env)
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, task_function=task_function,
                   config=sweep_config, job_dir_key="hydra.sweep.dir",
                   job_subdir_key="hydra.sweep.subdir")


def launch(launcher, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> Sequence[JobReturn]:
    import ray

    setup_globals()
    assert launcher.config is not None and launcher.hydra_context is not None
    assert launcher.task_function is not None
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    connect(launcher)

    options = {"num_cpus": launcher.num_cpus_per_job, **launcher.remote}
    task = ray.remote(**options)(_execute)
    env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_ENV_PREFIXES)}
    shared = ray.put((launcher.hydra_context, launcher.task_function, Singleton.get_state(),
                      env))
    log.info("Ray launcher: %d jobs, %s per job; sweep output dir: %s", len(job_overrides),
             ", ".join(f"{k}={v}" for k, v in options.items()), sweep_dir)

    refs: List[Any] = []
    resolved = set()  # refs whose result (or loss) this driver has already seen
    try:
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = launcher.hydra_context.config_loader.load_sweep_config(
                config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                sweep_config.hydra.job.num = idx
            refs.append(task.options(name=f"job {idx}").remote(shared, sweep_config))
        returns: List[JobReturn] = []
        lost: List[BaseException] = []
        for overrides, ref in zip(job_overrides, refs):
            try:
                returns.append(ray.get(ref))
            except ray.exceptions.RayError as e:  # its worker or node died, not its code
                log.error("Job %s: its Ray task was lost: %s", " ".join(overrides),
                          str(e).splitlines()[0] if str(e) else type(e).__name__)
                lost.append(e)
            resolved.add(ref)
    except BaseException:
        # interrupted (Ctrl-C) or broken: stop the jobs still queued or running on the
        # cluster, so that none goes on recording after the sweep has given up
        _cancel_unfinished(ray, [ref for ref in refs if ref not in resolved])
        raise
    if lost:
        # every job has ended (nothing to cancel); the lost jobs' runs are left RUNNING:
        # the sweeper marks them KILLED and launches them again (its worker-loss recovery)
        raise RayJobsLost(f"{len(lost)} Ray task(s) lost: {lost[0]}") from lost[0]
    return returns


def _cancel_unfinished(ray: Any, refs: List[Any]) -> None:
    """Cancel the tasks that have not ended. Never a task whose result has arrived: Ray's
    ``cancel(force=True)`` races with the reply of a task that has just finished, and the
    driver then aborts on a failed internal check ("Tried to complete task that was not
    pending"; the same race as ray-project/ray#54846, still in Ray 2.60's reply path).
    A lost job's sweep cancelled every task after they had all ended and hit it."""
    if not refs:
        return
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
    for ref in pending:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # ended meanwhile
            pass
