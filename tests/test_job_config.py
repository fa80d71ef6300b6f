"""A job's config composed by SweepConfigLoader is Hydra's, node for node (hydra node
included), and a bad override still fails with Hydra's own error."""

import subprocess
import sys
from pathlib import Path

import cloudpickle  # what joblib's workers are sent with (a dependency of joblib)
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from mlp_sweeps.plan import schema
from mlp_sweeps.plan.job_config import SweepConfigLoader

CONF = str(Path(__file__).resolve().parent.parent / "conf")

JOBS = [
    ["seed=3", "epochs=1"],
    ["activation=gelu", "lr=0.5", "tracking.grid=[depth]"],
    ["loss=focal", "loss.gamma=3", "sweep=study", "hydra.job.name=renamed"],
    ["+extra=1", "lr=0.2"],
    ["data=fashion_mnist", "data.train_limit=100", "momentum=0.5"],
    ["lr=0.1", "seed=3", "activation=selu"],
    ["activation=gelu", "lr=0.25", "tracking.grid=[lr,activations]", "blas_threads=1"],
    ["dropout=0.2", "data.test_limit=${data.train_limit}", "data.train_limit=50"],
]


@pytest.fixture(scope="module")
def hydra_loader():
    schema.register()
    with initialize_config_dir(CONF, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "config", ["seed=1,2", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=multirun/x"],
            RunMode.MULTIRUN)
        yield loader, master


def _yaml(cfg, num: int) -> str:
    with open_dict(cfg):
        cfg.hydra.job.num = num  # as the launchers and run_job set them; then all resolves
        cfg.hydra.runtime.output_dir = f"multirun/x/{num}"
    return OmegaConf.to_yaml(cfg, resolve=True)


@pytest.mark.parametrize("overrides", JOBS, ids=[" ".join(j) for j in JOBS])
def test_a_job_is_composed_as_hydra_composes_it(hydra_loader, overrides):
    loader, master = hydra_loader
    fast = SweepConfigLoader(loader)
    for _ in range(2):  # the first composes the job's base, the second copies it
        ours = fast.load_sweep_config(master, overrides)
        theirs = loader.load_sweep_config(master, overrides)
        assert OmegaConf.to_container(ours) == OmegaConf.to_container(theirs)
        assert _yaml(ours, 4) == _yaml(theirs, 4)
        assert OmegaConf.is_struct(ours) and not OmegaConf.is_readonly(ours.hydra)
    # a job does not leak into the next one of the same base
    again = fast.load_sweep_config(master, ["seed=3"])
    assert OmegaConf.to_container(again) == OmegaConf.to_container(
        loader.load_sweep_config(master, ["seed=3"]))


@pytest.mark.parametrize("bad", [["lr=fast"], ["activation=nope"], ["no_such_key=1"],
                                 ["+lr=0.1"]])
def test_a_bad_override_fails_with_hydras_error(hydra_loader, bad):
    loader, master = hydra_loader
    with pytest.raises(Exception) as theirs:
        loader.load_sweep_config(master, bad)
    with pytest.raises(type(theirs.value)) as ours:
        SweepConfigLoader(loader).load_sweep_config(master, bad)
    assert str(ours.value) == str(theirs.value)


def test_it_is_shipped_to_workers_without_its_cache(hydra_loader, tmp_path):
    """Pickled as joblib ships it (cloudpickle), to a fresh process that sets Hydra's
    singletons as joblib's worker does: the same config as Hydra's composition here."""
    from hydra.core.singleton import Singleton

    loader, master = hydra_loader
    fast = SweepConfigLoader(loader)
    for seed in range(20):
        fast.load_sweep_config(master, [f"seed={seed}", "activation=gelu"])
    # what is pickled is the wrapped loader and a token (a composed base is ~20 kB)
    assert len(cloudpickle.dumps(fast)) < len(cloudpickle.dumps(SweepConfigLoader(loader))) + 2000
    (tmp_path / "job.pkl").write_bytes(cloudpickle.dumps((fast, master, Singleton.get_state())))
    worker = (
        "import sys, cloudpickle\n"
        "from hydra.core.singleton import Singleton\n"
        "from omegaconf import OmegaConf\n"
        "fast, master, state = cloudpickle.loads(open(sys.argv[1], 'rb').read())\n"
        "Singleton.set_state(state)\n"
        "assert fast.get_search_path() is not None  # the wrapped loader's own methods\n"
        "for _ in range(2):\n"
        "    cfg = fast.load_sweep_config(master, ['seed=5', 'activation=gelu'])\n"
        "    print(OmegaConf.to_yaml(cfg))\n")
    out = subprocess.run([sys.executable, "-c", worker, str(tmp_path / "job.pkl")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    want = OmegaConf.to_yaml(loader.load_sweep_config(master, ["seed=5", "activation=gelu"]))
    assert out.stdout == want + "\n" + want + "\n"
