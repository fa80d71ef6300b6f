"""The SLURM launcher's work: check the request, submit the job array, follow it with
``squeue``, and turn the jobs SLURM ended into losses the mlp sweeper records.

Kept apart from slurm_launcher.py so that Hydra's plugin scan never imports submitit.

Without accounting (``AccountingStorageType=accounting_storage/none``, common on small
clusters) ``sacct`` fails, and submitit, which reads job states from it, sees no job end
except by its result file: a job cancelled or killed at its time limit never writes one,
so the sweep waited forever (printing "Bypassing sacct error" every minute or so). Here the
states come from ``squeue --states=all``: slurmctld's own view, which keeps an ended job
with its final state for ``MinJobAge`` (300 s by default) after its end.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import OmegaConf
from submitit.core.utils import UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJobEnvironment

from mlp_sweeps.errors import UserError, WorkerLost

log = logging.getLogger(__name__)

# How a job can end without returning: SLURM's job state -> what happened, for the run's
# ``error`` tag and the sweep's summary (squeue's %T names; GONE is ours)
ENDED = {
    "CANCELLED": "cancelled (scancel)",
    "TIMEOUT": "killed at its time limit",
    "OUT_OF_MEMORY": "killed for using more memory than it asked for",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "PREEMPTED": "preempted",
    "DEADLINE": "past its deadline",
    "FAILED": "its process died before returning",
    "COMPLETED": "its process exited without returning",
    "GONE": "left SLURM's queue before its end was seen (squeue keeps ended jobs for "
            "MinJobAge seconds)",
}


class SlurmUnavailable(UserError):
    """SLURM cannot be reached or refuses the sweep's jobs; nothing was run or recorded."""


class SlurmJobsLost(WorkerLost):
    """Jobs that SLURM ended before they returned; the batch's other jobs have returned.

    ``why``: the job's position in the batch -> SLURM's state and reason. The mlp sweeper
    closes their runs as KILLED with that reason, and does not launch them again in this
    sweep (``relaunch = False``): ``scancel`` and time limits are decisions, and SLURM
    requeues jobs of a failed node itself. Rerunning the sweep resumes them.
    """

    relaunch = False

    def __init__(self, why: Dict[int, str]):
        super().__init__("; ".join(why.values()), why)


# ---------------------------------------------------------------------------------------
# job states from squeue
# ---------------------------------------------------------------------------------------
class SqueueWatcher(SlurmInfoWatcher):
    """Job states from ``squeue`` instead of submitit's ``sacct`` (which needs accounting).

    Polled at 0, 2, 4, 8 ... s after the last submission, then every ``delay_s`` at most
    (submitit's schedule). A job squeue no longer knows has ended: state GONE."""

    FIELDS = ("JobID", "State", "Reason", "Elapsed", "TimeLimit", "NodeList")
    FORMAT = "%i|%T|%r|%M|%l|%N"

    def __init__(self, delay_s: float, timeout_s: float):
        super().__init__(delay_s=delay_s)
        self.timeout_s = timeout_s
        self._last_error = ""

    def _make_command(self) -> Optional[List[str]]:
        to_check = sorted({x.split("_")[0] for x in self._registered - self._finished})
        if not to_check:
            return None
        return ["squeue", "--noheader", "--array", "--states=all",
                f"--jobs={','.join(to_check)}", f"--format={self.FORMAT}"]

    def read_info(self, string) -> Dict[str, Dict[str, str]]:
        if not isinstance(string, str):
            string = string.decode()
        info = {}
        for line in string.splitlines():
            fields = dict(zip(self.FIELDS, line.strip().split("|")))
            if fields.get("JobID"):
                info[fields["JobID"]] = fields
        return info

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        try:
            r = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s)
            error = "" if r.returncode == 0 else (r.stderr.strip() or f"exit {r.returncode}")
        except (OSError, subprocess.TimeoutExpired) as e:
            r, error = None, str(e)
        if "Invalid job id" in error:  # every job asked for has left the queue
            error, out = "", ""
        else:
            out = r.stdout if r is not None else ""
        if error:
            if error != self._last_error:  # said once per distinct error, not every poll
                log.warning("squeue failed (%s); job states may be late", error)
            self._last_error = error
        else:
            self._last_error = ""
            info = self.read_info(out)
            self._info_dict.update(info)
            for job_id in self._registered - self._finished:
                if job_id not in info:
                    self._info_dict[job_id] = {"JobID": job_id, "State": "GONE"}
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def why(self, job_id: str) -> str:
        """What SLURM says of an ended job: state, reason, time used of its limit, node."""
        info = self._info_dict.get(job_id, {})
        state = info.get("State") or "UNKNOWN"
        what = ENDED.get(state, "ended without returning")
        details = [f"{k} {info[f]}" for k, f in (("reason", "Reason"), ("ran", "Elapsed"),
                                                 ("time limit", "TimeLimit"),
                                                 ("node", "NodeList"))
                   if info.get(f) and info[f] not in ("None", "(None)")]
        return (f"SLURM job {job_id} {state}: {what}"
                + (f" ({', '.join(details)})" if details else ""))


# ---------------------------------------------------------------------------------------
# launching side
# ---------------------------------------------------------------------------------------
def _executor(launcher):
    """submitit's executor with the launcher's parameters, built as
    hydra-submitit-launcher's ``launch`` builds it."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = dict(launcher.params)
    params["signal_delay_s"] = signal_delay_s(params)
    init_keys = {"submitit_folder", "max_num_timeout"}
    executor = submitit.AutoExecutor(cluster="slurm", folder=params["submitit_folder"],
                                     slurm_max_num_timeout=params.get("max_num_timeout", 0))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v
                                  for k, v in params.items() if k not in init_keys})
    return executor


def signal_delay_s(params) -> int:
    """How long before the time limit SLURM sends the job submitit's warning signal (USR2):
    ``signal_delay_s`` (default 120), at most half the limit. At a limit no longer than the
    delay, SLURM signals the job as soon as it starts, before the job has set a handler, and
    the signal's default action kills it (a 1-minute limit: jobs dead after 1 s, "User
    defined signal 2", the run never started)."""
    delay = int(params.get("signal_delay_s") or 120)
    limit_s = 60 * int(params.get("timeout_min") or 0)
    return min(delay, limit_s // 2) if limit_s else delay


def _request(launcher) -> str:
    p = launcher.params
    parts = [f"partition {p.get('partition') or '(default)'}",
             f"{p.get('cpus_per_task') or 1} CPU(s)",
             f"{p['mem_gb']} GB" if p.get("mem_gb") else "",
             f"time limit {p.get('timeout_min')} min"]
    return ", ".join(x for x in parts if x)


def _partitions(timeout: float) -> str:
    """``Partitions here: cpu* (4 nodes, 32 CPUs, 128000 MB per node).`` from sinfo."""
    try:
        r = subprocess.run(["sinfo", "--noheader", "--format=%P|%D|%c|%m"],
                           capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    rows = [ln.split("|") for ln in r.stdout.splitlines() if ln.count("|") == 3]
    if r.returncode != 0 or not rows:
        return ""
    return "Partitions here: " + ", ".join(
        f"{p} ({n} node{'s' if n != '1' else ''}, {c} CPUs, {m} MB per node)"
        for p, n, c, m in rows) + ". "


def check_request(launcher) -> None:
    """Raise :class:`SlurmUnavailable` with SLURM's message unless ``sbatch --test-only``
    accepts a job with the sweep's options (partition, CPUs, memory, time limit, ...)."""
    executor = _executor(launcher)
    script = executor._executor._make_submission_file_text("true", "test-only")
    hint = "Nothing was run or recorded (docs/scaling.md: SLURM)."
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="mlp-sweeps-") as f:
        f.write(script)
        f.flush()
        try:
            r = subprocess.run(["sbatch", "--test-only", f.name], capture_output=True,
                               text=True, timeout=launcher.command_timeout_s)
        except FileNotFoundError:
            raise SlurmUnavailable(f"sbatch is not installed here: hydra/launcher=slurm runs "
                                   f"where SLURM's commands work (a login node). {hint}") \
                from None
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"SLURM's controller did not answer `sbatch --test-only` "
                                   f"in {launcher.command_timeout_s:g} s. {hint}") from None
    said = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
    if r.returncode != 0:
        raise SlurmUnavailable(f"SLURM refuses the sweep's jobs ({_request(launcher)}): "
                               f"{'; '.join(said) or f'sbatch exit status {r.returncode}'}. "
                               f"{_partitions(launcher.command_timeout_s)}{hint}")
    log.info("SLURM accepts the jobs (%s): %s", _request(launcher), said[-1] if said else "")


def launch(launcher, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> Sequence[JobReturn]:
    """Submit the jobs as one array, wait for all of them, return their results; raise
    :class:`SlurmJobsLost` after that if SLURM ended some before they returned."""
    config = launcher.config
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    executor = _executor(launcher)
    job_params: List[Any] = []
    lines = []
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        lines.append(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                           Singleton.get_state()))
    jobs = executor.map_array(launcher, *zip(*job_params))
    watcher = SqueueWatcher(delay_s=launcher.poll_s, timeout_s=launcher.command_timeout_s)
    for job in jobs:
        job.watcher = watcher  # instead of submitit's shared sacct watcher
        watcher.register_job(job.job_id)
    array = jobs[0].job_id.split("_")[0]
    log.info("SLURM launcher: %d job(s) as SLURM %s %s (%s each); job states from squeue, "
             "every %g s at most; sweep output dir: %s", len(jobs),
             "job array" if len(jobs) > 1 else "job", array, _request(launcher),
             launcher.poll_s, sweep_dir)
    for line in lines:
        log.info(line)
    try:
        returns: List[JobReturn] = []
        why: Dict[int, str] = {}
        for i, job in enumerate(jobs):
            job.wait()
            state = watcher.get_state(job.job_id, mode="cache")
            if state in ENDED and state != "COMPLETED":
                job._results_timeout_s = 2  # SLURM ended it: no result file is coming
            try:
                returns.append(job.results()[0])
            except UncompletedJobError:
                why[i] = watcher.why(job.job_id)
                log.error("Job #%d (%s): %s", initial_job_idx + i,
                          " ".join(filter_overrides(job_overrides[i])), why[i])
        if why:
            raise SlurmJobsLost(why)
        return returns
    except BaseException as e:
        if not isinstance(e, SlurmJobsLost):
            # interrupted (Ctrl-C) or broken: no job goes on recording after the sweep
            # has given up
            subprocess.run(["scancel", array], capture_output=True,
                           timeout=launcher.command_timeout_s)
        raise


# ---------------------------------------------------------------------------------------
# job side
# ---------------------------------------------------------------------------------------
def _near_time_limit(signum, frame) -> None:
    log.warning("SLURM: the job's time limit is near (signal %s); at the limit the run "
                "ends KILLED, and rerunning the sweep resumes it from its last checkpoint",
                signal.Signals(signum).name)


def in_job() -> None:
    """In the SLURM job, before the run: submitit's handler of the time-limit signal
    would requeue the job (or, with ``max_num_timeout: 0``, raise inside the training and
    record the run as FAILED minutes before the limit). Resuming is the sweep's job here."""
    signal.signal(SlurmJobEnvironment._usr_sig(), _near_time_limit)
