"""The reproduction end to end, as a stranger runs it: a clone of the project in a folder
with nothing beside it, ``scripts/reproduce.py --profile quick`` (every grid of the study,
2 epochs on 5000 examples), then on a "new machine" (an empty tracking store) the same
command trains nothing, and the report is rebuilt from its evidence files alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlp_sweeps.report.study.protocol import configurations

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _clone(tmp_path: Path) -> Path:
    """The committed project, cloned into an otherwise empty folder (nothing beside it)."""
    dest = tmp_path / "somewhere" / "mlp-sweeps"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mlp-sweeps"]
    return dest


def _reproduce(clone: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(clone)  # the clone's code, not this checkout's
    proc = subprocess.run([sys.executable, "scripts/reproduce.py", "--profile", "quick", *args],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_quick_reproduction_from_a_clone_resumes_and_rebuilds_from_its_evidence(tmp_path):
    clone = _clone(tmp_path)
    n = len(configurations())
    out = _reproduce(clone)
    assert f"planned: {n}  skipped: 0  resumed: 0  run: {n}  finished: {n}" in out
    report_dir = clone / "outputs" / "reproduce-quick"
    report = (report_dir / "REPORT.md").read_text()
    # the first screen: status block, then the findings table
    status, findings = report.index("## Status"), report.index("## Findings")
    assert status < findings < report.index("## Published tables")
    assert f"configurations with shorter runs only (2 epochs, first 5000 training examples) | {n} / {n}" \
        in " ".join(report.split())
    assert f"configurations at the study's protocol (100 epochs, full data, seed 0) | 0 / {n}" \
        in " ".join(report.split())
    # 2-epoch runs give no verdict, and say so; the analytic finding does
    table = report[findings:report.index("## Published tables")]
    assert table.count("**not measured** (runs of 2 epochs; the study's ran 100") == 9
    assert "[9](#9-focal-loss)" in report and "**holds**" in report
    for word in ("/tmp/", str(tmp_path), "session"):
        assert word not in report
    runs = pd.read_csv(report_dir / "evidence" / "runs.csv")
    assert len(runs) == n and set(runs["status"]) == {"finished"}
    timing = pd.read_csv(report_dir / "evidence" / "timing.csv")
    assert len(timing) == 24 and (timing["epoch_s"] > 0).all()

    # a new machine: an empty store. The evidence restores every finished run; nothing trains
    shutil.rmtree(clone / "mlruns")
    out = _reproduce(clone)
    assert f"restored {n} finished runs" in out
    assert f"planned: {n}  skipped: {n}  resumed: 0  run: 0" in out
    assert "timing pass" not in out  # measured once per machine and kernel
    uri = f"sqlite:///{clone / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("study")
    children = [r for r in client.search_runs([exp.experiment_id])
                if r.data.tags.get("sweep") != "parent"]
    assert len(children) == n and all(r.info.status == "FINISHED" for r in children)
    again = (report_dir / "REPORT.md").read_text()
    assert again == report

    # the report from the evidence alone: no store at all
    shutil.rmtree(clone / "mlruns")
    _reproduce(clone, "--report-only")
    assert not (clone / "mlruns").exists()
    assert (report_dir / "REPORT.md").read_text() == report
