"""The controlled timing pass: the time per epoch of study configurations, each trained alone
in this process on one BLAS thread for a few epochs, with the CPU use of every other process
on the machine measured meanwhile (a timing taken under load is marked, not trusted).

The findings that compare times (activations, depth, hidden size, and the published times)
read these, not the times of sweep runs that shared the machine.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Iterable

import pandas as pd
from threadpoolctl import threadpool_limits

from mlp import TrainConfig
from mlp.config import DataConfig
from mlp.train import load_data, train

from mlp_sweeps.plan.cost.machine import busy_seconds
from mlp_sweeps.report.study.protocol import CONFIG_KEYS


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def time_configuration(cfg: TrainConfig, data, epochs: int) -> dict:
    """Train ``cfg`` for ``epochs`` (test once, at the end) on one BLAS thread. Returns the
    median, min and max epoch time (the first epoch left out when there are more), the
    evaluation time and the cores other processes used meanwhile."""
    cfg.epochs, cfg.test_every = epochs, epochs
    busy0, own0, t0 = busy_seconds(), _own_seconds(), time.perf_counter()
    with threadpool_limits(1, user_api="blas"):
        result = train(cfg, data=data)
    wall = time.perf_counter() - t0
    others = (busy_seconds() - busy0 - (_own_seconds() - own0)) / wall
    times = [r["epoch_time_s"] for r in result.history]
    steady = times[1:] if len(times) > 1 else times
    return {"epochs": len(times), "epoch_s": statistics.median(steady),
            "epoch_s_min": min(steady), "epoch_s_max": max(steady),
            "eval_s": sum(r.get("eval_time_s", 0.0) for r in result.history),
            "other_cpu": max(0.0, others), "status": result.status}


def measure(configurations: pd.DataFrame, epochs: int = 3, train_limit: int | None = None,
            progress: Callable[[str], None] | None = print) -> pd.DataFrame:
    """Time each configuration (rows with CONFIG_KEYS) alone, one after the other."""
    data_cfg = DataConfig(train_limit=train_limit)
    data = load_data(TrainConfig(data=data_cfg))
    rows = []
    for i, c in enumerate(configurations.to_dict("records"), 1):
        cfg = TrainConfig.from_dict({
            **{k: c[k] for k in CONFIG_KEYS if "." not in k and k != "loss"},
            "loss": {"name": c["loss"], "reduction": c["loss.reduction"]},
            "data": {"train_limit": train_limit}})
        row = {k: c[k] for k in CONFIG_KEYS} | time_configuration(cfg, data, epochs)
        row["train_limit"] = train_limit
        rows.append(row)
        if progress:
            progress(f"timing {i}/{len(configurations)}: " +
                     ", ".join(f"{k}={c[k]}" for k in ("activation", "loss", "depth",
                                                        "hidden_size")) +
                     f": {row['epoch_s']:.3f} s/epoch (others used {row['other_cpu']:.2f} cores)")
    return pd.DataFrame(rows)


def timed_grids() -> tuple[str, ...]:
    """The study grids whose times a finding compares: the published tables (times of the
    activations and losses at both depths) and the hidden-size grid."""
    return ("activations", "losses", "hidden_size")


def configurations_to_time(study_configs: pd.DataFrame,
                           grids: Iterable[str] = timed_grids()) -> pd.DataFrame:
    grids = set(grids)
    keep = study_configs["grid"].map(lambda g: bool(set(g.split(",")) & grids))
    return study_configs[keep].reset_index(drop=True)
