"""Reproduce the published study with one command; write reports/REPORT.md.

1. Restores the finished runs the report's evidence holds (``reports/evidence/``) into the
   tracking store, so nothing that finished anywhere is trained again.
2. Runs every grid of the study (sweeps/study.yaml) through the same Hydra/MLflow path as a
   user's sweep (``python train.py -m sweep=study ...``), skipping configurations that
   already finished: an interrupted reproduction resumes by running the same command again.
3. Times the configurations whose times the findings compare, each alone on one core
   (once per machine and BLAS kernel; ``--timing`` measures again).
4. Writes the evidence (runs, curves, timing) and the report from it.

    python scripts/reproduce.py                          # full: 100 epochs, seed 0, all grids
    python scripts/reproduce.py --only activations,losses --seeds 3   # the tables at 3 seeds
    python scripts/reproduce.py --profile quick          # 2 epochs on 5000 examples: a smoke run
    python scripts/reproduce.py --report-only            # the report from reports/evidence/ alone
    python scripts/reproduce.py --only batch_size --seeds 3 --rerun   # train those again
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlp_sweeps.report.study import protocol as study  # noqa: E402
from mlp_sweeps.plan.cost.machine import machine  # noqa: E402
from mlp_sweeps.report.study import timing  # noqa: E402
from mlp_sweeps.report.study.evidence import Evidence, restore  # noqa: E402
from mlp_sweeps.report.study.document import Report  # noqa: E402

GRIDS = list(study.study_grids())
PROFILES = {
    # the study's protocol; timing: 3 epochs of each timed configuration on the full data
    "full": {"epochs": study.PROTOCOL.epochs, "seeds": 1, "train_limit": None,
             "out": ROOT / "reports", "timing_epochs": 3},
    "quick": {"epochs": 2, "seeds": 1, "train_limit": 5000,
              "out": ROOT / "outputs" / "reproduce-quick", "timing_epochs": 2},
}


def sweep_command(prof: dict, only: list[str], seeds: list[int], args) -> list[str]:
    cmd = ["train.py", "-m", "sweep=study", f"hydra.sweeper.only=[{','.join(only)}]",
           f"epochs={prof['epochs']}", f"seed={','.join(map(str, seeds))}",
           f"tracking.experiment={args.experiment}",
           # not part of a run's identity: batch curves at the study's dispfreq, and the
           # training set evaluated as the test set is (dropout off or fixed, as at test time)
           "log_every_steps=50", "eval_train=true"]
    if prof["train_limit"]:
        cmd.append(f"data.train_limit={prof['train_limit']}")
    if args.jobs:
        cmd.append(f"hydra.launcher.n_jobs={args.jobs}")
    if args.uri:
        cmd.append(f"tracking.uri={args.uri}")
    if args.rerun:
        cmd.append("hydra.sweeper.rerun=true")
    return cmd


def shown_invocation(argv: list[str]) -> str:
    """This invocation as a reader would type it: paths inside the project relative to it."""
    def rel(a: str) -> str:
        p = Path(a)
        if p.is_absolute():
            try:
                return str(p.resolve().relative_to(ROOT))
            except ValueError:
                return a
        return a
    return shlex.join(["python", "scripts/reproduce.py", *map(rel, argv)])


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
    ap.add_argument("--rerun", action="store_true",
                    help="train the chosen grids again even where their runs finished (e.g. "
                         "to record what older runs did not); the new runs replace the old "
                         "ones in the evidence")
    ap.add_argument("--out", help="report folder (default: reports/ for the full profile, "
                                  "outputs/reproduce-quick/ for the quick one)")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing (and time nothing unless --timing); the report from "
                         "the evidence files alone")
    ap.add_argument("--from-store", action="store_true",
                    help="with --report-only: first update the evidence from the store")
    timing_opt = ap.add_mutually_exclusive_group()
    timing_opt.add_argument("--timing", action="store_true",
                            help="run the timing pass again (default: once per machine and "
                                 "BLAS kernel)")
    timing_opt.add_argument("--no-timing", action="store_true", help="skip the timing pass")
    raw = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(raw)

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
    if args.from_store and not args.report_only:
        ap.error("--from-store goes with --report-only (a reproduction always reads the store)")
    out = Path(args.out) if args.out else prof["out"]
    ev_dir = out / "evidence"
    ev = Evidence.read(ev_dir)
    seeds = list(range(prof["seeds"]))
    rc = 0

    if not args.report_only:
        n = restore(args.uri, args.experiment, ev)
        if n:
            print(f"restored {n} finished runs from {ev_dir} into the store", flush=True)
        cmd = sweep_command(prof, only, seeds, args)
        print("+ python", shlex.join(cmd), flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, *cmd], cwd=ROOT)
        print(f"sweep finished with exit status {rc} in {time.perf_counter() - t0:.0f} s",
              flush=True)
        ev = ev.merged(Evidence.from_store(args.uri, args.experiment))
        commands = ev.manifest.setdefault("commands", [])
        shown = shown_invocation([a for a in raw if a not in ("--timing", "--no-timing")])
        if shown not in commands:
            commands.append(shown)
    elif args.from_store:
        ev = ev.merged(Evidence.from_store(args.uri, args.experiment))

    here = machine()
    old = ev.manifest.get("timing", {})
    stale = ev.timing.empty or any(old.get(k) != here[k] for k in ("cpu", "kernel", "blas"))
    if args.timing or (not args.report_only and not args.no_timing and stale):
        todo = timing.configurations_to_time(study.configurations())
        print(f"timing pass: {len(todo)} configurations, {prof['timing_epochs']} epochs each, "
              "one after the other on one BLAS thread", flush=True)
        ev.timing = timing.measure(todo, prof["timing_epochs"], prof["train_limit"])
        ev.manifest["timing"] = here

    if not args.report_only or args.from_store or args.timing:
        ev.write(ev_dir)
    commands = ev.manifest.get("commands", [])
    header = ("The runs, in the order they were made:\n\n" +
              ("\n".join(f"- `{c}`" for c in commands) if commands else "- none yet") +
              f"\n\nThis report: `python scripts/reproduce.py --report-only"
              f"{'' if out == PROFILES['full']['out'] else ' --out ' + shlex.quote(str(args.out))}`"
              f", from the evidence files in `{_rel(ev_dir)}/` alone (every run's settings, "
              "final metrics, per-epoch and per-50-iteration curves, and the timing pass).")
    path = Report(ev, out).write(header)
    print(f"wrote {_rel(path)}")
    return rc


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


if __name__ == "__main__":
    sys.exit(main())
