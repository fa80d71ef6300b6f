"""The BLAS forms NumPy lacks, from ``scipy.linalg.blas``: products accumulated into an
existing array (``C <- A B + beta C``) and ``y <- a x + y``, float32 and float64.

NumPy's ``matmul(..., out=)`` always overwrites its output and has no fused multiply-add,
so "gradient into the velocity" costs it a GEMM plus two extra passes over the weights;
BLAS does it in the GEMM. Every function here writes in place and checks that it did (a
wrong dtype or layout would otherwise make f2py work on a silent copy).

Layout: BLAS is column-major; a C-contiguous (m, n) array is a Fortran-contiguous (n, m)
array, its transpose, so the transposes below are free views.

Prepared calls (:func:`gemm_tn_rows`, :func:`gemv_t_cols`) are for a step split across
threads (:mod:`mlp.split`): the same BLAS routines, on a block of the output, with every
argument fixed once (the buffers are reused step after step), called through ``ctypes`` on
the function pointers SciPy exports for Cython (``scipy.linalg.cython_blas``, as Numba does).
Unlike SciPy's Python wrappers, which hold the GIL, a ``ctypes`` call releases it, so the
blocks run in parallel; they name strided blocks without copying them.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Callable, NamedTuple

import numpy as np
from scipy.linalg import blas as _blas

__all__ = ["gemm_tn", "gemv_t", "axpy", "scal", "Prepared", "gemm_tn_rows", "gemv_t_cols",
           "Ops", "CALLER", "PARALLEL"]

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


# -- prepared calls, GIL released ------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _pointer(name: str):
    """The Fortran BLAS routine ``name`` (e.g. ``"sgemm"``) SciPy links to, as a ctypes
    function of pointers; calling it releases the GIL."""
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__[name]
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))
    n_args = {"gemm": 13, "gemv": 11, "axpy": 6, "scal": 4}[name[1:]]
    return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * n_args)(address)


_CHARS = {c: ctypes.create_string_buffer(c.encode()) for c in "NT"}


class Prepared:
    """One BLAS call with all its arguments fixed: ``call()`` runs it. Holds the arrays it
    names (and its scalars' storage), so they live as long as it does."""

    __slots__ = ("_fn", "_args", "_keep")

    def __init__(self, fn, args: tuple, keep: tuple):
        self._fn, self._args, self._keep = fn, args, keep

    def __call__(self) -> None:
        if self._fn is not None:
            self._fn(*self._args)


def _scalars(dtype: np.dtype, ints: list[int], floats: list[float]):
    i = np.array(ints, dtype=np.intc)
    f = np.array(floats, dtype=dtype)
    return i, f, [i.ctypes.data + k * i.itemsize for k in range(len(ints))], \
        [f.ctypes.data + k * f.itemsize for k in range(len(floats))]


def _check_operands(what: str, *arrays: np.ndarray) -> np.dtype:
    dtype = arrays[-1].dtype
    _F.get(dtype) or _fn(what, dtype)  # TypeError naming a dtype BLAS does not take
    for a in arrays:
        if not a.flags.c_contiguous or a.dtype != dtype:
            raise ValueError(f"{what}: operands must be C-contiguous {dtype}")
    return dtype


def gemm_tn_rows(x: np.ndarray, g: np.ndarray, out: np.ndarray, beta: float,
                 rows: slice) -> Prepared:
    """A prepared ``out[rows] <- x[:, rows]^T g + beta out[rows]``: rows ``rows`` of
    :func:`gemm_tn`, the same values as those rows of one undivided call when the block
    starts on a multiple of the kernel's unroll (see :func:`mlp.team.blocks`).

    x : (batch, m), g : (batch, n), out : (m, n), all C-contiguous of one dtype.
    """
    dtype = _check_operands("gemm", x, g, out)
    (b, m), (b2, n) = x.shape, g.shape
    if b2 != b or out.shape != (m, n):
        raise ValueError(f"gemm_tn_rows: shapes {x.shape}, {g.shape}, {out.shape} do not fit")
    r0, r1, _ = rows.indices(m)
    if r1 <= r0 or b == 0:
        return Prepared(None, (), ())
    size = dtype.itemsize
    # column-major: out^T[:, rows] (n, r) = g^T (n, b) @ (x^T[rows, :])^T, no copies
    i, f, (M, N, K, lda, ldb, ldc), (alpha, beta_) = _scalars(
        dtype, [n, r1 - r0, b, n, m, n], [1.0, beta])
    args = (ctypes.addressof(_CHARS["N"]), ctypes.addressof(_CHARS["T"]), M, N, K, alpha,
            g.ctypes.data, lda, x.ctypes.data + r0 * size, ldb, beta_,
            out.ctypes.data + r0 * n * size, ldc)
    return Prepared(_pointer(_F[dtype] + "gemm"), args, (x, g, out, i, f))


def gemv_t_cols(g: np.ndarray, ones: np.ndarray, out: np.ndarray, beta: float,
                cols: slice) -> Prepared:
    """A prepared ``out[cols] <- g[:, cols]^T ones + beta out[cols]``: entries ``cols`` of
    :func:`gemv_t` (the bias gradient), g : (batch, n), ones : (batch,), out : (n,)."""
    dtype = _check_operands("gemv", g, ones, out)
    b, n = g.shape
    if ones.shape != (b,) or out.shape != (n,):
        raise ValueError(f"gemv_t_cols: shapes {g.shape}, {ones.shape}, {out.shape} do not fit")
    c0, c1, _ = cols.indices(n)
    if c1 <= c0 or b == 0:
        return Prepared(None, (), ())
    size = dtype.itemsize
    # column-major: y (c,) = g^T[cols, :] (c, b) @ ones, g^T with leading dimension n
    i, f, (M, N, lda, inc), (alpha, beta_) = _scalars(dtype, [c1 - c0, b, n, 1], [1.0, beta])
    args = (ctypes.addressof(_CHARS["N"]), M, N, alpha, g.ctypes.data + c0 * size, lda,
            ones.ctypes.data, inc, beta_, out.ctypes.data + c0 * size, inc)
    return Prepared(_pointer(_F[dtype] + "gemv"), args, (g, ones, out, i, f))


_ONE = ctypes.c_int(1)
_SCALAR = {"s": ctypes.c_float, "d": ctypes.c_double}


def _vectors(what: str, *arrays: np.ndarray) -> str:
    x = arrays[0]
    for a in arrays:
        if not a.flags.c_contiguous or a.shape != x.shape or a.dtype != x.dtype:
            raise ValueError(f"{what} needs contiguous operands of one shape and dtype")
    _fn(what, x.dtype)  # TypeError naming a dtype BLAS does not take
    return _F[x.dtype]


def axpy_free(a: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`axpy` through ``ctypes``: the GIL released, ~3 us more per call."""
    p = _vectors("axpy", x, y)
    if x.size:
        ref = ctypes.byref
        _pointer(p + "axpy")(ref(ctypes.c_int(x.size)), ref(_SCALAR[p](a)), x.ctypes.data,
                             ref(_ONE), y.ctypes.data, ref(_ONE))
    return y


def scal_free(a: float, x: np.ndarray) -> np.ndarray:
    """:func:`scal` through ``ctypes``: the GIL released."""
    p = _vectors("scal", x)
    if x.size:
        ref = ctypes.byref
        _pointer(p + "scal")(ref(ctypes.c_int(x.size)), ref(_SCALAR[p](a)), x.ctypes.data,
                             ref(_ONE))
    return x


class Ops(NamedTuple):
    """The vector operations an optimizer's update uses, one way of calling them."""

    axpy: Callable[[float, np.ndarray, np.ndarray], np.ndarray]
    scal: Callable[[float, np.ndarray], np.ndarray]


CALLER = Ops(axpy, scal)  # SciPy's wrappers: the least overhead per call; they hold the GIL
PARALLEL = Ops(axpy_free, scal_free)  # the same routines, the GIL released: for team threads
