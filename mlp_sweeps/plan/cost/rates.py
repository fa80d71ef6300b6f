"""The floor: each kernel of :mod:`.work` timed once on this machine, as a job of its thread
count runs it (BLAS at one thread, split across the threads as the job's steps are:
:func:`measure`), and cached per machine and BLAS kernel (:func:`machine_key`: CPU model,
threadpoolctl's library, version and ``architecture``) in the project's cache folder, under
a file lock. A kernel's time is the CPU time it takes (or the wall time, if less), so a
measurement on a busy machine is not inflated by the other processes. Kernels on batches
above ``MEASURE_ROWS`` rows are timed at that many rows and scaled (their time is linear in
the rows there). The floor of a run is the sum of its kernels' times.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from mlp import TrainConfig
from mlp.files import atomic_write
from mlp_sweeps.plan.cost.machine import machine, numpy_blas
from mlp_sweeps.plan.cost.work import Gemm, Hidden, Kernel, Step, Update, Work, key


MEASURE_ROWS = 256  # larger batches are timed at this many rows and scaled linearly


def machine_key(threads: int) -> str:
    """What a measured time is valid for: CPU model, BLAS library, version and kernel
    (threadpoolctl's ``architecture``), NumPy, and the run's threads (its steps split across
    them, BLAS at one thread)."""
    m = machine()
    blas = numpy_blas()
    return (f"{m['cpu']} | {blas.get('internal_api', 'none')} {blas.get('version')} "
            f"{blas.get('architecture')} | numpy {np.__version__} | {threads} threads, split")


def _seconds(fn, reps: int) -> float:
    """Seconds per call of ``fn`` over ``reps`` calls: the process's CPU time (a team's
    helper processes included), or the wall time if less (several threads or helpers). CPU time does not grow when other processes
    share the cores, so a kernel measured on a busy machine is cached at its own cost."""
    from mlp.team import cpu_s

    w0, c0 = time.perf_counter(), cpu_s()
    for _ in range(reps):
        fn()
    return min(time.perf_counter() - w0, cpu_s() - c0) / reps


def _repeat(fn, budget: float = 0.005, chunks: int = 3) -> float:
    """Seconds per call of ``fn``: after one warm-up call, the fastest of ``chunks`` runs
    of enough calls to fill ``budget`` seconds each."""
    first = _seconds(fn, 1)
    reps = max(1, min(1000, int(budget / max(first, 1e-7))))
    return min(_seconds(fn, reps) for _ in range(chunks if first < 0.2 else 1))


def _measure_gemm(k: Gemm, rng) -> float:
    m, kk, n = k.m, k.k, k.n
    dt = np.dtype(k.dtype)
    a = rng.standard_normal((kk, m) if k.layout == "tn" else (m, kk)).astype(dt)
    b = rng.standard_normal((n, kk) if k.layout == "nt" else (kk, n)).astype(dt)
    a = a.T if k.layout == "tn" else a
    b = b.T if k.layout == "nt" else b
    out = np.empty((m, n), dt)
    return _repeat(lambda: np.matmul(a, b, out=out))


def _measure_hidden(k: Hidden, rng) -> float:
    return _repeat(_hidden_once(k, rng))


def _hidden_once(k: Hidden, rng):
    """One call of a hidden layer's element-wise work, on operands of its own."""
    from mlp import activations
    from mlp.layers import Dropout

    rows = k.batch
    dt = np.dtype(k.dtype)
    act = activations.get(k.activation)
    drop = Dropout(0.2 if k.dropout else 0.0, rng)
    u = rng.standard_normal((rows, k.width)).astype(dt)  # inputs and gradients: read only
    g0 = rng.standard_normal((rows, k.width)).astype(dt)
    a_out, d_out, g = np.empty_like(u), np.empty_like(u), np.empty_like(u)

    def once():
        a = act.forward(u, out=a_out)
        drop.forward(a, train=k.train, out=d_out if k.dropout else None)
        if k.train:
            gg = drop.backward(g0, out=g)
            act.backward(gg, out=g)

    return once


def _measure_update(k: Update, rng) -> float:
    from mlp.optim import SGD

    params = [rng.standard_normal(s).astype(k.dtype) * 0.01
              for i, o in zip(k.sizes[:-1], k.sizes[1:]) for s in ((i, o), (o,))]
    opt = SGD(params, lr=1e-6, momentum=0.9 if k.momentum else 0.0,
              weight_decay=1e-3 if k.weight_decay else 0.0)
    # the update alone: in training the backward's product already put the gradient in
    # the optimizer's sinks (``net.backward(g, sinks=opt.sinks)``), so nothing is delivered
    return _repeat(lambda: opt.step())


def _measure_step(k: Step, rng) -> float:
    from mlp.data import Dataset
    from mlp.train import train

    n, feat = 256, 8
    # tiny arrays under a known name (its class count, 10)
    ds = Dataset("mnist", rng.standard_normal((n, feat)).astype(k.dtype),
                 rng.integers(0, 10, n), rng.standard_normal((10, feat)).astype(k.dtype),
                 rng.integers(0, 10, 10))
    cfg = TrainConfig(activation=k.activation, loss=k.loss, depth=k.depth, hidden_size=8,
                      dropout=0.2 if k.dropout else 0.0, batch_size=1, epochs=3,
                      test_every=10, dtype=k.dtype)
    return _seconds(lambda: train(cfg, data=ds), 1) / (n * cfg.epochs)


def timed_as(k: Kernel) -> tuple[Kernel, float]:
    """The kernel that is timed for ``k`` and the factor to its time: a product or a hidden
    layer on more than ``MEASURE_ROWS`` batch rows is timed at that many (its time is
    linear in the rows there), so batches of 500 and 1000 share one measurement."""
    if isinstance(k, Gemm) and getattr(k, k.rows) > MEASURE_ROWS:
        rows = getattr(k, k.rows)
        return k._replace(**{k.rows: MEASURE_ROWS}), rows / MEASURE_ROWS
    if isinstance(k, Hidden) and k.batch > MEASURE_ROWS:
        return k._replace(batch=MEASURE_ROWS), k.batch / MEASURE_ROWS
    return k, 1.0


_MEASURE = {Gemm: _measure_gemm, Hidden: _measure_hidden, Update: _measure_update,
            Step: _measure_step}


def split_rows(k: Kernel, threads: int) -> int | None:
    """The rows kernel ``k`` is split by in a run of ``threads`` threads (as
    :mod:`mlp.split` splits its step), or None if it runs whole: a product by its batch rows
    (``x W``, ``gu W^T``) or its weight rows (``x^T gu``) in blocks larger than OpenBLAS's
    small-matrix kernels, an element-wise layer by its batch rows, the update always (in
    float32: float64 steps are not split)."""
    from mlp.split import ALIGN, SMALL
    from mlp.team import blocks

    if threads < 2 or getattr(k, "dtype", "float32") != "float32" or isinstance(k, Step):
        return None
    if isinstance(k, Gemm):
        rows, per_row = (k.m, k.k * k.n)
        parts = [b for b in blocks(rows, threads, ALIGN) if b.stop > b.start]
        ok = len(parts) > 1 and all((b.stop - b.start) * per_row > SMALL for b in parts)
        return rows if ok else None
    if isinstance(k, Hidden):
        parts = [b for b in blocks(k.batch, threads, ALIGN) if b.stop > b.start]
        return k.batch if len(parts) > 1 else None
    return 0  # the update: every parameter by its rows


def _team_gemm(k: Gemm, rng, team) -> float:
    from mlp.split import ALIGN
    from mlp.team import blocks

    dt = np.dtype(k.dtype)
    a = rng.standard_normal((k.k, k.m) if k.layout == "tn" else (k.m, k.k)).astype(dt)
    b = rng.standard_normal((k.n, k.k) if k.layout == "nt" else (k.k, k.n)).astype(dt)
    a = a.T if k.layout == "tn" else a
    b = b.T if k.layout == "nt" else b
    out = np.empty((k.m, k.n), dt)
    rows = blocks(k.m, team.n, ALIGN)

    def part(t: int) -> None:  # one function, known to the team before it forks
        np.matmul(a[rows[t]], b, out=out[rows[t]])

    return _repeat(lambda: team.run(part))


def _team_hidden(k: Hidden, rng, team) -> float:
    from mlp.split import ALIGN
    from mlp.team import blocks

    rows = blocks(k.batch, team.n, ALIGN)
    parts = [_hidden_once(k._replace(batch=r.stop - r.start), np.random.default_rng(t))
             for t, r in enumerate(rows)]

    def part(t: int) -> None:
        parts[t]()

    return _repeat(lambda: team.run(part))


def _team_update(k: Update, rng, team) -> float:
    from mlp.optim import SGD
    from mlp.split import ALIGN
    from mlp.team import blocks

    params = [rng.standard_normal(s).astype(k.dtype) * 0.01
              for i, o in zip(k.sizes[:-1], k.sizes[1:]) for s in ((i, o), (o,))]
    opt = SGD(params, lr=1e-6, momentum=0.9 if k.momentum else 0.0,
              weight_decay=1e-3 if k.weight_decay else 0.0)
    sel = [[blocks(p.shape[0], team.n, ALIGN)[t] for p in params] for t in range(team.n)]

    def part(t: int) -> None:
        opt.step_part(sel[t])

    return _repeat(lambda: team.run(part))


def handoff_s(threads: int) -> float:
    """Seconds of one hand-off of work to a team of ``threads`` and back (a split step has
    three)."""
    from mlp.team import Team

    def nothing(t: int) -> None:
        pass

    with Team(threads) as team:
        return _repeat(lambda: team.run(nothing))


def measure(k: Kernel, threads: int = 1) -> float:
    """Seconds one call of kernel ``k`` takes here in a run of ``threads`` threads: BLAS at
    one thread, the kernel split across a team as the run splits it (:func:`split_rows`);
    a step's fixed cost gains its three hand-offs when the run splits steps."""
    from threadpoolctl import threadpool_limits

    from mlp.team import Team

    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1, user_api="blas"), np.errstate(all="ignore"):
        if isinstance(k, Step) and threads > 1 and k.dtype == "float32":
            return _MEASURE[Step](k, rng) + 3 * handoff_s(threads)
        if split_rows(k, threads) is None:
            return _MEASURE[type(k)](k, rng)
        with Team(threads) as team:
            return {Gemm: _team_gemm, Hidden: _team_hidden, Update: _team_update}[type(k)](
                k, rng, team)


class Rates:
    """Measured kernel times of this machine with ``threads`` BLAS threads, cached in
    ``<cache>/rates.json`` per :func:`machine_key`: a kernel is measured once, by whichever
    process needs it first (under a file lock), and read from the cache after that."""

    def __init__(self, threads: int = 1, cache_dir: str | os.PathLike | None = None):
        from mlp.data import default_cache_dir

        self.threads = threads
        self.path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "rates.json"
        self.machine = machine_key(threads)
        self.seconds: dict[str, float] = self._read().get(self.machine, {})
        self.measured: list[str] = []  # measured by this object (not from the cache)
        self.measure_s = 0.0

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def ensure(self, kernels: Iterable[Kernel]) -> None:
        """Measure the kernels not in the cache yet, and add them to it."""
        from filelock import FileLock, Timeout

        base = (timed_as(k)[0] for k in kernels)
        missing = {key(k): k for k in base if key(k) not in self.seconds}
        if not missing:
            return
        t0 = time.perf_counter()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.path) + ".lock", timeout=120)
            lock.acquire()
        except (Timeout, OSError):  # a read-only cache folder, a stuck lock
            lock = None  # measure anyway, without caching
        try:
            data = self._read()
            cached = data.get(self.machine, {})  # another process may have measured some
            for name, k in missing.items():
                if name not in cached:
                    cached[name] = measure(k, self.threads)
                    self.measured.append(name)
            self.seconds = cached
            if lock is not None:
                data[self.machine] = cached
                with atomic_write(self.path, "w") as f:
                    f.write(json.dumps(data, indent=0, sort_keys=True))
        finally:
            if lock is not None:
                lock.release()
        self.measure_s += time.perf_counter() - t0

    def floor(self, w: Work) -> float:
        """Seconds of a run's kernels alone (:meth:`ensure` them first)."""
        self.ensure(w.counts)
        return sum(c * self.time(k) for k, c in w.counts.items())

    def time(self, k: Kernel) -> float:
        """Seconds of one call of ``k`` (:meth:`ensure` it first)."""
        base, factor = timed_as(k)
        return self.seconds[key(base)] * factor

    def known(self, k: Kernel) -> bool:
        return key(timed_as(k)[0]) in self.seconds
