"""Random search against TPE at the same number of trials, over a few sampler seeds.

    python scripts/bench_search.py                     # 24 trials, sampler seeds 0, 1, 2
    python scripts/bench_search.py --trials 16 --seeds 0,1

Each search is ``python train.py -m hydra.sweeper.sampler=<random|tpe> ...`` over learning
rate (log interval), momentum, weight decay (log interval) and hidden size (int interval), on a
data slice with a validation split, into a fresh store under ``outputs/bench_search/``. It
prints, per sampler and seed, the best configuration's validation and test accuracy, and the
mean over seeds. (TPE's first 10 draws are Optuna's random start-up.)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = ["lr=tag(log,interval(1e-5,1e-2))", "momentum=interval(0.0,0.99)",
         "weight_decay=tag(log,interval(1e-6,1e-1))", "hidden_size=tag(int,interval(16,256))"]
DATA = ["data.train_limit=5000", "data.val_size=5000", "data.test_limit=5000", "epochs=4",
        "test_every=4", "blas_threads=1"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_search")
    args = ap.parse_args(argv)
    from mlflow.tracking import MlflowClient

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    uri = f"sqlite:///{args.out / 'mlflow.db'}"
    best: dict[str, list[tuple[float, float]]] = {"random": [], "tpe": []}
    for seed in map(int, args.seeds.split(",")):
        for sampler in best:
            exp = f"{sampler}-{seed}"
            r = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m",
                                f"hydra.sweeper.sampler={sampler}",
                                f"hydra.sweeper.n_trials={args.trials}",
                                f"hydra.sweeper.seed={seed}", *SPACE, *DATA,
                                f"tracking.uri={uri}", f"tracking.experiment={exp}",
                                f"hydra.sweep.dir={args.out / exp}"], cwd=ROOT,
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{exp} failed:\n{(r.stdout + r.stderr)[-3000:]}")
            client = MlflowClient(uri)
            e = client.get_experiment_by_name(exp)
            runs = [x for x in client.search_runs([e.experiment_id], max_results=1000)
                    if x.data.tags.get("sweep") != "parent" and "final_val_acc" in x.data.metrics]
            top = max(runs, key=lambda x: x.data.metrics["final_val_acc"])
            v, t = top.data.metrics["final_val_acc"], top.data.metrics["final_test_acc"]
            best[sampler].append((v, t))
            print(f"{sampler:6} seed {seed}: {len(runs)} trials, best val_acc {v:.4f} "
                  f"(test {t:.4f}): {top.info.run_name}", flush=True)
    for sampler, got in best.items():
        print(f"{sampler:6} mean over seeds: best val_acc "
              f"{statistics.mean(v for v, _ in got):.4f}, its test_acc "
              f"{statistics.mean(t for _, t in got):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
