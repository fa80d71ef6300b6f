"""The ratio of real run time (``train_time_s``) to the floor, learned from the runs in the
store: the configuration's own past runs, else runs of the same shape (layer sizes, batch
size, dtype, examples), else all runs, else a default; each with an uncertainty from the
spread it measures. Each past run counts at its time on an idle machine (its time times the
share of its cores it got: :func:`cpu_share`, from its ``cpu_time_s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import numpy as np

from mlp import TrainConfig
from mlp.data import data_sizes
from mlp_sweeps.claim.ledger import RESULTS
from mlp_sweeps.plan.cost.rates import Rates
from mlp_sweeps.read.results import CONFIG_COLUMNS, train_config
from mlp_sweeps.plan.cost.work import work

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_RATIO, DEFAULT_UNCERTAINTY = 1.2, 0.40  # no past runs: an idle machine's ratio


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
    cols = [c for c in CONFIG_COLUMNS if c in df.columns]
    for r in df.to_dict("records"):
        key = tuple(repr(r[c]) for c in cols) + (r["epochs_done"],)
        if key not in floors:
            floors[key] = None
            cfg = train_config(r)
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
