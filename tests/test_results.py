"""Runs as a frame: columns generated from the core's configuration; tables of no runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from mlp import losses, optim
from mlp_sweeps.read import results
from mlp_sweeps.plan import schema
from mlp_sweeps.read import tables
from mlp_sweeps.record.tracking import flatten

ROOT = Path(__file__).resolve().parent.parent


def test_params_are_every_training_setting_a_run_logs():
    """What run() logs (the flattened config without tracking) for every loss and optimizer,
    less the run
    settings that do not change what is trained and the data folder, is PARAMS."""
    schema.register()
    GlobalHydra.instance().clear()
    logged = set()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for group in [f"loss={n}" for n in losses.names()] + \
                [f"optimizer={n}" for n in optim.names()]:
            cfg = OmegaConf.to_container(compose("config", overrides=[group]))
            logged |= set(flatten({k: v for k, v in cfg.items() if k != "tracking"}))
    GlobalHydra.instance().clear()
    run_settings = {f.name for f in schema.RunConf.__dataclass_fields__.values()} - {"tracking"}
    assert set(results.PARAMS) == logged - run_settings - {"data.root"}
    assert results.PARAMS["data.train_limit"] == ("train_limit", float)  # null: NaN
    assert results.PARAMS["loss.alpha"] == ("loss.alpha", str)  # a number or a list
    assert results.PARAMS["lr"] == ("lr", float) and results.PARAMS["depth"] == ("depth", int)


def test_a_table_of_no_runs_has_the_headers_and_no_rows():
    empty = pd.DataFrame(columns=["status", *results.CONFIG_COLUMNS, *results.METRICS.values()])
    out = tables.comparison(empty, ["activation"])
    assert out.empty
    assert list(out.columns) == ["activation", "train loss", "test loss", "train acc",
                                 "test acc", "time (s)", "epochs", "status"]
    assert "activation" in tables.render(out, "markdown")


def _runs(rows):
    cols = ["status", *results.CONFIG_COLUMNS, *results.METRICS.values()]
    base = {c: None for c in cols}
    base.update({"status": "finished", "loss": "cross_entropy", "depth": 1, "epochs_done": 5})
    return pd.DataFrame([{**base, **r} for r in rows], columns=cols)


def test_one_comparison_order_factors_or_best_first():
    acc = results.METRICS["final_test_acc"]  # the column: test_acc
    runs = _runs([{"activation": a, "seed": s, acc: v} for a, s, v in [
        ("gelu", 0, 0.95), ("gelu", 1, 0.97), ("relu", 0, 0.98), ("relu", 1, 0.98),
        ("selu", 0, 0.90), ("selu", 1, 0.92)]] + [
        {"activation": "swish", "seed": 0, "status": "failed"}])
    by_factor = tables.comparison(runs, ["activation"])
    assert list(by_factor["activation"]) == ["gelu", "relu", "selu", "swish"]
    best = tables.comparison(runs, ["activation"], rank_by="test_acc")
    assert list(best["activation"]) == ["relu", "gelu", "selu", "swish"]  # no value: last
    assert best["test acc"].iloc[0].startswith("0.9800")
    summary = tables.summarize(runs, ["activation"])
    assert list(tables.ordered(summary, ["activation"], "test_acc")["activation"]) == \
        list(best["activation"])
    with pytest.raises(ValueError, match="cannot rank by 'acc'"):
        tables.comparison(runs, ["activation"], rank_by="acc")
