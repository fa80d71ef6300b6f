"""Faults of the machine, not of the run: a full disk, a store or folder that cannot be
written, a store file removed while a sweep runs. Each is named once, with the path and
what to do (:func:`diagnose`), instead of the tracebacks of the layers it passed through
(SQLite, SQLAlchemy, MLflow); :class:`MachineFault` carries that message to the user.

The rule: the exception (and every exception it was raised from or during) is looked at
for an ``OSError`` errno or SQLite's own words; the path is the file the ``OSError``
names, else the tracking store's. What was recorded before the fault stays recorded (the
store is transactional), so the fix is always the same: remove the cause, then run the
same command again; finished runs are kept and the rest run.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from mlp_sweeps.errors import UserError

__all__ = ["MachineFault", "diagnose", "first_line"]

_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
# what SQLite says (through SQLAlchemy and MLflow, as text)
_FULL_WORDS = ("database or disk is full", "no space left on device", "disk quota exceeded")
_READ_ONLY_WORDS = ("attempt to write a readonly database", "readonly database",
                    "permission denied", "unable to open database file",
                    "read-only file system")
_GONE_WORDS = ("no such table", "disk i/o error", "database disk image is malformed")

RERUN = "then run the same command again: what finished is kept, the rest runs"


class MachineFault(UserError, OSError):
    """The machine cannot hold what the run or sweep writes (see the module)."""


def first_line(e: BaseException) -> str:
    """``Type: first line of its message`` (SQLAlchemy's and MLflow's run to many lines)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _chain(e: BaseException | None):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _store_path(uri: str | None) -> str | None:
    if uri and uri.startswith("sqlite:"):
        from mlp_sweeps.record.store import sqlite_path

        p = sqlite_path(uri)
        return str(p) if p is not None else None
    return uri


def _free(path: str) -> str:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return ""
    return f" ({free / 2**20:.1f} MiB free there)"


def diagnose(e: BaseException, uri: str | None = None) -> str | None:
    """The message for a machine fault behind ``e`` (``uri``: the tracking store's), or
    None if ``e`` is not one."""
    for x in _chain(e):
        if isinstance(x, MachineFault):
            return str(x)
    kind = path = None
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno in _FULL + _READ_ONLY:
            kind = "full" if x.errno in _FULL else "read-only"
            path = x.filename
            break
        words = str(x).lower()
        if any(w in words for w in _FULL_WORDS):
            kind = "full"
        elif any(w in words for w in _READ_ONLY_WORDS):
            kind = "read-only"
        elif any(w in words for w in _GONE_WORDS):
            kind = "gone"
        if kind:
            break
    if kind is None:
        return None
    where = str(path) if path else (_store_path(uri) or "the tracking store")
    if kind == "full":
        return (f"No space left on the disk holding {where}{_free(where)}. Free space there, "
                f"or point tracking.uri (or hydra.sweep.dir) at another disk; {RERUN}.")
    if kind == "read-only":
        return (f"Cannot write {where}: it, or its folder, is read-only or not yours "
                f"({first_line(next(_chain(e)))}). Make it writable (SQLite also writes a "
                f"journal beside the store) or point tracking.uri at a store you can write; "
                f"{RERUN}.")
    return (f"The tracking store {where} was removed, replaced or damaged while in use. "
            f"Put it back (or start a new one), {RERUN}.")
