"""MLflow tracking: the only module that imports mlflow (with :mod:`.store`, which opens stores).

Everything goes through an explicit :class:`mlflow.MlflowClient` and run ids, never the
fluent API's process-global active run, so parallel jobs and parent/child runs cannot
step on each other (an inherited ``MLFLOW_RUN_ID`` makes a child overwrite its parent:
mlflow #15713; it is removed from the environment here).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

# Fail fast on an unreachable server instead of retrying for minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.pop("MLFLOW_RUN_ID", None)

import mlflow  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402

# MLflow logs every SQLAlchemy error with its traceback, then raises it: the error reaches
# the caller (and a machine fault its one message, mlp_sweeps.record.faults), not a screen of
# tracebacks per failed write
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

from mlp_sweeps.errors import TrackingError  # noqa: E402
from mlp_sweeps.record.store import DEFAULT_STORE, PARENT_TAG, open_client, resolve_uri  # noqa: E402,F401

# MLflow 3's experiment kind (its UI reads this tag): model training opens on the runs
# page, not on the GenAI overview
KIND_TAG, KIND_TRAINING = "mlflow.experimentKind", "custom_model_development"
PAGE_SIZE = 1000  # runs per search request

_SHARED: dict[str, "Tracker"] = {}  # Tracker.shared's, by URI


def artifact_root(uri: str) -> str | None:
    """Where a new experiment's artifacts go: beside a local SQLite store, else the
    server's choice (``--serve-artifacts``)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "artifacts").resolve().as_uri()
    return None


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingError` within ``timeout`` seconds if ``uri`` cannot be used."""
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                r.read()
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            raise TrackingError(
                f"tracking server {uri} is not reachable ({e}); start it (see "
                f"docs/scaling.md), fix tracking.uri / MLFLOW_TRACKING_URI, or run with "
                f"tracking.enabled=false") from None
    elif scheme == "sqlite":
        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"cannot create the tracking store folder {db.parent} "
                                f"(tracking.uri={uri}): {e}") from None
    elif scheme in ("", "file"):
        pass
    elif scheme.partition("+")[0] not in ("postgresql", "mysql", "mssql", "databricks"):
        # a database URI may name its driver, as SQLAlchemy's do: postgresql+psycopg2://
        raise TrackingError(f"unsupported tracking URI scheme {scheme!r} in {uri!r}; use "
                            f"sqlite:///path.db, http(s)://host:port, a database URI "
                            f"(postgresql[+driver]://, mysql[+driver]://, mssql[+driver]://) "
                            f"or a folder")


def preload() -> None:
    """Import what opening a SQL store takes (MLflow's SQLAlchemy store: most of a job's
    start-up), without opening one: a worker warmed while its launching process may be
    creating the store (two processes creating one SQLite store race MLflow's schema
    migration)."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"loss": {"name": "mse"}} -> {"loss.name": "mse"}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Tracker:
    """A thin wrapper around :class:`MlflowClient` for one tracking URI.

    It remembers what it looked up or created: experiment ids by name, and the artifact
    location of each run it started (logging a run's files then needs no request to find
    where they go)."""

    def __init__(self, uri: str | None = None):
        self.uri = resolve_uri(uri)
        check_reachable(self.uri)
        self.client = open_client(self.uri)  # a new SQLite store created under a lock
        self._experiments: dict[str, str] = {}  # name -> id
        self._artifact_uris: dict[str, str] = {}  # run id -> artifact URI, runs started here

    @classmethod
    def shared(cls, uri: str | None = None) -> "Tracker":
        """The process's Tracker for ``uri``, opened once: a worker running many of a
        sweep's jobs opens the store (the lock, the schema check) and looks up the
        experiment for the first only (about 10 ms a job otherwise). MLflow itself keeps
        one store object per URI in a process."""
        uri = resolve_uri(uri)
        tracker = _SHARED.get(uri)
        if tracker is None:
            tracker = _SHARED[uri] = cls(uri)
        return tracker

    # experiments and runs -------------------------------------------------------------
    def experiment_id(self, name: str, refresh: bool = False) -> str:
        """Id of experiment ``name``, created if missing (races resolved by re-reading),
        restored if deleted; looked up once per Tracker unless ``refresh``."""
        if not refresh and name in self._experiments:
            return self._experiments[name]
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            if KIND_TAG not in exp.tags:  # made by an earlier version
                self.client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND_TRAINING)
            exp_id = exp.experiment_id
        else:
            try:
                exp_id = self.client.create_experiment(
                    name, artifact_location=artifact_root(self.uri),
                    tags={KIND_TAG: KIND_TRAINING})
            except mlflow.exceptions.MlflowException:
                exp = self.client.get_experiment_by_name(name)  # created meanwhile elsewhere
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        self._experiments[name] = exp_id
        return exp_id

    def start_run(self, experiment_id: str, run_name: str, tags: Mapping[str, str] | None = None,
                  parent_run_id: str | None = None) -> str:
        """A new RUNNING run; if the experiment was looked up here and has been deleted (or
        removed) since, it is looked up again (restored or created) and the run made there."""
        tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            tags[PARENT_TAG] = parent_run_id
        try:
            run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        except mlflow.exceptions.MlflowException:
            name = next((n for n, i in self._experiments.items() if i == experiment_id), None)
            if name is None:
                raise
            run = self.client.create_run(self.experiment_id(name, refresh=True),
                                         run_name=run_name, tags=tags)
        if len(self._artifact_uris) >= 1024:
            self._artifact_uris.clear()
        self._artifact_uris[run.info.run_id] = run.info.artifact_uri
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)
        self._artifact_uris.pop(run_id, None)

    def reopen_run(self, run_id: str, tags: Mapping[str, Any], last: Mapping[str, Any]) -> None:
        """A terminated run RUNNING again: ``tags`` first (its liveness), then the status,
        then ``last`` (its outcome tag): a process that dies between two of these writes
        leaves the run as it was (terminated) or RUNNING with the dead process's liveness
        (found dead by the next reader), never terminated with a running outcome."""
        self.set_tags(run_id, tags)
        self.client.update_run(run_id, status="RUNNING")
        self.set_tags(run_id, last)

    # logging ------------------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any],
                   tags: Mapping[str, Any] | None = None) -> None:
        """``params`` (and ``tags``, with the first of them) in as few requests as MLflow
        allows (100 params each)."""
        items = [Param(k, "None" if v is None else str(v)[:6000]) for k, v in params.items()]
        run_tags = [RunTag(str(k), str(v)[:5000]) for k, v in (tags or {}).items()]
        for i in range(0, max(len(items), 1), 100):  # MLflow's per-request limit
            chunk = items[i:i + 100]
            if chunk or run_tags:
                self.client.log_batch(run_id, params=chunk, tags=run_tags)
            run_tags = []

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(str(k), str(v)[:5000]) for k, v in tags.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def log_metric_steps(self, run_id: str,
                         records: Iterable[tuple[Mapping[str, float], int]],
                         tags: Mapping[str, Any] | None = None) -> None:
        """Several steps' metrics (``(metrics, step)`` pairs), and ``tags`` with the last
        of them, in as few requests as MLflow allows (1000 metrics each)."""
        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for metrics, step in records
                 for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        chunks = [items[i:i + 1000] for i in range(0, len(items), 1000)] or [[]]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            run_tags = [RunTag(str(k), str(v)[:5000]) for k, v in (tags or {}).items()] \
                if last else []
            if chunk or run_tags:
                self.client.log_batch(run_id, metrics=chunk, tags=run_tags)

    def log_artifacts(self, run_id: str, paths: Iterable[Path],
                      artifact_path: str | None = None) -> None:
        """Files into the run's artifacts (under ``artifact_path``)."""
        where = self._artifact_uris.get(run_id)
        if where is None:  # MLflow reads the run to find where its artifacts go
            for p in paths:
                self.client.log_artifact(run_id, str(p), artifact_path)
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(where, tracking_uri=self.client.tracking_uri)
        for p in paths:
            repo.log_artifact(str(p), artifact_path)

    def download(self, run_id: str, path: str, folder: str) -> str:
        """One artifact of the run into ``folder``; its local path. Without MLflow's
        progress bar: in a job it is a line of noise in the sweep's terminal, and its
        tqdm lock is a named semaphore the job's worker process never releases (a
        worker stopped by the launcher left "leaked semaphore objects" at exit)."""
        from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

        name = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name
        before = os.environ.get(name)
        os.environ[name] = "false"
        try:
            return self.client.download_artifacts(run_id, path, folder)
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before

    def log_dataset(self, run_id: str, name: str, digest: str, source: str,
                    profile: Mapping[str, Any], context: str = "training") -> None:
        """A dataset input of the run (the UI's Dataset column): name, digest, where it
        was read from and its profile (sizes)."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        from mlflow.exceptions import MlflowException

        ds = Dataset(name=name, digest=digest, source_type="local",
                     source=json.dumps({"uri": source}), profile=json.dumps(dict(profile)))
        inputs = [DatasetInput(ds, tags=[InputTag("mlflow.data.context", context)])]
        try:
            self.client.log_inputs(run_id, datasets=inputs)
        except MlflowException as e:
            # MLflow gets-or-creates the experiment's dataset row in two steps: two runs
            # logging the same new dataset at once can both try to create it. The loser
            # finds it the second time.
            if "UNIQUE constraint failed: datasets" not in str(e) and \
                    "duplicate key value" not in str(e):
                raise
            self.client.log_inputs(run_id, datasets=inputs)

    # reading --------------------------------------------------------------------------------
    def search(self, experiment_ids: list[str], filter_string: str = "",
               order_by: list[str] | None = None) -> Iterator:
        """Every run matching ``filter_string``, page after page (the one paginated query:
        :mod:`mlp_sweeps.claim.ledger` and :mod:`mlp_sweeps.read.results` read through it)."""
        token = None
        while True:
            page = self.client.search_runs(experiment_ids, filter_string=filter_string,
                                           order_by=order_by, max_results=PAGE_SIZE,
                                           page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def runs(self, experiment_id: str) -> list:
        """Every run of the experiment (all pages)."""
        return list(self.search([experiment_id]))
