"""Element-wise activations: one registry, forward and backward side by side.

Each activation is a small stateful object: ``forward(x)`` caches exactly what
``backward(gy)`` needs (computed from values the forward already produced), and
``backward(gy)`` returns ``dL/dx`` given ``gy = dL/dy``.

Adding an activation is one class with ``@register("name")`` in this file; the
Hydra config group, the gradient checks and the sweeps pick it up from
:func:`names`.

Both methods accept ``out=`` so the network can run them in preallocated
buffers; ``backward`` may also overwrite ``gy`` when it is passed as ``out``.
Python-float constants are used so float32 inputs stay float32 (NEP 50).
"""

from __future__ import annotations

import math

import numpy as np

from .registry import Registry

__all__ = ["Activation", "get", "names", "register"]

_REGISTRY: Registry[type["Activation"]] = Registry("activation")
register = _REGISTRY.register
names = _REGISTRY.names


def get(name: str) -> "Activation":
    """A new activation instance by name (ValueError listing the valid names if unknown)."""
    return _REGISTRY.get(name)()


class Activation:
    """Base class: ``y = f(x)`` element-wise."""

    name: str = ""

    def forward(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """y = f(x).

        Parameters
        ----------
        x : ndarray of shape (batch, dim)
        out : ndarray of shape (batch, dim), optional
            Where to write ``y`` (may be ``x`` itself: ``x`` is not needed afterwards
            unless the activation caches it, in which case it copies what it needs).
        """
        raise NotImplementedError

    def backward(self, gy: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """dL/dx = gy * f'(x), from the values cached by the last ``forward``.

        Parameters
        ----------
        gy : ndarray of shape (batch, dim)
            dL/dy.
        out : ndarray of shape (batch, dim), optional
            Where to write dL/dx; may be ``gy``.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _buffer(cache: dict, key: str, like: np.ndarray, dtype=None) -> np.ndarray:
    """A scratch array shaped like ``like`` (of ``dtype``, default ``like``'s), reused across
    calls of the same shape."""
    dtype = like.dtype if dtype is None else np.dtype(dtype)
    buf = cache.get(key)
    if buf is None or buf.shape != like.shape or buf.dtype != dtype:
        buf = np.empty(like.shape, dtype)
        cache[key] = buf
    return buf


def _zeros(cache: dict, like: np.ndarray) -> np.ndarray:
    """Zeros shaped like ``like``, never written. ``np.maximum(x, zeros)`` is ~3x faster than
    ``np.maximum(x, 0.0)``: NumPy's SIMD min/max loops cover array-array operands only
    (measured with NumPy 2.4; same for np.minimum)."""
    z = cache.get("zeros")
    if z is None or z.shape != like.shape or z.dtype != like.dtype:
        z = cache["zeros"] = np.zeros(like.shape, like.dtype)
    return z


@register("relu")
class ReLU(Activation):
    """y = max(x, 0); dy/dx = 1[y > 0]. NaN propagates (divergence stays visible)."""

    def __init__(self):
        self._buf: dict = {}

    def forward(self, x, out=None):
        self.y = np.maximum(x, _zeros(self._buf, x), out=out)
        return self.y

    def backward(self, gy, out=None):
        # sklearn's inplace_relu_derivative: zero the gradient where the unit was off
        # (the mask lives in a reused buffer: nothing is allocated per call).
        on = np.greater(self.y, 0.0, out=_buffer(self._buf, "on", gy, bool))
        return np.multiply(gy, on, out=out)


@register("sigmoid")
class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x)); dy/dx = y (1 - y)."""

    def __init__(self):
        self._buf: dict = {}

    def forward(self, x, out=None):
        # 1 / (1 + exp(-x)) overflows harmlessly to 0 for x << 0 (exp -> inf, 1/inf = 0).
        with np.errstate(over="ignore"):
            y = np.negative(x, out=out)
            np.exp(y, out=y)
            y += 1.0
            np.divide(1.0, y, out=y)  # same values as np.reciprocal, ~2x faster (NumPy 2.4)
        self.y = y
        return y

    def backward(self, gy, out=None):
        t = _buffer(self._buf, "t", gy)
        np.subtract(1.0, self.y, out=t)  # 1 - y
        t *= self.y  # y (1 - y)
        return np.multiply(gy, t, out=out)


@register("selu")
class SELU(Activation):
    """y = lambda * x for x > 0, lambda * alpha * (exp(x) - 1) otherwise.

    dy/dx = lambda for x > 0, y + lambda * alpha otherwise (Klambauer et al., 2017).

    Computed branch-free: y = lambda max(x, 0) + lambda alpha expm1(min(x, 0)), each term
    exactly 0 on the other side, and the derivative blended with the 0/1 masks 1[x > 0] and
    1[x <= 0] (a masked copy, ``np.copyto(..., where=mask)``, is ~10x slower on a random mask).
    """

    scale = 1.0507009873554805  # lambda
    alpha = 1.6732632423543772

    def __init__(self):
        self._buf: dict = {}

    def forward(self, x, out=None):
        zeros = _zeros(self._buf, x)
        self.pos = np.greater(x, 0.0, out=_buffer(self._buf, "pos", x, bool))
        neg = np.minimum(x, zeros, out=_buffer(self._buf, "neg", x))
        np.expm1(neg, out=neg)
        neg *= self.scale * self.alpha  # lambda alpha (exp(min(x, 0)) - 1): y for x <= 0
        self.neg = neg
        y = np.maximum(x, zeros, out=out)  # x is not needed after this
        y *= self.scale
        y += neg
        return y

    def backward(self, gy, out=None):
        d = np.add(self.neg, self.scale * self.alpha, out=_buffer(self._buf, "d", gy))
        off = np.logical_not(self.pos, out=_buffer(self._buf, "off", gy, bool))
        d *= off  # y + lambda alpha for x <= 0, else 0
        t = np.multiply(self.pos, gy.dtype.type(self.scale), out=_buffer(self._buf, "t", gy))
        d += t  # + lambda for x > 0
        return np.multiply(gy, d, out=out)


@register("swish")
class Swish(Activation):
    """y = x * s with s = sigmoid(x); dy/dx = s + y (1 - s) (Ramachandran et al., 2017)."""

    def __init__(self):
        self._buf: dict = {}

    def forward(self, x, out=None):
        s = _buffer(self._buf, "s", x)
        with np.errstate(over="ignore"):
            np.negative(x, out=s)
            np.exp(s, out=s)
            s += 1.0
            np.divide(1.0, s, out=s)  # same values as np.reciprocal, ~2x faster
        self.s = s
        self.y = np.multiply(x, s, out=out)
        return self.y

    def backward(self, gy, out=None):
        d = _buffer(self._buf, "d", gy)
        np.subtract(1.0, self.s, out=d)  # 1 - s
        d *= self.y  # y (1 - s)
        d += self.s  # s + y (1 - s)
        return np.multiply(gy, d, out=out)


@register("gelu")
class GELU(Activation):
    """The tanh approximation (Hendrycks & Gimpel, 2016), as in the study.

    y = 0.5 x (1 + t),  t = tanh(c (x + 0.044715 x^3)),  c = sqrt(2 / pi)

    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2)

    Analytic, so it costs a few element-wise passes like the others (the study used
    finite differences here, which made GELU its slowest run).
    """

    c = math.sqrt(2.0 / math.pi)
    k = 0.044715

    def __init__(self):
        self._buf: dict = {}

    def forward(self, x, out=None):
        x2 = _buffer(self._buf, "x2", x)
        t = _buffer(self._buf, "t", x)
        np.multiply(x, x, out=x2)  # x^2, kept for backward
        np.multiply(x2, self.k, out=t)
        t += 1.0
        t *= x  # x + k x^3
        t *= self.c
        np.tanh(t, out=t)
        self.t = t
        self.x2 = x2
        # x is needed in backward; keep a copy when the output overwrites it.
        if out is x:
            xc = _buffer(self._buf, "x", x)
            np.copyto(xc, x)
            x = xc
        self.x = x
        y = np.add(t, 1.0, out=out)
        y *= x
        y *= 0.5
        return y

    def backward(self, gy, out=None):
        d = _buffer(self._buf, "d", gy)
        # 0.5 x c (1 + 3k x^2) (1 - t^2) + 0.5 (1 + t)
        np.multiply(self.x2, 3.0 * self.k, out=d)
        d += 1.0
        d *= self.x
        d *= 0.5 * self.c
        e = _buffer(self._buf, "e", gy)
        np.multiply(self.t, self.t, out=e)
        np.subtract(1.0, e, out=e)  # 1 - t^2
        d *= e
        d += 0.5
        np.multiply(self.t, 0.5, out=e)
        d += e
        return np.multiply(gy, d, out=out)
