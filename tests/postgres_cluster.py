"""A real PostgreSQL cluster for the tests, on 127.0.0.1 in a temporary folder of its own
(initdb, pg_ctl; as the ``postgres`` user when run as root: PostgreSQL refuses to run as
root), with an ``mlflow`` database. Needs Debian's ``postgresql`` (``scripts/setup.sh``
installs it) and ``psycopg2`` (the ``postgres`` extra)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((str(v / name) for v in versions if (v / name).exists()), None)


@pytest.fixture
def postgres():
    """A PostgreSQL cluster of its own on 127.0.0.1 in a temporary folder (as the
    ``postgres`` user when run as root: PostgreSQL refuses to run as root)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        msg = "PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    pytest.importorskip("psycopg2", reason="psycopg2-binary (the 'postgres' extra)")
    folder = Path(tempfile.mkdtemp(prefix="mlp-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = folder / "data"

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(as_user + list(cmd), capture_output=True, text=True, timeout=120,
                              cwd=folder)

    try:
        r = run(initdb, "-D", str(data), "-U", "mlflow", "-A", "trust", "-E", "UTF8",
                "--no-sync")
        assert r.returncode == 0, r.stdout + r.stderr
        r = run(pg_ctl, "-D", str(data), "-l", str(folder / "postgres.log"), "-w", "-t", "60",
                "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start")
        assert r.returncode == 0, r.stdout + r.stderr + (folder / "postgres.log").read_text()
        r = run(_pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(port),
                "-U", "mlflow", "mlflow")
        assert r.returncode == 0, r.stdout + r.stderr
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow", folder
    finally:
        if (data / "postmaster.pid").exists():
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
