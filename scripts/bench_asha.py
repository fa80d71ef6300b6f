"""Successive halving (ASHA) measured: against the full grid, and what one pause costs.

    python scripts/bench_asha.py            # both parts
    python scripts/bench_asha.py --pause    # one pause and promotion on the baseline network
    python scripts/bench_asha.py --ladder   # a 27-configuration grid: as a grid, and under ASHA

``--ladder`` runs ``python train.py -m`` twice, as a user would, into a fresh store under
``outputs/bench_asha/``: the grid (every configuration all its epochs) and the same grid with
``hydra.sweeper.scheduler=asha``, on the same data slice and validation split. It prints the
epochs each trained, the best configuration of each (by val_acc) with its test accuracy,
whether every configuration ASHA trained to the last rung has the grid's final metrics, and
the workers' busy time.

``--pause`` trains the study's baseline network (784-784-10, batch 100) on a slice: straight
for 2 epochs, and paused after epoch 1 then continued (checkpoint saved and logged, run
closed paused, claimed, reopened, checkpoint read back); the difference of the two, in the
same process, is one pause and promotion. Median of ``--repeat`` pairs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GRID = ["lr=1e-4,3e-4,1e-3", "momentum=0.0,0.5,0.9", "hidden_size=64,128,256"]
DATA = ["data.train_limit=10000", "data.val_size=5000", "test_every=1", "epochs=27",
        "blas_threads=1"]
ASHA = ["hydra.sweeper.scheduler=asha", "hydra.sweeper.asha.eta=3",
        "hydra.sweeper.asha.min_epochs=1"]


def _sweep(uri: str, experiment: str, extra: list[str], out: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *GRID, *DATA, *extra,
                        f"tracking.uri={uri}", f"tracking.experiment={experiment}",
                        f"hydra.sweep.dir={out / experiment}"], cwd=ROOT, capture_output=True,
                       text=True)
    wall = time.perf_counter() - t0
    text = r.stdout + r.stderr
    (out / f"{experiment}.log").write_text(text)
    if r.returncode != 0:
        sys.exit(f"{experiment} sweep failed:\n{text[-3000:]}")
    return wall, text


def ladder(out: Path) -> None:
    from mlflow.tracking import MlflowClient

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    grid_wall, grid_text = _sweep(uri, "grid", [], out)
    asha_wall, text = _sweep(uri, "asha", ASHA, out)
    client = MlflowClient(uri)

    def runs(name):
        exp = client.get_experiment_by_name(name)
        return [r for r in client.search_runs([exp.experiment_id], max_results=1000)
                if r.data.tags.get("sweep") != "parent"]

    grid, asha = runs("grid"), runs("asha")
    by_hash = {r.data.tags["config_hash"]: r for r in grid}
    epochs = lambda rs: sum(int(r.data.metrics["epochs_completed"]) for r in rs)  # noqa: E731
    best = lambda rs: max((r for r in rs if "final_val_acc" in r.data.metrics  # noqa: E731
                           and r.data.tags["status"] == "finished"),
                          key=lambda r: r.data.metrics["final_val_acc"])
    gb, ab = best(grid), best(asha)
    keys = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc",
            "final_val_loss", "final_val_acc")
    top = [r for r in asha if r.data.tags["status"] == "finished"]
    same = [all(r.data.metrics[k] == by_hash[r.data.tags["config_hash"]].data.metrics[k]
                for k in keys) for r in top]
    name = lambda r: r.info.run_name  # noqa: E731
    print(f"grid: {len(grid)} configurations x 27 epochs, {epochs(grid)} epochs trained, "
          f"wall {grid_wall:.0f} s")
    print(f"asha: {epochs(asha)} epochs trained ({epochs(asha) / epochs(grid):.1%} of the "
          f"grid's), wall {asha_wall:.0f} s ({asha_wall / grid_wall:.2f}x the grid's)")
    print(f"grid's best by val_acc: {name(gb)}: val {gb.data.metrics['final_val_acc']:.4f}, "
          f"test {gb.data.metrics['final_test_acc']:.4f}")
    print(f"asha's best by val_acc: {name(ab)}: val {ab.data.metrics['final_val_acc']:.4f}, "
          f"test {ab.data.metrics['final_test_acc']:.4f} "
          f"({100 * (ab.data.metrics['final_test_acc'] - gb.data.metrics['final_test_acc']):+.2f}"
          f" points)")
    print(f"configurations asha trained to the last rung: {len(top)}; final metrics identical "
          f"to the grid's run: {sum(same)} of {len(top)}")
    busy = [line for line in text.splitlines() if line.startswith("workers busy")]
    print(busy[0] if busy else "workers busy: (not reported)")
    for label, log, wall in (("grid", grid_text, grid_wall), ("asha", text, asha_wall)):
        said = [line.split("] ", 1)[-1] for line in log.splitlines()
                if "] estimate: " in line or "] successive halving (" in line]
        for line in said:
            print(f"{label}, before it ran: {line}")
        print(f"{label}, measured: {wall:.0f} s wall (the command's, start-up included)")


def pause(repeat: int, train_limit: int) -> None:
    from mlp_sweeps.plan.jobs import composing
    from mlp_sweeps.run import job as run

    tmp = Path(tempfile.mkdtemp())
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    base = [f"data.train_limit={train_limit}", "data.test_limit=1000", "test_every=1",
            "epochs=2", "progress=false", f"tracking.uri={uri}", "blas_threads=1"]
    with composing() as compose:
        def timed(*ov: str) -> tuple[float, dict]:
            cfg = compose([*base, *ov])
            t0 = time.perf_counter()
            out = run.run(cfg)
            return time.perf_counter() - t0, out

        timed("tracking.experiment=warm", "seed=99")  # imports, store, data cache
        costs, straight, split = [], [], []
        for i in range(repeat):
            a, _ = timed(f"tracking.experiment=straight{i}", f"seed={i}")
            b1, out = timed(f"tracking.experiment=paused{i}", f"seed={i}", "stop_at_epoch=1",
                            "tracking.rung=0")
            b2, _ = timed(f"tracking.experiment=paused{i}", f"seed={i}", "tracking.rung=1",
                          f"tracking.reopen={out['run_id']}@1")
            straight.append(a)
            split.append(b1 + b2)
            costs.append(b1 + b2 - a)
    print(f"baseline network (784-784-10), {train_limit} examples, 2 epochs, {repeat} pairs:")
    print(f"  straight: median {statistics.median(straight):.3f} s; paused after epoch 1 and "
          f"continued: {statistics.median(split):.3f} s")
    print(f"  one pause and promotion: median {statistics.median(costs):.3f} s "
          f"(min {min(costs):.3f}, max {max(costs):.3f})")
    shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pause", action="store_true")
    ap.add_argument("--ladder", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--train-limit", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_asha")
    args = ap.parse_args(argv)
    import numpy  # noqa: F401  (its BLAS loaded, to be reported)
    from threadpoolctl import threadpool_info

    kernels = sorted({i.get("architecture") or "?" for i in threadpool_info()
                      if i.get("user_api") == "blas"})
    print(f"BLAS kernel: {', '.join(kernels)}; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    both = not (args.pause or args.ladder)
    if args.pause or both:
        pause(args.repeat, args.train_limit)
    if args.ladder or both:
        ladder(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
