"""Hydra's own launcher test suites (``hydra.test_utils.launcher_common_tests``) run against
this project's Ray launcher (``hydra/launcher=ray``), as Hydra runs them against its own
launchers: sweeps of 1 and 2 jobs, overrides, strict configs, mandatory defaults, custom
resolvers, batches (Hydra's basic sweeper in batches of 2). The jobs run as Ray tasks of
one local Ray instance (on loopback), started once for the module and stopped after it.
(Hydra's IntegrationTestSuite, one application subprocess and one Ray start per test, is
left out: minutes for what test_distributed.py already runs through train.py.)"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the 'ray' extra (pip install -e '.[ray]')")

from hydra.test_utils.launcher_common_tests import (  # noqa: E402
    BatchedSweeperTestSuite,
    LauncherTestSuite,
)

# one Ray cluster at a time on this machine (pytest-xdist: the same worker, in turn)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]
IP = "127.0.0.4"  # a loopback address of its own (Ray replaces 127.0.0.1 by the host's)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the module: the launcher finds it initialized and submits
    each job as a task to it (as it does to a cluster it connected to)."""
    folder = Path(tempfile.mkdtemp(prefix="mlp-ray-", dir="/tmp"))  # short: unix sockets
    before = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED", "RAY_ADDRESS")}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(folder / "ray"),
             _node_ip_address=IP, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def hydra_version_base_of_a_fresh_process():
    """Hydra's suites assume its compatibility defaults (version_base not given: a job runs
    in its output folder); other tests in this process have set version_base="1.3"."""
    from hydra.version import VersionBase

    before = VersionBase.instance()
    fresh = object.__new__(VersionBase)  # VersionBase() would return the singleton
    fresh.__init__()
    VersionBase.set_instance(fresh)
    yield
    VersionBase.set_instance(before)


@pytest.mark.parametrize("launcher_name, overrides", [("ray", [])])
class TestRayLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("launcher_name, overrides", [("ray", ["hydra.sweeper.max_batch_size=2"])])
class TestRayLauncherBatched(BatchedSweeperTestSuite):
    pass
