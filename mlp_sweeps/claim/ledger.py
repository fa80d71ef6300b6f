"""The tracking store's view of a study: which run counts, which are alive, how runs close.

Every rule about recorded runs lives here:

- the names of the tags this project writes (:class:`Tag`), the values of its ``status``
  tag (:class:`Outcome`) and MLflow's run statuses (:class:`RunStatus`);
- which of several runs of one configuration counts (:func:`latest_by_config`): a
  FINISHED run over a RUNNING one over any other, then the latest started;
- whether a RUNNING run is still alive (:meth:`Ledger.is_alive`): on the host that ran it,
  its process must still exist (:mod:`mlp_sweeps.claim.liveness`: known at once, pid reuse
  included); on any host, its ``heartbeat`` tag, refreshed every few seconds by a
  :class:`Heartbeat` thread of the process running it, must be younger than the ledger's
  timeout;
- which of several launchers trains a configuration (:meth:`Ledger.claim`);
- how a run is closed (:meth:`Ledger.close`, :meth:`Ledger.mark_killed`), and how runs left
  RUNNING by a dead process are found and closed (:meth:`Ledger.settle`);
- every query reads all pages (:meth:`Ledger.runs`).

A run is started by :meth:`Ledger.start` (the one place that creates runs), or by
:meth:`Ledger.claim` for a sweep's job, and judged alive by :meth:`Ledger.is_alive`.

Liveness compares the writer's clock (the heartbeat) with the reader's: hosts sharing a
store need clocks in sync to well within the timeout (NTP does it); every process of one
study should use the same ``tracking.heartbeat_timeout_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from enum import Enum
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from mlp_sweeps.claim import liveness
from mlp_sweeps.record import snapshot
from mlp_sweeps.record.store import PARENT_TAG

if TYPE_CHECKING:  # mlflow is imported only where a store is opened
    from mlp_sweeps.record.tracking import Tracker

log = logging.getLogger(__name__)

__all__ = ["Tag", "Outcome", "RunStatus", "Ledger", "Heartbeat", "latest_by_config", "alive",
           "outcome_of", "CLAIMED"]


class StrEnum(str, Enum):
    """``enum.StrEnum`` (Python 3.11+) for Python 3.10 too: members are their values as
    text (``str()``, f-strings, comparisons, dictionary keys)."""

    __str__ = str.__str__
    __format__ = str.__format__


class Tag(StrEnum):
    """Tags this project writes on runs (``str`` values, usable as keys and in filters)."""

    STATUS = "status"  # an Outcome
    CONFIG_HASH = "config_hash"  # TrainConfig.config_hash(): a run's identity
    GRID = "grid"  # the study grids a run belongs to, comma-separated
    ERROR = "error"  # traceback or reason of a failed or killed run
    HOST = liveness.HOST  # where the run's process lives: liveness.here()
    BOOT_ID = liveness.BOOT_ID
    PID_NS = liveness.PID_NS
    PID = liveness.PID
    PID_START = liveness.PID_START
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
    PARENT = PARENT_TAG  # MLflow's own parent/child link
    RUN_NAME = "mlflow.runName"
    READ_AT = "read_at"  # on a sweep's parent: when (ms) its resume read the store
    HEARTBEAT = "heartbeat"  # seconds since the epoch, refreshed while the run is alive
    CLAIM = "claim"  # a sweep job's claim on its configuration: Claim
    RUNG = "rung"  # successive halving: the rung a run trains to, or has reached (0, 1, ...)
    # successive halving: the ranked metrics at each epoch the run paused or ended at,
    # JSON {epoch: {metric: value}}
    RUNG_METRICS = "rung_metrics"
    REOPENED = "reopened"  # how many times a paused run was continued (promoted)
    PROMOTES = "promotes"  # on a claim to continue a paused run: that run's id


class Claim(StrEnum):
    """The ``claim`` tag of a sweep job's run."""

    PENDING = "pending"  # created, not yet known to be the one that trains
    WON = "won"  # this run trains the configuration


#: the ``status`` a job returns when another live run had claimed its configuration
CLAIMED = "claimed"
#: default seconds without a heartbeat after which a RUNNING run is dead
HEARTBEAT_TIMEOUT_S = 60.0
#: runs one search request may return (MLflow's limit)
SNAPSHOT_MAX = 50000
#: heartbeats per timeout (one every 10 s with the default timeout)
BEATS_PER_TIMEOUT = 6


#: the value of :attr:`Tag.SWEEP` on a sweep's parent run
SWEEP_PARENT = "parent"


class Outcome(StrEnum):
    """The ``status`` tag: what came of a run (finer than MLflow's status)."""

    RUNNING = "running"
    FINISHED = "finished"
    DIVERGED = "diverged"  # a result: FINISHED in MLflow, with its completed epochs
    FAILED = "failed"
    KILLED = "killed"
    # successive halving: trained to a rung and checkpointed, to be promoted or not (MLflow
    # KILLED: not a result, resumable from its checkpoint by any later sweep or run)
    PAUSED = "paused"
    STOPPED = "stopped"  # paused, and not promoted by the time its sweep ended


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
             Outcome.FAILED: RunStatus.FAILED, Outcome.KILLED: RunStatus.KILLED,
             Outcome.PAUSED: RunStatus.KILLED, Outcome.STOPPED: RunStatus.KILLED}
#: outcomes of a run that trained to a rung and may be continued
HALTED = (Outcome.PAUSED.value, Outcome.STOPPED.value)
#: outcomes of a run that is over (not running), and of those that came to nothing
ENDED = tuple(o.value for o in Outcome if o is not Outcome.RUNNING)
LOST = (Outcome.FAILED.value, Outcome.KILLED.value)
ERROR_CHARS = 5000  # the tail of a traceback kept in the error tag


def outcome_of(run) -> str:
    """The run's outcome: ``running`` while MLflow says RUNNING, else its ``status`` tag
    (MLflow's status in lower case for a run without one)."""
    if run.info.status == RunStatus.RUNNING:
        return Outcome.RUNNING.value
    return run.data.tags.get(Tag.STATUS, run.info.status.lower())


def _rank(run) -> tuple:
    order = {RunStatus.FINISHED: 2, RunStatus.RUNNING: 1}
    if run.info.status != RunStatus.RUNNING and run.data.tags.get(Tag.CLAIM) == Claim.PENDING:
        return -1, run.info.start_time or 0  # a claim that died undecided trained nothing
    return order.get(run.info.status, 0), run.info.start_time or 0


def latest_by_config(runs: Iterable) -> dict[str, Any]:
    """config hash -> the run that counts for that configuration: a FINISHED run (finished
    or diverged) over a RUNNING one over a failed or killed one (over a claim that died
    undecided, which trained nothing), then the latest started.
    Sweep parent runs and runs without a config hash are left out."""
    out: dict[str, Any] = {}
    for r in runs:
        h = r.data.tags.get(Tag.CONFIG_HASH)
        if not h or r.data.tags.get(Tag.SWEEP) == SWEEP_PARENT or Tag.PROMOTES in r.data.tags:
            continue  # (a claim to continue a paused run is not a run of it)
        if h not in out or _rank(r) > _rank(out[h]):
            out[h] = r
    return out


def heartbeat_age(run, now: float | None = None) -> float:
    """Seconds since the run's last heartbeat (since its start if it has none)."""
    now = time.time() if now is None else now
    beat = run.data.tags.get(Tag.HEARTBEAT, "")
    try:
        last = float(beat)
    except ValueError:
        last = (run.info.start_time or 0) / 1000
    return now - last


def alive(run, heartbeat_timeout_s: float, now: float | None = None) -> bool:
    """Whether a RUNNING run is still running: its process is not known to be gone
    (:func:`mlp_sweeps.claim.liveness.verdict`, on its own host) and its heartbeat is younger than
    the timeout (on any host; a run without one, since its start)."""
    return liveness.verdict(run.data.tags) is not False \
        and heartbeat_age(run, now) <= heartbeat_timeout_s


def why_dead(run, heartbeat_timeout_s: float, now: float | None = None) -> str:
    """Why :func:`alive` found a RUNNING run dead, in words for its ``error`` tag."""
    tags = run.data.tags
    host = tags.get(Tag.HOST, "?")
    if liveness.verdict(tags) is False:
        return (f"its process (pid {tags.get(Tag.PID, '?')} on host {host}) is gone "
                f"(found by a later run on the same host)")
    return (f"no heartbeat for {heartbeat_age(run, now):.0f} s (timeout "
            f"{heartbeat_timeout_s:g} s): its process died on host {host} (found by a "
            f"later run)")


def _order(run) -> tuple:
    """Claims are ordered by start time, then run id (the same on every store)."""
    return run.info.start_time or 0, run.info.run_id


class Ledger:
    """One experiment of a tracking store, as a sweep or a run sees it."""

    def __init__(self, tracker: Tracker, experiment: str,
                 heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S):
        if not heartbeat_timeout_s or heartbeat_timeout_s <= 0:
            from mlp_sweeps.errors import UserError

            raise UserError(f"tracking.heartbeat_timeout_s={heartbeat_timeout_s!r} must be a "
                            f"number of seconds > 0 (default {HEARTBEAT_TIMEOUT_S:g})")
        self.tracker = tracker
        self.experiment = experiment
        tracker.experiment_id(experiment)  # created (or restored) now
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)

    @property
    def experiment_id(self) -> str:
        return self.tracker.experiment_id(self.experiment)  # looked up once per tracker

    # reading ------------------------------------------------------------------------------
    def runs(self, *, config_hash: str | None = None, parent: str | None = None,
             newest_first: bool = False) -> list:
        """Runs of the experiment, optionally of one configuration and/or children of one
        parent run: one read (:func:`mlp_sweeps.record.snapshot.read`: a SQLite store read
        directly in one transaction, any other store through MLflow, all pages)."""
        tags = {}
        if config_hash is not None:
            tags[Tag.CONFIG_HASH.value] = config_hash
        if parent is not None:
            tags[Tag.PARENT.value] = parent
        runs = snapshot.read(self.tracker.uri, [self.experiment], tags) or []
        return runs[::-1] if newest_first else runs

    def claims_of(self, config_hash: str) -> list:
        """Every run of one configuration in one request: one consistent snapshot (paging
        by offset could skip a run while claims are created and deleted)."""
        page = self.tracker.client.search_runs(
            [self.experiment_id], filter_string=f"tags.{Tag.CONFIG_HASH} = '{config_hash}'",
            max_results=SNAPSHOT_MAX)
        if page.token:  # more runs of one configuration than a request returns: paged
            return self.runs(config_hash=config_hash)
        return list(page)

    def latest_by_config(self, *, parent: str | None = None) -> dict[str, Any]:
        """:func:`latest_by_config` over the experiment's (or one sweep's) settled runs:
        one paginated query, whatever the number of configurations."""
        return latest_by_config(self.settle(self.runs(parent=parent)))

    def is_alive(self, run) -> bool:
        """:func:`alive` with this ledger's timeout."""
        return alive(run, self.heartbeat_timeout_s)

    # writing ------------------------------------------------------------------------------
    def start(self, name: str, tags: Mapping[str, Any], parent: str | None = None) -> str:
        """Create a RUNNING run with ``tags`` and a first heartbeat; returns its id."""
        tags = {**tags, Tag.HEARTBEAT: f"{time.time():.3f}"}
        return self.tracker.start_run(self.experiment_id, name, tags, parent_run_id=parent)

    def beat(self, run_id: str) -> None:
        """Refresh the run's heartbeat."""
        self.tracker.set_tags(run_id, {Tag.HEARTBEAT: f"{time.time():.3f}"})

    def heartbeat(self, run_id: str) -> "Heartbeat":
        """A started :class:`Heartbeat` for the run, every timeout / BEATS_PER_TIMEOUT."""
        return Heartbeat(self, run_id, self.heartbeat_timeout_s / BEATS_PER_TIMEOUT).start()

    def close(self, run_id: str, outcome: Outcome | str, error: str | None = None,
              metrics: Iterable[tuple[Mapping[str, float], int]] = (),
              tags: Mapping[str, Any] | None = None) -> None:
        """Tag the run's outcome (and error, and ``tags``), with its last ``(metrics,
        step)`` records in the same request, and end it with the matching MLflow status."""
        outcome = Outcome(outcome)
        tags = {**(tags or {}), Tag.STATUS: outcome}
        if error is not None:
            tags[Tag.ERROR] = error[-ERROR_CHARS:]
        self.tracker.log_metric_steps(run_id, metrics, tags)
        self.tracker.end_run(run_id, CLOSED_AS[outcome])

    def mark_killed(self, run_id: str, why: str) -> None:
        """Close a run that will not finish (its process or worker died, or the sweep was
        interrupted) as KILLED, saying why."""
        self.close(run_id, Outcome.KILLED, why)

    def settle(self, runs: Iterable) -> list:
        """``runs``, with RUNNING ones whose heartbeat stopped marked KILLED (and re-read)."""
        out = []
        for r in runs:
            if r.info.status == RunStatus.RUNNING and not self.is_alive(r) \
                    and Tag.PROMOTES in r.data.tags:  # a dead claim: no trace left
                self.tracker.client.delete_run(r.info.run_id)
                continue
            if r.info.status == RunStatus.RUNNING and not self.is_alive(r):
                why = why_dead(r, self.heartbeat_timeout_s)
                self.mark_killed(r.info.run_id, why)
                log.warning("Run %s (%s) was left RUNNING by a dead process: marked KILLED "
                            "(%s)", r.info.run_id, r.info.run_name, why)
                r = self.tracker.client.get_run(r.info.run_id)
            out.append(r)
        return out

    # claims -------------------------------------------------------------------------------
    def claim(self, name: str, tags: Mapping[str, Any], parent: str | None = None,
              on_start=None, since: int | None = None,
              params: Mapping[str, Any] | None = None,
              halted_rivals: bool = False) -> tuple[str | None, Any]:
        """Claim the configuration ``tags[config_hash]`` for a sweep's job: ``(run id,
        None)`` if this process is to train it, into that run (RUNNING, ``claim=won``, with
        ``params`` logged in the same request); ``(None, the run that has it)`` if another
        live run claimed it first or one of this sweep's time finished it (this claim is
        then deleted, leaving no trace). ``since`` (ms): FINISHED runs started since are
        rivals (a sweep's jobs get it from the sweep; read from the parent run's
        ``read_at`` tag if not given).

        MLflow has no compare-and-swap; the store is only assumed linearizable (a write
        that returned is seen by every later read: SQLite, PostgreSQL, a tracking server on
        them). The protocol:

        1. create the claim run, RUNNING, ``claim=pending``, with a heartbeat
           (``on_start(run_id)`` then starts its heartbeat thread);
        2. read every run of the configuration (stale ones settled KILLED); the rivals are
           the live RUNNING runs and the FINISHED runs started since ``since`` (a sweep
           passes 0, every one, unless it reruns finished runs: then when it read the
           store; without ``since``, ``parent``'s ``read_at`` tag, else its start) (an
           older result was either skipped by the sweep or is being rerun on purpose);
        3. lose if a rival is FINISHED, has ``claim=won`` (or no claim tag: a plain run
           training it), or is an earlier claim (by start time, then run id); with
           ``halted_rivals`` (a successive halving job's first rung), a paused or stopped
           run of the configuration is a rival that wins too (its first rung is done);
        4. otherwise, if the only rivals are later pending claims, wait for them to decide
           (they lose to this one, or won without seeing it), then read again; with no
           rival left, set ``claim=won``.

        Two claims cannot both win. Say X is ordered before Y and both won. Y won, so its
        last read did not show X (an earlier live claim makes Y lose), so X's creation
        returned after that read, hence after Y's creation returned: every read of X sees
        Y, RUNNING and alive. X does not lose to Y only while Y is pending (rule 3) and
        waits then (rule 4) until Y has decided; Y decides ``won``, and X's next read makes
        it lose. The order of start times does not have to match the order of the writes
        (client clocks, a writer waiting for SQLite's lock): it only breaks ties. A claim
        waits only for later claims, so the latest pending one never waits: no deadlock;
        a claimer that dies while pending stops beating and is settled KILLED.
        """
        h = tags[Tag.CONFIG_HASH]
        if parent and since is None:  # a run started after the sweep's read was not skipped
            p = self.tracker.client.get_run(parent)
            since = int(float(p.data.tags.get(Tag.READ_AT, p.info.start_time)))
        mine = self.start(name, {**tags, Tag.CLAIM: Claim.PENDING}, parent)
        if on_start is not None:
            on_start(mine)
        while True:
            runs = self.settle(self.claims_of(h))
            me = next((r for r in runs if r.info.run_id == mine), None)
            if me is None:  # not read back yet: the store is not linearizable
                raise RuntimeError(f"claim {mine} was not found in the store right after its "
                                   f"creation: {self.tracker.uri} cannot arbitrate claims")
            rivals = [r for r in runs if r.info.run_id != mine and (
                r.info.status == RunStatus.RUNNING or (
                    r.info.status == RunStatus.FINISHED and since is not None
                    and (r.info.start_time or 0) >= since)
                or (halted_rivals and outcome_of(r) in HALTED))]
            winner = next((r for r in rivals if r.info.status != RunStatus.RUNNING
                           or r.data.tags.get(Tag.CLAIM, Claim.WON) == Claim.WON
                           or _order(r) < _order(me)), None)
            if winner is not None:
                self.tracker.client.delete_run(mine)
                return None, winner
            if not rivals:
                self.tracker.log_params(mine, params or {}, tags={Tag.CLAIM: Claim.WON})
                return mine, None
            time.sleep(0.2)  # later claims, still pending: they decide in one read


    def reopen(self, run_id: str, epoch: int, name: str, tags: Mapping[str, Any],
               on_start=None) -> Any:
        """Continue the paused (or killed) run ``run_id``, from its checkpoint at ``epoch``,
        in this process:
        the run, RUNNING again with ``tags`` (and ``on_start(run_id)`` called, e.g. to start
        its heartbeat), if this process won it; None if another process has it or it is no
        longer paused at ``epoch`` (promoted, or run on by another sweep, meanwhile).

        The arbitration is :meth:`claim`'s, on the run's configuration: a claim run is
        created and decided among the live runs of the configuration (a paused run is not
        live); the winner reads the run again (paused at ``epoch``?), marks it RUNNING with
        its own liveness tags, and only then deletes its claim, so that a rival always sees
        one of the two alive. A rival that read the run paused before, and claims after the
        deletion, wins the claim and finds the run no longer paused at ``epoch``."""
        run = self.tracker.client.get_run(run_id)
        h = run.data.tags.get(Tag.CONFIG_HASH)
        holder: list = []
        won, _ = self.claim(f"{name} (promotion)", {Tag.CONFIG_HASH: h, Tag.PROMOTES: run_id,
                                                     **liveness.here()},
                            on_start=lambda rid: holder.append(self.heartbeat(rid)))
        try:
            if won is None:
                return None
            run = self.tracker.client.get_run(run_id)
            if run.info.status == RunStatus.RUNNING \
                    or outcome_of(run) not in (*HALTED, Outcome.KILLED.value) \
                    or (run.data.tags.get(Tag.CHECKPOINT_EPOCH) or "0") != str(epoch):
                return None
            n = int(run.data.tags.get(Tag.REOPENED, "0") or 0) + 1
            live = {k: v for k, v in tags.items() if k != Tag.STATUS}
            self.tracker.reopen_run(run_id, {**live, Tag.REOPENED: n,
                                             Tag.HEARTBEAT: f"{time.time():.3f}"},
                                    {Tag.STATUS: Outcome.RUNNING})
            if on_start is not None:
                on_start(run_id)
            return self.tracker.client.get_run(run_id)
        finally:
            for hb in holder:
                hb.stop()
            if won is not None:
                self.tracker.client.delete_run(won)


class Heartbeat:
    """A daemon thread refreshing a run's heartbeat every ``every`` seconds until
    :meth:`stop`. A failed refresh is logged and retried at the next beat (the training
    never waits for the store on its account)."""

    def __init__(self, ledger: Ledger, run_id: str, every: float):
        self.ledger, self.run_id, self.every = ledger, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id[:8]}",
                                        daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.ledger.beat(self.run_id)
            except Exception as e:  # noqa: BLE001 - a missed beat must not kill the run
                from mlp_sweeps.record.faults import first_line

                log.warning("Heartbeat of run %s not recorded: %s", self.run_id, first_line(e))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
