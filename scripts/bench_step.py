"""One training step, op by op, against its matrix-product floor: what an epoch spends beyond BLAS.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_step.py
    python scripts/bench_step.py --batch-size 10       # the study's smallest batch
    python scripts/bench_step.py depth=2                # any TrainConfig field=value

Builds the configuration's network, loss and optimizer (:func:`mlp.train.build`) and times,
on one real batch of its data, with one BLAS thread, each part of a training step as the
training loop runs it (the batch gathered, forward with the loss and the accuracy count,
backward into the optimizer's sinks, the update), and the step's matrix-product floor
(:class:`mlp.perf.MatmulFloor`, what ``floor_epoch_s`` is). It then splits what lies above
the floor:

- the update inside the backward: the weight-gradient products write ``grad + momentum v``
  into the velocity (``gemm`` with ``beta = momentum``: the velocity is read and written), where
  the floor's products write a fresh array; timed as the difference of the two, per layer;
- the update's own passes (``axpy``: ``v += wd p``, ``p += -lr v``, and the biases);
- the rest: element-wise work (bias, activation, loss), the small products and NumPy's
  per-call cost.

Each figure is the best of 5 repetitions of many calls, in CPU time (``time.thread_time``),
so it holds on a loaded machine; operands stay in cache between calls, so the parts sum to
a little less than a real epoch (``bench.py`` measures the epoch itself).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import make_config  # noqa: E402  (bench.py's overrides: key=value, data.*, loss.*)
from mlp.blas import gemm_tn  # noqa: E402
from mlp.perf import MatmulFloor, describe_blas  # noqa: E402
from mlp.train import build, load_data  # noqa: E402


def best_us(fn, calls: int, reps: int = 5) -> float:
    """Best of ``reps`` repetitions of ``calls`` calls, CPU microseconds per call."""
    for _ in range(max(3, calls // 20)):
        fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.thread_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.thread_time() - t0) / calls * 1e6)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, help="the same as batch_size=N")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="TrainConfig settings, as for bench.py, e.g. depth=2")
    args = ap.parse_args(argv)
    batch = [f"batch_size={args.batch_size}"] if args.batch_size is not None else []
    cfg = make_config(batch + args.overrides)
    ds = load_data(cfg)
    net, loss, opt = build(cfg, ds.n_features, ds.n_classes)
    bs = cfg.batch_size
    x, y = np.asarray(ds.x_train), np.asarray(ds.y_train)
    idx = np.random.default_rng(0).permutation(x.shape[0])[:bs]
    xb = np.empty((bs, x.shape[1]), net.dtype)
    steps = x.shape[0] // bs
    calls = max(50, min(2000, 200_000 // bs))

    def data():
        x.take(idx, axis=0, out=xb, mode="clip")
        return y[idx]

    yb = data()

    def forward():
        logits = net.forward(xb, train=True)
        loss.forward(logits, yb)
        return int(np.count_nonzero(logits.argmax(axis=1) == yb))

    def backward():
        net.backward(loss.backward(), sinks=opt.sinks)

    with threadpool_limits(1, user_api="blas"):
        print(f"{net}, {loss!r}, SGD momentum {cfg.momentum:g} weight decay "
              f"{cfg.weight_decay:g}, batch {bs}; {describe_blas()}")
        forward()
        t = {"data": best_us(data, calls), "forward": best_us(forward, calls),
             "backward": best_us(backward, calls), "update": best_us(opt.step, calls)}
        step = sum(t.values())
        floor = MatmulFloor(net.sizes, x.shape[0], bs, cfg.dtype).run(min(steps, 300)) \
            / steps * 1e6
        # the weight-gradient products: into the velocity (beta = momentum), as training
        # does, against a fresh output, as the floor does
        inside = 0.0
        for lin, sink in zip(net.linears, opt.sinks[0::2]):
            gu = np.ascontiguousarray(np.random.default_rng(1).standard_normal(
                (bs, lin.W.shape[1])), dtype=net.dtype)
            xi = np.ascontiguousarray(lin.x, dtype=net.dtype)
            fresh = np.empty_like(lin.W)
            into_v = best_us(lambda: gemm_tn(xi, gu, sink.out, sink.beta), calls)
            plain = best_us(lambda: np.matmul(xi.T, gu, out=fresh), calls)
            inside += into_v - plain
    rest = step - floor - inside - t["update"]
    print(f"\nper step (us)   {'  '.join(f'{k} {v:.1f}' for k, v in t.items())}   "
          f"sum {step:.1f}")
    print(f"floor per step  {floor:.1f} us ({steps} steps per epoch: "
          f"{floor * steps / 1e6:.3f} s)")
    print(f"ratio (sum of the parts / floor) {step / floor:.2f}")
    print("above the floor, per step:")
    for name, us in (("the update inside the backward's products (velocity read and "
                      "written)", inside), ("the update's own passes", t["update"]),
                     ("the rest: element-wise, loss, small products, per-call cost", rest)):
        print(f"  {us:8.1f} us  {100 * us / step:5.1f}% of the step  {name}")
    print(f"without the update: {(step - inside - t['update']) / floor:.2f} x the floor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
