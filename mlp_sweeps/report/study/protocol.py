"""The published study as this project reproduces it: its protocol, its numbers (shipped in
``reference/``) and its configurations (the grids of ``sweeps/study.yaml``).

Everything here is read from files of the repository; nothing needs a tracking store.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlp import TrainConfig
from mlp.files import PROJECT_ROOT
from mlp.losses import study_reduction

REFERENCE = PROJECT_ROOT / "reference"


@dataclass(frozen=True)
class Protocol:
    """How the study trained and how this project judges a reproduction."""

    epochs: int = 100          # every published run
    test_every: int = 5        # test metrics every 5 epochs
    seed: int = 0              # every configuration of the study
    table_seeds: tuple[int, ...] = (0, 1, 2)  # the published tables, for seed noise
    tolerance_pts: float = 0.3  # "reproduced": within this many accuracy points


PROTOCOL = Protocol()

# the settings that tell the study's configurations apart (TrainConfig's names, with the
# loss's reduction), as columns of a runs frame (mlp_sweeps.read.results.load_runs)
CONFIG_KEYS = ("activation", "loss", "loss.reduction", "depth", "hidden_size", "dropout",
               "dropout_mask", "lr", "momentum", "weight_decay", "batch_size")


def read_published(path: Path = REFERENCE / "published_results.csv") -> pd.DataFrame:
    """The published tables: table, depth, activation, loss, train/test loss and accuracy,
    time_s (whole run), one row per published cell."""
    with open(path) as f:
        rows = list(csv.reader(line for line in f if not line.startswith("#")))
    df = pd.DataFrame(rows[1:], columns=rows[0])
    df["depth"] = df["depth"].astype(int)
    for c in ("train_loss", "test_loss", "train_acc", "test_acc", "time_s"):
        df[c] = df[c].astype(float)
    df["loss.reduction"] = df["loss"].map(study_reduction)
    return df


def study_grids() -> dict[str, dict[str, list]]:
    """The named grids of the study sweep (``sweeps/study.yaml``, composed by Hydra from
    ``sweeps/grid/``): grid -> {override key: values}."""
    from mlp_sweeps.plan.jobs import grids

    return {name: {k: [_value(v) for v in vals.split(",")] for k, vals in g.items()}
            for name, g in grids("study").items()}


def _value(text: str):
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def configuration(overrides: dict) -> dict:
    """The study configuration that ``overrides`` make of the baseline: CONFIG_KEYS -> value."""
    loss = {"name": overrides.get("loss", TrainConfig.loss)}
    if "loss.reduction" in overrides:
        loss["reduction"] = overrides["loss.reduction"]
    plain = {k: v for k, v in overrides.items() if "." not in k and k != "loss"}
    cfg = TrainConfig.from_dict({**plain, "loss": loss})
    cfg.validate()
    row = {k: getattr(cfg, k) for k in CONFIG_KEYS if "." not in k}
    row["loss.reduction"] = cfg.loss_params.get("reduction") or study_reduction(cfg.loss)
    return row


def configurations(grids: dict[str, dict[str, list]] | None = None) -> pd.DataFrame:
    """Every configuration of the study once (a configuration in several grids is one row),
    with the comma-separated grids it belongs to, in the order of the sweep file. The same
    merge as a sweep's plan, without composing each job."""
    grids = study_grids() if grids is None else grids
    rows: dict[tuple, dict] = {}
    for name, grid in grids.items():
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            row = configuration(dict(zip(keys, values)))
            key = tuple(row[k] for k in CONFIG_KEYS)
            rows.setdefault(key, {**row, "grid": []})["grid"].append(name)
    out = pd.DataFrame(list(rows.values()), columns=[*CONFIG_KEYS, "grid"])
    out["grid"] = out["grid"].map(",".join)
    return out


def config_key(frame: pd.DataFrame) -> pd.Series:
    """A hashable identity of each row's study configuration (floats rounded to 12
    significant digits, so values read back from text compare equal)."""
    def norm(v):
        return float(f"{v:.12g}") if isinstance(v, float) else v
    return frame[list(CONFIG_KEYS)].apply(lambda r: tuple(norm(r[k]) for k in CONFIG_KEYS),
                                          axis=1)
