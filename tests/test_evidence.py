"""The report's evidence files: written and read back unchanged, and restored into a real
SQLite tracking store as FINISHED runs that read back as the same runs and curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlp_sweeps.report.study.evidence import RUN_COLUMNS, Evidence, restore
from mlp_sweeps.read.results import load_runs, metric_histories, with_defaults


def _evidence() -> Evidence:
    rows = []
    for i, (act, lr, status) in enumerate([("relu", 1e-4, "finished"), ("gelu", 5e-5, "finished"),
                                           ("sigmoid", 1e-2, "diverged")]):
        rows.append({c: np.nan for c in RUN_COLUMNS} | {
            "run_id": f"run{i}", "run_name": f"activation={act}", "status": status,
            "config_hash": f"{i:016x}", "grid": "activations,lr", "start_time": 1000 + i,
            "activation": act, "loss": "cross_entropy", "loss.reduction": "sum",
            "loss.margin": 5.0, "loss.gamma": 2.0, "loss.alpha": "0.1", "depth": 1,
            "hidden_size": 784, "dropout": 0.0, "init": "normal", "lr": lr, "momentum": 0.9,
            "weight_decay": 1e-3, "batch_size": 100, "epochs": 3, "test_every": 5, "seed": 0,
            "dtype": "float32", "data": "mnist", "normalize": "study",
            "train_loss": 0.1 * (i + 1), "test_loss": 0.2, "train_acc": 0.9 + i / 100,
            "test_acc": 0.89 + i / 1000, "best_test_acc": 0.9, "time_s": 12.5 + i,
            "epochs_done": 3, "samples_per_s": 1000.0})
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    curves = pd.DataFrame([(f"run{i}", k, e, 0.5 + e / 10 + i / 100) for i in range(3)
                           for k in ("train_acc", "train_loss") for e in (1, 2, 3)] +
                          [(f"run{i}", "test_acc", 3, 0.8) for i in range(3)],
                          columns=["run_id", "key", "epoch", "value"])
    return Evidence(runs, curves, manifest={"commands": ["python scripts/reproduce.py"]})


def test_written_evidence_reads_back_unchanged(tmp_path):
    ev = _evidence()
    ev.write(tmp_path / "evidence")
    back = Evidence.read(tmp_path / "evidence")
    # a setting a run did not record reads back as its default (runs from before it existed)
    pd.testing.assert_frame_equal(back.runs.sort_values("run_id").reset_index(drop=True),
                                  with_defaults(ev.runs).sort_values("run_id")
                                  .reset_index(drop=True), check_dtype=False)
    key = ["run_id", "key", "epoch"]
    pd.testing.assert_frame_equal(back.curves.sort_values(key).reset_index(drop=True),
                                  ev.curves.sort_values(key).reset_index(drop=True),
                                  check_dtype=False)
    assert back.manifest == ev.manifest
    first = (tmp_path / "evidence" / "curves.csv.gz").read_bytes()
    ev.write(tmp_path / "evidence")  # same evidence, same bytes: diffs show only new results
    assert (tmp_path / "evidence" / "curves.csv.gz").read_bytes() == first


def test_missing_evidence_reads_as_empty(tmp_path):
    ev = Evidence.read(tmp_path / "nothing")
    assert ev.runs.empty and ev.curves.empty and ev.timing.empty and ev.manifest == {}


def test_restored_runs_read_back_from_a_real_store_and_are_not_restored_twice(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ev = _evidence()
    assert restore(uri, "study", ev) == 3
    assert restore(uri, "study", ev) == 0  # already finished there
    runs = load_runs(uri, "study").sort_values("run_name").reset_index(drop=True)
    want = ev.runs.sort_values("run_name").reset_index(drop=True)
    assert list(runs["config_hash"]) == list(want["config_hash"])
    assert (runs["mlflow_status"] == "FINISHED").all()
    assert list(runs["status"]) == list(want["status"])  # diverged stays diverged
    for col in ("activation", "lr", "depth", "epochs", "test_acc", "time_s", "grid"):
        assert list(runs[col]) == list(want[col]), col
    curves = metric_histories(uri, runs["run_id"], ("train_acc", "train_loss", "test_acc"))
    assert len(curves) == len(ev.curves)
    assert curves["value"].sum() == pytest.approx(ev.curves["value"].sum())


def test_evidence_written_before_a_column_existed_reads_and_restores(tmp_path):
    """A runs.csv without ``cpu_s`` (written before runs recorded their CPU time): the
    column reads back empty, and the runs restore without it."""
    ev = _evidence()
    ev.write(tmp_path / "evidence")
    old = pd.read_csv(tmp_path / "evidence" / "runs.csv").drop(columns=["cpu_s"])
    old.to_csv(tmp_path / "evidence" / "runs.csv", index=False)
    back = Evidence.read(tmp_path / "evidence")
    assert set(RUN_COLUMNS) <= set(back.runs.columns) and back.runs["cpu_s"].isna().all()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert restore(uri, "study", back) == 3
    assert load_runs(uri, "study")["cpu_s"].isna().all()


def test_merge_prefers_the_newer_run_of_a_configuration():
    old, new = _evidence(), _evidence()
    new.runs = new.runs.iloc[:1].assign(run_id="rerun0", test_acc=0.5)
    new.curves = new.curves[new.curves["run_id"] == "run0"].assign(run_id="rerun0")
    merged = old.merged(new)
    assert len(merged.runs) == 3
    row = merged.runs[merged.runs["config_hash"] == f"{0:016x}"].iloc[0]
    assert row["run_id"] == "rerun0" and row["test_acc"] == 0.5
    assert "run0" not in set(merged.curves["run_id"])


def test_a_configuration_rerun_for_one_grid_stays_in_its_other_grids():
    old, new = _evidence(), _evidence()
    new.runs = new.runs.iloc[:1].assign(run_id="rerun0", grid="batch_size")
    merged = old.merged(new)
    row = merged.runs[merged.runs["config_hash"] == f"{0:016x}"].iloc[0]
    assert row["run_id"] == "rerun0" and row["grid"] == "activations,lr,batch_size"
    assert set(merged.runs["grid"]) == {"activations,lr,batch_size", "activations,lr"}


def _with_steps(ev: Evidence) -> Evidence:
    ev.steps = pd.DataFrame([("run0", k, it, v) for it in (50, 100, 150)
                             for k, v in (("batch_train_loss", 1 / it),
                                          ("batch_train_acc", 0.5 + it / 1000))],
                            columns=["run_id", "key", "iteration", "value"])
    return ev


def test_step_curves_write_read_restore_and_read_back_at_their_iterations(tmp_path):
    ev = _with_steps(_evidence())
    ev.write(tmp_path / "evidence")
    back = Evidence.read(tmp_path / "evidence")
    key = ["run_id", "key", "iteration"]
    pd.testing.assert_frame_equal(back.steps.sort_values(key).reset_index(drop=True),
                                  ev.steps.sort_values(key).reset_index(drop=True),
                                  check_dtype=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert restore(uri, "study", back) == 3
    again = Evidence.from_store(uri, "study")
    (rid,) = again.runs.loc[again.runs["run_name"] == "activation=relu", "run_id"]
    got = again.steps[again.steps["run_id"] == rid].sort_values(["key", "iteration"])
    assert list(got["iteration"]) == [50, 100, 150] * 2
    assert list(got["value"]) == pytest.approx([0.55, 0.6, 0.65, 1 / 50, 1 / 100, 1 / 150])
    # epoch curves are not mixed with the iterations
    assert len(again.curves[again.curves["run_id"] == rid]) == 7


def test_evidence_without_step_curves_writes_no_step_file(tmp_path):
    _evidence().write(tmp_path / "evidence")
    assert not (tmp_path / "evidence" / "steps.csv.gz").exists()
    assert Evidence.read(tmp_path / "evidence").steps.empty


def test_merge_into_empty_evidence_keeps_the_column_types():
    merged = Evidence.read(Path("/nonexistent")).merged(_evidence())
    assert merged.runs["lr"].dtype == float and merged.runs["depth"].dtype.kind == "i"


def test_restored_params_read_as_a_tracked_run_logs_them(tmp_path):
    """One param-text rule: a restored run's settings are the text the tracker logs for the
    config's values (a float 0.0 is "0.0", an int 100 "100", a missing data limit "None"),
    the way a run that trained records them, so a frame of both reads one configuration as
    one."""
    from mlflow.tracking import MlflowClient

    from mlp_sweeps.read.results import PARAMS, param_values

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ev = _evidence()
    ev.runs.loc[0, "train_limit"] = 5000.0  # an optional int column reads as a float
    assert restore(uri, "study", ev) == 3
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("study").experiment_id
    restored = {r.data.tags["config_hash"]: r.data.params for r in client.search_runs([exp])}
    first = restored[f"{0:016x}"]
    assert set(first) == set(PARAMS)
    assert (first["dropout"], first["batch_size"], first["lr"]) == ("0.0", "100", "0.0001")
    assert first["data.train_limit"] == "5000" and first["data.test_limit"] == "None"
    for row in ev.runs.to_dict("records"):
        logged = {k: "None" if v is None else str(v) for k, v in param_values(row).items()}
        assert restored[row["config_hash"]] == logged


def test_a_setting_a_run_did_not_record_reads_as_its_default(tmp_path):
    """Runs from before a setting existed (no optimizer, no dropout_mask column) read back
    as trained: with its default, so tables group them with the runs that record it."""
    ev = _evidence()
    ev.runs = ev.runs.drop(columns="dropout_mask").assign(optimizer=None)
    ev.write(tmp_path / "evidence")
    back = Evidence.read(tmp_path / "evidence")
    assert (back.runs["optimizer"] == "sgd").all()
    assert (back.runs["dropout_mask"] == "inverted").all()
