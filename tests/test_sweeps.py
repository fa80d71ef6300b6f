"""The Hydra + MLflow layer: sweep files, validation of overrides, real multiruns tracked in
real SQLite stores, and a real MLflow server reading them back."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow.tracking import MlflowClient

from memory_limit import TOO_BIG, limit_memory
from omegaconf import OmegaConf

from mlp import activations, losses
from mlp_sweeps.plan import jobs as plan
from mlp_sweeps.plan import schema

ROOT = Path(__file__).resolve().parent.parent
# A small real slice of MNIST: enough to train for real in well under a second per epoch.
SMALL = ["data.train_limit=1000", "data.test_limit=300", "hidden_size=32", "epochs=2",
         "test_every=1", "lr=1e-3"]


def _grid_size(name: str) -> int:
    """Jobs of grid ``name``, read from its file: the product of its keys' value counts."""
    grid = OmegaConf.load(ROOT / "sweeps" / "grid" / f"{name}.yaml")
    return math.prod(len(str(v).split(",")) for v in grid.values())


GRIDS = sorted(p.stem for p in (ROOT / "sweeps" / "grid").glob("*.yaml"))
# a sweep file per grid, and the study: the union of all of them (issue 3), its shared
# configurations trained once: the depth factorial holds the activation and loss tables at
# 1 and 2 layers and the baseline, which is also one job of lr, momentum, weight_decay and
# batch_size (hidden_size's grid does not hold 784); plus MSE with the others' step at 1
# and 2 layers, and dropout with the study's fixed mask (its no-dropout run is the dropout
# grid's)
SWEEP_SIZES = {name: _grid_size(name) for name in GRIDS}
SWEEP_SIZES["study"] = (SWEEP_SIZES["depth"] + 2 + sum(
    SWEEP_SIZES[g] - 1 for g in ("lr", "momentum", "weight_decay", "batch_size"))
    + SWEEP_SIZES["hidden_size"] + SWEEP_SIZES["dropout"] + 1)


def run_train(*args: str, tmp: Path, timeout: float = 600, env: dict | None = None,
              preexec_fn=None):
    """``python train.py ARGS`` in a subprocess, from an unrelated working directory."""
    e = dict(os.environ, HYDRA_FULL_ERROR="0", **(env or {}))
    e.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp,
                          capture_output=True, text=True, timeout=timeout, env=e,
                          preexec_fn=preexec_fn)


def store_args(tmp: Path, experiment: str = "test") -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp / 'store' / 'mlflow.db'}",
            f"tracking.experiment={experiment}",
            f"hydra.sweep.dir={tmp / 'multirun'}", f"hydra.run.dir={tmp / 'run'}"]


# ---------------------------------------------------------------------------------------
# composition: sweep files, schema from the registries
# ---------------------------------------------------------------------------------------
@pytest.fixture
def planner():
    """mlp_sweeps.plan.jobs with Hydra's real config loader: planning only, no sweeper, no
    launcher."""
    schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        def plan_of(*overrides: str):
            # the primary config takes the non-sweep overrides; the sweeper expands the rest
            parser = OverridesParser.create()
            fixed = [o for o in overrides if not parser.parse_override(o).is_sweep_override()]
            cfg = compose("config", overrides=fixed, return_hydra_config=True)
            sw = cfg.hydra.sweeper
            compose_job = plan.composer(GlobalHydra.instance().config_loader(), cfg)
            return plan.plan(sw.params, sw.grids, list(overrides), compose_job, only=sw.only)

        yield plan_of
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("sweep", sorted(SWEEP_SIZES))
def test_each_sweep_file_plans_its_grid(planner, sweep):
    jobs = planner(f"sweep={sweep}")
    assert len(jobs) == SWEEP_SIZES[sweep]
    assert len({tuple(j.overrides) for j in jobs}) == len(jobs)


def test_every_grid_of_the_study_has_a_file():
    files = {p.stem for p in (ROOT / "sweeps").glob("*.yaml")}
    assert files == set(SWEEP_SIZES)
    assert set(plan.grid_names("study")) == {*GRIDS, "mse_same_step", "dropout_fixed_mask"}
    assert SWEEP_SIZES["study"] == 72  # as docs/sweeps.md says


def test_study_sweep_trains_shared_configurations_once_tagged_with_each_grid(planner):
    jobs = planner("sweep=study")
    grids_of = {tuple(sorted(o for o in j.overrides if o != "sweep=study")): set(j.grids)
                for j in jobs}
    # the baseline (1 hidden layer, relu, cross_entropy, defaults) is in 7 grids
    assert grids_of[("activation=relu", "depth=1")] == {
        "activations", "losses", "depth", "lr", "momentum", "weight_decay", "batch_size"}
    # the published 2-layer tables are slices of the depth factorial
    assert grids_of[("activation=relu", "depth=2")] == {"activations", "losses", "depth"}
    assert grids_of[("activation=gelu", "depth=2")] == {"activations", "depth"}
    assert grids_of[("depth=2", "loss=focal")] == {"losses", "depth"}
    assert grids_of[("hidden_size=2048",)] == {"hidden_size"}


def test_study_sweep_runs_only_the_grids_asked_for(planner):
    jobs = planner("sweep=study", "hydra.sweeper.only=[activations,losses]")
    assert len(jobs) == 5 * 2 + 4 * 2 - 2  # relu + cross_entropy is in both tables
    with pytest.raises(plan.InvalidSweep, match="unknown grid.*nope.*activations"):
        planner("sweep=study", "hydra.sweeper.only=[nope]")


def test_depth_sweep_is_the_full_factorial(planner):
    jobs = planner("sweep=depth")
    combos = {tuple(sorted(o for o in j.overrides
                           if o.split("=")[0] in ("activation", "loss", "depth")))
              for j in jobs}
    assert len(combos) == len(activations.names()) * len(losses.names()) * 2


def test_groups_come_from_the_registries():
    schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for name in activations.names():
            assert compose("config", overrides=[f"activation={name}"]).activation.name == name
        for name in losses.names():
            cfg = compose("config", overrides=[f"loss={name}"])
            assert cfg.loss.name == name
            assert cfg.loss.reduction == losses.study_reduction(name)
            assert set(cfg.loss) == {"name", "reduction", *losses.params(name)}
    GlobalHydra.instance().clear()


def test_study_gradient_scaling_is_the_default():
    schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        assert compose("config").loss.reduction == "sum"  # cross_entropy
        assert compose("config", overrides=["loss=mse"]).loss.reduction == "mean"
        assert compose("config", overrides=["loss=focal"]).loss.gamma == 2.0
        assert compose("config", overrides=["loss=hinge"]).loss.margin == 5.0
    GlobalHydra.instance().clear()


def test_invalid_value_in_one_job_rejects_the_whole_sweep(planner):
    with pytest.raises(plan.InvalidSweep, match=r"job lr=-1: lr=-1.0 is out of range"):
        planner("lr=1e-3,-1")


# ---------------------------------------------------------------------------------------
# bad overrides: fail within seconds, before any training or any run is created
# ---------------------------------------------------------------------------------------
BAD = {
    "activation=foo": ["foo", "gelu", "relu", "selu", "sigmoid", "swish"],
    "loss=foo": ["foo", "cross_entropy", "focal", "hinge", "mse"],
    "lr=-1": ["lr=-1"],
    "lr=abc": ["lr", "abc"],
    "batch_size=0": ["batch_size=0"],
    "depth=-1": ["depth=-1"],
    "loss=focal loss.gamma=-2": ["gamma", "-2"],
    "hidden_size=0": ["hidden_size=0"],
    "dropout=1.5": ["dropout=1.5"],
    "momentum=1.0": ["momentum=1.0"],
    "lrr=0.1": ["lrr"],
    "loss.gama=3": ["gama"],
    "hidden_size=big": ["hidden_size", "big"],
    "data=foo": ["foo", "mnist", "fashion_mnist"],
    "loss.reduction=avg": ["avg", "mean", "sum"],
    "data.root=/nonexistent/mnist": ["/nonexistent/mnist", "Copy the four IDX files"],
    # the options around training (mlp_sweeps/plan/options.py)
    "blas_threads=0": ["blas_threads=0", ">= 1"],
    "checkpoint_every=-1": ["checkpoint_every=-1", ">= 0"],
    "log_every_steps=-1": ["log_every_steps=-1", ">= 0"],
    "tracking.experiment=": ["tracking.experiment=''", "non-empty"],
    "tracking.uri=ftp://x": ["tracking.uri='ftp://x'", "sqlite", "http"],
    "tracking.heartbeat_timeout_s=-5": ["heartbeat_timeout_s=-5"],
    "hydra.sweeper.max_batch_size=0": ["hydra.sweeper.max_batch_size=0", ">= 1"],
    # too large for the machine: refused before anything allocates it
    "hidden_size=100000000": ["hidden_size=100000000", "GiB of memory", "available"],
    "data.val_size=60000": ["data.val_size=60000", "leaves no training data"],
    # searches and successive halving (mlp_sweeps/plan/samplers.py, mlp_sweeps/launch/asha.py)
    "hydra.sweeper.sampler=bayes": ["hydra.sweeper.sampler='bayes'", "grid, random, tpe"],
    "hydra.sweeper.scheduler=hyperband": ["hydra.sweeper.scheduler='hyperband'", "none, asha"],
    "hydra.sweeper.mode=up": ["hydra.sweeper.mode='up'", "max, min"],
    "lr=interval(0.001,0.1)": ["interval", "no finite grid", "hydra.sweeper.sampler=random"],
    "hydra.sweeper.sampler=random lr=interval(0.001,0.1)": ["n_trials"],
    "hydra.sweeper.sampler=tpe hydra.sweeper.n_trials=2 lr=interval(0.001,0.1)":
        ["val_acc", "data.val_size=0"],
    "hydra.sweeper.sampler=random hydra.sweeper.n_trials=2 data.val_size=100 "
    "lr=interval(0,0.1)": ["lr=0", "out of range"],
    "hydra.sweeper.scheduler=asha lr=0.1,0.2": ["val_acc", "data.val_size=0"],
    "hydra.sweeper.scheduler=asha hydra.sweeper.asha.eta=1 data.val_size=100 lr=0.1,0.2":
        ["hydra.sweeper.asha.eta=1", ">= 2"],
    "hydra.sweeper.scheduler=asha hydra.sweeper.asha.min_epochs=5 epochs=5 data.val_size=100 "
    "lr=0.1,0.2": ["min_epochs=5", "epochs=5"],
}
# a single run has no sweeper
SWEEPER_ONLY = {b for b in BAD if "hydra.sweeper." in b or "interval" in b}


@pytest.mark.parametrize("bad,mode", [(b, m) for b in sorted(BAD) for m in ("-m", "single")
                                      if m == "-m" or b not in SWEEPER_ONLY])
def test_bad_override_fails_fast_and_records_nothing(tmp_path, bad, mode):
    # the store's options first: a bad tracking option is the last word
    args = ([mode] if mode == "-m" else []) + store_args(tmp_path) + bad.split()
    t0 = time.perf_counter()
    r = run_train(*args, tmp=tmp_path, timeout=60)
    elapsed = time.perf_counter() - t0
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    for word in BAD[bad]:
        assert word in out, f"{word!r} not in the error for {bad!r}:\n{out}"
    assert elapsed < 30  # seconds, not a training run
    assert not (tmp_path / "store" / "mlflow.db").exists()  # nothing recorded
    assert not list(tmp_path.glob("*/**/metrics.csv"))


# ---------------------------------------------------------------------------------------
# real multiruns
# ---------------------------------------------------------------------------------------
def _children(client: MlflowClient, exp_id: str):
    runs = client.search_runs([exp_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    assert len(parents) == 1
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], kids


@pytest.mark.slow
def test_multirun_records_every_job_with_params_metrics_artifacts_parent(tmp_path):
    r = run_train("-m", "activation=relu,gelu,sigmoid", *SMALL, *store_args(tmp_path, "acts"),
                  tmp=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("planned: 3  skipped: 0  resumed: 0  run: 3  finished: 3  diverged: 0  failed: 0  "
            "killed: 0") in r.stdout + r.stderr

    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("acts")
    parent, kids = _children(client, exp.experiment_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["planned"] == 3 and parent.data.metrics["finished"] == 3
    # the sweep's comparison tables and figures are artifacts of its parent run
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/table.md", "report/table.csv", "report/acts_curves.png"} <= report
    assert sorted(k.data.params["activation.name"] for k in kids) == ["gelu", "relu", "sigmoid"]
    for k in kids:
        assert k.info.status == "FINISHED"
        assert k.data.tags["status"] == "finished"
        act = k.data.params["activation.name"]
        assert k.info.run_name.startswith(f"activation={act}")
        # params: the flattened resolved config
        p = k.data.params
        assert p["lr"] == "0.001" and p["loss.name"] == "cross_entropy"
        assert p["loss.reduction"] == "sum" and p["data.train_limit"] == "1000"
        assert p["depth"] == "1" and p["hidden_size"] == "32"
        # tags: threads actually used, host, git commit, config identity
        assert k.data.tags["blas_threads"] == "1"  # 2 cores / 2 parallel jobs
        for tag in ("host", "git_commit", "config_hash", "overrides"):
            assert k.data.tags[tag]
        # every epoch's metrics, step = epoch
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_time_s"):
            hist = client.get_metric_history(k.info.run_id, key)
            assert sorted(m.step for m in hist) == [1, 2], key
        for key in ("train_time_s", "final_test_acc", "best_test_acc", "samples_per_s"):
            assert key in k.data.metrics
        assert 0.3 < k.data.metrics["final_test_acc"] <= 1.0 or act == "sigmoid"
        arts = {a.path for a in client.list_artifacts(k.info.run_id)}
        assert arts == {"config.yaml", "metrics.csv", "model.npz"}
        local = Path(client.download_artifacts(k.info.run_id, "metrics.csv", str(tmp_path)))
        rows = local.read_text().splitlines()
        assert rows[0].startswith("epoch,train_loss") and len(rows) == 3
    # the store is where it was asked to be; nothing landed in the working directory
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_failed_and_diverged_jobs_do_not_stop_the_others(tmp_path):
    # hidden_size=TOO_BIG passes planning but not the sweep's memory limit: the job fails at
    # run time (MemoryError building the network); lr=50 with the MSE sum-gradient diverges.
    r = run_train("-m", f"hidden_size=32,{TOO_BIG}", "loss=mse", "loss.reduction=sum",
                  "lr=1e-3,50", *SMALL[:2], "epochs=2", *store_args(tmp_path, "fail"),
                  tmp=tmp_path, preexec_fn=limit_memory)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "planned: 4  skipped: 0  resumed: 0  run: 4  finished: 1  diverged: 1  failed: 2" in out
    assert "2 failed of 4 jobs" in out and "MemoryError" in out
    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    parent, kids = _children(client, client.get_experiment_by_name("fail").experiment_id)
    assert parent.info.status == "FAILED"
    by_status = sorted((k.info.status, k.data.tags["status"]) for k in kids)
    assert by_status == [("FAILED", "failed"), ("FAILED", "failed"),
                         ("FINISHED", "diverged"), ("FINISHED", "finished")]
    failed = [k for k in kids if k.info.status == "FAILED"]
    assert all("MemoryError" in k.data.tags["error"] for k in failed)
    diverged = next(k for k in kids if k.data.tags["status"] == "diverged")
    assert diverged.data.metrics["diverged_epoch"] >= 1


@pytest.mark.slow
def test_single_run_tracks_into_project_store_by_default_and_reports_where(tmp_path):
    """A single run from another directory with no tracking.uri: the project's own store
    (git-ignored ``mlruns/``), not the working directory. Uses a dedicated experiment and
    deletes its run afterwards so the developer's store keeps only their own runs."""
    exp_name = f"pytest-default-store-{os.getpid()}"
    r = run_train(*SMALL, f"tracking.experiment={exp_name}", f"hydra.run.dir={tmp_path / 'run'}",
                  tmp=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "recorded as run" in out and str(ROOT / "mlruns" / "mlflow.db") in out
    assert not (tmp_path / "mlruns").exists()
    client = MlflowClient(f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(exp_name)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["blas_threads"] == str(os.cpu_count())  # a single run: all cores
    client.delete_experiment(exp.experiment_id)


# ---------------------------------------------------------------------------------------
# a real MLflow server on the store, read back through its REST API
# ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_server_serves_the_sweep_runs(tmp_path):
    r = run_train("-m", "activation=relu,selu", *SMALL, *store_args(tmp_path, "served"),
                  tmp=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    port = _free_port()
    db = tmp_path / "store" / "mlflow.db"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError("mlflow server did not start")
                time.sleep(0.5)

        def api(path: str, body: dict) -> dict:
            req = urllib.request.Request(base + "/api/2.0/mlflow/" + path,
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.load(resp)

        with urllib.request.urlopen(
                base + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=served",
                timeout=30) as resp:
            exp_id = json.load(resp)["experiment"]["experiment_id"]
        runs = api("runs/search", {"experiment_ids": [exp_id], "max_results": 100})["runs"]
        assert len(runs) == 3  # parent + 2 children
        kids = [r for r in runs
                if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
        assert len(kids) == 2
        for k in kids:
            assert k["info"]["status"] == "FINISHED"
            metrics = {m["key"]: m["value"] for m in k["data"]["metrics"]}
            assert 0.0 <= metrics["final_test_acc"] <= 1.0
            with urllib.request.urlopen(
                    f"{base}/api/2.0/mlflow/metrics/get-history?run_id={k['info']['run_id']}"
                    f"&metric_key=train_loss", timeout=30) as resp:
                assert len(json.load(resp)["metrics"]) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_short_jobs_go_to_the_workers_in_batches_each_run_its_own(tmp_path):
    # 16 runs of a few ms on 2 workers: handed out 2 at a time (4 batches per worker);
    # joblib runs a batch in one worker, in order: jobs 2k and 2k+1 share a process
    r = run_train("-m", "seed=range(16)", "epochs=1", "data.train_limit=200",
                  "data.test_limit=100", "hidden_size=16", "hydra.launcher.n_jobs=2",
                  *store_args(tmp_path, "tiny"), tmp=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "each worker is handed 2 at a time" in out
    assert "planned: 16  skipped: 0  resumed: 0  run: 16  finished: 16" in out
    client = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    _, kids = _children(client, client.get_experiment_by_name("tiny").experiment_id)
    pid = {int(k.data.params["seed"]): k.data.tags["pid"] for k in kids}
    assert sorted(pid) == list(range(16))
    assert all(pid[2 * k] == pid[2 * k + 1] for k in range(8)), pid
    assert len(set(pid.values())) == 2  # both workers had batches
    # set by the user, the batch size is theirs: one job at a time here
    r = run_train("-m", "seed=range(16,20)", "epochs=1", "data.train_limit=200",
                  "data.test_limit=100", "hidden_size=16", "hydra.launcher.n_jobs=2",
                  "hydra.launcher.batch_size=1", *store_args(tmp_path, "tiny"), tmp=tmp_path)
    assert r.returncode == 0 and "at a time" not in r.stdout + r.stderr, r.stdout + r.stderr
