"""Layers with parameters or randomness: Linear and Dropout, inverted (the default) or with
the study's fixed mask (:data:`DROPOUT_MASKS`).

Hot-path outputs are written into buffers kept per batch shape (:class:`Buffers`),
so a training step allocates nothing large; an array a layer returns is valid until
its next call with the same batch shape.
"""

from __future__ import annotations

import math

import numpy as np

from .blas import axpy, gemm_tn, gemv_t, scal

__all__ = ["Buffers", "Dropout", "DROPOUT_MASKS", "FixedDropout", "GradSink", "Linear", "INITS"]

INITS = ("normal", "he", "xavier")


class Buffers:
    """Scratch arrays reused across calls, keyed by (name, shape, dtype)."""

    def __init__(self):
        self._d: dict = {}

    def get(self, name: str, shape: tuple, dtype, fill: float | None = None) -> np.ndarray:
        """The buffer for (name, shape, dtype); a new one is uninitialised, or set to
        ``fill`` (for constant buffers the caller never writes)."""
        key = (name, shape, np.dtype(dtype))
        buf = self._d.get(key)
        if buf is None:
            buf = self._d[key] = np.empty(shape, dtype=dtype)
            if fill is not None:
                buf.fill(fill)
        return buf


class GradSink:
    """Where a backward delivers one parameter's gradient: ``out <- grad + beta * out``.

    With ``beta = 0``, ``out`` receives the gradient (a layer's own ``dW``, or an optimizer's
    buffer); with ``beta != 0`` the gradient is accumulated into state the optimizer keeps,
    e.g. SGD's velocity with ``beta = momentum``, inside the BLAS product that computes it
    (see :mod:`mlp.optim`). ``out`` is C-contiguous, of the parameter's shape and dtype.
    """

    __slots__ = ("out", "beta")

    def __init__(self, out: np.ndarray, beta: float = 0.0):
        self.out, self.beta = out, float(beta)

    def receive(self, grad: np.ndarray) -> None:
        """Deliver a gradient that exists as an array: out <- grad + beta * out."""
        if self.beta:
            scal(self.beta, self.out)
            axpy(1.0, grad, self.out)
        else:
            np.copyto(self.out, grad)


def init_weights(init: str, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Initial weights, ndarray of shape (fan_in, fan_out), float64.

    - ``normal``: N(0, 0.01^2), as in the study;
    - ``he``: N(0, 2 / fan_in) (He et al., 2015), for ReLU-like units;
    - ``xavier``: U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010).
    """
    shape = (fan_in, fan_out)
    if init == "normal":
        return rng.normal(0.0, 0.01, size=shape)
    if init == "he":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    if init == "xavier":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-a, a, size=shape)
    raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")


class Linear:
    """u = x W + b.

    Parameters
    ----------
    in_dim, out_dim : int
    init : {"normal", "he", "xavier"}
        See :func:`init_weights`; biases start at 0.
    rng : numpy.random.Generator
    dtype : numpy dtype

    Attributes
    ----------
    W : ndarray of shape (in_dim, out_dim)
    b : ndarray of shape (out_dim,)
    dW, db : gradients of the same shapes, filled by :meth:`backward` unless it is given
        other sinks.
    """

    def __init__(self, in_dim: int, out_dim: int, *, init: str = "normal",
                 rng: np.random.Generator | None = None, dtype="float32"):
        rng = np.random.default_rng() if rng is None else rng
        self.W = init_weights(init, in_dim, out_dim, rng).astype(dtype)
        self.b = np.zeros(out_dim, dtype=dtype)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self._own_sinks = (GradSink(self.dW), GradSink(self.db))
        self._buf = Buffers()

    @property
    def params(self) -> list[np.ndarray]:
        return [self.W, self.b]

    @property
    def grads(self) -> list[np.ndarray]:
        return [self.dW, self.db]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """u = x W + b; x: (batch, in_dim) -> u: (batch, out_dim). Caches x."""
        self.x = x
        u = self._buf.get("u", (x.shape[0], self.W.shape[1]), self.W.dtype)
        np.matmul(x, self.W, out=u)
        np.add(u, self.b, out=u)
        return u

    def backward(self, gu: np.ndarray, need_input_grad: bool = True,
                 sinks: tuple[GradSink, GradSink] | None = None) -> np.ndarray | None:
        """Deliver dW = x^T gu and db = sum_batch gu; return dL/dx = gu W^T (batch, in_dim).

        The gradients go to ``sinks`` (for W, for b: ``out <- grad + beta out``, computed
        by BLAS ``gemm`` / ``gemv`` in one pass), by default this layer's :attr:`dW` and
        :attr:`db`. An optimizer passes its own (:attr:`mlp.optim.Optimizer.sinks`), so that
        e.g. SGD's velocity update happens inside the product.

        The first layer of a network skips dL/dx (``need_input_grad=False``): it is a
        full-size matrix product nobody uses.
        """
        sw, sb = self._own_sinks if sinks is None else sinks
        x = np.ascontiguousarray(self.x, dtype=self.W.dtype)
        gu = np.ascontiguousarray(gu, dtype=self.W.dtype)
        gemm_tn(x, gu, sw.out, sw.beta)  # (in_dim, batch) @ (batch, out_dim)
        # db = gu^T 1, a BLAS matrix-vector product: 2-3x faster than np.sum(gu, axis=0)
        ones = self._buf.get("ones", (gu.shape[0],), self.W.dtype, fill=1.0)
        gemv_t(gu, ones, sb.out, sb.beta)
        if not need_input_grad:
            return None
        gx = self._buf.get("gx", (gu.shape[0], self.W.shape[0]), self.W.dtype)
        np.matmul(gu, self.W.T, out=gx)
        return gx


class Dropout:
    """Inverted dropout: in training, zero each unit with probability ``p`` and scale
    the survivors by 1 / (1 - p); identity in evaluation.

    ``p`` has PyTorch's meaning (probability of zeroing), so the study's keep
    probability 0.8 is ``p = 0.2``.

    y = x * m,  m_ij = 1[r_ij >= p] / (1 - p),  r ~ U[0, 1);   dL/dx = gy * m.
    """

    #: a mask drawn per step, for the batch (a split step draws it for the whole batch)
    fixed = False

    def __init__(self, p: float, rng: np.random.Generator | None = None,
                 width: int | None = None, dtype=np.float32):
        if not (0.0 <= p < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng() if rng is None else rng
        self.mask: np.ndarray | None = None
        self._buf = Buffers()

    def forward(self, x: np.ndarray, train: bool = True, mask: np.ndarray | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """Apply dropout; ``mask`` (already scaled, shape of x) fixes the mask, for tests."""
        if not train or self.p == 0.0:
            self.mask = None
            return x
        if mask is None:
            mask = self.draw(x.shape, x.dtype)
        self.mask = mask
        return np.multiply(x, mask, out=out)

    def draw(self, shape: tuple, dtype) -> np.ndarray:
        """The next training mask (already scaled) for inputs of ``shape``, from the layer's
        random stream: what :meth:`forward` uses (a reused buffer)."""
        r = self._buf.get("r", shape, dtype)
        self.rng.random(out=r, dtype=dtype)
        mask = self._buf.get("m", shape, dtype)
        np.greater_equal(r, self.p, out=mask)  # 1.0 / 0.0
        mask *= 1.0 / (1.0 - self.p)
        return mask

    def backward(self, gy: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """dL/dx = gy * m (gy itself when the last forward was the identity)."""
        if self.mask is None:
            return gy
        return np.multiply(gy, self.mask, out=out)


class FixedDropout:
    """The study's dropout: a random ``1 - p`` of the layer's units kept, drawn once when the
    layer is built, the same units in every step and in evaluation, without rescaling; the
    others output 0. (The study's code masked the units' incoming weights, so a dropped unit
    still passed on its activated bias, a constant the next layer's bias absorbs; here the
    unit's output is masked. Either way the network trains as a narrower one.)

    y = x * m,  m_j = 1[r_j >= p],  r ~ U[0, 1)^width drawn once;   dL/dx = gy * m.
    """

    #: the same mask in every step and in evaluation
    fixed = True

    def __init__(self, p: float, rng: np.random.Generator | None = None,
                 width: int | None = None, dtype=np.float32):
        if not (0.0 <= p < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {p!r}")
        if width is None or width < 1:
            raise ValueError(f"a fixed dropout mask needs the layer's width, got {width!r}")
        self.p = float(p)
        rng = np.random.default_rng() if rng is None else rng
        # drawn even at p = 0 (all kept): the stream then moves as it does at any p
        self.mask = (rng.random(int(width)) >= self.p).astype(dtype)[None, :]

    def forward(self, x: np.ndarray, train: bool = True, mask: np.ndarray | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """x with the dropped units zeroed, in training and in evaluation alike."""
        if self.p == 0.0:
            return x
        return np.multiply(x, self.mask, out=out)

    def backward(self, gy: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """dL/dx = gy * m."""
        if self.p == 0.0:
            return gy
        return np.multiply(gy, self.mask, out=out)


#: how a dropout mask is drawn (``dropout_mask``): inverted (a new mask every step, scaled
#: by 1 / (1 - p), none in evaluation; PyTorch's) or fixed (the study's: drawn once, kept
#: in evaluation, unscaled)
DROPOUT_MASKS = {"inverted": Dropout, "fixed": FixedDropout}
