"""A real one-node SLURM cluster for the tests: munge, slurmctld and slurmd on loopback.

Everything lives in a temporary folder of its own: munge's key, socket, pid and log files,
``slurm.conf`` (its own ports; ``AuthInfo`` points SLURM at this munge's socket), the state,
spool and log folders. The system's ``/etc/munge`` and ``/etc/slurm`` are never read or
written. Daemons run in the foreground as children of the test process and are stopped
after the session (jobs still queued are cancelled first).

Needs Debian's ``slurm-wlm`` and ``munge`` (``scripts/setup.sh`` installs them) and root
(slurmd starts jobs as their user). Anything missing is an error saying what, not a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SLURM_CONF = """\
ClusterName=mlpsweeps
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/munge.socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.log
# no cgroups: processes tracked through /proc, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# no accounting (as on many small clusters): sacct does not work, squeue does
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
MailProg=/bin/true
# not the system's /etc/slurm/plugstack.conf
PlugStackConfig={dir}/plugstack.conf
ReturnToService=2
# trust the node's line below (CPUs, memory) whatever the machine has
SlurmdParameters=config_overrides
# SIGTERM -> SIGKILL after 2 s (default 30); time limits exactly as set
KillWait=2
OverTimeLimit=0
MessageTimeout=10
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory={memory_mb} State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    """Most of this machine's memory, so that the node is never short of its own."""
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return int(kib / 1024 * 0.8)


class SlurmCluster:
    """munged + slurmctld + slurmd in ``folder``; :attr:`env` has ``SLURM_CONF``."""

    DAEMONS = ("munged", "slurmctld", "slurmd")

    def __init__(self, folder: Path):
        self.dir = folder
        self.host = socket.gethostname().split(".")[0]
        self.conf = folder / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.procs: dict[str, subprocess.Popen] = {}

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A SLURM command (sinfo, squeue, scancel, scontrol ...) against this cluster."""
        r = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
        return r

    def _spawn(self, name: str, *cmd: str) -> None:
        out = open(self.dir / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(list(cmd), env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def logs(self) -> str:
        parts = []
        for p in sorted((self.dir / "log").glob("*")):
            parts.append(f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-15:]))
        return "\n".join(parts)

    def start(self, timeout: float = 60) -> None:
        missing = [d for d in self.DAEMONS if shutil.which(d) is None]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not installed: scripts/setup.sh installs "
                               f"Debian's slurm-wlm and munge")
        if os.geteuid() != 0:
            raise RuntimeError("the one-node SLURM cluster needs root (slurmd starts jobs as "
                               "their user; SlurmUser=root)")
        for sub in ("munge", "state", "spool", "log"):
            (self.dir / sub).mkdir()
        # munged wants its socket's folder open to all, its key private to its user
        self.dir.chmod(0o755)
        (self.dir / "munge").chmod(0o755)
        key = self.dir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        m = self.dir / "munge"
        self._spawn("munged", "munged", "--foreground", f"--socket={m}/munge.socket",
                    f"--key-file={key}", f"--pid-file={m}/munged.pid",
                    f"--log-file={self.dir}/log/munged.log", f"--seed-file={m}/munged.seed")
        (self.dir / "plugstack.conf").write_text("")
        self.conf.write_text(SLURM_CONF.format(
            host=self.host, ctld_port=_free_port(), slurmd_port=_free_port(), dir=self.dir,
            memory_mb=_memory_mb()))
        self._wait(lambda: (m / "munge.socket").exists(), "munged's socket", timeout)
        self._spawn("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self._spawn("slurmd", "slurmd", "-D", "-f", str(self.conf), "-N", self.host)

        def idle() -> bool:
            r = self.run("sinfo", "--noheader", "--format=%t", check=False, timeout=15)
            return r.returncode == 0 and r.stdout.strip() == "idle"

        self._wait(idle, "the node to be idle in sinfo", timeout)

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"no answer in {timeout:g} s"
                raise RuntimeError(f"SLURM did not start ({why}) waiting for {what}:\n"
                                   f"{self.logs()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--user", str(os.geteuid()), check=False)
            deadline = time.monotonic() + 15  # the jobs' processes are gone with the queue
            while time.monotonic() < deadline and self.run(
                    "squeue", "--noheader", check=False).stdout.strip():
                time.sleep(0.3)
        for name in reversed(self.DAEMONS):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="session")
def slurm_cluster():
    """A started one-node cluster (partition ``cpu``, 2 CPUs); stopped after the session."""
    folder = Path(tempfile.mkdtemp(prefix="mlp-slurm-"))  # short: munge's socket path
    cluster = SlurmCluster(folder)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
