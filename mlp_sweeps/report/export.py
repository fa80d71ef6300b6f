"""Export comparison tables and figures of tracked runs (``mlp-export`` /
``python scripts/export_tables.py``).

    mlp-export --experiment activations                        # Markdown table to stdout
    mlp-export --experiment depth --pivot activation:loss --pivot-by depth
    mlp-export --experiment lr --format all --out tables/lr     # .md .csv .tex .html
    mlp-export --experiment lr --figures figures/lr             # PNG + SVG
    mlp-export --experiment study --filter "params.depth = '2'" --by activation,loss
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import pandas as pd

from mlp_sweeps.read import tables
from mlp_sweeps.claim.ledger import RESULTS
from mlp_sweeps.read.results import load_runs, metric_histories

log = logging.getLogger(__name__)
EXT = {"markdown": "md", "csv": "csv", "latex": "tex", "html": "html"}


def table_text(runs: pd.DataFrame, fmt: str, by: Sequence[str] | None = None,
               rank_by: str | None = None) -> str:
    """The comparison table in one format, in the comparison order (:func:`tables.ordered`);
    CSV carries numbers (mean, std, n), the others display ``mean ± std``."""
    by = list(by) if by is not None else tables.varying_factors(runs)
    if fmt == "csv":
        return tables.render(tables.ordered(tables.summarize(runs, by), by, rank_by), "csv")
    return tables.render(tables.comparison(runs, by, rank_by), fmt)


def sweep_figures(uri: str | None, runs: pd.DataFrame, out_dir: Path, name: str,
                  by: Sequence[str] | None = None) -> list[Path]:
    """Overlaid learning curves of the runs, and final accuracy / time against each numeric
    factor that varies."""
    from mlp_sweeps.read.figures import plot_against, plot_sweep_curves

    by = list(by) if by is not None else tables.varying_factors(runs)
    ok = runs[runs["status"].isin(RESULTS)]
    files: list[Path] = []
    if ok.empty:
        return files
    hist = metric_histories(uri, ok["run_id"])
    files += plot_sweep_curves(ok, hist, by, out_dir / f"{name}_curves",
                               title=f"{name}: learning curves")
    for f in by:
        if pd.api.types.is_numeric_dtype(ok[f]) and ok[f].nunique() > 1:
            files += plot_against(ok, f, ["test_acc", "time_s"], out_dir / f"{name}_vs_{f}",
                                  title=f"{name}: final test accuracy and time against {f}")
    return files


def log_to_parent(uri: str | None, parent_run_id: str, files: Sequence[Path],
                  artifact_path: str = "report") -> None:
    from mlp_sweeps.record.tracking import Tracker

    client = Tracker(uri).client
    for f in files:
        client.log_artifact(parent_run_id, str(f), artifact_path)


def sweep_report(uri: str | None, experiment: str, parent_run_id: str) -> list[Path]:
    """Tables (all formats) and figures of one sweep, logged on its parent run."""
    runs = load_runs(uri, experiment, parent_run_id=parent_run_id)
    if runs.empty:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = []
        for fmt, ext in EXT.items():
            p = d / f"table.{ext}"
            p.write_text(table_text(runs, fmt))
            files.append(p)
        files += sweep_figures(uri, runs, d, experiment)
        log_to_parent(uri, parent_run_id, files)
        return [Path(f.name) for f in files]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mlp-export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else the "
                                  "project's mlruns/mlflow.db)")
    ap.add_argument("--experiment", "-e", action="append", required=True,
                    help="experiment name (repeat for several)")
    ap.add_argument("--parent", help="only the runs of this sweep (its parent run id)")
    ap.add_argument("--filter", default="", help="MLflow filter, e.g. \"params.depth = '2'\"")
    ap.add_argument("--by", help="comma-separated factors to group by (default: those "
                                 "that vary in the selection)")
    ap.add_argument("--rank-by", choices=tables.VALUES,
                    help="rows best first by this value (a sweep's closing table: test_acc); "
                         "default: in the factors' order")
    ap.add_argument("--pivot", metavar="ROWS:COLS[:VALUE]",
                    help="a pivot table instead, e.g. activation:loss (value test_acc)")
    ap.add_argument("--pivot-by", default="", help="one pivot per value of these factors")
    ap.add_argument("--format", "-f", default="markdown", choices=[*tables.FORMATS, "all"])
    ap.add_argument("--out", "-o", help="output file (or stem, with --format all); "
                                        "default: stdout")
    ap.add_argument("--figures", metavar="DIR", help="also write figures (PNG + SVG) there")
    ap.add_argument("--log-to-parent", action="store_true",
                    help="log the tables and figures as artifacts of --parent")
    args = ap.parse_args(argv)

    try:
        runs = load_runs(args.uri, args.experiment, parent_run_id=args.parent,
                         filter_string=args.filter)
    except ValueError as e:
        ap.error(str(e))
    if runs.empty:
        print("no runs match the selection", file=sys.stderr)
        return 1
    by = [b for b in args.by.split(",") if b] if args.by else None
    if by:
        unknown = [b for b in by if b not in runs.columns]
        if unknown:
            ap.error(f"unknown factor(s) {', '.join(unknown)}; valid: "
                     f"{', '.join(tables.CONFIG_COLUMNS)}")
    formats = list(tables.FORMATS) if args.format == "all" else [args.format]
    if args.format == "all" and not args.out:
        ap.error("--format all needs --out STEM")

    def text(fmt: str) -> str:
        if not args.pivot:
            return table_text(runs, fmt, by, args.rank_by)
        parts = args.pivot.split(":")
        if len(parts) not in (2, 3):
            ap.error("--pivot takes ROWS:COLS or ROWS:COLS:VALUE")
        rows, cols, value = (*parts, "test_acc")[:3]
        pby = [b for b in args.pivot_by.split(",") if b]
        chunks = []
        for key, t in tables.pivot(runs, rows, cols, value, pby).items():
            head = ", ".join(f"{k}={v}" for k, v in zip(pby, key))
            body = tables.render(t, fmt, index=True)
            chunks.append(f"{head}\n\n{body}" if head and fmt == "markdown" else body)
        return "\n\n".join(chunks)

    written: list[Path] = []
    for fmt in formats:
        out = text(fmt)
        if args.out:
            p = Path(args.out)
            if args.format == "all":
                p = p.with_suffix(f".{EXT[fmt]}")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(out + ("\n" if not out.endswith("\n") else ""))
            written.append(p)
        else:
            print(out)
    if args.figures:
        name = "_".join(args.experiment)
        written += sweep_figures(args.uri, runs, Path(args.figures), name, by)
    if args.log_to_parent:
        if not args.parent:
            ap.error("--log-to-parent needs --parent RUN_ID")
        log_to_parent(args.uri, args.parent, written)
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
