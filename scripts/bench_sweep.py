"""Sweep throughput: a real multirun of N jobs on W workers, timed against its jobs' own times.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_sweep.py
                                                       # 4 baseline jobs, 2 epochs, 2 workers
    python scripts/bench_sweep.py --jobs 5 --overrides activation=relu,sigmoid,selu,swish,gelu

Prints the sweep's wall time (command start to exit: start-up, planning, the store, the
workers, every job, the summary and the sweep's tables and figures), and its fixed cost:
the wall time minus the runs' critical path (the runs' own times, each MLflow run's start to
end, laid longest first on the W workers as the sweeper orders them: the makespan a sweep
with no cost of its own would have). Compared with three serial references measured in the
same invocation:

- the runs' own times: each MLflow run's start to end (data, training, per-epoch tracking,
  artifacts), summed: the work inside the runs only;
- each job alone: the job's own command (``python train.py <its overrides>``, the same BLAS
  threads, tracked in the same store), one after the other: what the sweep replaces;
- the same sweep on one worker (``hydra.launcher.n_jobs=1``), with the sweep's BLAS
  threads per job (the usual T1 / (W x T_W)) and with BLAS on all cores (one job at a
  time using the whole machine: the alternative to parallel workers).

Also the per-run overhead beyond training, and the peak memory of all the sweep's
processes together, sampled from /proc as PSS (shared pages, e.g. the memory-mapped
dataset, counted once) and as RSS. The store exists beforehand (as for every sweep after
a project's first) unless ``--new-store``.
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
sys.path.insert(0, str(ROOT))


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


def _sample(proc: subprocess.Popen, peak: dict[str, int], done: threading.Event) -> None:
    """Peak memory of ``proc``'s process tree into ``peak`` until ``done``. Reading
    /proc/<pid>/smaps* walks the process's page tables (~8 ms for the rollup, ~16 ms for
    the per-mapping file, per process): sampled sparingly, or the sampling itself takes a
    good part of a core from the sweep it measures."""
    from mlp.data import default_cache_dir

    cache = str(default_cache_dir().resolve())
    i = 0
    while not done.wait(1.0 if i else 0.5):
        pids = _tree(proc.pid)
        mem = [_mem_kib(p) for p in pids]
        peak["pss"] = max(peak["pss"], sum(m[0] for m in mem))
        peak["rss"] = max(peak["rss"], sum(m[1] for m in mem))
        if i % 3 == 0:
            data = [_data_kib(p, cache) for p in pids]
            peak["data_pss"] = max(peak["data_pss"], sum(d[0] for d in data))
            peak["data_rss"] = max(peak["data_rss"], sum(d[1] for d in data))
        i += 1


class Failed(Exception):
    """A timed command exited non-zero."""


def _timed(cmd: list[str], what: str, sample: bool = False) -> tuple[float, dict[str, int]]:
    """(wall seconds, peak PSS/RSS KiB of the process tree if ``sample``) of ``cmd``;
    :class:`Failed` naming ``what`` if it exits non-zero."""
    peak = dict.fromkeys(("pss", "rss", "data_pss", "data_rss"), 0)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    done = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc, peak, done), daemon=True)
    if sample:
        sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    done.set()
    if sample:
        sampler.join()
    if rc != 0:
        raise Failed(f"{what} failed with exit status {rc}: {' '.join(cmd)}")
    return wall, peak


def _runs(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("sweep") != "parent"] if exp else []


def _data_kib(pid: int, folder: str) -> tuple[int, int]:
    """(PSS, RSS) in KiB of one process's mappings of files under ``folder`` (the decoded
    dataset cache), 0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return 0, 0
    pss = rss = 0
    inside = False
    for line in text.splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
            inside = len(head) >= 6 and head[5].startswith(folder)
        elif inside and head and head[0] in ("Pss:", "Rss:"):
            if head[0] == "Pss:":
                pss += int(head[1])
            else:
                rss += int(head[1])
    return pss, rss


def critical_path(durations: list[float], workers: int) -> float:
    """Makespan of ``durations`` laid longest first, each on the first free of ``workers``."""
    free = [0.0] * max(workers, 1)
    for d in sorted(durations, reverse=True):
        i = free.index(min(free))
        free[i] += d
    return max(free)


def main(argv=None) -> int:
    try:
        return _main(argv)
    except Failed as e:
        print(e, file=sys.stderr)
        return 1


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=4, help="jobs (seeds 0..N-1 unless --overrides)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--overrides", nargs="*", default=None, help="sweep overrides instead of seeds")
    ap.add_argument("--new-store", action="store_true",
                    help="time the sweep's creation of a new store too (a project's first "
                         "sweep); by default the store exists, as for every later sweep")
    ap.add_argument("--no-baselines", action="store_true",
                    help="skip the serial baselines (each job alone; the sweep on 1 worker)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import mlp  # noqa: F401  (NumPy's and SciPy's BLAS, as a worker loads them)
    from mlp.perf import blas_info, forced_kernel_warning

    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    from mlp_sweeps.record.store import open_client

    client = open_client(uri)
    if not args.new_store:
        client.search_experiments()  # creates the store's tables now, untimed

    sweep = args.overrides or [f"seed={','.join(map(str, range(args.jobs)))}"]
    train = [sys.executable, str(ROOT / "train.py")]
    common = [f"epochs={args.epochs}", f"tracking.uri={uri}"]
    cmd = [*train, "-m", *sweep, *common, f"hydra.launcher.n_jobs={args.workers}",
           "tracking.experiment=bench", f"hydra.sweep.dir={tmp / 'multirun'}"]
    started = time.time()
    wall, peak = _timed(cmd, "the sweep", sample=True)
    runs = _runs(client, "bench")
    first_start = min(r.info.start_time for r in runs) / 1000 - started
    last_end = started + wall - max(r.info.end_time for r in runs) / 1000
    jobs = sorted(((r.info.end_time - r.info.start_time) / 1000, r.data.metrics["train_time_s"],
                   r.data.metrics.get("final_test_acc"), r.info.run_name,
                   r.data.tags["overrides"], r.data.tags["blas_threads"]) for r in runs)
    total = sum(j[0] for j in jobs)
    crit = critical_path([j[0] for j in jobs], args.workers)
    res = {
        "command": " ".join(cmd), "workers": args.workers, "jobs": len(jobs),
        "blas_kernels": sorted({b["kernel"] for b in blas_info()}),
        "blas_threads_per_job": sorted({j[5] for j in jobs}),
        "blas_warning": forced_kernel_warning(),
        "new_store": args.new_store, "wall_s": wall,
        "critical_path_s": crit, "fixed_cost_s": wall - crit,
        "start_to_first_run_s": first_start, "last_run_to_exit_s": last_end,
        "job_s": [j[0] for j in jobs], "sum_job_s": total, "wall_over_sum": wall / total,
        "parallel_efficiency": total / (wall * args.workers),
        "startup_overhead_s": [j[0] - j[1] for j in jobs],
        "test_acc": {j[3]: j[2] for j in jobs},
        "peak_pss_mib": peak["pss"] / 1024, "peak_rss_mib": peak["rss"] / 1024,
        "dataset_pss_mib": peak["data_pss"] / 1024, "dataset_rss_mib": peak["data_rss"] / 1024,
    }
    if not args.no_baselines:
        # each job alone: its own command, the same configuration and BLAS threads as in
        # the sweep, tracked in the same store (what running the jobs one by one costs)
        alone = []
        for i, j in enumerate(jobs):
            ov = [o for o in j[4].split() if not o.startswith(("tracking.", "blas_threads="))]
            c = [*train, *ov, f"blas_threads={j[5]}", f"tracking.uri={uri}",
                 "tracking.experiment=bench-alone", "progress=false",
                 f"hydra.run.dir={tmp / 'alone' / str(i)}"]
            alone.append(_timed(c, "a job alone")[0])
        # the same sweep on one worker: with the sweep's BLAS threads per job (the same work
        # per job: T1 of the parallel efficiency), and with every core's threads per job
        # (the alternative a user has: one job at a time, BLAS using all cores)
        serial = {}
        for label, threads in (("1worker", jobs[0][5]), ("1worker_all_threads", None)):
            c1 = [*train, "-m", *sweep, *common, "hydra.launcher.n_jobs=1",
                  f"tracking.experiment=bench-{label}", f"hydra.sweep.dir={tmp / label}"]
            if threads is not None:
                c1.append(f"blas_threads={threads}")
            serial[label] = _timed(c1, "the 1-worker sweep")[0]
        wall1, wall1_all = serial["1worker"], serial["1worker_all_threads"]
        res.update(alone_s=alone, sum_alone_s=sum(alone), wall_over_sum_alone=wall / sum(alone),
                   efficiency_over_alone=sum(alone) / (wall * args.workers),
                   wall_1worker_s=wall1, speedup_over_1worker=wall1 / wall,
                   efficiency_over_1worker=wall1 / (wall * args.workers),
                   wall_1worker_all_threads_s=wall1_all,
                   speedup_over_1worker_all_threads=wall1_all / wall)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"BLAS kernel(s) {', '.join(res['blas_kernels'])}, "
          f"{'/'.join(res['blas_threads_per_job'])} BLAS thread(s) per job")
    if res["blas_warning"]:
        print(f"WARNING: {res['blas_warning']}")
    print(f"sweep of {len(jobs)} jobs on {args.workers} workers "
          f"({'new' if args.new_store else 'existing'} store): wall {wall:.1f} s; the runs' "
          f"critical path {crit:.1f} s; fixed cost {wall - crit:.1f} s (start to the first run's "
          f"start {first_start:.1f} s, the last run's end to exit {last_end:.1f} s)")
    for i, (own, trained, acc, name, _, _) in enumerate(jobs):
        extra = f"  alone {res['alone_s'][i]:5.1f} s" if "alone_s" in res else ""
        print(f"  {name:40s} run {own:5.1f} s  training {trained:5.1f} s{extra}  "
              f"test acc {acc:.4f}")
    print(f"wall / sum of the runs' own times ({total:.1f} s, start to end of each MLflow run) "
          f"= {wall / total:.2f}; parallel efficiency {res['parallel_efficiency']:.2f}")
    if "alone_s" in res:
        print(f"wall / sum of the jobs run alone ({res['sum_alone_s']:.1f} s, one command each, "
              f"tracking included) = {res['wall_over_sum_alone']:.2f}; parallel efficiency "
              f"{res['efficiency_over_alone']:.2f}")
        print(f"the same sweep on 1 worker, {jobs[0][5]} BLAS thread(s) per job as here: "
              f"{wall1:.1f} s; speed-up {res['speedup_over_1worker']:.2f}, parallel efficiency "
              f"{res['efficiency_over_1worker']:.2f}")
        print(f"the same sweep on 1 worker, BLAS on all cores: {wall1_all:.1f} s; speed-up "
              f"{res['speedup_over_1worker_all_threads']:.2f}")
    print(f"per-run overhead beyond training (data, tracking, artifacts): "
          f"{min(res['startup_overhead_s']):.1f}-{max(res['startup_overhead_s']):.1f} s")
    print(f"peak memory of all the sweep's processes: PSS {res['peak_pss_mib']:.0f} MiB "
          f"(shared pages once), RSS {res['peak_rss_mib']:.0f} MiB (shared pages per process)")
    print(f"of which the memory-mapped dataset: PSS {res['dataset_pss_mib']:.0f} MiB, RSS summed "
          f"over the processes {res['dataset_rss_mib']:.0f} MiB (one copy, shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
