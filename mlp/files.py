"""Where the project is, and how a file is written so that no reader sees half of it."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

__all__ = ["PROJECT_ROOT", "atomic_write"]

#: the checkout (or installed tree) holding ``mlp/``, ``conf/``, ``data/``
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``.

    The rename is atomic on one filesystem, so parallel readers see the old file or the
    whole new one, never a partial write; on error the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
