"""The tracking store's view of a study: which run counts, which are alive, how runs close.

Every rule about recorded runs lives here:

- the names of the tags this project writes (:class:`Tag`), the values of its ``status``
  tag (:class:`Outcome`) and MLflow's run statuses (:class:`RunStatus`);
- which of several runs of one configuration counts (:func:`latest_by_config`): a
  FINISHED run over a RUNNING one over any other, then the latest started;
- whether a RUNNING run is still alive (:meth:`Ledger.is_alive`): on this host, its
  ``pid`` names a live process that started before the run did; elsewhere it cannot be
  told from here and the run is taken as alive;
- how a run is closed (:meth:`Ledger.close`, :meth:`Ledger.mark_killed`), and how runs left
  RUNNING by a dead process are found and closed (:meth:`Ledger.settle`);
- every query reads all pages (:meth:`Ledger.runs`).

A run is started by :meth:`Ledger.start` (the one place that creates runs) and judged
alive by :meth:`Ledger.is_alive`: cooperating launchers that claim a configuration before
training it (a RUNNING run with its config hash) and keep it alive with a heartbeat extend
those two methods.
"""

from __future__ import annotations

import logging
import os
import socket
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # mlflow is imported only where a store is opened
    from .tracking import Tracker

log = logging.getLogger(__name__)

__all__ = ["Tag", "Outcome", "RunStatus", "Ledger", "latest_by_config", "outcome_of",
           "process_alive", "process_start_time"]


class Tag(StrEnum):
    """Tags this project writes on runs (``str`` values, usable as keys and in filters)."""

    STATUS = "status"  # an Outcome
    CONFIG_HASH = "config_hash"  # TrainConfig.config_hash(): a run's identity
    GRID = "grid"  # the study grids a run belongs to, comma-separated
    ERROR = "error"  # traceback or reason of a failed or killed run
    HOST = "host"
    PID = "pid"
    NODE = "node"
    OVERRIDES = "overrides"
    GIT_COMMIT = "git_commit"
    BLAS_THREADS = "blas_threads"
    CHECKPOINT_EPOCH = "checkpoint_epoch"  # the last epoch saved as checkpoint/checkpoint.npz
    RESUMED_FROM = "resumed_from"
    RESUMED_EPOCH = "resumed_epoch"
    RESTORED_FROM = "restored_from"  # a run recreated from a report's evidence files
    SWEEP = "sweep"  # SWEEP_PARENT on a sweep's parent run
    SWEEP_PARENT_ID = "sweep_parent"  # on a job: its sweep's parent run ("" if none)
    SWEEP_DIR = "sweep_dir"
    PLANNED = "planned"
    GRIDS = "grids"
    PARENT = "mlflow.parentRunId"  # MLflow's own parent/child link
    RUN_NAME = "mlflow.runName"


#: the value of :attr:`Tag.SWEEP` on a sweep's parent run
SWEEP_PARENT = "parent"


class Outcome(StrEnum):
    """The ``status`` tag: what came of a run (finer than MLflow's status)."""

    RUNNING = "running"
    FINISHED = "finished"
    DIVERGED = "diverged"  # a result: FINISHED in MLflow, with its completed epochs
    FAILED = "failed"
    KILLED = "killed"


class RunStatus(StrEnum):
    """MLflow's run statuses that this project writes and reads."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


#: outcomes that are results (a diverged run is one: its completed epochs are kept)
RESULTS = (Outcome.FINISHED.value, Outcome.DIVERGED.value)
#: the MLflow status a run is closed with, by outcome
CLOSED_AS = {Outcome.FINISHED: RunStatus.FINISHED, Outcome.DIVERGED: RunStatus.FINISHED,
             Outcome.FAILED: RunStatus.FAILED, Outcome.KILLED: RunStatus.KILLED}
ERROR_CHARS = 5000  # the tail of a traceback kept in the error tag


def outcome_of(run) -> str:
    """The run's outcome: ``running`` while MLflow says RUNNING, else its ``status`` tag
    (MLflow's status in lower case for a run without one)."""
    if run.info.status == RunStatus.RUNNING:
        return Outcome.RUNNING.value
    return run.data.tags.get(Tag.STATUS, run.info.status.lower())


def _rank(run) -> tuple:
    order = {RunStatus.FINISHED: 2, RunStatus.RUNNING: 1}
    return order.get(run.info.status, 0), run.info.start_time or 0


def latest_by_config(runs: Iterable) -> dict[str, Any]:
    """config hash -> the run that counts for that configuration: a FINISHED run (finished
    or diverged) over a RUNNING one over a failed or killed one, then the latest started.
    Sweep parent runs and runs without a config hash are left out."""
    out: dict[str, Any] = {}
    for r in runs:
        h = r.data.tags.get(Tag.CONFIG_HASH)
        if not h or r.data.tags.get(Tag.SWEEP) == SWEEP_PARENT:
            continue
        if h not in out or _rank(r) > _rank(out[h]):
            out[h] = r
    return out


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from field 22 of
    ``/proc/<pid>/stat`` (clock ticks after boot) and the boot time; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    # field 2 (comm) may hold spaces and parentheses: count fields after its last ")"
    fields = stat[stat.rindex(")") + 2:].split()
    return btime + int(fields[22 - 3]) / os.sysconf("SC_CLK_TCK")


# slack for the boot time's whole seconds and clock ticks
_START_SLACK_S = 2.0


def process_alive(run) -> bool:
    """Whether the process that started a RUNNING run may still be running it: False only
    when, on this host, its ``pid`` names no process, or one started after the run did
    (the pid was reused). Another host's run cannot be checked from here: True."""
    tags = run.data.tags
    pid = tags.get(Tag.PID, "")
    if tags.get(Tag.HOST) != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a live process of another user
    started = process_start_time(int(pid))
    if started is None:
        return True
    return started <= (run.info.start_time or 0) / 1000 + _START_SLACK_S


class Ledger:
    """One experiment of a tracking store, as a sweep or a run sees it."""

    def __init__(self, tracker: Tracker, experiment: str):
        self.tracker = tracker
        self.experiment = experiment
        self.experiment_id = tracker.experiment_id(experiment)

    # reading ------------------------------------------------------------------------------
    def runs(self, *, config_hash: str | None = None, parent: str | None = None,
             newest_first: bool = False) -> list:
        """Runs of the experiment (all pages), optionally of one configuration and/or
        children of one parent run."""
        filters = []
        if config_hash is not None:
            filters.append(f"tags.{Tag.CONFIG_HASH} = '{config_hash}'")
        if parent is not None:
            filters.append(f"tags.`{Tag.PARENT}` = '{parent}'")
        order = ["attributes.start_time DESC"] if newest_first else None
        return list(self.tracker.search([self.experiment_id], " and ".join(filters), order))

    def latest_by_config(self, *, parent: str | None = None) -> dict[str, Any]:
        """:func:`latest_by_config` over the experiment's (or one sweep's) settled runs."""
        return latest_by_config(self.settle(self.runs(parent=parent)))

    def is_alive(self, run) -> bool:
        """Whether a RUNNING run may still be running: see :func:`process_alive`."""
        return process_alive(run)

    # writing ------------------------------------------------------------------------------
    def start(self, name: str, tags: Mapping[str, Any], parent: str | None = None) -> str:
        """Create a RUNNING run with ``tags``; returns its id."""
        return self.tracker.start_run(self.experiment_id, name, tags, parent_run_id=parent)

    def close(self, run_id: str, outcome: Outcome | str, error: str | None = None) -> None:
        """Tag the run's outcome (and error) and end it with the matching MLflow status."""
        outcome = Outcome(outcome)
        tags: dict[str, Any] = {Tag.STATUS: outcome}
        if error is not None:
            tags[Tag.ERROR] = error[-ERROR_CHARS:]
        self.tracker.set_tags(run_id, tags)
        self.tracker.end_run(run_id, CLOSED_AS[outcome])

    def mark_killed(self, run_id: str, why: str) -> None:
        """Close a run that will not finish (its process or worker died, or the sweep was
        interrupted) as KILLED, saying why."""
        self.close(run_id, Outcome.KILLED, why)

    def settle(self, runs: Iterable) -> list:
        """``runs``, with those left RUNNING by a dead process marked KILLED (and re-read)."""
        out = []
        for r in runs:
            if r.info.status == RunStatus.RUNNING and not self.is_alive(r):
                self.mark_killed(r.info.run_id, "its process died (found by a later run)")
                log.warning("Run %s (%s) was left RUNNING by a dead process: marked KILLED",
                            r.info.run_id, r.info.run_name)
                r = self.tracker.client.get_run(r.info.run_id)
            out.append(r)
        return out
