"""The threads of one run: a team that runs one function on every thread at once, and how
work is cut into contiguous blocks for it.

NumPy's products and element-wise passes and the BLAS calls of :mod:`mlp.blas` release
the GIL, so plain Python threads run them in parallel. A :class:`Team` of ``n`` threads is
the calling thread and ``n - 1`` helpers that wait on a lock between calls:
``team.run(fn)`` calls ``fn(k)`` for ``k = 0 .. n-1`` (``k = 0`` on the caller) and returns
when all have returned, re-raising the first exception. A hand-off costs a few
microseconds (two raw locks per helper), little beside a training step's products; see
``scripts/bench.py --threads``.

Why not BLAS's own threads: NumPy and SciPy each bring an OpenBLAS with its own thread
pool, and two pools with several threads each spin against each other (a 2-core run was
4x slower than one thread); at a step's shapes the weight-gradient product does not
scale in OpenBLAS's threading anyway. A team splits the whole step, BLAS at one thread.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
from typing import Callable

__all__ = ["Team", "blocks", "busy_pools", "competing_pools"]

SPIN_S = 0.0002  # seconds a waiting thread polls before it blocks


def _wait(lock, spin_s: float) -> None:
    """Acquire ``lock``: for up to ``spin_s`` by polling (yielding the CPU, and the GIL,
    between polls), then by blocking. Waking a blocked thread costs 15-70 us on a VM's
    vCPUs; a poll sees the release within a few."""
    if lock.acquire(False):
        return
    if spin_s > 0:
        clock, yield_ = time.perf_counter, os.sched_yield
        end = clock() + spin_s
        while clock() < end:
            yield_()
            if lock.acquire(False):
                return
    lock.acquire()


def blocks(n: int, parts: int, align: int = 1) -> list[slice]:
    """``parts`` contiguous slices covering ``range(n)``, as equal as ``align`` allows: every
    boundary but the last is a multiple of ``align`` (BLAS kernels work in blocks of rows;
    aligned boundaries keep every element computed as in one undivided call). Slices may
    be empty when ``n`` is small."""
    if parts < 1 or align < 1:
        raise ValueError(f"blocks: parts={parts} and align={align} must be >= 1")
    cuts = [0]
    for k in range(1, parts):
        c = round(n * k / parts / align) * align
        cuts.append(min(max(c, cuts[-1]), n))
    cuts.append(n)
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


class Team:
    """``n`` threads that run one function together: the caller and ``n - 1`` helpers.

    Use as a context manager (or call :meth:`close`): helpers are daemon threads, ended by
    :meth:`close`. Not re-entrant: ``fn`` must not call :meth:`run`.
    """

    def __init__(self, n: int, name: str = "mlp", spin_s: float | None = None):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"a team needs an integer number of threads >= 1, got {n!r}")
        self.n = n
        self.spin_s = SPIN_S if spin_s is None else spin_s
        self._fn: Callable[[int], None] | None = None
        self._stop = False
        self._errors: list[BaseException | None] = [None] * n
        # raw locks, held while a helper has nothing to do (start) / has not finished (done)
        self._start = [_thread.allocate_lock() for _ in range(n)]
        self._done = [_thread.allocate_lock() for _ in range(n)]
        for lock in self._start + self._done:
            lock.acquire()
        self._threads = [threading.Thread(target=self._serve, args=(k,), daemon=True,
                                          name=f"{name}-{k}") for k in range(1, n)]
        for t in self._threads:
            t.start()

    def _serve(self, k: int) -> None:
        start, done = self._start[k], self._done[k]
        while True:
            _wait(start, self.spin_s)
            if self._stop:
                done.release()
                return
            try:
                self._fn(k)
            except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread
                self._errors[k] = e
            done.release()

    def run(self, fn: Callable[[int], None]) -> None:
        """``fn(k)`` on every thread ``k`` of the team; the first exception is re-raised."""
        if self._stop:
            raise RuntimeError("this team is closed")
        self._fn = fn
        for k in range(1, self.n):
            self._start[k].release()
        try:
            fn(0)
        finally:  # helpers always finish their part before the caller goes on
            for k in range(1, self.n):
                _wait(self._done[k], self.spin_s)
            self._fn = None
        for k, e in enumerate(self._errors):
            if e is not None:
                self._errors[k] = None
                raise e

    def close(self) -> None:
        """End the helpers (idempotent)."""
        if self._stop:
            return
        self._stop = True
        for k in range(1, self.n):
            self._start[k].release()
        for k in range(1, self.n):
            self._done[k].acquire()
        for t in self._threads:
            t.join()

    def __enter__(self) -> "Team":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Team({self.n})"


def busy_pools(info: list[dict]) -> list[str]:
    """The BLAS libraries of threadpoolctl's ``info`` that run more than one thread: one
    ``"<file> (<n> threads)"`` each."""
    return [f"{i['filepath'].rsplit('/', 1)[-1]} ({i['num_threads']} threads)" for i in info
            if i.get("user_api") == "blas" and (i.get("num_threads") or 1) > 1]


def competing_pools(info: list[dict]) -> list[str]:
    """:func:`busy_pools` when there are several (their pools then compete for the cores);
    empty when at most one library runs several threads."""
    busy = busy_pools(info)
    return busy if len(busy) > 1 else []
