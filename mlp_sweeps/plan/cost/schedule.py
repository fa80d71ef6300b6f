"""The sweep's wall time: the jobs longest first over ``n_jobs`` workers, each job to the first
free worker (:func:`schedule`), plus a fixed per-job and per-sweep overhead; each job's time
is its floor (:mod:`.rates`) times its ratio (:mod:`.ratios`) under the load now
(:mod:`.load`). The sweeper calls :func:`for_jobs` and prints :meth:`Estimate.lines`.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from mlp import TrainConfig
from mlp_sweeps.plan.cost.load import Load, probe_load
from mlp_sweeps.plan.cost.rates import Rates
from mlp_sweeps.plan.cost.ratios import Ratio, RatioIndex, past_ratios, ratio, shape
from mlp_sweeps.plan.cost.work import Work, train_gemms, work

if TYPE_CHECKING:
    import pandas as pd

JOB_OVERHEAD_S = 0.15  # per job beyond train_time_s: Hydra's set-up, dispatch, its MLflow run
EFFICIENCY_STEPS = 33  # the run's floor_epoch_s measurement after training (3 + 30 batches)
SWEEP_OVERHEAD_S = 6.0  # per sweep: start-up, planning, workers, Hydra per job, summary, report


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
        return [self.table(), self.how_sure(),
                estimate_line(self.total_s, self.wall_s, self.n_workers)]

    def how_sure(self) -> str:
        """Jobs, workers and threads; the uncertainty and what it rests on; the load; the
        rates' source."""
        n = len(self.jobs)
        blas = self.machine.split(" | ")[1] if self.machine.count(" | ") >= 2 else "?"
        src = (f"rates ({blas}): {self.measured} kernels measured now in "
               f"{self.measure_s:.1f} s" if self.measured else f"rates ({blas}): from the cache")
        busy = "" if self.load is None else (
            f"machine load now: {self.load.competing():.1f} other threads on "
            f"{os.cpu_count() or 1} cores{self._niced()}: runs x{self.slowdown:.2f}; ")
        return (f"{n} job{'s' * (n != 1)} on {self.n_workers} workers x {self.threads} BLAS "
                f"thread{'s' * (self.threads != 1)}; +-{self.uncertainty:.0%} "
                f"({self.basis}); {busy}{src}")


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
        The store's runs (:func:`mlp_sweeps.read.results.load_runs`, best with
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


def ladder_share(ladder: Sequence[int], eta: int) -> float:
    """The share of a grid's epochs successive halving trains, survivors resumed from their
    checkpoints: of the configurations, 1/eta^k reach rung k (``ladder[k]`` epochs), each
    training on from the rung before. 81 configurations x 81 epochs at eta 3 (rungs 1, 3,
    9, 27, 81): 297 epochs of the grid's 6,561 (Li et al., JMLR 2018)."""
    before, share = 0, 0.0
    for k, epochs in enumerate(ladder):
        share += (epochs - before) / eta ** k
        before = epochs
    return share / ladder[-1]


@dataclass
class LadderEstimate:
    """An ASHA sweep's cost: the grid's estimate (:func:`for_jobs`, every configuration to
    its last rung) scaled by successive halving's budget (:func:`ladder_share`), if 1/eta of
    the configurations reaching each rung go on. Its workers have no barrier to wait at, so
    the wall time is the runs' time over the workers."""

    grid: Estimate
    ladder: list[int]
    eta: int

    @property
    def share(self) -> float:
        return ladder_share(self.ladder, self.eta)

    @property
    def rung_jobs(self) -> float:
        """Jobs the ladder launches: one per configuration and rung it trains to."""
        return sum(len(self.grid.jobs) / self.eta ** k for k in range(len(self.ladder)))

    @property
    def total_s(self) -> float:
        return self.grid.total_s * self.share

    @property
    def wall_s(self) -> float:
        per_job = JOB_OVERHEAD_S * self.grid.slowdown
        return ((self.total_s + self.rung_jobs * per_job) / max(1, self.grid.n_workers)
                + self.grid.sweep_overhead_s)

    def lines(self) -> list[str]:
        """The budget, how sure the grid's estimate is, and the ``estimate:`` line last."""
        n, epochs = len(self.grid.jobs), self.ladder[-1]
        return [f"successive halving (eta {self.eta}, rungs {', '.join(map(str, self.ladder))}):"
                f" about {n * epochs * self.share:,.0f} epochs of {n} configurations, "
                f"{self.share:.0%} of the grid's {n * epochs:,}, if 1/{self.eta} of those "
                f"reaching each rung go on (promotions made before every configuration reached "
                f"a rung add to it); the grid would take {_secs(self.grid.total_s)} s of runs",
                self.grid.how_sure(),
                estimate_line(self.total_s, self.wall_s, self.grid.n_workers)]
