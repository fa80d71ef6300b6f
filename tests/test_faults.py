"""Faults of the machine named, not dumped: mlp_sweeps.record.faults' rule on real errors, and
real sweeps into a store on a real small filesystem (a tmpfs of a few MB) that fills up
or turns read-only mid-way: one message naming the path and the fix, the summary, exit 1,
no traceback; the same command, once the cause is fixed, finishes every configuration.

The filesystem tests mount a tmpfs: they need root (CI and this project's machines run
the suite as root); they fail, saying so, elsewhere."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlp_sweeps.record.faults import diagnose

ROOT = Path(__file__).resolve().parent.parent


def test_full_disks_read_only_stores_and_removed_stores_are_recognised():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/model.npz")
    assert "No space left on the disk holding /data/out/model.npz" in diagnose(full)
    try:  # SQLite's words, wrapped as SQLAlchemy and MLflow wrap them
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as e:
            raise RuntimeError("(sqlite3.OperationalError) database or disk is full") from e
    except RuntimeError as e:
        why = diagnose(e, "sqlite:////srv/store/mlflow.db")
    assert why.startswith("No space left on the disk holding /srv/store/mlflow.db")
    assert "run the same command again" in why
    ro = diagnose(sqlite3.OperationalError("attempt to write a readonly database"),
                  "sqlite:////srv/store/mlflow.db")
    assert ro.startswith("Cannot write /srv/store/mlflow.db")
    gone = diagnose(RuntimeError("(sqlite3.OperationalError) no such table: runs"),
                    "sqlite:////srv/store/mlflow.db")
    assert "was removed, replaced or damaged" in gone
    assert diagnose(ValueError("lr must be > 0, got -1")) is None
    assert diagnose(OSError(errno.ECONNREFUSED, "Connection refused")) is None


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs, unmounted at the end; ``resize(mb)`` and ``read_only(flag)``."""
    assert os.geteuid() == 0, "mounting a tmpfs needs root (run the suite as root)"
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], check=True)

    class Disk:
        path = mnt

        def remount(self, opts: str) -> None:
            subprocess.run(["mount", "-o", f"remount,{opts}", str(mnt)], check=True)

    try:
        yield Disk()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _sweep(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",
                                                            "HYDRA_FULL_ERROR")}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=env)


def _by_config(uri: str) -> dict[str, list[str]]:
    client = MlflowClient(uri)
    out: dict[str, list[str]] = {}
    for r in client.search_runs([e.experiment_id for e in client.search_experiments()]):
        if r.data.tags.get("sweep") != "parent":
            out.setdefault(r.data.tags["config_hash"], []).append(r.info.status)
    return out


JOBS = ["activation=relu,sigmoid,gelu", "epochs=2", "data.train_limit=2000",
        "data.test_limit=500"]


def test_a_full_disk_is_one_message_and_the_rerun_after_freeing_space_finishes(
        small_disk, tmp_path):
    uri = f"sqlite:///{small_disk.path / 'mlflow.db'}"
    args = [*JOBS, f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'ms'}"]
    first = _sweep(args, tmp_path)
    out = first.stdout + first.stderr
    assert first.returncode == 1, out
    assert "Traceback" not in out and "sqlalche.me" not in out.split("Sweep summary")[0], out
    assert "Sweep summary" in out
    assert out.count(f"No space left on the disk holding {small_disk.path / 'mlflow.db'}") \
        >= 1 and "run the same command again" in out
    with sqlite3.connect(small_disk.path / "mlflow.db") as db:  # the store stays sound
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"

    small_disk.remount("size=64m")  # space freed
    again = _sweep(args, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = _by_config(uri)
    assert len(runs) == 3 and all(st.count("FINISHED") == 1 for st in runs.values()), runs
    assert not any("RUNNING" in st for st in runs.values()), runs


def test_a_read_only_store_is_refused_in_one_message_and_the_rerun_finishes(
        small_disk, tmp_path):
    small_disk.remount("size=64m")
    uri = f"sqlite:///{small_disk.path / 'mlflow.db'}"
    one = _sweep(["activation=relu", *JOBS[1:], f"tracking.uri={uri}",
                  f"hydra.sweep.dir={tmp_path / 'm0'}"], tmp_path)
    assert one.returncode == 0, one.stdout + one.stderr
    small_disk.remount("ro")
    args = [*JOBS, f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'ms'}"]
    ro = _sweep(args, tmp_path)
    out = ro.stdout + ro.stderr
    assert ro.returncode == 1, out
    assert "Traceback" not in out, out
    assert f"Cannot write {small_disk.path / 'mlflow.db'}" in out, out
    small_disk.remount("rw")
    again = _sweep(args, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = _by_config(uri)
    assert len(runs) == 3 and all(st.count("FINISHED") == 1 for st in runs.values()), runs
    assert not any("RUNNING" in st for st in runs.values()), runs
