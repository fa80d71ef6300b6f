"""The workers of one run: a team that runs one function on every member at once, and how
work is cut into contiguous blocks for it.

A :class:`Team` of ``n`` is the calling process and ``n - 1`` helper processes forked from
it the first time it runs. ``team.run(fn)`` calls ``fn(k)`` for ``k = 0 .. n-1`` (``k = 0``
in the caller) and returns when all have returned, re-raising the first exception.

Why processes, not threads: a split training step hands work on three times per step, and
each member then makes some twenty NumPy and BLAS calls. Threads share one GIL: every call
that returns while another thread holds it sleeps in the kernel and is woken again, 20-50 us
each on a VM's vCPUs (some 47 futex calls per step were counted on 2 cores), and a 2-thread
step was only 0.78-0.86x of one thread's. Processes have a GIL each; a hand-off is a
semaphore released and polled: an empty ``team.run`` of 2 members took 2 us on the 2-core
machine (a loop of 20000), against 42-49 us for 2 threads.

What a member sees: the helpers are forked, so they see the caller's memory as it was at
the fork (copy-on-write). What ``fn`` reads that changes after that, and everything it
writes that the caller must see, lives in shared memory (:func:`shared_empty`); the
functions a team runs are the ones it knew when it forked (:meth:`Team.register`). A
helper ends with the team (:meth:`Team.close`), when its caller dies (Linux's parent-death
signal, and a check of its parent every second), and never runs the caller's code beyond
``fn``: it leaves with ``os._exit``, flushing nothing and running no exit handlers.

Why not BLAS's own threads: NumPy and SciPy each bring an OpenBLAS with its own thread
pool, and two pools with several threads each spin against each other (a 2-core run was
4x slower than one thread); at a step's shapes the weight-gradient product does not
scale in OpenBLAS's threading anyway. A team splits the whole step, BLAS at one thread in
every member.
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import os
import pickle
import signal
import sys
import time
import warnings
import weakref
from typing import Callable

import numpy as np

__all__ = ["Team", "blocks", "shared_empty", "can_fork", "cpu_s", "busy_pools",
           "competing_pools"]

SPIN_S = 0.0005  # seconds a waiting member polls before it blocks
CHECK_S = 1.0  # seconds a blocked member waits before it looks whether its peer lives
_ERR_BYTES = 1 << 16  # room for one member's pickled exception

can_fork = hasattr(os, "fork") and sys.platform != "win32"

_open: "weakref.WeakSet[Team]" = weakref.WeakSet()  # teams whose helpers may run
_ended_cpu_s = 0.0  # the CPU seconds of the helpers of closed teams


def cpu_s() -> float:
    """The CPU seconds this process has used, its threads and the helper processes of its
    teams (those still running as of their last part, and those ended) together: what
    ``time.process_time()`` would say if the helpers were threads."""
    return time.process_time() + _ended_cpu_s + sum(t.helpers_cpu_s() for t in list(_open))


def shared_empty(shape, dtype) -> np.ndarray:
    """An uninitialised array in anonymous shared memory: a team's helpers forked after it
    was made see what the caller writes there, and the caller sees what they write."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    buf = mmap.mmap(-1, max(count * dtype.itemsize, 1))  # MAP_SHARED | MAP_ANONYMOUS
    return np.frombuffer(buf, dtype, count).reshape(shape)


def _wait(lock, spin_s: float, alive: Callable[[], bool]) -> None:
    """Acquire ``lock``: for up to ``spin_s`` by polling (yielding the CPU between polls),
    then by blocking, every :data:`CHECK_S` asking ``alive()`` (RuntimeError if not)."""
    if lock.acquire(False):
        return
    if spin_s > 0:
        clock, yield_ = time.perf_counter, os.sched_yield
        end = clock() + spin_s
        while clock() < end:
            yield_()
            if lock.acquire(False):
                return
    while not lock.acquire(True, CHECK_S):
        alive()


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


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the thread that forked it ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent check every CHECK_S remains
        pass


class Team:
    """``n`` members that run one function together: the caller and ``n - 1`` helper
    processes, forked at the first :meth:`run` (or :meth:`start`).

    Use as a context manager (or call :meth:`close`). Not re-entrant: ``fn`` must not call
    :meth:`run`. ``n = 1`` forks nothing: ``run(fn)`` is ``fn(0)``.
    """

    def __init__(self, n: int, name: str = "mlp", spin_s: float | None = None):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"a team needs an integer number of members >= 1, got {n!r}")
        if n > 1 and not can_fork:
            raise RuntimeError(f"a team of {n} forks helper processes; {sys.platform} "
                               f"cannot fork: run with one thread")
        self.n, self.name = n, name
        self.spin_s = SPIN_S if spin_s is None else spin_s
        self._fns: list[Callable[[int], None]] = []
        self._pids: list[int] = []
        self._closed = False
        self._parent = os.getpid()
        # per helper: [function index (-1: stop), its CPU seconds * 1e9, error length]
        self._ctl = shared_empty((n, 3), np.int64)
        self._err = shared_empty((n, _ERR_BYTES), np.uint8)
        ctx = multiprocessing.get_context("fork") if can_fork else None
        self._go = [ctx.Semaphore(0) for _ in range(n)] if n > 1 else []
        self._done = [ctx.Semaphore(0) for _ in range(n)] if n > 1 else []

    @property
    def started(self) -> bool:
        return bool(self._pids)

    def register(self, *fns: Callable[[int], None]) -> None:
        """Functions the team will run; only those known when it forks can run."""
        for fn in fns:
            if fn not in self._fns:
                if self.started:
                    raise RuntimeError(f"{fn!r} was registered after the team forked its "
                                       f"helpers; register every function before the first run")
                self._fns.append(fn)

    def start(self) -> None:
        """Fork the helpers (once)."""
        if self._closed:
            raise RuntimeError("this team is closed")
        if self.started or self.n == 1:
            return
        sys.stdout.flush(), sys.stderr.flush()
        for k in range(1, self.n):
            with warnings.catch_warnings():
                # Python >= 3.12 warns that forking a process with threads may deadlock the
                # child in a lock one of them held. A helper takes no such lock: it runs only
                # the registered functions (NumPy, BLAS) and leaves with os._exit.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the helper: never returns
                code = 1
                try:
                    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller handles Ctrl-C
                    _die_with_parent()
                    self._serve(k)
                    code = 0
                finally:
                    os._exit(code)
            self._pids.append(pid)
        _open.add(self)

    def _parent_alive(self) -> None:
        if os.getppid() != self._parent:
            os._exit(1)

    def _helper_alive(self, k: int) -> Callable[[], None]:
        def check() -> None:
            pid = self._pids[k - 1]
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self._pids[k - 1] = -1
                how = f"signal {-os.waitstatus_to_exitcode(status)}" \
                    if os.WIFSIGNALED(status) else f"exit code {os.waitstatus_to_exitcode(status)}"
                raise RuntimeError(f"team member {k} (process {pid}) ended with {how}")
        return check

    def _serve(self, k: int) -> None:
        go, done, ctl, fns = self._go[k], self._done[k], self._ctl[k], self._fns
        while True:
            _wait(go, self.spin_s, self._parent_alive)
            i = int(ctl[0])
            if i < 0:
                return
            ctl[2] = 0
            try:
                fns[i](k)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                self._put_error(k, e)
            ctl[1] = time.process_time_ns()
            done.release()

    def _put_error(self, k: int, e: BaseException) -> None:
        try:
            data = pickle.dumps(e)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            data = b""
        if not data or len(data) > _ERR_BYTES:
            data = pickle.dumps(RuntimeError(f"team member {k}: {type(e).__name__}: {e}"[:4000]))
        self._err[k, :len(data)] = np.frombuffer(data, np.uint8)
        self._ctl[k, 2] = len(data)

    def _get_error(self, k: int) -> BaseException | None:
        n = int(self._ctl[k, 2])
        if not n:
            return None
        self._ctl[k, 2] = 0
        return pickle.loads(self._err[k, :n].tobytes())

    def run(self, fn: Callable[[int], None]) -> None:
        """``fn(k)`` on every member ``k`` of the team; the first exception is re-raised."""
        if self._closed:
            raise RuntimeError("this team is closed")
        if self.n == 1:
            fn(0)
            return
        self.register(fn)
        self.start()
        i = self._fns.index(fn)
        for k in range(1, self.n):
            self._ctl[k, 0] = i
            self._go[k].release()
        try:
            fn(0)
        finally:  # helpers always finish their part before the caller goes on
            for k in range(1, self.n):
                _wait(self._done[k], self.spin_s, self._helper_alive(k))
        for k in range(1, self.n):
            e = self._get_error(k)
            if e is not None:
                raise e

    def helpers_cpu_s(self) -> float:
        """The CPU seconds the helpers have used, as of their last part."""
        return float(self._ctl[1:, 1].sum()) / 1e9

    def close(self) -> None:
        """End the helpers (idempotent)."""
        global _ended_cpu_s
        if self._closed:
            return
        self._closed = True
        if self in _open:
            _open.discard(self)
            _ended_cpu_s += self.helpers_cpu_s()
        for k, pid in enumerate(self._pids, start=1):
            if pid > 0:
                self._ctl[k, 0] = -1
                self._go[k].release()
        for pid in self._pids:
            if pid > 0:
                os.waitpid(pid, 0)

    def __enter__(self) -> "Team":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a team dropped without close(): its helpers end
        if getattr(self, "_pids", None) and not self._closed and os.getpid() == self._parent:
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
