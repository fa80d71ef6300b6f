"""The package's layout is its architecture: the sub-packages of ``mlp_sweeps`` import one way
(each only from the layers below it: no cycle), MLflow is imported only in ``record/``, and
the core (``mlp/``) imports nothing of the layers around it. Read from the source (every
import, also those inside functions), so a lazy import cannot hide an edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: bottom to top: a layer imports only from layers before it (``errors`` is shared by all)
LAYERS = ("errors", "record", "claim", "read", "plan", "run", "report", "launch")


def _imports(path: Path, relative_ok: bool = False) -> list[str]:
    """Every module ``path`` imports at run time (``from x import y`` as ``x.y`` too, so a
    sub-module imported by name counts), leaving out ``if TYPE_CHECKING:`` blocks. Relative
    imports stay inside their package (allowed where ``relative_ok``: the core's)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skip |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level and not relative_ok:
            raise AssertionError(f"{path}: relative import; the layout reads from absolute ones")
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "mlp_sweeps" and len(parts) > 1 else None


def _package_files():
    return sorted((ROOT / "mlp_sweeps").rglob("*.py"))


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_only_from_the_layers_below_its_own(path):
    here = _layer(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert here in LAYERS or path.name == "__init__.py" and path.parent.name == "mlp_sweeps", here
    below = LAYERS[:LAYERS.index(here)] if here in LAYERS else ()
    wrong = sorted({m for m in _imports(path) if _layer(m) in LAYERS and _layer(m) != here
                    and _layer(m) not in below})
    assert not wrong, f"{path.relative_to(ROOT)} ({here}) imports {wrong}: layers {LAYERS}"


def test_every_layer_is_a_package_the_table_names():
    found = {p.name for p in (ROOT / "mlp_sweeps").iterdir() if p.is_dir()
             and (p / "__init__.py").exists()}
    assert found == set(LAYERS) - {"errors"}
    assert {p.stem for p in (ROOT / "mlp_sweeps").glob("*.py")} == {"__init__", "errors"}
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    for layer in found:
        assert f"`mlp_sweeps/{layer}/`" in architecture, layer


def test_only_record_imports_mlflow():
    importers = sorted(str(p.relative_to(ROOT)) for p in _package_files()
                       if any(m.split(".")[0] == "mlflow" for m in _imports(p)))
    assert importers and all(p.startswith("mlp_sweeps/record/") for p in importers), importers


def test_the_core_imports_nothing_of_its_wrappers():
    for path in sorted((ROOT / "mlp").rglob("*.py")):
        tops = {m.split(".")[0] for m in _imports(path, relative_ok=True)}
        assert not tops & {"mlp_sweeps", "hydra", "omegaconf", "mlflow", "hydra_plugins"}, path
