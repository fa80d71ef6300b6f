"""mlp_sweeps.claim.liveness: a run's process judged at once on its own host, with real
processes (a child SIGKILLed, a pid reused, another boot, another host, another pid
namespace), and the heartbeat rule kept where nothing can be known at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mlflow.entities import Run, RunData, RunInfo, RunTag

from mlp_sweeps.claim import liveness
from mlp_sweeps.claim.ledger import Ledger, why_dead


def _child_tags() -> tuple[subprocess.Popen, dict[str, str]]:
    """A real child process and the tags it records about itself."""
    proc = subprocess.Popen([sys.executable, "-c", "import json, time; "
                             "from mlp_sweeps.claim import liveness; "
                             "print(json.dumps(liveness.here()), flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    import json

    return proc, json.loads(proc.stdout.readline())


def _run(tags: dict[str, str], heartbeat: float) -> Run:
    info = RunInfo("r", "1", "me", "RUNNING", int((time.time() - 3600) * 1000), None, "active",
                   run_name="r")
    return Run(info, RunData(tags=[RunTag(k, str(v)) for k, v in
                                   {**tags, "heartbeat": heartbeat}.items()]))


def _ledger(timeout: float = 60.0) -> Ledger:
    ledger = Ledger.__new__(Ledger)
    ledger.heartbeat_timeout_s = timeout
    return ledger


def test_a_killed_process_is_dead_at_once_on_its_host_though_its_heartbeat_is_fresh():
    proc, tags = _child_tags()
    try:
        assert tags["pid"] == str(proc.pid) and tags["pid_start"]
        assert liveness.verdict(tags) is True
        assert _ledger().is_alive(_run(tags, heartbeat=time.time()))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert liveness.verdict(tags) is False
    run = _run(tags, heartbeat=time.time())  # beat a moment ago: the timeout cannot tell
    assert not _ledger().is_alive(run)
    assert f"pid {proc.pid}" in why_dead(run, 60.0) and "is gone" in why_dead(run, 60.0)


def test_a_live_process_whose_heartbeat_stopped_is_not_running_the_run():
    # a worker process outlives its jobs: alive, but no longer beating for this run
    me = liveness.here()
    assert not _ledger(10).is_alive(_run(me, heartbeat=time.time() - 11))
    assert "no heartbeat for" in why_dead(_run(me, heartbeat=time.time() - 11), 10)


def test_a_reused_pid_or_another_boot_is_not_the_run_s_process():
    me = liveness.here()
    assert liveness.verdict({**me, "pid_start": str(int(me["pid_start"]) + 1)}) is False
    assert liveness.verdict({**me, "boot_id": "another-boot"}) is False
    assert liveness.verdict({**me, "pid": str(os.getpid() + 10**7)}) is False


def test_elsewhere_the_heartbeat_alone_decides():
    me = liveness.here()
    for tags in ({**me, "host": "another-host", "pid": "1", "pid_start": "1"},
                 {**me, "pid_ns": "pid:[1]", "pid": "1", "pid_start": "1"},  # a container
                 {"host": me["host"], "pid": "1"}):  # recorded by an older version
        assert liveness.verdict(tags) is None
        assert _ledger(10).is_alive(_run(tags, heartbeat=time.time() - 2))
        assert not _ledger(10).is_alive(_run(tags, heartbeat=time.time() - 11))
