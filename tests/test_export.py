"""Comparison tables, figures and the reproduction, on a small real multirun in a real
SQLite store: two activations x two seeds, plus a job that fails and one that diverges."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from memory_limit import TOO_BIG, limit_memory
from mlflow.tracking import MlflowClient

from mlp_sweeps.read import tables
from mlp_sweeps.report.export import main as export_main
from mlp_sweeps.read.results import load_runs

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["data.train_limit=1000", "data.test_limit=300", "hidden_size=16", "epochs=2",
         "test_every=1", "lr=1e-3"]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("export")]  # its store built once, on one worker


def _train(*args: str, cwd: Path, preexec_fn=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900, env=env,
                          preexec_fn=preexec_fn)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real multirun: relu/selu x seeds 0,1 (finished), plus in a second sweep a job that
    diverges (lr=50 on the MSE sum gradient) and one that fails at run time (a network too
    large for the sweep's memory limit: MemoryError, tests/memory_limit.py)."""
    tmp = tmp_path_factory.mktemp("export")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    common = [f"tracking.uri={uri}", "tracking.experiment=cmp", f"hydra.sweep.dir={tmp / 'ms'}"]
    r = _train("-m", "activation=relu,selu", "seed=0,1", *SMALL, *common, cwd=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _train("-m", "activation=gelu", "loss=mse", "loss.reduction=sum", "lr=50",
               f"hidden_size=16,{TOO_BIG}", *SMALL[:2], "epochs=2",
               *common[:2], f"hydra.sweep.dir={tmp / 'ms2'}", cwd=tmp, preexec_fn=limit_memory)
    assert r.returncode != 0  # one job failed
    return uri, tmp


def test_runs_frame_matches_the_store(store):
    uri, _ = store
    runs = load_runs(uri, "cmp")
    client = MlflowClient(uri)
    assert len(runs) == 6
    for _, row in runs.iterrows():
        run = client.get_run(row["run_id"])
        assert row["activation"] == run.data.params["activation.name"]
        assert row["seed"] == int(run.data.params["seed"])
        if row["status"] == "finished":
            assert row["test_acc"] == pytest.approx(run.data.metrics["final_test_acc"])
            assert row["time_s"] == pytest.approx(run.data.metrics["train_time_s"])
    assert sorted(runs["status"]) == ["diverged", "failed", "finished", "finished", "finished",
                                      "finished"]


def test_mean_std_over_seeds(store):
    uri, _ = store
    runs = load_runs(uri, "cmp")
    ok = runs[runs["activation"].isin(["relu", "selu"])]
    s = tables.summarize(ok, ["activation"]).set_index("activation")
    for act in ("relu", "selu"):
        vals = ok[ok["activation"] == act]["test_acc"]
        assert s.loc[act, "n"] == 2
        assert s.loc[act, "test_acc"] == pytest.approx(vals.mean())
        assert s.loc[act, "test_acc_std"] == pytest.approx(vals.std(ddof=1))
    shown = tables.comparison(ok, ["activation"]).set_index("activation")
    m, sd = s.loc["relu", "test_acc"], s.loc["relu", "test_acc_std"]
    assert shown.loc["relu", "test acc"] == f"{m:.4f} ± {sd:.4f}"
    assert (shown["seeds"] == 2).all()


@pytest.mark.parametrize("fmt", tables.FORMATS)
def test_export_every_format_with_values_from_the_store(store, fmt, capsys):
    uri, _ = store
    assert export_main(["--uri", uri, "-e", "cmp", "--by", "activation,loss,lr", "-f", fmt]) == 0
    out = capsys.readouterr().out
    runs = load_runs(uri, "cmp")
    relu = runs[(runs["activation"] == "relu")]["test_acc"]
    if fmt == "csv":
        t = pd.read_csv(io.StringIO(out))
        row = t[t["activation"] == "relu"].iloc[0]
        assert row["test_acc"] == pytest.approx(relu.mean())
        assert row["n"] == 2
        gelu = t[t["activation"] == "gelu"].iloc[0]
        assert set(gelu["status"].split(", ")) == {"diverged 1", "failed 1"}
    else:
        assert f"{relu.mean():.4f} ± {relu.std(ddof=1):.4f}" in out
    # failed and diverged runs are shown as such, never dropped
    assert "failed" in out and "diverged" in out
    if fmt == "latex":
        assert "\\begin{tabular}" in out
    if fmt == "html":
        assert "<table" in out


def test_pivot_activation_by_loss(store, capsys):
    uri, _ = store
    assert export_main(["--uri", uri, "-e", "cmp", "--pivot", "activation:loss"]) == 0
    out = capsys.readouterr().out
    runs = load_runs(uri, "cmp")
    selu = runs[(runs["activation"] == "selu")]["test_acc"].mean()
    assert f"{selu:.4f}" in out and "cross_entropy" in out and "mse" in out


def test_figures_are_written_and_not_empty(store):
    uri, tmp = store
    out = tmp / "figs"
    assert export_main(["--uri", uri, "-e", "cmp", "--figures", str(out), "-f", "csv",
                        "--out", str(tmp / "t.csv")]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert "cmp_curves.png" in files and "cmp_curves.svg" in files
    assert "cmp_vs_lr.png" in files  # a numeric factor that varies
    for p in out.iterdir():
        assert p.stat().st_size > 5000


def test_unknown_experiment_is_a_clear_error(store, capsys):
    uri, _ = store
    with pytest.raises(SystemExit):
        export_main(["--uri", uri, "-e", "nope"])
    err = capsys.readouterr().err
    assert "no experiment 'nope'" in err and "cmp" in err
