"""Reproduce the published study with one command; write reports/REPORT.md.

Runs every grid of the study (sweeps/study.yaml) through the same Hydra/MLflow path as a
user's sweep (``python train.py -m sweep=study ...``), reusing runs that already finished
with the same configuration: an interrupted reproduction resumes by running the same
command again. Then writes the report: published tables beside ours, each published
finding with its evidence and verdict, the gradient-scaling variant, figures.

    python scripts/reproduce.py                          # full: 100 epochs, seed 0, all grids
    python scripts/reproduce.py --profile quick          # 2 epochs on 5000 examples: a smoke run
    python scripts/reproduce.py --only activations,losses --seeds 3 --jobs 2
    python scripts/reproduce.py --report-only            # rewrite the report from the store
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlp_sweeps.report import Report  # noqa: E402

GRIDS = list(yaml.safe_load((ROOT / "sweeps" / "study.yaml").read_text())
             ["hydra"]["sweeper"]["grids"])
PROFILES = {
    "full": {"epochs": 100, "seeds": 1, "train_limit": None},
    "quick": {"epochs": 2, "seeds": 1, "train_limit": 5000},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=list(PROFILES), default="full")
    ap.add_argument("--epochs", type=int, help="epochs per run (default: the profile's)")
    ap.add_argument("--seeds", type=int, help="seeds per configuration: 0..N-1")
    ap.add_argument("--only", help=f"comma-separated grids (default all): {', '.join(GRIDS)}")
    ap.add_argument("--jobs", type=int, help="parallel worker processes (default: cores)")
    ap.add_argument("--experiment", default="study")
    ap.add_argument("--uri", help="tracking URI (default: the project's store)")
    ap.add_argument("--out", default=str(ROOT / "reports"), help="report folder")
    ap.add_argument("--report-only", action="store_true", help="train nothing; rewrite the report")
    ap.add_argument("--note", default="", help="a paragraph to add under the report's header")
    args = ap.parse_args(argv)

    prof = dict(PROFILES[args.profile])
    if args.epochs is not None:
        prof["epochs"] = args.epochs
    if args.seeds is not None:
        prof["seeds"] = args.seeds
    if prof["epochs"] < 1 or prof["seeds"] < 1:
        ap.error("--epochs and --seeds must be >= 1")
    only = [g for g in (args.only.split(",") if args.only else GRIDS) if g]
    unknown = [g for g in only if g not in GRIDS]
    if unknown:
        ap.error(f"unknown grid(s) {', '.join(unknown)}; valid: {', '.join(GRIDS)}")
    seeds = list(range(prof["seeds"]))

    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "sweep=study",
           f"hydra.sweeper.only=[{','.join(only)}]", f"epochs={prof['epochs']}",
           f"seed={','.join(map(str, seeds))}", f"tracking.experiment={args.experiment}"]
    if prof["train_limit"]:
        cmd.append(f"data.train_limit={prof['train_limit']}")
    if args.jobs:
        cmd.append(f"hydra.launcher.n_jobs={args.jobs}")
    if args.uri:
        cmd.append(f"tracking.uri={args.uri}")
    rc, wall = 0, None
    if not args.report_only:
        print("+", shlex.join(cmd), flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        wall = time.perf_counter() - t0
        print(f"sweep finished with exit status {rc} in {wall:.0f} s", flush=True)

    shown = list(argv if argv is not None else sys.argv[1:])
    if "--note" in shown:  # the note is printed below the header, not inside it
        i = shown.index("--note")
        shown[i:i + 2] = ["--note", "..."]
    invocation = "python scripts/reproduce.py " + shlex.join(shown)
    header = (f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by "
              f"`{invocation.strip()}` from experiment `{args.experiment}`. "
              f"Runs: `{shlex.join(cmd[1:])}`." + (f"\n\n{args.note}" if args.note else ""))
    report = Report(args.uri, args.experiment, GRIDS, seeds, Path(args.out))
    path = report.write(header, wall)
    print(f"wrote {path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
