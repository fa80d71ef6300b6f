"""Sweep throughput: a real multirun of N jobs on W workers, timed against its jobs' own times.

    python scripts/bench_sweep.py                      # 4 baseline jobs, 2 epochs, 2 workers
    python scripts/bench_sweep.py --jobs 5 --overrides activation=relu,sigmoid,selu,swish,gelu

Prints the sweep's wall time (command start to exit), each job's own time (its MLflow run's
start to end: data, training, tracking, artifacts), the sum, their ratio and the parallel
efficiency (sum / (wall x workers)); the per-job start-up overhead (job time minus its
training time); and the peak memory of all the sweep's processes together, sampled from
/proc as PSS (shared pages, e.g. the memory-mapped dataset, counted once) and as RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo += [int(k) for k in kids]
    return out


def _mem_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB, 0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    vals = {line.split()[0].rstrip(":"): int(line.split()[1]) for line in text.splitlines()[1:]
            if len(line.split()) >= 2 and line.split()[1].isdigit()}
    return vals.get("Pss", 0), vals.get("Rss", 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=4, help="jobs (seeds 0..N-1 unless --overrides)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--overrides", nargs="*", default=None, help="sweep overrides instead of seeds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    sweep = args.overrides or [f"seed={','.join(map(str, range(args.jobs)))}"]
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *sweep, f"epochs={args.epochs}",
           f"hydra.launcher.n_jobs={args.workers}", f"tracking.uri={uri}",
           "tracking.experiment=bench", f"hydra.sweep.dir={tmp / 'multirun'}"]
    peak = {"pss": 0, "rss": 0}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    done = threading.Event()

    def sample():
        while not done.is_set():
            mem = [_mem_kib(p) for p in _tree(proc.pid)]
            peak["pss"] = max(peak["pss"], sum(m[0] for m in mem))
            peak["rss"] = max(peak["rss"], sum(m[1] for m in mem))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    if rc != 0:
        print(f"sweep failed with exit status {rc}: {' '.join(cmd)}", file=sys.stderr)
        return rc

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bench")
    runs = [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("sweep") != "parent"]
    jobs = sorted(((r.info.end_time - r.info.start_time) / 1000, r.data.metrics["train_time_s"],
                   r.data.metrics.get("final_test_acc"), r.info.run_name) for r in runs)
    total = sum(j[0] for j in jobs)
    res = {
        "command": " ".join(cmd), "workers": args.workers, "jobs": len(jobs), "wall_s": wall,
        "job_s": [j[0] for j in jobs], "sum_job_s": total, "wall_over_sum": wall / total,
        "parallel_efficiency": total / (wall * args.workers),
        "startup_overhead_s": [j[0] - j[1] for j in jobs],
        "test_acc": {j[3]: j[2] for j in jobs},
        "peak_pss_mib": peak["pss"] / 1024, "peak_rss_mib": peak["rss"] / 1024,
    }
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"sweep of {len(jobs)} jobs on {args.workers} workers: wall {wall:.1f} s")
    for own, trained, acc, name in jobs:
        print(f"  {name:40s} job {own:6.1f} s  training {trained:6.1f} s  test acc {acc:.4f}")
    print(f"sum of the jobs' own times {total:.1f} s; wall / sum = {wall / total:.2f}; "
          f"parallel efficiency {res['parallel_efficiency']:.2f}")
    print(f"per-job overhead beyond training (data, tracking, artifacts): "
          f"{min(res['startup_overhead_s']):.1f}-{max(res['startup_overhead_s']):.1f} s")
    print(f"peak memory of all the sweep's processes: PSS {res['peak_pss_mib']:.0f} MiB "
          f"(shared pages once), RSS {res['peak_rss_mib']:.0f} MiB (shared pages per process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
