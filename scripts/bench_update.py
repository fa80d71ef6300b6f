"""The SGD update beside the step's matrix products: the variants weighed for mlp/optim.py.

    python scripts/bench_update.py            # 784x784 float32, batch 100, 300 steps x 9 reps

Each variant runs after the two 784x784 GEMMs of a baseline step (forward ``x W`` and the
weight gradient ``x^T u``), as in training, so caches are as polluted as they are there;
the figure is the median time per step above the GEMMs alone. One BLAS thread.

- ``plain``: the six in-place passes of :class:`mlp.optim.SGD` with a scratch array;
- ``scratch``: the same passes with the spent gradient as scratch (``step(..., scratch=True)``,
  what training uses; the same bits);
- ``heavy-ball``: p_new = (1 + m - lr wd) p - m p_prev - lr g written into p_prev's buffer,
  then the two buffers swap roles (4 passes over 3 arrays; assumes the gradient arrives
  scaled by -lr). Not used: measured in the real training loop it gained <= 5%, and it
  replaces the parameter arrays every step.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

N, D, STEPS, REPS = 100, 784, 300, 9
LR, MOM, WD = 1e-4, 0.9, 1e-3


def main() -> None:
    rng = np.random.default_rng(0)
    # small inputs: the weights stay O(0.01) and nothing overflows or goes subnormal
    x = (1e-3 * rng.standard_normal((N, D))).astype(np.float32)
    w = {"p": (0.01 * rng.standard_normal((D, D))).astype(np.float32)}
    w["prev"] = w["p"].copy()
    u = np.empty((N, D), np.float32)
    g = np.empty((D, D), np.float32)
    v, t = np.zeros((D, D), np.float32), np.empty((D, D), np.float32)

    def gemms():
        np.matmul(x, w["p"], out=u)
        np.matmul(x.T, u, out=g)

    def plain():
        p = w["p"]
        v.__imul__(MOM); v.__iadd__(g)
        np.multiply(p, WD, out=t); v.__iadd__(t)
        np.multiply(v, LR, out=t); p.__isub__(t)

    def scratch():
        p = w["p"]
        v.__imul__(MOM); v.__iadd__(g)
        np.multiply(p, WD, out=g); v.__iadd__(g)
        np.multiply(v, LR, out=g); p.__isub__(g)

    def heavy_ball():
        p, q = w["p"], w["prev"]
        a = 1 + MOM - LR * WD
        q *= -MOM / a; q += p; q *= a; q += g
        w["p"], w["prev"] = q, p

    variants = {"gemms only": lambda: None, "plain": plain, "scratch": scratch,
                "heavy-ball": heavy_ball}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with np.errstate(all="raise"), threadpool_limits(1):
        for _ in range(REPS):  # interleaved, so drifts of the machine hit every variant
            for name, step in variants.items():
                t0 = time.perf_counter()
                for _ in range(STEPS):
                    gemms()
                    step()
                times[name].append((time.perf_counter() - t0) / STEPS * 1e3)
    base = statistics.median(times["gemms only"])
    print(f"{D}x{D} float32, batch {N}, 1 BLAS thread; ms per step (median of {REPS})")
    for name, ts in times.items():
        med = statistics.median(ts)
        extra = "" if name == "gemms only" else f"   update: {med - base:.3f} ms"
        print(f"  {name:12s} {med:.3f}{extra}")


if __name__ == "__main__":
    main()
