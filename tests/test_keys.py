"""The configuration reference (``mlp_sweeps.plan.keys``, the docs site's reference page) lists
every key Hydra composes, with the composed default, and a meaning for each of our own."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mlp import DataConfig, TrainConfig
from mlp_sweeps.plan import keys
from mlp_sweeps.plan import schema

CONF = Path(__file__).resolve().parent.parent / "conf"


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in ("params", "grids", "init", "remote",
                                                   "additional_parameters"):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _composed(*overrides):
    schema.register()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg, resolve=False)


def _reference():
    return {k.name: k for s in keys.sections() for k in s.keys}


def test_every_composed_key_is_in_the_reference_with_its_default():
    ref = _reference()
    cfg = _composed()
    hydra = cfg.pop("hydra")
    leaves = dict(_leaves(cfg))
    leaves.update({f"hydra.sweeper.{k}": v for k, v in _leaves(hydra["sweeper"])})
    leaves.update({f"hydra.launcher.{k}": v for k, v in _leaves(hydra["launcher"])})
    leaves = {k: v for k, v in leaves.items() if not k.split(".")[-1].startswith("_")}
    leaves.pop("activation.name"), leaves.pop("loss.name"), leaves.pop("optimizer.name")
    leaves.pop("data.name")
    assert len(leaves) > 40
    missing = sorted(set(leaves) - set(ref))
    assert not missing, f"keys Hydra composes that the reference does not list: {missing}"
    wrong = {k: (v, ref[k].default) for k, v in leaves.items()
             if k != "loss.reduction" and ref[k].default != v}
    assert not wrong, f"composed default != the reference's: {wrong}"


def test_the_slurm_launchers_defaults_are_its_yaml_files():
    ref = {k.name: k for s in keys.sections() if "SLURM" in s.title for k in s.keys}
    launcher = _composed("hydra/launcher=slurm")["hydra"]["launcher"]
    for k, v in launcher.items():
        if not k.startswith("_"):
            assert ref[f"hydra.launcher.{k}"].default == v, k


@pytest.mark.parametrize("cls", [TrainConfig, DataConfig, schema.RunConf, schema.TrackingConf],
                         ids=lambda c: c.__name__)
def test_every_field_of_our_schema_has_a_meaning(cls):
    notes = keys.field_comments(cls)
    groups = {"activation", "loss", "loss_params", "optimizer", "optimizer_params", "data",
              "name", "tracking"}  # documented as groups or sections
    blank = [f.name for f in fields(cls) if f.name not in groups and not notes.get(f.name)]
    assert not blank, f"{cls.__name__}: fields without a comment (their meaning): {blank}"


def test_every_setting_of_our_plugins_has_a_meaning():
    from hydra_plugins.mlp_sweeps_ray.config import RayLauncherConf
    from hydra_plugins.mlp_sweeps_sweeper.config import AshaConf, MlpSweeperConf

    for cls in (MlpSweeperConf, AshaConf, RayLauncherConf):
        notes = keys.field_comments(cls)
        blank = [f.name for f in fields(cls)
                 if not f.name.startswith("_") and f.name != "asha" and not notes.get(f.name)]
        assert not blank, f"{cls.__name__}: settings without a comment: {blank}"


@dataclass
class _Example:
    """A docstring: not a comment."""

    # two lines
    # above
    a: int = 1  # and the end of the line
    b: str = "x # not a comment"

    # a blank line ends a comment
    c: float = 0.5
    # "#" inside a string is not a comment, nor is code
    d: str = "#"


def test_field_comments_read_the_lines_above_and_the_end_of_the_line():
    assert keys.field_comments(_Example) == {
        "a": "two lines above and the end of the line", "b": "",
        "c": "a blank line ends a comment",
        "d": '"#" inside a string is not a comment, nor is code'}


def test_the_page_has_a_row_per_key():
    page = keys.markdown()
    for name in _reference():
        assert f"| `{name}` |" in page
    assert "`activation=gelu`" in page and "`loss=focal`" in page
