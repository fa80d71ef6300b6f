"""MkDocs hooks: pages that come from the code and the reports, never copied by hand.

- ``index.md``: the README, the project's front page;
- ``reference.md``: every config key, its default and meaning, generated from the schema
  (:func:`mlp_sweeps.plan.keys.markdown`), so the reference cannot go stale;
- ``reports/REPORT.md`` and ``reports/figures/``: the committed reproduction report, as the
  study's reproduction writes it (``python scripts/reproduce.py``).
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent


def on_files(files, config):
    from mlp_sweeps.plan import keys

    files.append(File.generated(config, "index.md", content=_front_page()))
    files.append(File.generated(config, "reference.md", content=keys.markdown()))
    reports = ROOT / "reports"
    for path in [reports / "REPORT.md", *sorted((reports / "figures").glob("*.png"))]:
        files.append(File.generated(config, path.relative_to(ROOT).as_posix(),
                                    abs_src_path=str(path)))
    return files


def _front_page() -> str:
    """The README as the site's home page: its links into ``docs/`` made site-relative."""
    text = (ROOT / "README.md").read_text()
    return text.replace("](docs/", "](")
