"""Sweeps of many tiny jobs: how planning, per-job cost, resume and export grow with N.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_scale.py
    python scripts/bench_scale.py --sizes 100,1000,10000 --run-max 1000 --subset 1000

For each N, a sweep of N tiny jobs (``python train.py -m "seed=range(N)" epochs=1
data.train_limit=200 data.test_limit=100 hidden_size=16``, 2 workers, a fresh SQLite store
per N) is

- planned only (``hydra.sweeper.dry_run=true``): the planning time the sweeper logs
  (compose + validate + merge), the command's wall time and the launcher's peak RSS;
- run (N <= ``--run-max``; above it a subset of ``--subset`` jobs): the wall time; the
  per-job cost on a worker, ``(last run's end - first run's start) x workers / jobs`` (the
  runs' times in the store: while the jobs run, everything a job costs a worker: dispatch,
  its Hydra set-up, the tracked run, training), and the same with the sweep's fixed cost
  beyond planning included, ``(wall of the run - wall of the dry run) x workers / jobs``
  (starting the workers, creating the store, the parent run, the report: a sweep's fixed
  cost, which ``bench_sweep.py`` measures); next to the mean time inside the tracked run
  (MLflow start to end);
- run again (everything already finished: recognised and skipped): the wall time;
- exported (``mlp-export -e <experiment>``, Markdown to /dev/null): the wall time; with
  ``--fill``, when only a subset ran, also on a copy of the store filled up to N runs by
  copying the recorded runs' rows in SQL (each copy its own run id and config_hash: what
  reading N runs costs, without training them), and the dry run again over that store (it
  reads every run to decide what to skip, as a sweep's resume does); then a copy filled
  with the runs of every seed of the sweep (each copy given a later seed and that job's
  config hash) and the whole sweep of N jobs run over it: all recognised and skipped.

Then the growth exponent of each figure with N (the slope of log(figure) against log(N):
1 is linear). The machine may be loaded: compare figures of one invocation, repeat.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlp_sweeps.record.copies import copy_store, fill

ROOT = Path(__file__).resolve().parent.parent
TINY = ["epochs=1", "data.train_limit=200", "data.test_limit=100", "hidden_size=16"]
PLANNED = re.compile(r"Planned and validated (\d+) jobs in ([\d.]+) s")
SKIPPED = re.compile(r"planned: \d+ +skipped: (\d+)")


def _peak_rss_kib(pid: int) -> int:
    """The process's own peak RSS so far (VmHWM), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sweep(root: Path, n: int, store: Path, experiment: str, workers: int,
          extra: list[str]) -> dict:
    """One sweep command: wall time, the planning time it logs, the launcher's peak RSS."""
    cmd = [sys.executable, str(root / "train.py"), "-m", f"seed=range({n})", *TINY,
           f"tracking.uri=sqlite:///{store / 'm.db'}", f"tracking.experiment={experiment}",
           f"hydra.sweep.dir={store / 'multirun' / experiment}",
           f"hydra.launcher.n_jobs={workers}", *extra]
    env = dict(os.environ, PYTHONPATH=str(root))
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                text=True)
        peak = 0
        while proc.poll() is None:  # VmHWM is the peak: a sparse sample misses little
            peak = max(peak, _peak_rss_kib(proc.pid))
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed ({proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    m = PLANNED.search(text)
    skipped = SKIPPED.search(text)
    return {"wall": wall, "plan": float(m.group(2)) if m else math.nan, "rss_mib": peak / 1024,
            "skipped": int(skipped.group(1)) if skipped else None}


def export(root: Path, store: Path, experiment: str) -> float:
    cmd = [sys.executable, "-m", "mlp_sweeps.report.export", "--uri", f"sqlite:///{store / 'm.db'}",
           "-e", experiment]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def seed_hasher(store: Path, experiment: str):
    """seed -> the config hash of the sweep's job of that seed: a recorded run's resolved
    config (its ``config.yaml`` artifact) with the seed replaced, checked against the
    hash the run was recorded with."""
    import dataclasses

    import yaml
    from mlflow import MlflowClient

    from mlp import TrainConfig

    c = MlflowClient(f"sqlite:///{store / 'm.db'}")
    exp = c.get_experiment_by_name(experiment)
    run = next(r for r in c.search_runs([exp.experiment_id], max_results=50)
               if "mlflow.parentRunId" in r.data.tags)
    with tempfile.TemporaryDirectory() as d:
        cfg = yaml.safe_load(Path(c.download_artifacts(run.info.run_id, "config.yaml", d))
                             .read_text())
    tcfg = TrainConfig.from_dict(cfg)
    assert tcfg.config_hash() == run.data.tags["config_hash"], "not the recorded hash"
    return lambda seed: dataclasses.replace(tcfg, seed=seed).config_hash()


def inside_runs(store: Path, experiment: str) -> tuple[int, float, float]:
    """(number of training runs, their mean time from MLflow start to end, the seconds
    from the first one's start to the last one's end)."""
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{store / 'm.db'}")
    exp = c.get_experiment_by_name(experiment)
    runs, token = [], None
    while True:
        page = c.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        runs += [(r.info.start_time, r.info.end_time) for r in page
                 if r.info.end_time and "mlflow.parentRunId" in r.data.tags]
        token = page.token
        if not token:
            break
    spans = [(end - start) / 1000 for start, end in runs]
    whole = (max(e for _, e in runs) - min(s for s, _ in runs)) / 1000 if runs else math.nan
    return len(spans), sum(spans) / max(len(spans), 1), whole


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(y) on log(N)."""
    pts = [(math.log(n), math.log(y)) for n, y in points if y and y > 0 and not math.isnan(y)]
    if len(pts) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else math.nan


def blas_kernel() -> str:
    from threadpoolctl import threadpool_info

    import numpy  # noqa: F401  (loads the BLAS)

    return ", ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
                     for i in threadpool_info() if i["user_api"] == "blas") or "none"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000", help="comma-separated N")
    ap.add_argument("--run-max", type=int, default=1000,
                    help="run (not only plan) the sweeps of at most this many jobs")
    ap.add_argument("--subset", type=int, default=1000,
                    help="above --run-max, run this many of the jobs (0: none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--root", default=str(ROOT), help="the project checkout to measure")
    ap.add_argument("--fill", action="store_true",
                    help="above --run-max, also export a copy of the store filled to N runs")
    ap.add_argument("--keep", action="store_true", help="keep the stores (path printed)")
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    print(f"project {root}; {args.workers} workers; BLAS: {blas_kernel()}; stores in {tmp}",
          flush=True)
    rows = []
    for n in sizes:
        store = tmp / f"n{n}"
        exp = f"scale-{n}"
        row = {"N": n}
        dry = sweep(root, n, store, exp, args.workers, ["hydra.sweeper.dry_run=true"])
        row.update(plan_s=dry["plan"], plan_ms_job=1000 * dry["plan"] / n, dry_wall=dry["wall"],
                   rss_mib=dry["rss_mib"])
        print(f"N={n}: dry run {dry['wall']:.1f} s, planning {dry['plan']:.2f} s "
              f"({row['plan_ms_job']:.2f} ms/job), launcher peak RSS {dry['rss_mib']:.0f} MiB",
              flush=True)
        m = n if n <= args.run_max else args.subset
        if m:
            base = dry if m == n else sweep(root, m, tmp / f"n{n}-dry{m}", exp, args.workers,
                                            ["hydra.sweeper.dry_run=true"])
            first = sweep(root, m, store, exp, args.workers, [])
            runs, inside, whole = inside_runs(store, exp)
            per_job = whole * args.workers / m
            per_job_fixed = (first["wall"] - base["wall"]) * args.workers / m
            again = sweep(root, m, store, exp, args.workers, [])
            ex = export(root, store, exp)
            row.update(ran=m, run_wall=first["wall"], per_job_s=per_job,
                       per_job_fixed_s=per_job_fixed, inside_s=inside,
                       recorded=runs, rerun_wall=again["wall"], rerun_plan=again["plan"],
                       export_s=ex, run_rss_mib=first["rss_mib"])
            print(f"  ran {m} jobs ({runs} recorded): wall {first['wall']:.1f} s, "
                  f"{per_job:.3f} s per job on a worker while the jobs ran ({inside:.3f} s "
                  f"inside the tracked run; {per_job_fixed:.3f} s with the sweep's fixed "
                  f"cost); launcher peak RSS {first['rss_mib']:.0f} MiB", flush=True)
            print(f"  again, all skipped: {again['wall']:.1f} s (planning {again['plan']:.2f} "
                  f"s); mlp-export of {runs} runs: {ex:.1f} s", flush=True)
            if args.fill and m < n:
                filled = tmp / f"n{n}-filled"
                filled.mkdir()
                copy_store(store / "m.db", filled / "m.db")
                held = fill(filled / "m.db", exp, n)
                row["export_filled_s"] = export(root, filled, exp)
                # the dry run reads the whole experiment to decide what to skip, as a real
                # sweep's resume does: its wall time over the dry run's on an empty store is
                # what reading N runs adds (the copies' hashes match no job: all 'to run')
                dry_filled = sweep(root, n, filled, exp, args.workers,
                                   ["hydra.sweeper.dry_run=true"])
                row["dry_filled_wall"] = dry_filled["wall"]
                print(f"  mlp-export of {held} runs (store filled by copying rows): "
                      f"{row['export_filled_s']:.1f} s; dry run reading them: "
                      f"{dry_filled['wall']:.1f} s (on an empty store {dry['wall']:.1f} s)",
                      flush=True)
                # the copies made the runs of every seed of the sweep: all N finished
                done = tmp / f"n{n}-done"
                done.mkdir()
                copy_store(store / "m.db", done / "m.db")
                fill(done / "m.db", exp, n, seed_hasher(store, exp))
                skipped = sweep(root, n, done, exp, args.workers, [])
                row["skipped_n_wall"] = skipped["wall"]
                print(f"  the sweep of {n} jobs, all finished in the store (copies made the "
                      f"runs of every seed): {skipped['wall']:.1f} s, {skipped['skipped']} "
                      f"skipped", flush=True)
        rows.append(row)

    print("\nfigure                            " + "".join(f"{r['N']:>10}" for r in rows)
          + "   growth exponent")
    for key, label in [("plan_s", "planning (s)"), ("plan_ms_job", "planning per job (ms)"),
                       ("dry_wall", "dry run wall (s)"), ("rss_mib", "launcher peak RSS (MiB)"),
                       ("run_wall", "run wall (s)"), ("per_job_s", "per job on a worker (s)"),
                       ("per_job_fixed_s", "  with the sweep's fixed cost (s)"),
                       ("inside_s", "inside tracked run (s)"),
                       ("rerun_wall", "rerun, all skipped (s)"),
                       ("export_s", "mlp-export (s)"),
                       ("export_filled_s", "mlp-export, store filled to N (s)"),
                       ("dry_filled_wall", "dry run over N stored runs (s)"),
                       ("skipped_n_wall", "N jobs, all finished: sweep (s)")]:
        vals = [r.get(key) for r in rows]
        # the exponent is over the number of jobs each figure was measured on
        xs = [r.get("ran", r["N"]) if key not in ("plan_s", "plan_ms_job", "dry_wall",
                                                  "rss_mib", "export_filled_s",
                                                  "dry_filled_wall", "skipped_n_wall")
              else r["N"] for r in rows]
        cells = "".join(f"{v:>10.3g}" if v is not None else f"{'-':>10}" for v in vals)
        g = slope([(x, v) for x, v in zip(xs, vals) if v is not None])
        print(f"{label:<34}{cells}   {g:6.2f}" if not math.isnan(g) else
              f"{label:<34}{cells}      -")
    print("(runs: " + ", ".join(f"N={r['N']}: {r.get('ran', 0)} jobs run" for r in rows) + ")")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
