"""The BLAS forms NumPy lacks, from ``scipy.linalg.blas``: products accumulated into an
existing array (``C <- A B + beta C``) and ``y <- a x + y``, float32 and float64.

NumPy's ``matmul(..., out=)`` always overwrites its output and has no fused multiply-add,
so "gradient into the velocity" costs it a GEMM plus two extra passes over the weights;
BLAS does it in the GEMM. Every function here writes in place and checks that it did (a
wrong dtype or layout would otherwise make f2py work on a silent copy).

Layout: BLAS is column-major; a C-contiguous (m, n) array is a Fortran-contiguous (n, m)
array, its transpose, so the transposes below are free views.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas as _blas

__all__ = ["gemm_tn", "gemv_t", "axpy", "scal"]

_F = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}


def _fn(name: str, dtype: np.dtype):
    try:
        return getattr(_blas, _F[np.dtype(dtype)] + name)
    except KeyError:
        raise TypeError(f"BLAS {name}: dtype {np.dtype(dtype)} is not float32 or float64") \
            from None


def _in_place(res: np.ndarray, out: np.ndarray, what: str) -> None:
    if not np.shares_memory(res, out):  # pragma: no cover - guarded by the checks above
        raise RuntimeError(f"BLAS {what} did not write in place (dtype/layout of the output)")


def gemm_tn(x: np.ndarray, g: np.ndarray, out: np.ndarray, beta: float = 0.0) -> np.ndarray:
    """out <- x^T g + beta out.

    Parameters
    ----------
    x : ndarray of shape (batch, m), C-contiguous
    g : ndarray of shape (batch, n), C-contiguous, same dtype
    out : ndarray of shape (m, n), C-contiguous, same dtype; not read when ``beta == 0``
    """
    if not (x.flags.c_contiguous and g.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("gemm_tn needs C-contiguous operands")
    # column-major: out^T (n, m) = g^T (n, batch) @ (x^T)^T, with g^T, x^T, out^T free views
    res = _fn("gemm", out.dtype)(1.0, g.T, x.T, beta=beta, c=out.T, trans_b=1, overwrite_c=1)
    _in_place(res, out, "gemm")
    return out


def gemv_t(g: np.ndarray, ones: np.ndarray, out: np.ndarray, beta: float = 0.0) -> np.ndarray:
    """out <- g^T ones + beta out: with ``ones`` all 1, the column sums of g (a bias gradient).

    g : ndarray of shape (batch, n), C-contiguous; ones : (batch,); out : (n,).
    """
    if not g.flags.c_contiguous:
        raise ValueError("gemv_t needs a C-contiguous matrix")
    res = _fn("gemv", out.dtype)(1.0, g.T, ones, beta=beta, y=out, overwrite_y=1)
    _in_place(res, out, "gemv")
    return out


def axpy(a: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """y <- a x + y, element-wise, x and y contiguous of the same shape and dtype."""
    if not (x.flags.c_contiguous and y.flags.c_contiguous) or x.shape != y.shape:
        raise ValueError("axpy needs contiguous operands of one shape")
    yf = y.reshape(-1)  # a view (contiguous)
    res = _fn("axpy", y.dtype)(x.reshape(-1), yf, a=a)
    _in_place(res, y, "axpy")
    return y


def scal(a: float, x: np.ndarray) -> np.ndarray:
    """x <- a x, x contiguous."""
    if not x.flags.c_contiguous:
        raise ValueError("scal needs a contiguous operand")
    res = _fn("scal", x.dtype)(a, x.reshape(-1))
    _in_place(res, x, "scal")
    return x
