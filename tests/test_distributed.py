"""Beyond one machine, for real, on loopback only: an MLflow tracking server (SQLite, and
PostgreSQL, backends; artifacts served through it), a Ray cluster of two nodes (a head and a
worker, 127.0.0.2 and 127.0.0.3) running a sweep with ``hydra/launcher=ray``, the SLURM
launcher config (sweeps on a SLURM cluster: test_slurm.py), and fast, clean failures when
the server or the cluster is unreachable.

Every server and cluster here is started by the test, in a temporary folder, and stopped
after it. Ray is kept off 127.0.0.1 on purpose: Ray replaces 127.0.0.1 / localhost by the
machine's outward address, while other loopback addresses are kept as given.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient

from postgres_cluster import free_port, postgres  # noqa: F401 (a fixture)

from mlp_sweeps.plan import parallelism
from mlp_sweeps.plan import schema

# one Ray cluster at a time on this machine (pytest-xdist: the same worker, in turn)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["data.train_limit=1000", "data.test_limit=300", "hidden_size=32", "epochs=2",
         "test_every=1", "lr=1e-3"]
ARTIFACTS = {"config.yaml", "metrics.csv", "model.npz"}  # at least these
EPOCH_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_time_s")
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"


# ---------------------------------------------------------------------------------------
# helpers: processes, ports
# ---------------------------------------------------------------------------------------
def clean_env(**extra: str) -> dict:
    """The environment of a child process: no tracking URI or Ray address inherited."""
    env = dict(os.environ, HYDRA_FULL_ERROR="0", **extra)
    for k in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        if k not in extra:
            env.pop(k, None)
    return env


def train(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    """``python train.py ARGS`` in a subprocess; returns (completed process, seconds)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd,
                       env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    return r, time.perf_counter() - t0


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group that ``proc`` leads, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            proc.poll()
            time.sleep(0.2)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise AssertionError(f"{url} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


class MlflowServer:
    """``mlflow server`` on 127.0.0.1, artifacts served (``--serve-artifacts``)."""

    def __init__(self, backend: str, folder: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = folder / "served-artifacts"
        self.log = folder / f"mlflow-server-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
             "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            cwd=folder, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
            start_new_session=True,
            # the GenAI job runner (7 huey processes) is not needed for tracking
            env=clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
        try:
            wait_http(self.url + "/health", self.proc, self.log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_group(self.proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    srv = MlflowServer(f"sqlite:///{folder / 'mlflow.db'}", folder)
    yield srv
    srv.stop()


def sweep_runs(client: MlflowClient, experiment: str):
    """(parent run, children) of the one sweep in ``experiment``."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(kids) == len(runs) - 1
    return parents[0], sorted(kids, key=lambda r: r.info.run_name)


def check_recorded(client: MlflowClient, experiment: str, n_jobs: int, tmp: Path):
    """Every run of the sweep read back: status, params, every epoch's metrics, artifacts
    (one downloaded). Returns (parent, children)."""
    parent, kids = sweep_runs(client, experiment)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["planned"] == n_jobs
    assert parent.data.metrics["finished"] == n_jobs
    assert len(kids) == n_jobs
    for k in kids:
        assert k.info.status == "FINISHED" and k.data.tags["status"] == "finished"
        assert k.data.params["hidden_size"] == "32" and k.data.params["data.train_limit"] == "1000"
        for key in EPOCH_METRICS:
            hist = client.get_metric_history(k.info.run_id, key)
            assert sorted(m.step for m in hist) == [1, 2], key
        assert 0.0 <= k.data.metrics["final_test_acc"] <= 1.0
        assert ARTIFACTS <= {a.path for a in client.list_artifacts(k.info.run_id)}
    dest = tmp / f"download-{experiment}"
    dest.mkdir()
    local = Path(client.download_artifacts(kids[0].info.run_id, "metrics.csv", str(dest)))
    rows = local.read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss") and len(rows) == 3
    return parent, kids


# ---------------------------------------------------------------------------------------
# 1. a tracking server records exactly what the local SQLite store records
# ---------------------------------------------------------------------------------------
def test_sweep_through_tracking_server_records_what_sqlite_records(server, tmp_path):
    jobs = ["-m", "activation=relu,gelu", *SMALL]
    r, _ = train(*jobs, f"tracking.uri={server.url}", "tracking.experiment=served",
                 f"hydra.sweep.dir={tmp_path / 'mr-served'}", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Sweep recorded in {server.url}" in r.stdout + r.stderr
    db = tmp_path / "local" / "mlflow.db"
    r, _ = train(*jobs, f"tracking.uri=sqlite:///{db}", "tracking.experiment=local",
                 f"hydra.sweep.dir={tmp_path / 'mr-local'}", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

    via_server = MlflowClient(server.url)
    local = MlflowClient(f"sqlite:///{db}")
    s_parent, s_kids = check_recorded(via_server, "served", 2, tmp_path)
    l_parent, l_kids = check_recorded(local, "local", 2, tmp_path)

    # artifacts went through the server into its --artifacts-destination: no shared disk
    exp = via_server.get_experiment_by_name("served")
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    for k in s_kids:
        stored = {p.name for p in server.artifacts.rglob("*") if k.info.run_id in str(p)}
        assert ARTIFACTS <= stored, stored

    # the same runs, params, tags, metrics (values too: one BLAS thread, same seed) and
    # parent/child structure in both stores
    assert [k.info.run_name for k in s_kids] == [k.info.run_name for k in l_kids]
    assert s_parent.info.run_name.startswith("served")
    assert l_parent.info.run_name.startswith("local")
    own = lambda tags: {t for t in tags if not t.startswith("mlflow.")}  # noqa: E731
    assert own(s_parent.data.tags) == own(l_parent.data.tags)
    for s, loc in zip(s_kids, l_kids):
        assert s.data.params == loc.data.params
        assert own(s.data.tags) == own(loc.data.tags)
        assert set(s.data.metrics) == set(loc.data.metrics)
        for key in ("train_loss", "test_acc", "final_test_acc"):
            assert s.data.metrics[key] == pytest.approx(loc.data.metrics[key], rel=1e-6)
        assert s.data.tags["config_hash"] == loc.data.tags["config_hash"]
        assert s.data.tags["node"] == socket.gethostname()  # joblib: this machine
        assert s.data.tags["blas_threads"] == "1"  # 2 cores, 2 parallel jobs
        assert s.data.tags["mlflow.parentRunId"] == s_parent.info.run_id


# ---------------------------------------------------------------------------------------
# 2. a Ray cluster of two nodes on loopback runs the sweep, logging to the server
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A head (127.0.0.2) and a worker node (127.0.0.3), 1 CPU each, token auth with a
    token of their own; yields (address, env for processes that talk to the cluster)."""
    pytest.importorskip("ray", reason="the 'ray' extra (pip install -e '.[ray]')")
    folder = Path(tempfile.mkdtemp(prefix="mlp-ray-", dir="/tmp"))  # short: unix sockets
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
                    RAY_USAGE_STATS_ENABLED="0")
    port = free_port(HEAD_IP)
    address = f"{HEAD_IP}:{port}"
    ray = [sys.executable, "-m", "ray.scripts.scripts", "start", "--num-cpus=1",
           f"--temp-dir={folder / 'ray'}", "--disable-usage-stats",
           "--object-store-memory=100000000"]
    nodes = [("head", ray + ["--head", f"--node-ip-address={HEAD_IP}", f"--port={port}",
                             "--include-dashboard=false",
                             f"--dashboard-agent-listen-port={free_port(HEAD_IP)}"]),
             ("worker", ray + [f"--address={address}", f"--node-ip-address={WORKER_IP}",
                               f"--dashboard-agent-listen-port={free_port(WORKER_IP)}"])]
    started = []
    try:
        for name, cmd in nodes:
            log = folder / f"{name}.log"
            p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True, cwd=folder)
            started.append(p)
            assert p.wait(timeout=120) == 0, log.read_text()[-3000:]
        yield address, env
    finally:
        for p in reversed(started):
            stop_group(p, grace=3)  # the GCS can take 15 s to honour SIGTERM
        shutil.rmtree(folder, ignore_errors=True)


def test_three_launchers_through_the_tracking_server_train_each_configuration_once(
        server, tmp_path):
    """Claims through a tracking server (the store read and written over HTTP, as by
    launchers on several machines): three launchers of one 12-job sweep split it, each
    configuration trained once."""
    args = ["-m", "seed=0,1,2,3,4,5", "lr=0.05,0.1", "epochs=1", "data.train_limit=500",
            "data.test_limit=200", "hidden_size=16", "blas_threads=1",
            "hydra.launcher.n_jobs=1", f"tracking.uri={server.url}",
            "tracking.experiment=served-claims"]
    procs = [subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args,
                               f"hydra.sweep.dir={tmp_path / f'l{i}'}"], cwd=tmp_path,
                              env=clean_env(), stdout=open(tmp_path / f"l{i}.log", "w"),
                              stderr=subprocess.STDOUT) for i in range(3)]
    codes = [p.wait(timeout=400) for p in procs]
    logs = "\n\n".join((tmp_path / f"l{i}.log").read_text() for i in range(3))
    assert codes == [0, 0, 0], logs
    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name("served-claims")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    finished = [r.data.tags["config_hash"] for r in runs
                if r.data.tags.get("sweep") != "parent" and r.info.status == "FINISHED"]
    assert len(finished) == 12 and len(set(finished)) == 12, logs
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert len(parents) == 3 and sum(int(p.data.metrics["run"]) for p in parents) == 12, logs


def test_ray_launcher_runs_the_sweep_on_both_nodes_and_logs_to_the_server(
        server, ray_cluster, tmp_path):
    address, env = ray_cluster
    # the tracking server comes from the environment of the launching process only: the
    # Ray workers were started without it, so the launcher must forward it
    r, _ = train("-m", "activation=relu,gelu,sigmoid,swish", *SMALL,
                 "hydra/launcher=ray", f"hydra.launcher.address={address}",
                 f"+hydra.launcher.init._node_ip_address={HEAD_IP}",
                 "+hydra.launcher.remote.scheduling_strategy=SPREAD",
                 "tracking.experiment=on-ray", f"hydra.sweep.dir={tmp_path / 'mr'}",
                 cwd=tmp_path, env=dict(env, MLFLOW_TRACKING_URI=server.url))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"Ray cluster {address}: 2 node(s), 2 CPUs" in out
    assert "planned: 4  skipped: 0  resumed: 0  run: 4  finished: 4" in out

    client = MlflowClient(server.url)
    parent, kids = check_recorded(client, "on-ray", 4, tmp_path)
    where = {}
    for k in kids:
        tags = k.data.tags
        assert tags["blas_threads"] == "1"  # the task's CPU allotment (num_cpus_per_job=1)
        assert tags["host"] == socket.gethostname()
        kind, ip, node_id = tags["node"].split(":")
        assert kind == "ray" and ip in (HEAD_IP, WORKER_IP) and len(node_id) == 56
        where[node_id] = ip
    assert sorted(where.values()) == [HEAD_IP, WORKER_IP], where  # both nodes ran jobs
    # nothing went to the project's own store: the workers used the server
    project_db = ROOT / "mlruns" / "mlflow.db"
    if project_db.exists():
        assert MlflowClient(f"sqlite:///{project_db}").get_experiment_by_name("on-ray") is None


def _pids_titled(title: str, env_mark: str) -> list[int]:
    """Processes whose command line is ``title`` (a Ray worker names itself
    ``ray::<task name>`` while it runs a task) and whose environment holds ``env_mark``
    (``NAME=value`` unique to one cluster: another Ray cluster on this machine may run a
    task of the same name at the same time)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "cmdline").read_bytes().split(b"\0")[0] == title.encode() \
                    and env_mark.encode() in (d / "environ").read_bytes().split(b"\0"):
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def _ray_logs(temp_dir: Path, lines: int = 25) -> str:
    """What went wrong inside Ray (a failed sweep's message): the last error lines of each
    log of its sessions (raylet, GCS, agents, the driver's and workers' core workers)."""
    marks = ("error", "fatal", "check failed", "traceback", "exception", "died", "sigkill",
             "address already in use", "failed to bind")
    out = []
    for f in sorted(temp_dir.glob("session_*/logs/*")):
        try:
            text = f.read_text(errors="replace").splitlines()
        except OSError:
            continue
        hits = [ln for ln in text if any(m in ln.lower() for m in marks)]
        if hits:
            out.append(f"--- {f.relative_to(temp_dir)} ({len(hits)} error lines; last "
                       f"{min(lines, len(hits))})\n" + "\n".join(hits[-lines:]))
    return "\n".join(out) or f"(no error lines in the Ray logs under {temp_dir})"


def test_ray_launcher_local_cluster_threads_from_cpus_and_a_killed_worker_is_rerun(tmp_path):
    """address=null: a local Ray instance for the sweep (stopped with it). A job holding 2
    CPUs runs 2 BLAS threads (as threadpoolctl measures in the job). The worker process of
    the first job is SIGKILLed mid-run: its run is closed KILLED and the job runs again."""
    pytest.importorskip("ray", reason="the 'ray' extra (pip install -e '.[ray]')")
    folder = Path(tempfile.mkdtemp(prefix="mlp-ray-", dir="/tmp"))
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
                    RAY_USAGE_STATS_ENABLED="0")
    db = tmp_path / "store" / "mlflow.db"
    # long enough (a few seconds a job) to be killed in flight
    jobs = ["activation=relu,gelu", "data.train_limit=5000", "data.test_limit=300",
            "hidden_size=64", "epochs=20", "test_every=10"]
    log = tmp_path / "sweep.log"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-m", *jobs, "hydra/launcher=ray",
         "hydra.launcher.num_cpus_per_job=2", "+hydra.launcher.init.num_cpus=2",
         f"+hydra.launcher.init._node_ip_address={HEAD_IP}",
         f"+hydra.launcher.init._temp_dir={folder / 'ray'}",
         f"tracking.uri=sqlite:///{db}", "tracking.experiment=local-ray",
         f"hydra.sweep.dir={tmp_path / 'mr'}"],
        cwd=tmp_path, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def why() -> str:  # what the sweep printed, and what went wrong inside Ray
        return (f"train.py: {proc.poll()}\n{log.read_text()[-6000:]}\n=== Ray logs ===\n"
                f"{_ray_logs(folder / 'ray')}")

    try:
        deadline = time.time() + 120
        while not (victims := _pids_titled("ray::job 0", f"RAY_AUTH_TOKEN_PATH={token}")):
            assert proc.poll() is None and time.time() < deadline, why()
            time.sleep(0.2)
        client = MlflowClient(f"sqlite:///{db}")
        while not any(r.info.status == "RUNNING" and "sweep" not in r.data.tags
                      for e in [client.get_experiment_by_name("local-ray")] if e
                      for r in client.search_runs([e.experiment_id])):
            assert proc.poll() is None and time.time() < deadline, why()
            time.sleep(0.2)  # until the job's run is recorded, i.e. it is training
        os.kill(victims[0], signal.SIGKILL)
        assert proc.wait(timeout=600) == 0, f"victim pid {victims[0]}\n{why()}"
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
    out = log.read_text()
    assert "Ray cluster local: 1 node(s), 2 CPUs; 2 CPU(s) per job" in out, out[-6000:]
    assert "A worker process died (WorkerCrashedError" in out, out[-6000:]
    assert "planned: 2  skipped: 0  resumed: 0  run: 2  finished: 2" in out, out[-6000:]

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("local-ray")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert len(killed) == 1 and "worker process died" in killed[0].data.tags["error"]
    finished = [r for r in runs if r.info.status == "FINISHED" and "sweep" not in r.data.tags]
    assert sorted(r.data.params["activation.name"] for r in finished) == ["gelu", "relu"]
    assert killed[0].data.tags["config_hash"] in {r.data.tags["config_hash"] for r in finished}
    for r in finished:
        assert r.data.tags["blas_threads"] == "2"  # the task's 2 CPUs
        assert r.data.tags["node"].startswith(f"ray:{HEAD_IP}:")
        assert sorted(m.step for m in client.get_metric_history(r.info.run_id, "train_loss")) \
            == list(range(1, 21))


# ---------------------------------------------------------------------------------------
# 3. unreachable server or cluster: a clear error within seconds, nothing recorded
# ---------------------------------------------------------------------------------------
@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers (a hung or wrong service)."""
    s = socket.socket()
    s.bind((HEAD_IP, 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("kind", ["closed", "silent"])
def test_unreachable_tracking_server_fails_fast_and_records_nothing(tmp_path, kind, silent_port):
    url = (f"http://{HEAD_IP}:{silent_port}" if kind == "silent"
           else f"http://127.0.0.1:{free_port()}")
    r, seconds = train("-m", "activation=relu,gelu", *SMALL, f"tracking.uri={url}",
                       f"hydra.sweep.dir={tmp_path / 'mr'}", cwd=tmp_path, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"tracking server {url} is not reachable" in out and "docs/scaling.md" in out
    assert "Traceback" not in out
    assert seconds < 30, seconds  # the /health check's 5 s timeout, plus start-up
    assert not list(tmp_path.rglob("metrics.csv"))


@pytest.mark.parametrize("kind", ["closed", "silent"])
def test_unreachable_ray_cluster_fails_fast_and_records_nothing(tmp_path, kind, silent_port):
    pytest.importorskip("ray", reason="the 'ray' extra (pip install -e '.[ray]')")
    port = silent_port if kind == "silent" else free_port(HEAD_IP)
    db = tmp_path / "store" / "mlflow.db"
    r, seconds = train("-m", "activation=relu,gelu", *SMALL, "hydra/launcher=ray",
                       f"hydra.launcher.address={HEAD_IP}:{port}",
                       "hydra.launcher.connect_timeout_s=1", f"tracking.uri=sqlite:///{db}",
                       "tracking.experiment=nowhere", f"hydra.sweep.dir={tmp_path / 'mr'}",
                       cwd=tmp_path, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    expected = ("is not reachable (Connection refused)" if kind == "closed"
                else "accepts connections but no Ray head answered")
    assert f"{HEAD_IP}:{port}" in out and expected in out, out
    assert "Nothing was run or recorded" in out and "Traceback" not in out
    assert seconds < 45, seconds  # ray.init alone would retry for minutes, or forever
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("nowhere")
    assert exp is None or client.search_runs([exp.experiment_id]) == []
    assert not list(tmp_path.rglob("metrics.csv"))


# ---------------------------------------------------------------------------------------
# 4. PostgreSQL, the production backend, behind the tracking server
# ---------------------------------------------------------------------------------------
def test_tracking_server_on_postgresql(postgres, tmp_path):
    uri, folder = postgres
    srv = MlflowServer(uri, tmp_path)
    try:
        r, _ = train("-m", "activation=relu,gelu", *SMALL, f"tracking.uri={srv.url}",
                     "tracking.experiment=on-postgres", f"hydra.sweep.dir={tmp_path / 'mr'}",
                     cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        client = MlflowClient(srv.url)
        check_recorded(client, "on-postgres", 2, tmp_path)
    finally:
        srv.stop()
    # the runs are in PostgreSQL itself, not in some file beside the server
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as c:
        n = c.execute(sqlalchemy.text(
            "select count(*) from runs r join experiments e using (experiment_id) "
            "where e.name = 'on-postgres'")).scalar()
    engine.dispose()
    assert n == 3  # parent + 2 children


# ---------------------------------------------------------------------------------------
# 5. launcher configs: threads from each job's CPU allotment; SLURM config composes
# ---------------------------------------------------------------------------------------
@pytest.fixture
def composed():
    schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        def threads(*overrides: str, n_jobs: int = 4):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
            return cfg, parallelism.sweep_threads(cfg, n_jobs)

        yield threads
    GlobalHydra.instance().clear()


def test_blas_threads_follow_each_launchers_cpu_allotment(composed):
    cores = os.cpu_count() or 1
    cfg, n = composed()  # joblib, all cores: cores / parallel jobs
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert n == max(1, cores // min(cores, 4))
    cfg, n = composed("hydra/launcher=ray")
    assert cfg.hydra.launcher._target_ == "hydra_plugins.mlp_sweeps_ray.ray_launcher.RayLauncher"
    assert cfg.hydra.launcher.address is None and n == 1
    _, n = composed("hydra/launcher=ray", "hydra.launcher.num_cpus_per_job=4")
    assert n == 4  # a task holding 4 CPUs runs 4 BLAS threads, wherever it lands
    _, n = composed("hydra/launcher=ray", "hydra.launcher.num_cpus_per_job=0.5")
    assert n == 1
    _, n = composed("hydra/launcher=ray", "blas_threads=3")
    assert n is None  # the user's choice is kept


def test_slurm_launcher_config_composes(composed):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="hydra-submitit-launcher (the 'slurm' extra)")
    cfg, n = composed("hydra/launcher=slurm", "hydra.launcher.partition=cpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.mlp_sweeps_slurm.slurm_launcher.SlurmLauncher"
    assert launcher.partition == "cpu" and launcher.cpus_per_task == 4
    assert launcher.timeout_min >= 60 and launcher.array_parallelism >= 1
    assert n == 4  # BLAS threads = the CPUs SLURM gives each job
    assert launcher.submitit_folder.endswith(".submitit/%j")
    from hydra.utils import instantiate

    obj = instantiate(launcher)  # a real SlurmLauncher; nothing is submitted
    assert type(obj).__name__ == "SlurmLauncher" and obj.poll_s == 15
    assert "poll_s" not in obj.params  # ours, not passed on to submitit / sbatch
    # (tests/test_slurm.py runs sweeps through it on a real one-node SLURM cluster)


@pytest.mark.parametrize("timeout_min, delay", [(1, 30), (2, 60), (5, 120), (240, 120)])
def test_slurm_warning_signal_comes_after_the_job_has_started(composed, tmp_path, timeout_min,
                                                              delay):
    """sbatch's ``--signal=USR2@<s>`` (submitit's warning before the time limit): at most
    half the limit, so a short limit does not have SLURM signal the job as it starts."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="hydra-submitit-launcher (the 'slurm' extra)")
    from hydra.utils import instantiate

    from hydra_plugins.mlp_sweeps_slurm._core import _executor

    cfg, _ = composed("hydra/launcher=slurm", f"hydra.launcher.timeout_min={timeout_min}",
                      f"hydra.launcher.submitit_folder={tmp_path}")
    executor = _executor(instantiate(cfg.hydra.launcher))
    script = executor._executor._make_submission_file_text("python -c pass", "0")
    assert f"#SBATCH --signal=USR2@{delay}\n" in script
    assert f"#SBATCH --time={timeout_min}\n" in script
