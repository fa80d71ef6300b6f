"""What a user sees of a sweep: the estimate before, the table and next commands after, and
the MLflow UI's runs page rendered by a real browser (headless Chromium) over the store a
real small sweep made."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from test_sweeps import SMALL, run_train, store_args

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(url: str, profile: Path, *extra: str, timeout: float = 90) -> str:
    """The DOM of ``url`` after the page has run its scripts (headless Chromium)."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
         *extra, "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh)")
def test_sweep_report_and_runs_page(tmp_path):
    r = run_train("-m", "activation=relu,sigmoid", *SMALL,
                  *store_args(tmp_path, "ui"), tmp=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    # before: the estimate; after: the table (best first), wall and the next commands
    est = re.search(r"estimate: ([\d.]+) s of runs, ([\d.]+) s wall on (\d+) workers", out)
    assert est, out[-3000:]
    assert re.search(r"\| activation +\| train loss", out)
    rows = re.findall(r"^\| (relu|sigmoid) +\|.*\| (0\.\d{4}) +\| [\d.]+ +\|", out, re.M)
    assert [a for a, _ in rows] and sorted(rows, key=lambda x: -float(x[1])) == rows
    wall = re.search(r"wall: (\d+) s \(estimated (\d+) s\)", out)
    assert wall and int(wall.group(2)) == round(float(est.group(2)))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    assert f"mlflow ui --backend-store-uri {uri}" in out
    assert f"mlp-export -e ui --uri {uri}" in out
    assert "sweep: 2/2 done, 0 running, 0 to go, 0 failed" in out
    # workers' per-epoch lines are in their log files, not on the launcher's output
    assert " epoch 1 {" not in out
    assert list((tmp_path / "multirun").glob("*/train.log")) or \
        list((tmp_path / "multirun").glob("*/*.log"))

    # what the store says for the UI
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ui")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    parent = next(x for x in runs if x.data.tags.get("sweep") == "parent")
    children = [x for x in runs if x is not parent]
    assert "| relu " in parent.data.tags["mlflow.note.content"]
    assert parent.data.metrics["wall_s"] > 0 and parent.data.metrics["estimated_wall_s"] > 0
    for x in [parent, *children]:
        (ds,) = [d.dataset for d in x.inputs.dataset_inputs]
        assert ds.name == "mnist" and len(ds.digest) == 16 and '"train_examples": 1000' in ds.profile

    # the runs page in a real browser
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # its workers: one process group
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow ui"
                time.sleep(0.5)
        url = f"{base}/#/experiments/{exp.experiment_id}/runs"
        assert f"/#/experiments/{exp.experiment_id}/runs" in out
        dom = render(url, tmp_path / "chromium")
        assert "Training runs" in dom  # the experiment opens on its runs, not GenAI's
        assert "ui sweep" in dom  # the parent's row (its children folded under it)
        assert "activation=relu" not in dom
        # the summary's link: the runs best first, each a row of its own
        (link,) = re.findall(r"open (http://127\.0\.0\.1:5000/\S+)", out)
        dom = render(link.replace("http://127.0.0.1:5000", base), tmp_path / "chromium")
        assert "Sort: final_test_acc" in re.sub(r"<[^>]+>", "", dom)
        names = {a: next(x.info.run_name for x in children
                         if x.info.run_name.startswith(f"activation={a}"))
                 for a in ("relu", "sigmoid")}
        best, worst = names[rows[0][0]], names[rows[-1][0]]
        assert "ui sweep" in dom and best in dom and worst in dom
        assert dom.index(best) < dom.index(worst) < dom.index("ui sweep")
        text = re.sub(r"<[^>]+>", " ", dom)
        digest = [d.dataset.digest for d in parent.inputs.dataset_inputs][0]
        assert re.search(rf"mnist\s*\(\s*{digest}\s*\)", text)  # the Dataset column
        # the parent's page: its description is the sweep's table
        page = render(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}",
                      tmp_path / "chromium")
        assert "relu" in page and "sigmoid" in page
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
