"""Optimizers: one registry, one interface.

Each optimizer is one class with ``@register("name")`` in this file; the training config
(``optimizer=<name>``), the Hydra config group ``optimizer`` and the checkpoints pick it up
from :func:`names` and :func:`params`. The interface (sklearn's ``BaseOptimizer`` shape):

- ``Opt(params, lr=..., weight_decay=..., <its own settings>)``: ``params`` are updated in
  place;
- :attr:`Optimizer.sinks`: one :class:`~mlp.layers.GradSink` per parameter, telling the
  network's backward where to deliver that parameter's gradient (see below);
- ``step()`` after ``net.backward(..., sinks=opt.sinks)``, or ``step(grads)`` with gradient
  arrays (the gradients are first delivered to the sinks);
- ``state_dict()`` / ``load_state_dict()``: the optimizer's state as named lists of arrays
  (one per parameter) plus plain numbers, all a checkpoint needs to continue bit for bit.

The gradient sink. A weight gradient is a matrix product (``dW = x^T gu``) computed in the
layer's backward, and SGD's first use of it is ``v <- dW + momentum v``: BLAS computes that
in the product itself (``gemm`` with ``beta = momentum``), so the gradient never exists as an
array and the update is two ``axpy`` passes over each weight matrix instead of six NumPy
passes. The layer owns the product (it holds x and gu), the optimizer owns ``v`` and the
momentum: the sink is how the optimizer tells the layer "write ``grad + beta out`` into
``out``". An optimizer that wants the plain gradient (Adam) gives a buffer with
``beta = 0``.

Python-float constants keep float32 arrays float32 (NEP 50); the BLAS routines are those of
:mod:`mlp.blas` (float32 and float64).
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable

import numpy as np

from .blas import CALLER, PARALLEL, Ops
from .layers import GradSink
from .registry import Registry

__all__ = ["Optimizer", "SGD", "Adam", "SHARED", "get", "names", "params", "register"]

# settings that live at the top of the training config (``lr=...``), passed to every
# optimizer that takes them; each optimizer's other settings are its own (``optimizer.<p>``)
SHARED = ("lr", "momentum", "weight_decay")

_REGISTRY: Registry[type["Optimizer"]] = Registry("optimizer")
register = _REGISTRY.register
names = _REGISTRY.names
optimizer_class = _REGISTRY.get  # the class registered under a name (ValueError: valid ones)


@functools.lru_cache(maxsize=None)
def _signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls.__init__)  # read for every config validated: cached


def params(name: str) -> dict[str, Any]:
    """The optimizer's own settings and their defaults (its signature beyond ``params`` and
    :data:`SHARED`), e.g. ``{"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}`` for Adam."""
    sig = _signature(optimizer_class(name))
    return {p.name: p.default for p in list(sig.parameters.values())[2:] if p.name not in SHARED}


def get(name: str, parameters: list[np.ndarray], **settings: Any) -> "Optimizer":
    """An optimizer by name over ``parameters``. ``settings`` are the shared ones (those the
    optimizer does not take are ignored: Adam has no ``momentum``) and its own (an unknown
    one is an error naming the valid ones)."""
    cls = optimizer_class(name)
    own = params(name)
    unknown = sorted(k for k in settings if k not in own and k not in SHARED)
    if unknown:
        raise ValueError(f"optimizer {name!r} has no setting {', '.join(map(repr, unknown))}; "
                         f"its settings: {', '.join(own) or 'none'}")
    taken = _signature(cls).parameters
    return cls(parameters, **{k: v for k, v in settings.items() if k in taken})


def _check(key: str, value: Any, ok: Callable[[float], bool], rng: str) -> float:
    """``float(value)`` if it is a number for which ``ok`` holds; else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ValueError(f"{key} must be {rng}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class. Subclasses set :attr:`sinks` in ``__init__`` and implement
    :meth:`_per_param` and :meth:`_apply` (and :meth:`_begin` if a step keeps count).

    Parameters
    ----------
    params : list of ndarray
        Updated in place by :meth:`step` (float32 or float64, C-contiguous).
    lr : float > 0
    weight_decay : float >= 0
        L2 penalty added to the gradient: grad + weight_decay * param (biases included).
    """

    name: str = ""
    sinks: list[GradSink]
    state_per_param: int = 1  # arrays of a parameter's size it keeps (memory estimates)

    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float = 0.0):
        self.params = params
        self.lr = _check("lr", lr, lambda x: x > 0, "> 0")
        self.weight_decay = _check("weight_decay", weight_decay, lambda x: x >= 0, ">= 0")

    def step(self, grads: list[np.ndarray] | None = None) -> None:
        """One update. ``grads`` (same order and shapes as ``params``) are delivered to the
        sinks first; ``None``: the network's backward already delivered them
        (``net.backward(g, sinks=opt.sinks)``). The sinks' contents are spent by the step."""
        if grads is not None:
            for s, g in zip(self.sinks, grads, strict=True):
                s.receive(g)
        self._update()

    def _update(self) -> None:
        self._begin()
        self._apply(CALLER, self.params, *self._per_param())

    # A step split across a team (:mod:`mlp.split`): ``begin_step()`` once in every member,
    # then ``step_part(sel)`` on disjoint blocks, every element updated once.
    def begin_step(self) -> None:
        """The step's own bookkeeping (e.g. Adam's step count), before its parts."""
        self._begin()

    def step_part(self, sel: list[slice]) -> None:
        """The update of the blocks ``p[s]`` (one slice of axis 0 per parameter, in
        :attr:`params` order), the sinks already holding the gradient there. The update is
        element-wise, so the parts together give the bits of one :meth:`step`."""
        keep = [j for j, s in enumerate(sel) if s.start < s.stop]  # empty blocks: nothing
        self._apply(PARALLEL, [self.params[j][sel[j]] for j in keep],
                    *[[arrays[j][sel[j]] for j in keep] for arrays in self._per_param()])

    def share(self, params: list[np.ndarray], alloc) -> None:
        """Update ``params`` from now on (the same values, moved: :meth:`mlp.network.MLP.share`)
        and move the state the update reads element for element, and the sinks' arrays,
        into arrays made by ``alloc(shape, dtype)``, values kept."""
        moved: dict[int, np.ndarray] = {}

        def move(a: np.ndarray) -> np.ndarray:
            if id(a) not in moved:
                moved[id(a)] = new = alloc(a.shape, a.dtype)
                new[...] = a
            return moved[id(a)]

        for arrays in self._per_param():  # the lists the optimizer keeps: changed in place
            arrays[:] = [move(a) for a in arrays]
        for sink in self.sinks:
            sink.out = move(sink.out)
        if len(params) != len(self.params):
            raise ValueError(f"{len(params)} parameters for {len(self.params)}")
        self.params = list(params)

    def _begin(self) -> None:
        """Per-step bookkeeping; nothing by default."""

    def _per_param(self) -> list[list[np.ndarray]]:
        """The optimizer's arrays that the update reads or writes element for element with
        the parameters: lists of one array per parameter (e.g. SGD's velocity)."""
        raise NotImplementedError

    def _apply(self, ops: Ops, params: list[np.ndarray], *state: list[np.ndarray]) -> None:
        """The element-wise update of ``params`` (or blocks of them) and the matching
        blocks of :meth:`_per_param`'s arrays, with BLAS's ``ops.axpy`` and ``ops.scal``
        (:data:`mlp.blas.CALLER` on the caller's thread, :data:`~mlp.blas.PARALLEL` on a
        team's)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Copies of the state: ``{name: [one array per parameter], name: number}``."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _load_arrays(self, dst: list[np.ndarray], src: list[np.ndarray], key: str) -> None:
        if len(src) != len(dst):
            raise ValueError(f"{self.name} state {key!r}: {len(src)} arrays for "
                             f"{len(dst)} parameters")
        for d, s in zip(dst, src):
            s = np.asarray(s)
            if s.shape != d.shape:
                raise ValueError(f"{self.name} state {key!r}: shape {s.shape} does not match "
                                 f"{d.shape}")
            d[...] = s

    def __repr__(self) -> str:
        own = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("lr", *params(self.name)))
        return f"{type(self).__name__}({own})"


@register("sgd")
class SGD(Optimizer):
    """Heavy-ball SGD with L2 weight decay added to the gradient (biases included), as in
    the published study::

        v <- momentum * v + (grad + weight_decay * param)
        param <- param - lr * v

    Two passes over each parameter after the backward: the backward's BLAS product already
    wrote ``grad + momentum * v`` into ``v`` (:attr:`sinks`: ``v`` with ``beta = momentum``),
    then ``axpy`` twice: ``v += wd * param`` (skipped when ``weight_decay == 0``) and
    ``param += -lr * v``. ``momentum = 0`` is ``beta = 0``: BLAS overwrites ``v`` with the
    gradient without reading it. Equal to the six-pass NumPy form within float rounding
    (BLAS may fuse multiply and add); the same bits run to run.
    ``python scripts/bench_update.py`` weighs the forms beside a step's matrix products.

    Parameters
    ----------
    params : list of ndarray
    lr : float > 0
    momentum : float in [0, 1)
    weight_decay : float >= 0
    """

    def __init__(self, params: list[np.ndarray], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = _check("momentum", momentum, lambda x: 0.0 <= x < 1.0, "in [0, 1)")
        self.velocity = [np.zeros_like(p) for p in params]
        self.sinks = [GradSink(v, self.momentum) for v in self.velocity]

    def _per_param(self) -> list[list[np.ndarray]]:
        return [self.velocity]

    def _apply(self, ops, params, velocity) -> None:
        lr, wd = self.lr, self.weight_decay
        for p, v in zip(params, velocity):  # v = grad + momentum v (the sink)
            if wd:
                ops.axpy(wd, p, v)  # v += weight_decay * param
            ops.axpy(-lr, v, p)  # param -= lr * v

    def state_dict(self) -> dict[str, Any]:
        return {"velocity": [v.copy() for v in self.velocity]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_arrays(self.velocity, state["velocity"], "velocity")


@register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with PyTorch's ``torch.optim.Adam`` arithmetic, weight decay
    as an L2 term added to the gradient (coupled, like SGD here)::

        g <- grad + weight_decay * param
        m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2      (t <- t + 1)
        param <- param - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The gradient arrives in its own buffer (:attr:`sinks` with ``beta = 0``), which the step
    then uses as scratch: nothing is allocated per step.

    Parameters
    ----------
    params : list of ndarray
    lr : float > 0
    weight_decay : float >= 0
    beta1, beta2 : float in [0, 1)
        Decay rates of the first and second moment estimates.
    eps : float > 0
    """

    state_per_param = 3  # m, v, the gradient's buffer

    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float = 0.0, *,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(params, lr, weight_decay)
        self.beta1 = _check("beta1", beta1, lambda x: 0.0 <= x < 1.0, "in [0, 1)")
        self.beta2 = _check("beta2", beta2, lambda x: 0.0 <= x < 1.0, "in [0, 1)")
        self.eps = _check("eps", eps, lambda x: x > 0, "> 0")
        self.m = [np.zeros_like(p) for p in params]  # (with v and grads: 3 per parameter)
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0
        self.grads = [np.zeros_like(p) for p in params]
        self.sinks = [GradSink(g, 0.0) for g in self.grads]

    def _begin(self) -> None:
        self.t += 1

    def _per_param(self) -> list[list[np.ndarray]]:
        return [self.grads, self.m, self.v]

    def _apply(self, ops, params, grads, ms, vs) -> None:
        b1, b2, wd = self.beta1, self.beta2, self.weight_decay
        step_size = self.lr / (1.0 - b1 ** self.t)
        bc2_sqrt = math.sqrt(1.0 - b2 ** self.t)
        for p, g, m, v in zip(params, grads, ms, vs):
            if wd:
                ops.axpy(wd, p, g)  # g = grad + wd * param
            ops.scal(b1, m)
            ops.axpy(1.0 - b1, g, m)  # m = b1 m + (1 - b1) g
            np.multiply(g, g, out=g)  # g^2 (g is spent from here on: scratch)
            ops.scal(b2, v)
            ops.axpy(1.0 - b2, g, v)  # v = b2 v + (1 - b2) g^2
            np.sqrt(v, out=g)
            g /= bc2_sqrt
            g += self.eps  # the denominator
            np.divide(m, g, out=g)
            ops.axpy(-step_size, g, p)  # param -= step_size * m / denominator

    def state_dict(self) -> dict[str, Any]:
        return {"m": [a.copy() for a in self.m], "v": [a.copy() for a in self.v], "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_arrays(self.m, state["m"], "m")
        self._load_arrays(self.v, state["v"], "v")
        self.t = int(state["t"])
