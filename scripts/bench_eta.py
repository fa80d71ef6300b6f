"""How good is the estimate before a sweep runs? Predicted against measured, on real sweeps.

    python scripts/bench_eta.py                 # (a), (b), (c) below, 2 workers
    python scripts/bench_eta.py --cases a c     # some of them

- (a) the 5-job activation sweep at 3 epochs, into a fresh store (nothing to learn from);
- (b) a 12-job mixed sweep (depth 1-2, hidden 16-2048, batch 10-1000) at 2 epochs, into
  a fresh store;
- (c) (a) again in (a)'s store with ``hydra.sweeper.rerun=true``: each configuration's
  earlier run is there to learn from.

For each: the estimate (``mlp_sweeps.plan.cost.schedule.for_jobs`` on the jobs' composed configs and
the store's runs, as the sweeper computes it), then the real sweep (``python train.py -m
...``) timed from command start to exit; printed: predicted against measured wall time and
the error in %, and the predicted seconds of runs against the runs' own ``train_time_s``
summed (which does not depend on the launcher or on how the jobs were packed). Also what
the fixed overheads measured: each job beyond its ``train_time_s`` (MLflow run start to
end), and the sweep beyond its jobs (wall less the schedule of the jobs' real durations).
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = {
    "a": ("the 5-job activation sweep, 3 epochs",
          {"activation": ["selu", "swish", "gelu", "relu", "sigmoid"], "epochs": [3]}),
    "b": ("12-job mixed sweep (depth 1-2, hidden 16-2048, batch 10-1000), 2 epochs",
          None),  # listed in MIXED: not a full product
    "c": ("(a) again, each configuration's earlier run in the store (rerun=true)",
          {"activation": ["selu", "swish", "gelu", "relu", "sigmoid"], "epochs": [3]}),
}
# (depth, hidden_size, batch_size): 12 jobs spanning the shapes
MIXED = [(1, 16, 10), (1, 16, 1000), (1, 64, 50), (1, 256, 100), (1, 784, 10), (1, 784, 500),
         (1, 2048, 100), (1, 2048, 1000), (2, 32, 100), (2, 128, 10), (2, 512, 200),
         (2, 1024, 50)]


def _jobs(case: str) -> list[list[str]]:
    if case == "b":
        return [[f"depth={d}", f"hidden_size={h}", f"batch_size={b}", "epochs=2"]
                for d, h, b in MIXED]
    grid = CASES[case][1]
    return [[f"{k}={v}" for k, v in zip(grid, vals)] for vals in itertools.product(*grid.values())]


def _sweep_args(case: str) -> list[str]:
    """The command line of a case: a product for (a)/(c); (b) as one override per job is not
    Hydra's syntax, so its jobs are given as a product filtered by the sweep file below."""
    if case == "b":
        return []
    grid = CASES[case][1]
    return [f"{k}={','.join(map(str, v))}" for k, v in grid.items()]


def _sweep_file(tmp: Path) -> Path:
    """A config folder with a sweep file of (b)'s 12 jobs, a union of one-job grids."""
    folder = tmp / "conf"
    (folder / "sweep").mkdir(parents=True, exist_ok=True)
    lines = ["# @package _global_", "hydra:", "  sweeper:", "    grids:"]
    for i, (d, h, b) in enumerate(MIXED):
        lines += [f"      j{i}:", f"        depth: {d}", f"        hidden_size: {h}",
                  f"        batch_size: {b}"]
    (folder / "sweep" / "mixed.yaml").write_text("\n".join(lines) + "\n")
    return folder


def run_case(case: str, store: Path, workers: int, tmp: Path) -> dict:
    from mlflow.tracking import MlflowClient

    from mlp_sweeps.plan.cost import schedule as estimate
    from mlp_sweeps.plan.jobs import train_configs
    from mlp_sweeps.read.results import load_runs

    uri = f"sqlite:///{store / 'mlflow.db'}"
    experiment = "bench-eta"
    jobs = _jobs(case)
    configs = train_configs(jobs)
    try:
        before = load_runs(uri, experiment, latest_per_config=False)
    except ValueError:  # no such experiment yet: a fresh store
        before = None
    t0 = time.perf_counter()
    est = estimate.for_jobs(configs, workers, before, names=[" ".join(j) for j in jobs])
    est_s = time.perf_counter() - t0
    print("\n".join(est.lines()))
    print(f"(estimated in {est_s:.1f} s)")

    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *_sweep_args(case),
           f"tracking.uri={uri}", f"tracking.experiment={experiment}",
           f"hydra.launcher.n_jobs={workers}", f"hydra.sweep.dir={tmp / ('multirun-' + case)}"]
    if case == "b":
        cmd[2:2] = [f"--config-dir={_sweep_file(tmp)}"]
        cmd += ["sweep=mixed", "epochs=2"]
    if case == "c":
        cmd.append("hydra.sweeper.rerun=true")
    start_ms = time.time() * 1000
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"case {case}: the sweep failed ({proc.returncode}):\n"
                         f"{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    after = load_runs(uri, experiment, latest_per_config=False)
    new = after[after["start_time"] >= start_ms]
    client = MlflowClient(uri)
    spans = []
    for rid in new["run_id"]:
        info = client.get_run(rid).info
        spans.append((info.end_time - info.start_time) / 1000)
    new = new.assign(span_s=spans)
    runs_s = float(new["time_s"].sum())
    job_over = float((new["span_s"] - new["time_s"]).median())
    # the jobs' real durations, launched longest first as estimated
    span = dict(zip(new["config_hash"], new["span_s"]))
    makespan, _ = estimate.schedule([span.get(j.config_hash, 0.0) for j in est.jobs], workers)
    res = {"case": case, "what": CASES[case][0], "jobs": len(jobs), "predicted_wall": est.wall_s,
           "measured_wall": wall, "wall_err": est.wall_s / wall - 1, "predicted_runs": est.total_s,
           "measured_runs": runs_s, "runs_err": est.total_s / runs_s - 1,
           "uncertainty": est.uncertainty, "job_overhead_s": job_over,
           "sweep_overhead_s": wall - makespan, "estimate_s": est_s, "command": " ".join(cmd)}
    print(f"({case}) {res['what']}: wall predicted {est.wall_s:.1f} s, measured {wall:.1f} s "
          f"({res['wall_err']:+.0%}); runs' train_time_s predicted {est.total_s:.1f} s, "
          f"measured {runs_s:.1f} s ({res['runs_err']:+.0%}); stated +-{est.uncertainty:.0%}; "
          f"overheads measured: {job_over:.1f} s per job, {res['sweep_overhead_s']:.1f} s per "
          f"sweep")
    per_job = dict(zip(new["config_hash"], new["time_s"]))
    for j in est.jobs:
        got = per_job.get(j.config_hash)
        if got is not None:
            print(f"    {j.name:45s} run predicted {j.run_s:7.1f} s, measured {got:7.1f} s "
                  f"({j.run_s / got - 1:+.0%})")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", default=["a", "b", "c"], choices=sorted(CASES))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_info

    import numpy  # noqa: F401  (loads BLAS for threadpoolctl)
    blas = next((i for i in threadpool_info() if i.get("user_api") == "blas"), {})
    print(f"BLAS: {blas.get('internal_api')} {blas.get('version')}, kernel "
          f"{blas.get('architecture')}; load average {open('/proc/loadavg').read().split()[:3]}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-eta-") as d:
        tmp = Path(d)
        stores = {}
        for case in args.cases:
            # (c) learns from (a)'s runs: the same store; every other case a fresh one
            key = "a" if case == "c" else case
            if case == "c" and "a" not in stores:
                print("(c) needs (a)'s runs: running (a) first")
                stores["a"] = tmp / "store-a"
                stores["a"].mkdir()
                results.append(run_case("a", stores["a"], args.workers, tmp))
            if key not in stores:
                stores[key] = tmp / f"store-{key}"
                stores[key].mkdir()
            results.append(run_case(case, stores[key], args.workers, tmp))
    print("\ncase  jobs  wall predicted  measured   error   runs predicted  measured   error  +-")
    for r in results:
        print(f"({r['case']})  {r['jobs']:4d}  {r['predicted_wall']:14.1f}  {r['measured_wall']:8.1f}"
              f"  {r['wall_err']:+6.0%}  {r['predicted_runs']:14.1f}  {r['measured_runs']:8.1f}"
              f"  {r['runs_err']:+6.0%}  {r['uncertainty']:.0%}")
    print(f"load average at the end: {open('/proc/loadavg').read().split()[:3]} "
          f"(2 cores; other processes' load inflates the measured times)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
