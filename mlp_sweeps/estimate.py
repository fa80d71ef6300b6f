"""Cost before it runs: each job's run time and the sweep's wall time, estimated from what
each configuration computes, this machine's measured kernel times and the runs already in
the store.

1. **Work** (:func:`work`, pure): what one configuration computes, as counts of kernels a
   run executes. Per training batch of ``b`` rows with layer sizes ``[d_0, ..., d_L]``:
   the forward product ``x_i W_i`` of every layer, the weight gradient ``x_i^T gu_i`` of
   every layer and the input gradient ``gu_i W_i^T`` of every layer but the first; the
   hidden layers' activation (and dropout) forward and backward; one SGD update (about 15
   array passes over every parameter: at small batches it costs more than the products);
   and the step's fixed Python/NumPy dispatch. The last, partial batch is its own shape.
   Test evaluations (every ``test_every`` epochs and after the last) run the forward pass
   in batches of 1000.
2. **Floor** (:class:`Rates`): each kernel timed once on this machine, as a job of its
   thread count runs it (BLAS at one thread, split across the threads as the job's steps
   are: :func:`measure`), and cached per machine and BLAS kernel (CPU model,
   threadpoolctl's library, version and ``architecture``) in the project's cache folder,
   under a file lock. A kernel's time is the CPU time it takes (or the wall time, if less),
   so a measurement on a busy machine is not inflated by the other processes. Kernels on
   batches above ``MEASURE_ROWS`` rows are timed at that many rows and scaled (their time
   is linear in the rows there). The floor of a run is the sum of its kernels' times.
3. **Ratio** (:func:`ratio`): real run time (``train_time_s``) over the floor, learned from
   the runs in the store: the configuration's own past runs, else runs of the same shape
   (layer sizes, batch size, dtype, examples), else all runs, else a default; each with an
   uncertainty from the spread it measures. Each past run counts at its time on an idle
   machine (its time times the share of its cores it got: :func:`cpu_share`, from its
   ``cpu_time_s``), and every ratio is stretched by the load measured now
   (:func:`probe_load`: which threads are runnable, at which nice level; the sweep's
   threads get their weighted fair share of the cores, as Linux's scheduler gives it).
4. **Wall** (:func:`schedule`): the jobs longest first over ``n_jobs`` workers (each job
   to the first free worker), plus a fixed per-job and per-sweep overhead.

The sweeper calls :func:`for_jobs` and prints :meth:`Estimate.lines`.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NamedTuple, Sequence

import numpy as np

from mlp import TrainConfig
from mlp.data import data_sizes
from mlp.files import atomic_write

from .ledger import RESULTS
from mlp.train import EVAL_BATCH

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Gemm", "Hidden", "Update", "Step", "Work", "work", "train_gemms",
           "Rates", "machine_key", "measure", "timed_as", "Load", "probe_load", "fair_share",
           "nice_weight", "runnable_threads", "Ratio", "ratio", "past_ratios", "cpu_share",
           "RatioIndex", "shape", "schedule", "JobEstimate", "Estimate", "for_jobs",
           "estimate_line"]

# examples (train, test), features and classes of each dataset
MEASURE_ROWS = 256  # larger batches are timed at this many rows and scaled linearly
UPDATE_PASSES = 15  # array reads + writes of one SGD step per parameter (mlp/optim.py)

# Measured on the project's 2-core machine (scripts/bench_eta.py; see docs/performance.md).
JOB_OVERHEAD_S = 0.15  # per job beyond train_time_s: Hydra's set-up, dispatch, its MLflow run
EFFICIENCY_STEPS = 33  # the run's floor_epoch_s measurement after training (3 + 30 batches)
SWEEP_OVERHEAD_S = 6.0  # per sweep: start-up, planning, workers, Hydra per job, summary, report
DEFAULT_RATIO, DEFAULT_UNCERTAINTY = 1.2, 0.40  # no past runs: an idle machine's ratio


# ---------------------------------------------------------------------------------------
# work: kernels and their counts


class Gemm(NamedTuple):
    """A matrix product ``(m, k) @ (k, n)``; ``layout``: ``nn`` (x W), ``tn`` (x^T gu: x is
    stored (k, m) and read transposed), ``nt`` (gu W^T). ``rows``: which dimension is the
    batch (``m`` or ``k``), the one that is scaled down for timing."""

    m: int
    k: int
    n: int
    layout: str
    dtype: str

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.k * self.n

    @property
    def rows(self) -> str:
        return "k" if self.layout == "tn" else "m"


class Hidden(NamedTuple):
    """A hidden layer's element-wise work on (batch, width): activation forward (and, in
    training, dropout forward, dropout and activation backward)."""

    activation: str
    dropout: bool
    batch: int
    width: int
    train: bool
    dtype: str


class Update(NamedTuple):
    """One SGD step (momentum, weight decay) over a network's parameters."""

    sizes: tuple[int, ...]
    momentum: bool
    weight_decay: bool
    dtype: str

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in zip(self.sizes[:-1], self.sizes[1:]))


class Step(NamedTuple):
    """The fixed cost of one training step: the loop's Python and NumPy dispatch, measured
    as a real training step (mlp.train) of this depth on tiny shapes."""

    depth: int
    activation: str
    loss: str
    dropout: bool
    dtype: str


Kernel = Gemm | Hidden | Update | Step


def key(k: Kernel) -> str:
    """A kernel as a stable string (the rate cache's key)."""
    return f"{type(k).__name__.lower()} " + " ".join(
        "x".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in k)


@dataclass
class Work:
    """What one configuration computes: kernel -> times it runs."""

    counts: dict[Kernel, float]
    sizes: tuple[int, ...]
    n_train: int
    n_test: int
    steps: int  # training steps (batches) in all
    evaluations: int

    @property
    def flops(self) -> float:
        """Floating-point operations of the matrix products, training and evaluation."""
        return sum(c * k.flops for k, c in self.counts.items() if isinstance(k, Gemm))

    @property
    def update_bytes(self) -> float:
        """Bytes the SGD updates stream through memory."""
        return sum(c * k.n_params * UPDATE_PASSES * np.dtype(k.dtype).itemsize
                   for k, c in self.counts.items() if isinstance(k, Update))


def evaluations(epochs: int, test_every: int) -> int:
    """Test evaluations of a run: every ``test_every`` epochs and after the last."""
    return epochs // test_every + (epochs % test_every != 0)


def _batches(n: int, batch: int) -> list[tuple[int, int]]:
    """(rows, count) of an epoch's batches: the full ones and a partial last one."""
    full, rest = divmod(n, batch)
    return [(b, c) for b, c in ((batch, full), (rest, 1)) if b and c]


def _add(counts: dict, k: Kernel, times: float) -> None:
    counts[k] = counts.get(k, 0.0) + times


def train_gemms(sizes: Sequence[int], b: int, dtype: str) -> list[Gemm]:
    """The matrix products of one training step on ``b`` rows: ``x_i W_i`` for every
    layer, ``x_i^T gu_i`` (dW) for every layer, ``gu_i W_i^T`` (dx) for all but the first."""
    out = []
    for i, (a, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        out += [Gemm(b, a, o, "nn", dtype), Gemm(a, b, o, "tn", dtype)]
        if i:
            out.append(Gemm(b, o, a, "nt", dtype))
    return out


def work(cfg: TrainConfig) -> Work:
    """The kernels of a whole run of ``cfg`` (all its epochs and evaluations) and their
    counts. Pure: no data is loaded."""
    n_train, n_test, feat, classes = data_sizes(cfg.data)
    sizes = (feat,) + (cfg.hidden_size,) * cfg.depth + (classes,)
    counts: dict[Kernel, float] = {}
    steps = 0
    for b, c in _batches(n_train, cfg.batch_size):
        times = c * cfg.epochs
        steps += times
        for k in train_gemms(sizes, b, cfg.dtype):
            _add(counts, k, times)
        for _ in range(cfg.depth):
            _add(counts, Hidden(cfg.activation, cfg.dropout > 0, b, cfg.hidden_size, True,
                                cfg.dtype), times)
    _add(counts, Update(sizes, cfg.momentum > 0, cfg.weight_decay > 0, cfg.dtype), steps)
    _add(counts, Step(cfg.depth, cfg.activation, cfg.loss, cfg.dropout > 0, cfg.dtype), steps)
    n_eval = evaluations(cfg.epochs, cfg.test_every)
    for b, c in _batches(n_test, EVAL_BATCH):  # the forward pass only
        for a, o in zip(sizes[:-1], sizes[1:]):
            _add(counts, Gemm(b, a, o, "nn", cfg.dtype), c * n_eval)
        for _ in range(cfg.depth):
            _add(counts, Hidden(cfg.activation, False, b, cfg.hidden_size, False, cfg.dtype),
                 c * n_eval)
    return Work(counts, sizes, n_train, n_test, steps, n_eval)


# ---------------------------------------------------------------------------------------
# rates: each kernel timed on this machine, cached


def machine_key(threads: int) -> str:
    """What a measured time is valid for: CPU model, BLAS library, version and kernel
    (threadpoolctl's ``architecture``), NumPy, and the run's threads (its steps split across
    them, BLAS at one thread)."""
    from .timing import machine, numpy_blas

    m = machine()
    blas = numpy_blas()
    return (f"{m['cpu']} | {blas.get('internal_api', 'none')} {blas.get('version')} "
            f"{blas.get('architecture')} | numpy {np.__version__} | {threads} threads, split")


def _seconds(fn, reps: int) -> float:
    """Seconds per call of ``fn`` over ``reps`` calls: the process's CPU time, or the wall
    time if less (BLAS on several threads). CPU time does not grow when other processes
    share the cores, so a kernel measured on a busy machine is cached at its own cost."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    return min(time.perf_counter() - w0, time.process_time() - c0) / reps


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
    from mlp.threads import blocks

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
    from mlp.threads import blocks

    dt = np.dtype(k.dtype)
    a = rng.standard_normal((k.k, k.m) if k.layout == "tn" else (k.m, k.k)).astype(dt)
    b = rng.standard_normal((k.n, k.k) if k.layout == "nt" else (k.k, k.n)).astype(dt)
    a = a.T if k.layout == "tn" else a
    b = b.T if k.layout == "nt" else b
    out = np.empty((k.m, k.n), dt)
    rows = blocks(k.m, team.n, ALIGN)
    return _repeat(lambda: team.run(lambda t: np.matmul(a[rows[t]], b, out=out[rows[t]])))


def _team_hidden(k: Hidden, rng, team) -> float:
    from mlp.split import ALIGN
    from mlp.threads import blocks

    rows = blocks(k.batch, team.n, ALIGN)
    parts = [_hidden_once(k._replace(batch=r.stop - r.start), np.random.default_rng(t))
             for t, r in enumerate(rows)]
    return _repeat(lambda: team.run(lambda t: parts[t]()))


def _team_update(k: Update, rng, team) -> float:
    from mlp.optim import SGD
    from mlp.split import ALIGN
    from mlp.threads import blocks

    params = [rng.standard_normal(s).astype(k.dtype) * 0.01
              for i, o in zip(k.sizes[:-1], k.sizes[1:]) for s in ((i, o), (o,))]
    opt = SGD(params, lr=1e-6, momentum=0.9 if k.momentum else 0.0,
              weight_decay=1e-3 if k.weight_decay else 0.0)
    sel = [[blocks(p.shape[0], team.n, ALIGN)[t] for p in params] for t in range(team.n)]
    return _repeat(lambda: team.run(lambda t: opt.step_part(sel[t])))


def handoff_s(threads: int) -> float:
    """Seconds of one hand-off of work to a team of ``threads`` and back (a split step has
    three)."""
    from mlp.threads import Team

    with Team(threads) as team:
        return _repeat(lambda: team.run(lambda t: None))


def measure(k: Kernel, threads: int = 1) -> float:
    """Seconds one call of kernel ``k`` takes here in a run of ``threads`` threads: BLAS at
    one thread, the kernel split across a team as the run splits it (:func:`split_rows`);
    a step's fixed cost gains its three hand-offs when the run splits steps."""
    from threadpoolctl import threadpool_limits

    from mlp.threads import Team

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


@dataclass(frozen=True)
class Load:
    """How busy the machine is now (:func:`probe_load`)."""

    share: float  # of a core one thread of this process got in the probe (1: a core to itself)
    others: float  # cores other processes kept busy meanwhile
    loadavg: float = 0.0  # runnable threads, averaged over the last minute
    # other processes' threads seen runnable during the probe (Linux), each as (the
    # fraction of the probe's samples it was runnable in, its scheduler weight relative to
    # a thread of ours at nice 0 (nice +5: 1.25**-5 = 0.33), its scheduling group: "" for
    # this process's own, else another autogroup (a session: another terminal, a service)
    runnable: tuple[tuple[float, float, str], ...] | None = None
    # the other groups' weights relative to ours (an autogroup's own nice level)
    group_weights: tuple[tuple[str, float], ...] = ()
    # this process is in the root autogroup (see :func:`fair_share`)
    root_group: bool = False

    def competing(self, cores: int | None = None) -> float:
        """Threads of other processes that will compete with the sweep's. From the
        runnable threads seen when known (each counted by the time it was runnable);
        else the most of the cores they kept busy, the last minute's load average and, on
        a saturated machine, as many as give the share the probe got (short bursts make
        the probe's share optimistic, the load average slow: each alone misses some
        load)."""
        if self.runnable is not None:
            return sum(t[0] for t in self.runnable)
        cores = cores or os.cpu_count() or 1
        from_share = cores / self.share - 1 if self.share < 0.9 else 0.0
        return max(self.others, self.loadavg, from_share)

    def slowdown(self, threads: int, cores: int | None = None) -> float:
        """Expected stretch of run times when the sweep's ``threads`` join (in this
        process's scheduling group, as its workers will be). With the runnable threads
        known: the scheduler's weighted fair share (:func:`fair_share`). Else the
        competing threads and ours shared equally over the cores."""
        cores = cores or os.cpu_count() or 1
        if self.runnable is not None:
            return 1.0 / fair_share(self.runnable, threads, cores, dict(self.group_weights),
                                    self.root_group)
        return max(1.0, (self.competing(cores) + threads) / cores)


def _level(entries: Sequence[tuple[float, float]], capacity: float) -> float:
    """Weighted water-filling: the level ``s`` at which sum(min(demand, s * weight)) =
    ``capacity`` (inf when every demand fits)."""
    if sum(d for d, _ in entries) <= capacity:
        return math.inf
    lo, hi = 0.0, max(d / w for d, w in entries if w > 0) if entries else 1.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sum(min(d, mid * w) for d, w in entries) < capacity else (lo, mid)
    return lo


def fair_share(others: Sequence[tuple], threads: int, cores: int,
               group_weights: dict[str, float] | None = None,
               root_group: bool = False) -> float:
    """The share of a core each of ``threads`` busy threads (weight 1, in this process's
    scheduling group) gets beside ``others`` ((demand in cores, weight[, group]) each: no
    group or "" is ours) on ``cores`` cores, as Linux's fair scheduler divides them: first
    between the groups (autogroups: sessions) by their weights, each group using at most
    what its threads ask for, then within our group between its threads by their nice
    weights, each thread at most a core and at most what it asks for.

    The root autogroup (:data:`ROOT_AUTOGROUP`; ours when ``root_group``) is no group of
    its own: its threads are peers of the sessions' groups, each weighed by its nice."""
    if threads <= 0:
        return 1.0
    weights = group_weights or {}
    ours = [(1.0, 1.0)] * threads
    groups: dict[str, float] = {}
    top = []  # (demand, weight) of what shares the cores first: groups, root threads
    for t in others:
        d, w, g = (t[0], t[1], t[2] if len(t) > 2 else "")
        if g == ROOT_AUTOGROUP:
            top.append((min(d, 1.0), w))
        elif g:
            groups[g] = groups.get(g, 0.0) + d
        else:
            ours.append((min(d, 1.0), w))
    top += [(min(cores, d), weights.get(g, 1.0)) for g, d in groups.items()]
    if root_group:  # ours are root threads too
        return min(1.0, _level(top + ours, cores))
    ours_cores = min(cores, sum(d for d, _ in ours))
    ours_cores = min(ours_cores, _level([(ours_cores, 1.0)] + top, cores))
    return min(1.0, _level(ours, ours_cores))


def nice_weight(nice: int) -> float:
    """The scheduler weight of a nice level relative to nice 0 (Linux's table: 1024 at 0,
    about 1.25x per level)."""
    return 1.25 ** -nice


ROOT_AUTOGROUP = "/"  # where a process never moved by setsid() (PID 1's, and its children's)


def _autogroup(pid: int | str) -> tuple[str, int] | None:
    """A process's autogroup and the group's nice level, from ``/proc/PID/autogroup``
    ("/autogroup-816 nice 0"). The kernel writes nothing for the root autogroup (PID 1's,
    and that of every process no ``setsid()`` moved out of it, e.g. a service's children):
    that is :data:`ROOT_AUTOGROUP`, at nice 0. None where the file cannot be read."""
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            text = f.read()
    except OSError:
        return None
    if not text.strip():
        return ROOT_AUTOGROUP, 0
    try:
        name, _, nice = text.split()
        return name, int(nice)
    except ValueError:
        return None


def _autogroups_enabled() -> bool:
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def runnable_threads(skip_pid: int | None = None) -> dict[int, tuple[int, int]] | None:
    """``{thread id: (process id, nice)}`` of the threads runnable now (state R in /proc),
    leaving out those of ``skip_pid`` and of its descendants (a sweep's own workers, busy
    importing while it probes, will run its jobs: they are not load); None where /proc
    cannot be read."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    parent: dict[int, int] = {}
    threads: dict[int, tuple[int, int]] = {}
    for p in pids:
        pid = int(p)
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        parent[pid] = int(stat[stat.rfind(b")") + 2:].split()[1])
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) "
            if len(fields) > 16 and fields[0] == b"R":
                threads[int(t)] = (pid, int(fields[16]))
    if skip_pid is None:
        return threads
    ours = {skip_pid}
    grew = True
    while grew:  # descendants, whatever the order /proc listed them in
        new = {c for c, pp in parent.items() if pp in ours and c not in ours}
        ours |= new
        grew = bool(new)
    return {t: v for t, v in threads.items() if v[0] not in ours}


def probe_load(seconds: float = 0.3, samples: int = 10) -> Load:
    """Run a single-threaded loop for ``seconds`` of wall time; its CPU time over the wall
    time is the share of a core a new thread gets now, /proc/stat tells the cores the
    other processes used meanwhile, and ``samples`` looks at /proc say which threads
    were runnable, at which nice level, in which autogroup (Linux; elsewhere: idle)."""
    from .timing import _busy_seconds

    me = os.getpid()
    own_nice = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0
    seen: dict[int, list[int]] = {}  # tid -> [samples runnable in, pid, nice]
    looked = 0
    x = np.ones(64)
    busy0, w0, c0 = _busy_seconds(), time.perf_counter(), time.process_time()
    while True:
        elapsed = time.perf_counter() - w0
        if elapsed >= seconds:
            break
        if looked < samples and elapsed >= looked * seconds / samples:
            now = runnable_threads(skip_pid=me)
            if now is None:
                samples = looked = 0
            else:
                looked += 1
                for tid, (pid, nice) in now.items():
                    seen.setdefault(tid, [0, pid, nice])[0] += 1
        for _ in range(200):
            x = x * 1.0000001
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    busy = _busy_seconds() - busy0
    others = (busy - cpu) / wall if math.isfinite(busy) else 0.0
    try:
        loadavg = os.getloadavg()[0]
    except OSError:
        loadavg = 0.0
    if not looked:
        return Load(min(1.0, cpu / wall), max(0.0, others), loadavg)
    mine = _autogroup("self") if _autogroups_enabled() else None
    runnable, weights = group_runnable(seen.values(), looked, own_nice, mine)
    return Load(min(1.0, cpu / wall), max(0.0, others), loadavg, runnable, weights,
                root_group=mine is not None and mine[0] == ROOT_AUTOGROUP)


def group_runnable(seen, looked: int, own_nice: int, mine: tuple[str, int] | None,
                   autogroup=_autogroup):
    """``(runnable, group weights)`` for :class:`Load` from ``seen`` ``[samples runnable
    in, pid, nice]`` of other threads over ``looked`` samples. With autogroups on (``mine``:
    our process's autogroup) the scheduler shares the cores between sessions first: a
    thread of another autogroup counts in its group (weighed by the group's nice against
    ours), not by its own nice against ours."""
    groups: dict[int, tuple[str, int] | None] = {}
    runnable, weights = [], {}
    for n, pid, nice in seen:
        if mine is not None and pid not in groups:
            groups[pid] = autogroup(pid)
        g = groups.get(pid)
        if g is not None and g[0] != mine[0]:
            weights[g[0]] = nice_weight(g[1] - mine[1])
            runnable.append((n / looked, nice_weight(nice), g[0]))
        else:
            runnable.append((n / looked, nice_weight(nice - own_nice), ""))
    return tuple(runnable), tuple(weights.items())


# ---------------------------------------------------------------------------------------
# the ratio of real run time to the floor, learned from past runs


@dataclass(frozen=True)
class Ratio:
    """Real time / floor, with a relative uncertainty (0.4: +-40%) and what it rests on."""

    value: float
    uncertainty: float
    level: str  # config, shape, machine or default
    n: int = 0  # past runs it rests on

    @property
    def basis(self) -> str:
        runs = f"{self.n} past run{'s' * (self.n != 1)}"
        return {"config": f"its own {runs}", "shape": f"{runs} of the same shape",
                "machine": f"{runs} of other shapes",
                "default": "no past runs on this machine"}[self.level]


MIN_UNCERTAINTY = {"config": 0.10, "shape": 0.20, "machine": 0.25}


def _spread(r: np.ndarray, centre: float) -> float:
    """Relative spread of ratios around their median: the largest deviation for a few
    runs, the 10-90% range's half-width beyond that."""
    if len(r) >= 5:
        lo, hi = np.quantile(r, [0.1, 0.9])
        return float(max(centre - lo, hi - centre) / centre)
    return float(np.max(np.abs(r / centre - 1.0)))


class RatioIndex:
    """Past ratios (:func:`past_ratios`) indexed once by configuration and by shape, so a
    sweep of many jobs over a store of many runs looks each job up in constant time."""

    def __init__(self, past: pd.DataFrame):
        past = past[past["ratio"].notna()]
        self.by_config = {h: g.to_numpy(float) for h, g in past.groupby("config_hash")["ratio"]}
        self.by_shape = {sh: g.to_numpy(float) for sh, g in past.groupby(
            past["shape"].map(repr))["ratio"]}
        self.all = past["ratio"].to_numpy(float)

    def levels(self, config_hash: str | None, cfg: TrainConfig):
        empty = np.empty(0)
        return [("config", self.by_config.get(config_hash, empty)),
                ("shape", self.by_shape.get(repr(shape(cfg)), empty)),
                ("machine", self.all)]


def ratio(config_hash: str | None, cfg: TrainConfig,
          past: pd.DataFrame | RatioIndex | None) -> Ratio:
    """The ratio for ``cfg`` from ``past`` (rows with ``config_hash``, ``shape`` and
    ``ratio``: :func:`past_ratios`, or their :class:`RatioIndex`): the configuration's own
    runs, else runs of the same shape, else all runs, else :data:`DEFAULT_RATIO`."""
    if past is None or (not isinstance(past, RatioIndex) and past.empty):
        return Ratio(DEFAULT_RATIO, DEFAULT_UNCERTAINTY, "default")
    index = past if isinstance(past, RatioIndex) else RatioIndex(past)
    for level, r in index.levels(config_hash, cfg):
        if len(r):
            centre = float(np.median(r))
            u = max(MIN_UNCERTAINTY[level], _spread(r, centre) if len(r) > 1
                    else MIN_UNCERTAINTY[level] * 1.5)
            return Ratio(centre, u, level, len(r))
    return Ratio(DEFAULT_RATIO, DEFAULT_UNCERTAINTY, "default")


def past_ratios(runs: pd.DataFrame | None, rates: Rates,
                shapes: Iterable[tuple] | None = None) -> pd.DataFrame | None:
    """Each usable past run (finished or diverged, with a time; of this host if the frame
    has a ``host`` column) with its ``shape`` and ``ratio``: its ``time_s`` over the floor
    of the epochs it did. Kernels are measured for runs of the given ``shapes`` (see
    :func:`shape`; None: all); a run of another shape counts only once its kernels are
    in the cache, which keeps an estimate quick on a store of many shapes."""
    import pandas as pd

    if runs is None or runs.empty:
        return None
    df = runs[runs["status"].isin(RESULTS) & runs["time_s"].notna()
              & (runs["epochs_done"] > 0)]
    if "host" in df.columns:
        import socket

        df = df[df["host"] == socket.gethostname()]
    wanted = None if shapes is None else set(shapes)
    rows = []
    floors: dict[tuple, tuple | None] = {}  # runs of one configuration and length: one floor
    cols = [c for c in _CONFIG_COLUMNS if c in df.columns]
    for r in df.to_dict("records"):
        key = tuple(repr(r[c]) for c in cols) + (r["epochs_done"],)
        if key not in floors:
            floors[key] = None
            cfg = _config_of(r)
            if cfg is not None:
                cfg.epochs = int(r["epochs_done"])
                w = work(cfg)
                if wanted is None or shape(cfg) in wanted \
                        or all(rates.known(k) for k in w.counts):
                    floors[key] = (shape(cfg), rates.floor(w))
        if floors[key] is None:
            continue
        sh, floor = floors[key]
        rows.append({"config_hash": r["config_hash"], "shape": sh,
                     "ratio": float(r["time_s"]) * cpu_share(r) / floor if floor > 0
                     else np.nan})
    return pd.DataFrame(rows) if rows else None


def cpu_share(run) -> float:
    """The share of its cores a past run got: its CPU time over its wall time and BLAS
    threads (at most 1); 1 when the run did not record it. A run's time times its share is
    its time on an idle machine, the load it saw taken out."""
    cpu, wall = run.get("cpu_s"), run.get("time_s")
    threads = run.get("threads")
    if cpu is None or wall is None or not (cpu > 0 and wall > 0):  # NaN: not recorded
        return 1.0
    threads = int(threads) if threads is not None and threads == threads and threads > 0 else 1
    return min(1.0, float(cpu) / (float(wall) * threads))


def shape(cfg: TrainConfig) -> tuple:
    """What makes runs similar: layer sizes, batch size, dtype, training examples."""
    n_train, _, feat, classes = data_sizes(cfg.data)
    return ((feat,) + (cfg.hidden_size,) * cfg.depth + (classes,), cfg.batch_size, cfg.dtype,
            n_train)


#: the runs-frame columns :func:`_config_of` reads
_CONFIG_COLUMNS = ("activation", "loss", "depth", "hidden_size", "dropout", "momentum",
                   "weight_decay", "batch_size", "epochs", "test_every", "dtype", "data",
                   "train_limit", "test_limit")


def _config_of(row) -> TrainConfig | None:
    """The TrainConfig of a runs-frame row (the columns that set the work), or None."""

    def val(col, default=None):
        v = row.get(col, default)
        return default if v is None or (isinstance(v, float) and math.isnan(v)) else v

    try:
        data = {"name": val("data", "mnist")}
        for lim in ("train_limit", "test_limit"):
            if val(lim) is not None:
                data[lim] = int(val(lim))
        return TrainConfig(activation=val("activation", "relu"), loss=val("loss", "cross_entropy"),
                           depth=int(val("depth", 1)), hidden_size=int(val("hidden_size", 784)),
                           dropout=float(val("dropout", 0.0)), momentum=float(val("momentum", 0.9)),
                           weight_decay=float(val("weight_decay", 1e-3)),
                           batch_size=int(val("batch_size", 100)),
                           epochs=int(val("epochs", 1)), test_every=int(val("test_every", 5)),
                           dtype=val("dtype", "float32"), data=data)
    except (TypeError, ValueError, KeyError):
        return None


# ---------------------------------------------------------------------------------------
# the sweep: schedule and report


def schedule(durations: Sequence[float], n_workers: int) -> tuple[float, list[int]]:
    """Makespan of running ``durations`` in the given order, each on the first worker to
    be free (how the launchers hand out jobs); returns (seconds, worker of each job)."""
    free = [(0.0, w) for w in range(max(1, n_workers))]
    heapq.heapify(free)
    assigned, end = [], 0.0
    for d in durations:
        t, w = heapq.heappop(free)
        assigned.append(w)
        end = max(end, t + d)
        heapq.heappush(free, (t + d, w))
    return end, assigned


@dataclass
class JobEstimate:
    name: str
    config_hash: str
    config: TrainConfig
    work: Work
    floor_s: float
    ratio: Ratio
    overhead_s: float
    load: float = 1.0  # the stretch of the run by the machine's load now

    @property
    def run_s(self) -> float:
        """Estimated ``train_time_s`` of the run."""
        return self.floor_s * self.ratio.value * self.load

    @property
    def job_s(self) -> float:
        """The job on its worker: the run and its fixed overhead."""
        return self.run_s + self.overhead_s


@dataclass
class Estimate:
    jobs: list[JobEstimate]  # longest first, the order they are launched in
    n_workers: int
    threads: int
    wall_s: float
    sweep_overhead_s: float
    load: Load | None = None
    slowdown: float = 1.0  # the load's expected stretch of this sweep's run times
    measured: int = 0  # kernels measured now (the others came from the cache)
    measure_s: float = 0.0
    machine: str = ""

    @property
    def total_s(self) -> float:
        """Seconds of runs: the jobs' ``train_time_s`` summed."""
        return sum(j.run_s for j in self.jobs)

    @property
    def uncertainty(self) -> float:
        """Relative uncertainty of the totals: the jobs' own, weighted by their time (the
        ratios' errors move together: one machine, one load)."""
        t = sum(j.run_s for j in self.jobs)
        return sum(j.run_s * j.ratio.uncertainty for j in self.jobs) / t if t else 0.0

    @property
    def basis(self) -> str:
        """What the ratios rest on, e.g. ``5 jobs: no past runs on this machine``."""
        text = {"config": "their own past runs", "shape": "past runs of the same shape",
                "machine": "past runs of other shapes", "default": "no past runs on this machine"}
        counts: dict[str, int] = {}
        for j in self.jobs:
            counts[j.ratio.level] = counts.get(j.ratio.level, 0) + 1
        return "; ".join(f"{n} job{'s' * (n != 1)}: {text[lv]}" for lv, n in counts.items())

    def table(self) -> str:
        """One row per job: its work, floor, ratio and estimate."""
        import pandas as pd

        if not self.jobs:
            return "(no jobs to run)"
        rows = [{"job": j.name, "epochs": j.config.epochs, "GFLOP": j.work.flops / 1e9,
                 "update GB": j.work.update_bytes / 1e9, "floor s": j.floor_s,
                 "x real/floor": j.ratio.value, "x load": j.load, "run s": j.run_s,
                 "+-": f"{j.ratio.uncertainty:.0%}", "from": j.ratio.basis} for j in self.jobs]
        return pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.1f}")

    def _niced(self) -> str:
        run = self.load.runnable or ()
        apart = sum(t[0] for t in run if t[2])
        niced = sum(t[0] for t in run if t[1] < 0.99 and not t[2])
        parts = ([f"{apart:.1f} in other sessions"] if apart >= 0.05 else []) + \
            ([f"{niced:.1f} niced"] if niced >= 0.05 else [])
        return f" ({', '.join(parts)})" if parts else ""

    def lines(self) -> list[str]:
        """The table, how sure it is, and the machine-readable ``estimate:`` line last."""
        n = len(self.jobs)
        blas = self.machine.split(" | ")[1] if self.machine.count(" | ") >= 2 else "?"
        src = (f"rates ({blas}): {self.measured} kernels measured now in "
               f"{self.measure_s:.1f} s" if self.measured else f"rates ({blas}): from the cache")
        busy = "" if self.load is None else (
            f"machine load now: {self.load.competing():.1f} other threads on "
            f"{os.cpu_count() or 1} cores{self._niced()}: runs x{self.slowdown:.2f}; ")
        return [self.table(),
                f"{n} job{'s' * (n != 1)} on {self.n_workers} workers x {self.threads} BLAS "
                f"thread{'s' * (self.threads != 1)}; +-{self.uncertainty:.0%} "
                f"({self.basis}); {busy}{src}",
                estimate_line(self.total_s, self.wall_s, self.n_workers)]


def estimate_line(total_s: float, wall_s: float, n_workers: int) -> str:
    """``estimate: <total seconds> s of runs, <wall seconds> s wall on <n> workers``."""
    return f"estimate: {_secs(total_s)} s of runs, {_secs(wall_s)} s wall on {n_workers} workers"


def _secs(s: float) -> str:
    return f"{s:.0f}" if s >= 10 else f"{s:.1f}"


def for_jobs(configs: Sequence[TrainConfig], n_jobs: int, runs: pd.DataFrame | None = None,
             *, names: Sequence[str] | None = None, hashes: Sequence[str] | None = None,
             threads: int | None = None, load: Load | None | bool = True,
             cache_dir: str | os.PathLike | None = None) -> Estimate:
    """Estimate a sweep of ``configs`` on ``n_jobs`` parallel workers.

    Parameters
    ----------
    configs : list of TrainConfig
        The jobs to run (validated).
    n_jobs : int >= 1
        Jobs run at once.
    runs : DataFrame, optional
        The store's runs (:func:`mlp_sweeps.results.load_runs`, best with
        ``latest_per_config=False``) to learn the ratio from; None: none.
    names : list of str, optional
        Each job's label in the table (default ``#i``).
    hashes : list of str, optional
        Each job's config hash (default: computed from its config).
    threads : int, optional
        Threads per job (default: cores // min(n_jobs, jobs), as the sweeper gives).
    load : True (probe the machine now, 0.3 s), a :class:`Load`, or False/None (idle).
    cache_dir : path, optional
        Where ``rates.json`` lives (default: the project's cache folder).
    """
    n_jobs = max(1, int(n_jobs))
    cores = os.cpu_count() or 1
    if threads is None:
        threads = max(1, cores // max(1, min(n_jobs, len(configs))))
    rates = Rates(threads, cache_dir)
    works = [work(c) for c in configs]
    rates.ensure(k for w in works for k in w.counts)
    if load is True:
        load = probe_load()
    slowdown = load.slowdown(min(n_jobs, len(configs)) * threads, cores) if load else 1.0
    past = past_ratios(runs, rates, {shape(c) for c in configs})
    index = RatioIndex(past) if past is not None else None
    jobs = []
    for i, (cfg, w) in enumerate(zip(configs, works)):
        h = hashes[i] if hashes is not None else cfg.config_hash()
        floor = rates.floor(w)
        # after training, the run measures its floor_epoch_s: EFFICIENCY_STEPS full steps
        step = sum(rates.time(k)
                   for k in train_gemms(w.sizes, min(cfg.batch_size, w.n_train), cfg.dtype))
        r = ratio(h, cfg, index)
        jobs.append(JobEstimate(names[i] if names is not None else f"#{i}", h, cfg, w, floor, r,
                                (JOB_OVERHEAD_S + EFFICIENCY_STEPS * step) * slowdown,
                                slowdown))
    jobs.sort(key=lambda j: -j.job_s)
    makespan, _ = schedule([j.job_s for j in jobs], n_jobs)
    over = SWEEP_OVERHEAD_S * slowdown
    return Estimate(jobs, n_jobs, threads, makespan + over, over, load or None, slowdown,
                    len(rates.measured), rates.measure_s, rates.machine)
