"""The speed floor of a training epoch: its matrix products alone, on preallocated operands
with the shapes, dtype, transposes and buffer sharing of the network; and what BLAS a
measurement ran with (library, kernel, threads)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

__all__ = ["MatmulFloor", "blas_info", "describe_blas", "forced_kernel_warning"]


class MatmulFloor:
    """The matrix products of one training epoch, on preallocated operands.

    Per batch of ``b`` rows, with ``sizes = [d_0, ..., d_L]``: forward ``u_i = x_i W_i`` for
    every layer; backward, from the last layer down, ``dW_i = x_i^T gu_i`` and, except for the
    first layer, ``gx_i = gu_i W_i^T``. Buffers are shared as in the network: layer i's output
    ``u_i`` is layer i+1's input, and ``gx_i`` (after the in-place activation backward) is
    layer i-1's ``gu``; only the batch ``x_0`` and the loss gradient ``gu_L`` are separate. All
    C-contiguous. A partial last batch gets its own operands, as in training.
    """

    def __init__(self, sizes: list[int], n: int, batch_size: int, dtype: str, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.sizes = sizes
        self.W = [self._rand(rng, (i, o)) * 0.01 for i, o in zip(sizes[:-1], sizes[1:])]
        self.dW = [np.empty_like(w) for w in self.W]
        full, rest = divmod(n, batch_size)
        self.plan = [(self._operands(rng, batch_size), full)]
        if rest:
            self.plan.append((self._operands(rng, rest), 1))

    def _rand(self, rng, shape) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float64).astype(self.dtype)

    def _operands(self, rng, b: int) -> tuple[list[np.ndarray], ...]:
        s, L = self.sizes, len(self.sizes) - 1
        u = [np.empty((b, d), self.dtype) for d in s[1:]]  # layer outputs
        gx = [None] + [np.empty((b, d), self.dtype) for d in s[1:-1]]  # dL/dx, layers 1..L-1
        x = [self._rand(rng, (b, s[0]))] + u[:-1]  # layer inputs
        gu = gx[1:] + [self._rand(rng, (b, s[-1]))]  # dL/du per layer
        return x, u, gu, gx

    def run(self, max_steps: int | None = None) -> float:
        """Seconds for one epoch of the matrix products; with ``max_steps``, an estimate
        from that many full batches, scaled to the epoch (partial batch counted as full)."""
        if max_steps is not None:
            (ops, count), = self.plan[:1]
            steps = min(max_steps, count)
            self._steps(ops, min(3, steps))  # warm-up: first-touch of the operands, BLAS threads
            t = self._steps(ops, steps)
            return t * (count + len(self.plan) - 1) / steps
        return sum(self._steps(ops, count) for ops, count in self.plan)

    def _steps(self, ops, count: int) -> float:
        mm, W, dW, L = np.matmul, self.W, self.dW, len(self.W)
        x, u, gu, gx = ops
        t0 = time.perf_counter()
        for _ in range(count):
            for i in range(L):
                mm(x[i], W[i], out=u[i])
            for i in range(L - 1, -1, -1):
                mm(x[i].T, gu[i], out=dW[i])
                if i:
                    mm(gu[i], W[i].T, out=gx[i])
        return time.perf_counter() - t0


def blas_info() -> list[dict]:
    """The BLAS libraries loaded in this process (threadpoolctl): ``library`` (file name),
    ``version``, ``kernel`` (OpenBLAS's ``architecture``: the CPU kernels it runs) and
    ``threads``. NumPy and SciPy each bring their own OpenBLAS."""
    from threadpoolctl import threadpool_info

    return [{"library": Path(i["filepath"]).name, "version": i.get("version"),
             "kernel": i.get("architecture"), "threads": i.get("num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def forced_kernel_warning() -> str | None:
    """A warning when the environment forces OpenBLAS's kernel (``OPENBLAS_CORETYPE``), which
    a user's machine does not do: figures measured so may be slower than users get."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if not forced:
        return None
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    best = next((f for f in ("avx512f", "avx2", "avx") if f in flags), None)
    cpu = f" (the CPU has {best})" if best else ""
    return (f"OPENBLAS_CORETYPE={forced} forces OpenBLAS's {forced} kernels{cpu}; a user's "
            f"machine lets OpenBLAS pick the CPU's own. Run as users do: env -u "
            f"OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...")


def describe_blas() -> str:
    """One line per BLAS library (kernel, threads), then the forced-kernel warning if any."""
    lines = [f"BLAS: {b['library']} {b['version']}, kernel {b['kernel']}, {b['threads']} "
             f"thread(s)" for b in blas_info()] or ["BLAS: none loaded"]
    warn = forced_kernel_warning()
    return "\n".join(lines + ([f"WARNING: {warn}"] if warn else []))
