"""SGD with momentum and coupled weight decay, as in the published study."""

from __future__ import annotations

import numpy as np

__all__ = ["SGD"]


class SGD:
    """Heavy-ball SGD with L2 weight decay added to the gradient (biases included):

        v <- momentum * v + (grad + weight_decay * param)
        param <- param - lr * v

    The update runs in place: six element-wise passes over each parameter (three scalings,
    three array additions; NumPy has no fused multiply-add), nothing allocated per step.
    With ``step(grads, scratch=True)`` the gradient arrays, spent once added to the
    velocity, hold the intermediate products: the same operations in the same order (the
    same bits), over three arrays per parameter instead of four, which is less to stream
    through the caches (the training loop does this; ``python scripts/bench_update.py``
    compares the variants beside a step's matrix products). Measured in the training loop
    (784x784 float32): regrouping the same terms, e.g. ``t = g + wd p; v = m v + t``, or
    ``v = wd ((m / wd) v + p) + g``, and running the passes in L2-sized chunks all cost the
    same within noise, so the plain form stays.

    Parameters
    ----------
    params : list of ndarray
        Updated in place by :meth:`step`.
    lr : float > 0
    momentum : float in [0, 1)
    weight_decay : float >= 0
    """

    def __init__(self, params: list[np.ndarray], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.params = params
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.velocity = [np.zeros_like(p) for p in params]
        self._tmp: list[np.ndarray] | None = None  # scratch, made on first use

    def step(self, grads: list[np.ndarray], scratch: bool = False) -> None:
        """One update from ``grads`` (same order and shapes as ``params``). With
        ``scratch=True`` the gradient arrays are overwritten (their values are spent)."""
        lr, mom, wd = self.lr, self.momentum, self.weight_decay
        if scratch:
            tmp = grads
        else:
            if self._tmp is None:
                self._tmp = [np.empty_like(p) for p in self.params]
            tmp = self._tmp
        for p, g, v, t in zip(self.params, grads, self.velocity, tmp):
            if mom:
                v *= mom  # momentum * v
                v += g  # + grad
            else:
                np.copyto(v, g)
            # from here on g's values are no longer needed: t may be g itself
            if wd:
                np.multiply(p, wd, out=t)
                v += t  # + weight_decay * param
            np.multiply(v, lr, out=t)
            p -= t  # param - lr * v

    def state_dict(self) -> dict[str, list[np.ndarray]]:
        return {"velocity": [v.copy() for v in self.velocity]}

    def load_state_dict(self, state: dict[str, list[np.ndarray]]) -> None:
        for v, src in zip(self.velocity, state["velocity"], strict=True):
            v[...] = src
