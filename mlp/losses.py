"""Classification losses on logits: one registry, forward and backward side by side.

Every loss works on logits ``z`` of shape (batch, classes) and integer labels of
shape (batch,). ``forward`` returns the batch ``"mean"`` or ``"sum"`` of the
per-sample losses, per ``reduction``; ``backward`` returns the gradient of exactly
that value with respect to the logits, so the two never disagree. Whatever the
reduction, :attr:`Loss.mean` holds the per-example mean of the last forward, which
is what metrics report.

The published study took the gradient of the batch SUM for cross-entropy, hinge and
focal loss, and of the MEAN for MSE; each class records its choice as
``study_reduction`` so configs can reproduce it.

Adding a loss is one class with ``@register("name")`` here; its keyword arguments
(with defaults) become its config parameters.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Sequence

import numpy as np

from .registry import Registry

__all__ = ["Loss", "get", "names", "params", "register", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum")
_REGISTRY: Registry[type["Loss"]] = Registry("loss", "losses")
register = _REGISTRY.register
names = _REGISTRY.names
loss_class = _REGISTRY.get  # the registered class (ValueError listing the valid names)


@functools.lru_cache(maxsize=None)
def _signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls.__init__)  # read for every config validated: cached


def params(name: str) -> dict[str, Any]:
    """The loss's own parameters and their defaults (``reduction`` excluded)."""
    sig = _signature(loss_class(name))
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name not in ("self", "reduction") and p.kind is p.KEYWORD_ONLY
    }


def study_reduction(name: str) -> str:
    """The reduction whose gradient the published study's code used for this loss."""
    return loss_class(name).study_reduction


def get(name: str, reduction: str = "mean", **kwargs: Any) -> "Loss":
    """A new loss instance by name.

    Raises
    ------
    ValueError
        Unknown name (lists the valid ones), unknown parameter (lists the loss's
        parameters), or a parameter out of range.
    """
    cls = loss_class(name)
    valid = params(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"loss {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters: {', '.join(['reduction', *valid]) }"
        )
    return cls(reduction=reduction, **kwargs)


class Loss:
    """Base class. Subclasses implement ``_forward`` (per-sample losses) and
    ``_backward`` (gradient of the batch SUM), caching what backward needs."""

    name: str = ""
    study_reduction: str = "sum"

    def __init__(self, *, reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"unknown reduction {reduction!r} for loss {self.name!r}; "
                f"valid reductions: {', '.join(REDUCTIONS)}"
            )
        self.reduction = reduction
        self.mean = math.nan

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """The batch mean or sum (per ``reduction``) of the per-sample losses.

        Parameters
        ----------
        logits : ndarray of shape (batch, classes)
        labels : int ndarray of shape (batch,)
            Class indices in ``[0, classes)``.
        """
        if logits.ndim != 2 or labels.shape != (logits.shape[0],):
            raise ValueError(
                f"expected logits (batch, classes) and labels (batch,), got "
                f"{logits.shape} and {labels.shape}"
            )
        self._n = logits.shape[0]
        per_sample = self._forward(logits, labels)  # (batch,)
        total = float(per_sample.sum(dtype=np.float64))
        self.mean = total / self._n
        return self.mean if self.reduction == "mean" else total

    def backward(self) -> np.ndarray:
        """d(forward value)/d(logits), ndarray of shape (batch, classes)."""
        g = self._backward()  # gradient of the batch sum
        if self.reduction == "mean":
            g *= 1.0 / self._n
        return g

    def check_classes(self, n_classes: int) -> None:
        """Raise ValueError if the loss's parameters do not fit ``n_classes`` classes."""

    def _forward(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backward(self) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in ["reduction", *params(self.name)])
        return f"{type(self).__name__}({args})"


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax(z) along axis 1 by log-sum-exp: (z - m) - log sum exp(z - m)."""
    s = z - z.max(axis=1, keepdims=True)
    s -= np.log(np.exp(s).sum(axis=1, keepdims=True))
    return s


def _rows(n: int) -> np.ndarray:
    return np.arange(n)


@register("mse")
class MSE(Loss):
    """Squared error on the raw logits against one-hot targets, no 1/2 factor.

    l = sum_k (z_k - t_k)^2;   dl/dz = 2 (z - t).
    """

    study_reduction = "mean"

    def _forward(self, z, labels):
        d = z.copy()
        d[_rows(len(labels)), labels] -= 1.0  # z - onehot(t)
        self._d = d
        return np.einsum("ij,ij->i", d, d)

    def _backward(self):
        return 2.0 * self._d


@register("cross_entropy")
class CrossEntropy(Loss):
    """Softmax cross-entropy: l = -log p_t, p = softmax(z).

    Fused backward: dl/dz = p - onehot(t). (This fusion holds for softmax followed by
    negative log-likelihood only; the focal loss below needs the full chain rule.)
    """

    def _forward(self, z, labels):
        logp = _log_softmax(z)
        self._labels = labels
        self._logp = logp
        return -logp[_rows(len(labels)), labels]

    def _backward(self):
        g = np.exp(self._logp)  # p
        g[_rows(len(self._labels)), self._labels] -= 1.0
        return g


@register("hinge")
class Hinge(Loss):
    """Multi-class hinge (Weston-Watkins): l = sum_{k != t} max(0, margin - z_t + z_k).

    dl/dz_k = 1[margin - z_t + z_k > 0] for k != t;  dl/dz_t = -sum_{k != t} of those.
    """

    def __init__(self, *, reduction: str = "mean", margin: float = 5.0):
        super().__init__(reduction=reduction)
        if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
            raise ValueError(f"hinge margin must be a finite number > 0, got {margin!r}")
        self.margin = float(margin)

    def _forward(self, z, labels):
        rows = _rows(len(labels))
        zt = z[rows, labels][:, None]
        m = z - zt
        m += self.margin  # margin - z_t + z_k
        m[rows, labels] = 0.0  # k = t does not count
        np.maximum(m, 0.0, out=m)
        self._labels = labels
        self._active = m > 0.0
        self._dtype = z.dtype
        return m.sum(axis=1)

    def _backward(self):
        g = self._active.astype(self._dtype)
        g[_rows(len(self._labels)), self._labels] = -g.sum(axis=1)
        return g


@register("focal")
class Focal(Loss):
    """Focal loss (Lin et al., 2017): l = -alpha_t (1 - p_t)^gamma log p_t, p = softmax(z).

    With f(p) = -alpha (1 - p)^gamma log p and dp_t/dz_j = p_t (1[j = t] - p_j):

        dl/dz_j = c (1[j = t] - p_j),
        c = p_t f'(p_t) = alpha_t [gamma p_t (1 - p_t)^(gamma - 1) log p_t - (1 - p_t)^gamma].

    gamma = 0, alpha = 1 is cross-entropy (c = -1). 1 - p_t is computed as
    -expm1(log p_t), so it stays accurate when p_t is close to 1.
    ``alpha`` is a scalar or one weight per class.
    """

    def __init__(
        self, *, reduction: str = "mean", gamma: float = 2.0, alpha: float | Sequence[float] = 0.1
    ):
        super().__init__(reduction=reduction)
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"focal gamma must be a finite number >= 0, got {gamma!r}")
        a = np.asarray(alpha, dtype=np.float64)
        if a.ndim > 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(
                f"focal alpha must be a number >= 0 or a list of one such number per class, "
                f"got {alpha!r}"
            )
        self.gamma = float(gamma)
        self.alpha = float(a) if a.ndim == 0 else [float(v) for v in a]
        self._alpha = a

    def check_classes(self, n_classes: int) -> None:
        if self._alpha.ndim == 1 and self._alpha.shape[0] != n_classes:
            raise ValueError(
                f"focal alpha={self.alpha!r} has {self._alpha.shape[0]} values but there are "
                f"{n_classes} classes: give one weight per class, or one number for all"
            )

    def _forward(self, z, labels):
        n, k = z.shape
        self.check_classes(k)
        rows = _rows(n)
        logp = _log_softmax(z)
        p = np.exp(logp)
        logpt = logp[rows, labels]
        pt = p[rows, labels]
        q = -np.expm1(logpt)  # 1 - p_t, accurate when p_t is close to 1
        np.maximum(q, np.finfo(z.dtype).tiny, out=q)  # (1 - p_t)^(gamma - 1) stays finite
        at = self._alpha if self._alpha.ndim == 0 else self._alpha[labels]
        at = at.astype(z.dtype)
        qg = q**self.gamma
        self._c = at * (self.gamma * pt * q ** (self.gamma - 1.0) * logpt - qg)
        self._p, self._labels = p, labels
        return -at * qg * logpt

    def _backward(self):
        g = -self._p
        g[_rows(len(self._labels)), self._labels] += 1.0  # 1[j = t] - p_j
        g *= self._c[:, None]
        return g
