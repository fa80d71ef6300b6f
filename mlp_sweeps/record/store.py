"""Opening an MLflow store: the one function every process of the project goes through.

MLflow creates a SQLite store's schema the first time a process opens it: its
``SqlAlchemyStore`` checks whether all tables exist and, if not, creates them and runs every
alembic migration (``mlflow.store.db.utils._initialize_tables``) in place, with no lock and
not in one transaction (the migrations commit as they go). Two processes opening a new
store at once both do it and one fails (``table ... already exists``, alembic's ``Online
migration expected to match one row``), and an interrupted creation leaves a store no
process can open. Here (:func:`open_client`):

- opening a SQLite store is serialized across processes by a file lock beside the database
  (``<db>.lock``, the ``filelock`` package), held while the store is opened (once per
  process, well under a second once it exists), never while runs are written;
- a new store's schema is built by MLflow in a file beside it and copied into it in one
  exclusive SQLite transaction, taken before the build: any process, ours or not (an
  ``mlflow ui``), reading the store meanwhile waits, then finds every table, never half of
  them; an interrupted creation leaves the store empty;
- SQLite connections wait up to :data:`BUSY_TIMEOUT_S` for a writer instead of SQLite's
  default 5 s (``?timeout=`` of SQLAlchemy's pysqlite URL: it covers MLflow's schema checks,
  which its ``PRAGMA busy_timeout`` on sessions does not);
- a store being created in place by a process that does not take the lock (an ``mlflow ui``
  started first on the same new store) is waited for, up to :data:`CREATE_RETRY_S`,
  without touching it;
- the store keeps its journal in write-ahead-log mode (``journal_mode=WAL``, a property
  of the database file: set when it is created, or the first time this project opens an
  older one), and this project's connections commit with ``synchronous=NORMAL``
  (:func:`_fast_commits`). In SQLite's default mode every commit waits for the disk
  twice (13-18 ms each on an ordinary SSD), and MLflow commits about 20 times per run:
  that was most of a short job's cost. With WAL, a commit is an append to the log, and
  readers (an ``mlflow ui``, a launcher planning) never block the writer nor it them. What
  it gives up: after a power cut or an OS crash (not a killed process) the last commits
  may be missing, never half-written (the store stays consistent; a sweep's resume reruns
  such runs). WAL needs every process on one machine (shared memory): a store shared by
  machines goes behind a tracking server, as it should anyway.

Other stores (a tracking server, PostgreSQL, ...) are opened as they are: the server or the
database serializes its own schema changes.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from mlp.files import PROJECT_ROOT, atomic_write

from mlp_sweeps.errors import TrackingError

#: MLflow's own tag linking a run to its parent (the UI nests children under it)
PARENT_TAG = "mlflow.parentRunId"

log = logging.getLogger(__name__)

DEFAULT_STORE = PROJECT_ROOT / "mlruns"

LOCK_TIMEOUT_S = 300.0  # waiting for another process to create or check the store
BUSY_TIMEOUT_S = 60.0  # a SQLite connection waiting for another writer
CREATE_RETRY_S = 60.0  # waiting for a process that does not take the lock to create it
WAL_SWITCH_TIMEOUT_S = 2.0  # switching a store to WAL, or checkpointing it, when it is busy
# what a creation raced by a process that did not take the lock looks like
_RACE = ("already exists", "expected to match one row", "out-of-date database schema",
         "database is locked", "no such table")


def resolve_uri(uri: str | None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the project's SQLite store
    (``sqlite:///<project>/mlruns/mlflow.db``, whatever the current directory; its folder
    is made when the store is first opened for writing, by :func:`open_client`)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or \
        f"sqlite:///{DEFAULT_STORE / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (without its query), else None
    (in-memory databases and other schemes)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].partition("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def lock_path(db: Path) -> Path:
    """The lock file beside a SQLite database: ``m.db`` -> ``m.db.lock``."""
    return db.with_name(db.name + ".lock")


def with_busy_timeout(uri: str, seconds: float = BUSY_TIMEOUT_S) -> str:
    """``uri`` with pysqlite's ``timeout`` (seconds a connection waits for a lock), unless
    the URI sets one already."""
    base, _, query = uri.partition("?")
    params = dict(parse_qsl(query))
    params.setdefault("timeout", f"{seconds:g}")
    return f"{base}?{urlencode(params)}"


def open_client(uri: str):
    """An :class:`mlflow.MlflowClient` for ``uri``, its store created if new and checked.

    For a SQLite store, under ``<db>.lock``: a new store is created (:func:`_create`), then
    opened with a busy timeout. Raises :class:`TrackingError` if the store stays incomplete
    for :data:`CREATE_RETRY_S` (being created by a process that does not take the lock)."""
    from filelock import FileLock
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: F401 (imported
    from mlflow.tracking import MlflowClient  # before the lock is taken: seconds when loaded)

    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with FileLock(lock_path(db), timeout=LOCK_TIMEOUT_S):
        waited = time.monotonic() - t0
        if waited > 1.0:
            log.info("Waited %.1f s for another process to open the store %s", waited, db)
        _create(db)
        _use_wal(db)
        _fast_commits()
        _checkpoint_at_exit(db)
        deadline = time.monotonic() + CREATE_RETRY_S
        while True:
            try:
                # MlflowClient opens the store when constructed: it would create the
                # missing tables in place, racing whoever is creating them
                missing = _missing_tables(db)
                if missing:
                    raise RuntimeError(f"no such table: {missing[0]} (of {len(missing)})")
                client = MlflowClient(tracking_uri=with_busy_timeout(uri))
                client.search_experiments(max_results=1)
                return client
            except Exception as e:  # noqa: BLE001 - MLflow wraps SQLAlchemy's and alembic's
                text = str(e).strip()
                first = text.splitlines()[0][:300] if text else repr(e)
                if not any(s in text for s in _RACE):
                    raise
                if time.monotonic() > deadline:
                    raise TrackingError(
                        f"the SQLite store {db} is incomplete ({first}). If no other process "
                        f"is creating it, it was left half-created (by an older version of "
                        f"this project or another program interrupted while creating it): "
                        f"move it away and rerun") from None
                log.warning("The store %s is being created by another process (%s); waiting",
                            db, first)
                time.sleep(1.0)


def _use_wal(db: Path) -> None:
    """Put the store in write-ahead-log mode unless it is already (a property of the file:
    persistent, for every process). A store busy with another process's transaction
    stays in its mode, said once; it is tried again the next time a process opens it."""
    try:
        with closing(sqlite3.connect(db, timeout=WAL_SWITCH_TIMEOUT_S,
                                     isolation_level=None)) as c:
            if c.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower()
    except sqlite3.OperationalError as e:
        mode = str(e)
    if mode != "wal":
        log.info("The store %s stays in its journal mode (%s): its commits are slower", db,
                 mode)


_FAST_COMMITS = False
_CHECKPOINTED: set[Path] = set()


def _checkpoint_at_exit(db: Path) -> None:
    """When this process exits, move what the write-ahead log holds into the database file
    and empty the log (``wal_checkpoint(TRUNCATE)``): MLflow leaves its connections open to
    the end, so the log would otherwise keep the latest runs, and a copy of ``mlflow.db``
    alone (a backup, a store sent to a colleague) would miss them."""
    if db in _CHECKPOINTED:
        return
    _CHECKPOINTED.add(db)

    def checkpoint():
        if not db.exists():  # moved away meanwhile: connecting would create an empty one
            return
        try:
            with closing(sqlite3.connect(db, timeout=WAL_SWITCH_TIMEOUT_S)) as c:
                if c.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:  # busy: another process's exit does it
            log.debug("No checkpoint of %s at exit: %s", db, e)

    atexit.register(checkpoint)


def _fast_commits() -> None:
    """Make every SQLite connection SQLAlchemy opens in this process (MLflow's) commit
    with ``synchronous=NORMAL`` when its database is in WAL mode: durable against a killed
    process, not against a power cut (see the module's notes). Databases in another mode
    are left at SQLite's default, where NORMAL could corrupt on a power cut."""
    global _FAST_COMMITS
    if _FAST_COMMITS:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dbapi_connection, _record):
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        cur = dbapi_connection.cursor()
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                cur.execute("PRAGMA synchronous=NORMAL")
        finally:
            cur.close()

    event.listen(Engine, "connect", on_connect)
    _FAST_COMMITS = True


def _missing_tables(db: Path) -> list[str]:
    """MLflow's tables that ``db`` lacks (read-only)."""
    from mlflow.store.db.base_sql_model import Base

    ro = f"{db.resolve().as_uri()}?mode=ro"  # percent-encoded: any file name
    with closing(sqlite3.connect(ro, uri=True, timeout=BUSY_TIMEOUT_S)) as c:
        have = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return sorted(set(Base.metadata.tables) - have)


def _create(db: Path) -> None:
    """Create the schema of a new (missing or empty) SQLite store, atomically.

    MLflow builds it in a file beside ``db`` (its migrations open their own connections
    and commit as they go); it is then copied into ``db`` in one exclusive transaction,
    taken before the build starts: any other process reading ``db`` meanwhile waits, then
    sees a complete store; an interrupted creation leaves it empty. A store that has any
    table is left alone."""
    with closing(sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as conn:
        if _has_schema(conn):
            return
        conn.execute("BEGIN EXCLUSIVE")
        try:
            if _has_schema(conn):  # created meanwhile by a process that does not take the lock
                conn.execute("ROLLBACK")
                return
            t0 = time.monotonic()
            _copy_schema(_build(db), conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    log.info("Created the store %s in %.1f s", db, time.monotonic() - t0)


def _has_schema(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0


def _build(db: Path) -> dict[str, Any]:
    """MLflow's schema and initial rows: as this MLflow and SQLAlchemy built them before
    (:func:`_schema_cache`), else built by MLflow in a file beside ``db`` (deleted) and
    kept for the next new store."""
    for stale in db.parent.glob(f".{db.name}.*.new"):  # of killed creators (we hold the lock)
        stale.unlink(missing_ok=True)
    cache = _schema_cache()
    try:
        built = json.loads(cache.read_text())
        return {"objects": [tuple(o) for o in built["objects"]],
                "rows": {k: [tuple(r) for r in v] for k, v in built["rows"].items()}}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not built yet by these versions (or unreadable): build it
    built = _migrate(db)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(cache, "w") as f:
            json.dump(built, f)
    except (OSError, TypeError, ValueError) as e:  # a read-only cache: built next time too
        log.debug("Could not keep the store's schema in %s: %s", cache, e)
    return built


def _schema_cache() -> Path:
    """Where a new store's schema is kept, per MLflow and SQLAlchemy version (the project's
    cache folder, beside the decoded datasets): MLflow's migrations take seconds (1.4 s of
    the 5.8 s of creating a store from a new process here), and their result is the same
    for every new store of these versions."""
    import mlflow
    import sqlalchemy

    from mlp.data import default_cache_dir

    return default_cache_dir() / (f"store-schema-mlflow-{mlflow.__version__}"
                                  f"-sqlalchemy-{sqlalchemy.__version__}.json")


def _migrate(db: Path) -> dict[str, Any]:
    """MLflow's schema and initial rows, built by MLflow in a file beside ``db`` (deleted)."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables  # what MLflow's store runs

    tmp = db.with_name(f".{db.name}.{os.getpid()}.new")
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        with closing(sqlite3.connect(tmp)) as src:
            objects = src.execute("SELECT type, name, sql FROM sqlite_master WHERE sql "
                                  "IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
            objects = objects.fetchall()
            rows = {name: src.execute(f'SELECT * FROM "{name}"').fetchall()
                    for kind, name, _ in objects if kind == "table"}
            seq = src.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'")
            if seq.fetchone():
                rows["sqlite_sequence"] = src.execute("SELECT * FROM sqlite_sequence").fetchall()
        return {"objects": objects, "rows": rows}
    finally:
        tmp.unlink(missing_ok=True)


def _copy_schema(built: dict[str, Any], conn: sqlite3.Connection) -> None:
    """Replay ``built`` (from :func:`_build`) into ``conn``'s open transaction: tables,
    their rows, then indexes, triggers and views."""
    objects = built["objects"]
    for kind, _, sql in objects:
        if kind == "table":
            conn.execute(sql)
    for name, rows in built["rows"].items():
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            conn.executemany(f'INSERT INTO "{name}" VALUES ({marks})', rows)
    for kind, _, sql in objects:
        if kind != "table":
            conn.execute(sql)


def main(argv: list[str] | None = None) -> int:
    """``python -m mlp_sweeps.record.store [URI]``: create (if new) and check a store, e.g. before
    pointing ``mlflow ui`` at it."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("uri", nargs="?", help="tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                           "the project's mlruns/mlflow.db)")
    uri = resolve_uri(ap.parse_args(argv).uri)
    try:
        open_client(uri)
    except TrackingError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"store ready: {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
