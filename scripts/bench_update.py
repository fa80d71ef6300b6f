"""The SGD update beside the step's matrix products: the variants weighed for mlp/optim.py.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_update.py
                                              # 784x784 float32, batch 100, 300 steps x 9 reps

Each variant runs after the two 784x784 GEMMs of a baseline step (forward ``x W`` and the
weight gradient ``x^T u``), as in training, so caches are as polluted as they are there;
the figure is the median time per step above the GEMMs alone, as wall time and as the thread's
CPU time (``time.thread_time``: what one BLAS thread spent, robust to time-slicing when the
machine is loaded; on an idle machine the two agree). One BLAS thread.

- ``plain``: six in-place NumPy passes (``v *= m; v += g; t = wd p; v += t; t = lr v;
  p -= t``), the update before the BLAS form;
- ``blas``: what :class:`mlp.optim.SGD` does: the weight-gradient GEMM itself writes
  ``g + m v`` into ``v`` (``gemm`` with ``beta = m``, replacing the step's second GEMM), then
  ``axpy`` twice (``v += wd p``, ``p += -lr v``);
- ``heavy-ball``: p_new = (1 + m - lr wd) p - m p_prev - lr g written into p_prev's buffer,
  then the two buffers swap roles (4 passes over 3 arrays; assumes the gradient arrives
  scaled by -lr). Not used: measured in the real training loop it gained <= 5%, and it
  replaces the parameter arrays every step.
"""

from __future__ import annotations

import statistics
import time

import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlp.blas import axpy, gemm_tn  # noqa: E402
from mlp.perf import describe_blas  # noqa: E402

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

    def blas_step():  # replaces gemms(): the gradient GEMM accumulates into v
        p = w["p"]
        np.matmul(x, p, out=u)
        gemm_tn(x, u, v, MOM)  # v = x^T u + m v
        axpy(WD, p, v)
        axpy(-LR, v, p)

    def heavy_ball():
        p, q = w["p"], w["prev"]
        a = 1 + MOM - LR * WD
        q *= -MOM / a; q += p; q *= a; q += g
        w["p"], w["prev"] = q, p

    variants = {"gemms only": lambda: None, "plain": plain, "blas": None,
                "heavy-ball": heavy_ball}
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    with np.errstate(all="raise"), threadpool_limits(1, user_api="blas"):
        print(describe_blas())
        for _ in range(REPS):  # interleaved, so drifts of the machine hit every variant
            for name, step in variants.items():
                t0, c0 = time.perf_counter(), time.thread_time()
                for _ in range(STEPS):
                    if step is None:
                        blas_step()
                    else:
                        gemms()
                        step()
                times[name].append((time.perf_counter() - t0) / STEPS * 1e3)
                cpu[name].append((time.thread_time() - c0) / STEPS * 1e3)
    base = statistics.median(times["gemms only"])
    cbase = statistics.median(cpu["gemms only"])
    print(f"{D}x{D} float32, batch {N}, 1 BLAS thread; ms per step (median of {REPS})")
    print(f"  {'':12s} {'wall':>7s} {'update':>7s} {'cpu':>7s} {'update':>7s}")
    for name in variants:
        w, c = statistics.median(times[name]), statistics.median(cpu[name])
        print(f"  {name:12s} {w:7.3f} {w - base:+7.3f} {c:7.3f} {c - cbase:+7.3f}")


if __name__ == "__main__":
    main()
