"""Copies of recorded runs made in SQL (mlp_sweeps.record.copies, the scale benchmark's
stores), on a real MLflow store: MLflow reads the copies as runs of their own."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from mlp_sweeps.record.copies import copy_store, fill
from mlp_sweeps.record.tracking import Tracker


def _store(tmp_path, n: int):
    db = tmp_path / "m.db"
    t = Tracker(f"sqlite:///{db}")
    exp = t.experiment_id("scale")
    parent = t.start_run(exp, "sweep")
    for seed in range(n):
        rid = t.start_run(exp, f"seed={seed}", tags={"mlflow.parentRunId": parent,
                                                     "config_hash": f"h{seed}"})
        t.log_params(rid, {"seed": seed})
        for e in (1, 2):
            t.log_metrics(rid, {"test_acc": seed / 10 + e / 100}, step=e)
        t.end_run(rid)
    t.end_run(parent)
    return db


def _children(db):
    c = MlflowClient(f"sqlite:///{db}")
    exp = c.get_experiment_by_name("scale").experiment_id
    return [r for r in c.search_runs([exp], max_results=1000)
            if "mlflow.parentRunId" in r.data.tags], c


def test_fill_makes_runs_mlflow_reads_with_their_history(tmp_path):
    db = _store(tmp_path, 2)
    copy = tmp_path / "copy.db"
    copy_store(db, copy)
    assert fill(copy, "scale", 5) == 5
    runs, client = _children(copy)
    assert len(runs) == 5 and len({r.info.run_id for r in runs}) == 5
    assert len({r.data.tags["config_hash"] for r in runs}) == 5  # each copy its own hash
    for r in runs:
        history = client.get_metric_history(r.info.run_id, "test_acc")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2]
    assert len(_children(db)[0]) == 2  # the original store untouched


def test_fill_with_seeds_gives_the_copies_later_seeds_and_their_hashes(tmp_path):
    db = _store(tmp_path, 2)
    assert fill(db, "scale", 5, hash_of_seed=lambda s: f"h{s}") == 5
    runs, _ = _children(db)
    seeds = sorted(int(r.data.params["seed"]) for r in runs)
    assert seeds == [0, 1, 2, 3, 4]
    assert all(r.data.tags["config_hash"] == f"h{r.data.params['seed']}" for r in runs)
