"""A run's life in the store (:class:`TrackedRun`): started on entry, closed on exit as
FINISHED (or diverged), FAILED with its traceback, or KILLED on Ctrl-C and SIGTERM;
exceptions are recorded and re-raised, never swallowed. Its metrics are sent in batches
(:data:`FLUSH_S`), its data recorded as an MLflow dataset input (:func:`dataset_input`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from mlp import TrainConfig

from mlp_sweeps.claim.ledger import Ledger, Outcome, Tag
from mlp_sweeps.record.faults import diagnose, first_line

log = logging.getLogger(__name__)

# per-epoch metrics are sent to the store at most this often (and when the run ends): a
# short run's metrics go in one request, a long run's curves stay live
FLUSH_S = 5.0


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's preemption): closes the run as KILLED."""


def _on_sigterm(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


class _Run:
    """A run's signal handling: inside it, SIGTERM raises :class:`Terminated` (in the main
    thread; the previous handler is restored on exit)."""

    _previous_handler: Any = None

    def _catch_sigterm(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, _on_sigterm)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None


class UntrackedRun(_Run):
    """A run with tracking disabled (``tracking.enabled=false``): :class:`TrackedRun`'s
    interface, its signal handling, and nothing recorded."""

    where = "(tracking disabled)"
    run_id = claimed_by = reopened = None

    def __init__(self):
        self.outcome: str = Outcome.FINISHED
        self.close_tags: dict[str, Any] = {}

    def __enter__(self) -> "UntrackedRun":
        self._catch_sigterm()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._restore_handler()
        return False

    def log_epoch(self, record: Mapping[str, Any]) -> None: ...
    def log_dataset(self, tcfg: TrainConfig) -> None: ...
    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None: ...
    def flush(self) -> None: ...
    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


def tracked_run(ledger: Ledger | None, name: str, tags: Mapping[str, Any],
                **kw: Any) -> "TrackedRun | UntrackedRun":
    """The run's life in ``ledger``'s store, or an :class:`UntrackedRun` without one."""
    return UntrackedRun() if ledger is None else TrackedRun(ledger, name, tags, **kw)


class TrackedRun(_Run):
    """One run's life in the store, as a context manager.

    On entry: SIGTERM raises :class:`Terminated` (in the main thread; the previous handler
    is restored on exit) and the run is started RUNNING with ``tags`` (as a child of
    ``parent``) and its ``params`` (the config, flattened: ``loss.name``, ``depth``, ...),
    or with ``claim`` its configuration is claimed (:meth:`Ledger.claim`, ``since``: when
    the parent's sweep read the store): if another run has it, :attr:`claimed_by` is that
    run and nothing is recorded; if not, the params go with the claim's last write. While the
    run lives, a :class:`~mlp_sweeps.claim.ledger.Heartbeat` thread refreshes its heartbeat.
    On exit: closed with :attr:`outcome` (``finished`` unless set, e.g. to
    ``diverged``); on an exception, FAILED, or KILLED for Ctrl-C / SIGTERM, with the
    traceback in its ``error`` tag, and the exception propagates. (Tracking disabled: an
    :class:`UntrackedRun`, from :func:`tracked_run`.)
    """

    def __init__(self, ledger: Ledger, name: str, tags: Mapping[str, Any],
                 parent: str | None = None, claim: bool = False, since: int | None = None,
                 params: Mapping[str, Any] | None = None,
                 reopen: tuple[str, int] | None = None):
        self.ledger, self.name, self.tags, self.parent = ledger, name, dict(tags), parent
        self.reopen = reopen  # (run id, epoch): continue that paused run (Ledger.reopen)
        self.reopened: Any = None  # the paused run as it was when continued
        self.close_tags: dict[str, Any] = {}  # set with the outcome
        self.logged_through = 0  # epochs already in the store (a continued run)
        self.claim, self.since, self.params = claim, since, params or {}
        self.run_id: str | None = None
        self.claimed_by: Any = None  # the run that has this configuration (claim lost)
        self._heartbeat: Any = None
        self.outcome: str = Outcome.FINISHED
        self._pending: list[tuple[Mapping[str, Any], int]] = []  # (metrics, step) unsent
        self._flushed = time.monotonic()

    @property
    def where(self) -> str:
        return f"run {self.run_id} in {self.ledger.tracker.uri}"

    def __enter__(self) -> "TrackedRun":
        self._catch_sigterm()
        try:
            from mlp_sweeps.record.tracking import flatten

            params = flatten(self.params)
            if self.reopen is not None:
                run_id, epoch = self.reopen
                before = self.ledger.tracker.client.get_run(run_id)
                got = self.ledger.reopen(run_id, epoch, self.name, self.tags,
                                         on_start=self._beat)
                if got is None:  # another process continued it, or it moved on
                    self.claimed_by = self.ledger.tracker.client.get_run(run_id)
                    return self
                self.reopened = before
                # epochs a killed run logged past its checkpoint: trained again, the same
                # bit for bit, not logged twice
                self.logged_through = int(before.data.metrics.get("epochs_completed", 0))
            elif self.claim:
                self.run_id, self.claimed_by = self.ledger.claim(
                    self.name, self.tags, self.parent, on_start=self._beat,
                    since=self.since, params=params,
                    halted_rivals=Tag.RUNG in self.tags)
                if self.run_id is None:
                    self._stop_heartbeat()
                    return self
            else:
                self._beat(self.ledger.start(self.name, self.tags, parent=self.parent))
                self.ledger.tracker.log_params(self._heartbeat.run_id, params)
            self.run_id = self._heartbeat.run_id
            log.info("%s: tracking as %s (experiment %r)", self.name, self.where,
                     self.ledger.experiment)
        except BaseException as e:
            self._stop_heartbeat()
            if self._heartbeat is not None and self.run_id is None:  # created, not claimed
                with contextlib.suppress(Exception):
                    self.ledger.close(self._heartbeat.run_id, Outcome.KILLED if isinstance(
                        e, KeyboardInterrupt) else Outcome.FAILED, f"while claiming: {e!r}")
            self._restore_handler()
            raise
        return self

    def _beat(self, run_id: str) -> None:
        self._heartbeat = self.ledger.heartbeat(run_id)

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self._stop_heartbeat()
            if self.run_id is not None:
                if exc is None:  # the metrics not yet sent go with the outcome: one request
                    pending, self._pending = self._pending, []
                    self.ledger.close(self.run_id, self.outcome, metrics=pending,
                                      tags=self.close_tags)
                else:
                    fault = diagnose(exc, self.ledger.tracker.uri)
                    try:
                        self.flush()
                    except Exception as e:  # noqa: BLE001 - the run is closed whatever happens
                        log.warning("%s: could not record its last metrics: %s", self.name,
                                    first_line(e))
                    killed = isinstance(exc, KeyboardInterrupt)
                    try:  # a full disk may refuse this too: the run is then settled later
                        self.ledger.close(
                            self.run_id, Outcome.KILLED if killed else Outcome.FAILED,
                            (fault + "\n\n" if fault else "")
                            + "".join(traceback.format_exception(exc)))
                    except Exception as e:  # noqa: BLE001 - the original error propagates
                        log.warning("%s: could not record its end in the store: %s",
                                    self.name, first_line(e))
        finally:
            self._restore_handler()
        return False

    # what a run records -------------------------------------------------------------------
    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """One history record (``epoch`` and its metrics), at step = epoch, with
        ``epochs_completed`` (how far a running run is, for the sweep's progress line); sent
        with the others not yet sent every :data:`FLUSH_S` seconds, and at the end."""
        if record["epoch"] <= self.logged_through:
            return
        self._pending.append(({**{k: v for k, v in record.items() if k != "epoch"},
                               "epochs_completed": record["epoch"]}, record["epoch"]))
        if time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def log_dataset(self, tcfg: TrainConfig) -> None:
        """The run's data as an MLflow dataset input (:func:`dataset_input`)."""
        self.ledger.tracker.log_dataset(self.run_id, *dataset_input(tcfg))

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """``metrics`` at ``step``, sent with the epochs not yet sent at the next
        :meth:`flush`, at the latest with the run's outcome when it closes (one request)."""
        self._pending.append((metrics, step))

    def flush(self) -> None:
        """Send the metrics not yet sent, in one request."""
        pending, self._pending, self._flushed = self._pending, [], time.monotonic()
        if pending:
            self.ledger.tracker.log_metric_steps(self.run_id, pending)

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        self.ledger.tracker.log_artifacts(self.run_id, paths, artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.ledger.tracker.set_tags(self.run_id, tags)


def dataset_input(tcfg: TrainConfig) -> tuple[str, str, str, dict[str, Any]]:
    """(name, digest, source, profile) of the data a configuration trains on, as an MLflow
    dataset input: the digest covers the verified files' SHA256 (what ``load_data``
    checks) and the selection (normalization, examples); the profile gives the sizes."""
    import hashlib

    from mlp.data import DATASETS

    from mlp.data import data_sizes

    d = tcfg.data
    n_train, n_test, feat, classes = data_sizes(tcfg.data)
    files = sorted(DATASETS[d.name]["sha256"].items())
    digest = hashlib.sha256(repr((files, d.normalize, n_train, n_test)).encode()).hexdigest()
    return d.name, digest[:16], str(d.root or DATASETS[d.name]["root"]), {
        "train_examples": n_train, "test_examples": n_test, "features": feat,
        "classes": classes, "normalize": d.normalize}
