"""Every key a user can set, its default and what it means, read from the schema itself.

The meaning of a key is the comment beside its field in the dataclass that defines it (the
comment lines just above the field and the one at the end of its line), its default the
field's default. The docs site's reference page (``docs/hooks.py``) is :func:`markdown`, so
the reference cannot disagree with the code: a new field is documented where it is written,
and ``tests/test_keys.py`` fails for a field without a comment or a composed key the
reference does not list.

Groups (``activation``, ``loss``, ``optimizer``, ``data``) list their choices from the core's
registries, each with the first line of its class's docstring and its own settings.
"""

from __future__ import annotations

import inspect
import io
import tokenize
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Iterable

from omegaconf import OmegaConf

from mlp.files import PROJECT_ROOT

__all__ = ["Key", "Section", "field_comments", "sections", "markdown"]


@dataclass(frozen=True)
class Key:
    name: str  # as typed on the command line, e.g. "hydra.sweeper.asha.eta"
    default: Any
    meaning: str


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    keys: tuple[Key, ...]
    # group -> [(choice, what it is)], listed under the table
    choices: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()


def field_comments(cls: type) -> dict[str, str]:
    """``field -> comment`` for the fields of class ``cls`` (its source's comments: the lines
    just above a field and the end of its line, joined; a blank line ends a comment)."""
    src = inspect.getsource(cls)
    return _comments(src, body_indent=_body_indent(src))


def _body_indent(src: str) -> int:
    lines = src.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("class "))
    for line in lines[start + 1:]:
        if line.strip():
            return len(line) - len(line.lstrip())
    return 4


def _comments(src: str, body_indent: int | None = None) -> dict[str, str]:
    """Field comments of a class body (``body_indent``) or a YAML mapping's top level
    (``None``: every ``key:`` line at column 0)."""
    out: dict[str, str] = {}
    lines = src.splitlines()
    above: list[str] = []
    trailing = _trailing_comments(src) if body_indent is not None else {}
    for i, line in enumerate(lines, 1):
        text = line.strip()
        indent = len(line) - len(line.lstrip())
        if not text:
            above = []
        elif text.startswith("#"):
            above.append(text.lstrip("#").strip())
        else:
            want = 0 if body_indent is None else body_indent
            name = text.split(":", 1)[0].strip()
            if indent == want and ":" in text and name.isidentifier():
                end = trailing.get(i) if body_indent is not None else _yaml_trailing(text)
                out[name] = " ".join([*above, *([end] if end else [])]).strip()
            above = []
    return out


def _trailing_comments(src: str) -> dict[int, str]:
    """line number -> the comment ending that line of Python source (after code)."""
    out: dict[int, str] = {}
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT and tok.start[0] in code_lines:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.COMMENT):
            code_lines.add(tok.start[0])
    return out


def _yaml_trailing(text: str) -> str:
    value = text.split(":", 1)[1]
    return value.split(" #", 1)[1].strip() if " #" in value else ""


def _default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _keys(cls: type, prefix: str = "", skip: Iterable[str] = (), comments: dict | None = None,
          defaults: dict | None = None) -> list[Key]:
    notes = {**field_comments(cls), **(comments or {})}
    out = []
    for f in fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        if f.default_factory is not MISSING and is_dataclass(f.default_factory):
            continue  # a nested settings class (tracking, asha): a section of its own
        default = (defaults or {}).get(f.name, _default(f))
        out.append(Key(prefix + f.name, default, notes.get(f.name, "")))
    return out


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip().rstrip(":").strip()


def _choices() -> tuple:
    from mlp import activations, losses, optim
    from mlp.data import DATASETS

    return (
        ("activation", tuple((n, _first_line(type(activations.get(n))))
                             for n in activations.names())),
        ("loss", tuple((n, _first_line(losses.loss_class(n))) for n in losses.names())),
        ("optimizer", tuple((n, _first_line(optim.optimizer_class(n))) for n in optim.names())),
        ("data", tuple((n, f"{v['train']:,} training and {v['test']:,} test images")
                       for n, v in DATASETS.items())),
    )


def _group_keys() -> list[Key]:
    from mlp import losses, optim

    keys = [Key("activation", "relu", "the hidden layers' activation (choices below)")]
    keys.append(Key("loss", "cross_entropy", "the training loss (choices below)"))
    keys.append(Key("loss.reduction", None,
                    "which batch reduction the gradient is of: " + ", ".join(
                        f"`{r}`" for r in losses.REDUCTIONS) + "; null: the study's ("
                    + ", ".join(f"{n} {losses.study_reduction(n)}" for n in losses.names())
                    + ")"))
    for n in losses.names():
        for p, d in losses.params(n).items():
            keys.append(Key(f"loss.{p}", d, f"`loss={n}`: its `{p}` (its formula: the "
                            f"choice below)"))
    keys.append(Key("optimizer", "sgd", "the update rule (choices below); `lr`, `momentum` "
                    "and `weight_decay` are top-level keys"))
    for n in optim.names():
        for p, d in optim.params(n).items():
            keys.append(Key(f"optimizer.{p}", d, f"`optimizer={n}`: its `{p}`"))
    keys.append(Key("data", "mnist", "the dataset (choices below; its settings: Data)"))
    return keys


def sections() -> list[Section]:
    """The reference, section by section, in the order of the data's way."""
    from hydra_plugins.mlp_sweeps_joblib.config import JoblibLauncherConf
    from hydra_plugins.mlp_sweeps_ray.config import RayLauncherConf
    from hydra_plugins.mlp_sweeps_sweeper.config import AshaConf, MlpSweeperConf
    from mlp.config import DataConfig, TrainConfig

    from mlp_sweeps.plan.schema import RunConf, TrackingConf

    train = _group_keys() + _keys(TrainConfig, skip=("activation", "loss", "loss_params",
                                                     "optimizer", "optimizer_params", "data"))
    out = [
        Section("What is trained", "These settings identify a configuration (its config hash): "
                "runs of the same settings are the same configuration, whatever launched them. "
                "Defaults are the study's baseline.", tuple(train), _choices()),
        Section("Data", "`data=fashion_mnist` picks the dataset; its settings:",
                tuple(_keys(DataConfig, "data.", skip=("name",)))),
        Section("The run", "How a run is carried out and recorded; not part of its identity.",
                tuple(_keys(RunConf))),
        Section("Tracking", "Where and how runs are recorded in MLflow.",
                tuple(_keys(TrackingConf, "tracking."))),
        Section("Sweeps", "`python train.py -m ...`: the `mlp` sweeper's settings.",
                tuple(_keys(MlpSweeperConf, "hydra.sweeper.", skip=("asha",))
                      + _keys(AshaConf, "hydra.sweeper.asha."))),
        Section("Launcher: joblib (the default)", "`hydra/launcher=mlp_joblib`: parallel "
                "processes on this machine (hydra-joblib-launcher's settings; `n_jobs` is the "
                "one users set).",
                tuple(_keys(JoblibLauncherConf, "hydra.launcher."))),
        Section("Launcher: Ray", "`hydra/launcher=ray` (the `ray` extra).",
                tuple(_keys(RayLauncherConf, "hydra.launcher."))),
    ]
    slurm = _slurm_keys()
    if slurm:
        out.append(Section("Launcher: SLURM", "`hydra/launcher=slurm` (the `slurm` extra); "
                           "the defaults of `conf/hydra/launcher/slurm.yaml`.", tuple(slurm)))
    return out


def _slurm_keys() -> list[Key]:
    from hydra_plugins.mlp_sweeps_slurm import config

    if getattr(config, "SlurmQueueConf", None) is None:
        return []
    yaml = PROJECT_ROOT / "conf" / "hydra" / "launcher" / "slurm.yaml"
    text = yaml.read_text()
    values = OmegaConf.to_container(OmegaConf.create(text))
    values.pop("defaults", None)
    notes: dict[str, str] = {}
    for cls in reversed(config.SlurmLauncherConf.__mro__):
        if is_dataclass(cls) and cls is not object:
            try:
                notes.update({k: v for k, v in field_comments(cls).items() if v})
            except (OSError, TypeError):
                pass
    notes.update({k: v for k, v in _comments(text).items() if v})
    return _keys(config.SlurmLauncherConf, "hydra.launcher.", comments=notes, defaults=values)


def _text(value: Any) -> str:
    if value is MISSING:
        return "(required)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str) and not value:
        return "`''`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The reference page: one table per section, every key with its default and meaning."""
    lines = ["# Configuration reference", "",
             "Every key `python train.py` takes, as `key=value` on the command line or in a "
             "sweep file. This page is generated from the schema (`mlp_sweeps/plan/keys.py` reads "
             "the comment beside each field of `mlp/config.py`, `mlp_sweeps/plan/schema.py` and "
             "the plugins' `config.py`), so it lists exactly what the code accepts. "
             "`python train.py --help` lists the groups' choices too.", ""]
    for s in sections():
        lines += [f"## {s.title}", "", s.intro, "", "| key | default | meaning |",
                  "|---|---|---|"]
        lines += [f"| `{k.name}` | {_cell(_text(k.default))} | {_cell(k.meaning)} |"
                  for k in s.keys]
        lines.append("")
        for group, options in s.choices:
            lines += [f"`{group}` is one of:", ""]
            lines += [f"- `{group}={n}`: {what}" for n, what in options]
            lines.append("")
    return "\n".join(lines)
