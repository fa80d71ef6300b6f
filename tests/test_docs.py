"""The docs site builds with ``mkdocs build --strict`` (every link and anchor resolves, every
page is in the navigation), and every file the docs and the README name exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = ("mlp/", "mlp_sweeps/", "hydra_plugins/", "conf/", "sweeps/", "scripts/", "tests/",
       "reports/", "reference/", "docs/", "data/")
PATH = re.compile(r"`((?:%s)[\w./-]*)`" % "|".join(re.escape(t) for t in TOP))


def test_the_site_builds_strictly_with_every_page(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                        str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    site = tmp_path / "site"
    for page in ("index", "setup", "tutorial", "sweeps", "adaptive", "tracking", "resilience",
                 "scaling", "reproduction", "performance", "architecture", "reference"):
        html = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert html.is_file(), f"{page} not built"
    reference = (site / "reference" / "index.html").read_text()
    assert "hydra.sweeper.asha.eta" in reference and "data.val_size" in reference
    assert (site / "reports" / "REPORT" / "index.html").is_file()
    assert (site / "reports" / "figures" / "focal_loss.png").is_file()
    assert not (site / "hooks.py").exists()


def test_every_file_the_docs_name_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {(p.name, m) for p in pages for m in PATH.findall(p.read_text())}
    assert len(named) > 50
    missing = sorted((page, m) for page, m in named if not (ROOT / m.rstrip(".")).exists())
    assert not missing, f"files the docs name that do not exist: {missing}"
