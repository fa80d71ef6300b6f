"""The multilayer perceptron: Linear -> activation -> [Dropout] per hidden layer, then a
Linear output layer producing logits."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import activations
from .layers import DROPOUT_MASKS, Buffers, GradSink, Linear

__all__ = ["MLP", "DTYPES"]

DTYPES = ("float32", "float64")


class MLP:
    """A seeded MLP built from layer sizes.

    Parameters
    ----------
    sizes : sequence of int
        ``[in_dim, hidden_1, ..., hidden_d, n_classes]``; ``len(sizes) - 2`` hidden layers.
    activation : str
        A name from :func:`mlp.activations.names`.
    dropout : float
        Probability of zeroing a hidden unit in training (after each hidden activation).
    dropout_mask : {"inverted", "fixed"}
        How the units are dropped (:data:`mlp.layers.DROPOUT_MASKS`): a new scaled mask every
        training step (inverted dropout), or the study's mask drawn once per layer and kept
        in evaluation.
    init : {"normal", "he", "xavier"}
    seed : int
        Seeds the initial weights and, through an independent stream, the dropout masks.
    dtype : {"float32", "float64"}

    Attributes
    ----------
    params, grads : list of ndarray
        ``[W1, b1, W2, b2, ...]`` and their gradients, in matching order; the gradients
        are filled in place by :meth:`backward`.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", dropout: float = 0.0,
                 init: str = "normal", seed: int = 0, dtype: str = "float32",
                 dropout_mask: str = "inverted"):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must be >= 2 positive integers, got {sizes}")
        if str(dtype) not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}")
        if dropout_mask not in DROPOUT_MASKS:
            raise ValueError(f"unknown dropout_mask {dropout_mask!r}; valid: "
                             f"{', '.join(DROPOUT_MASKS)}")
        self.sizes = sizes
        self.dtype = np.dtype(dtype)
        self.activation = activation
        init_ss, drop_ss = np.random.SeedSequence(seed).spawn(2)
        init_rng = np.random.default_rng(init_ss)
        self.dropout_rng = np.random.default_rng(drop_ss)
        self.linears = [
            Linear(i, o, init=init, rng=init_rng, dtype=self.dtype)
            for i, o in zip(sizes[:-1], sizes[1:])
        ]
        n_hidden = len(sizes) - 2
        self.acts = [activations.get(activation) for _ in range(n_hidden)]
        drop = DROPOUT_MASKS[dropout_mask]
        self.drops = [drop(dropout, self.dropout_rng, width=w, dtype=self.dtype)
                      for w in sizes[1:-1]]
        self.params = [p for lin in self.linears for p in lin.params]
        self.grads = [g for lin in self.linears for g in lin.grads]
        self._buf = Buffers()

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        """Logits, ndarray of shape (batch, n_classes), for x of shape (batch, in_dim).

        The logits are a new array (small); hidden activations live in reused buffers.
        """
        h = x
        for i, (lin, act, drop) in enumerate(zip(self.linears, self.acts, self.drops)):
            u = lin.forward(h)  # (batch, hidden_i)
            a = act.forward(u, out=u)  # in place: u is not needed after the activation
            # dropout writes elsewhere: the activation keeps ``a`` for its backward
            out = self._buf.get(f"drop{i}", a.shape, a.dtype) \
                if drop.p and (train or drop.fixed) else None
            h = drop.forward(a, train=train, out=out)
        return self.linears[-1].forward(h).copy()  # (batch, n_classes)

    def backward(self, grad_logits: np.ndarray, need_input_grad: bool = False,
                 sinks: Sequence[GradSink] | None = None) -> np.ndarray | None:
        """Deliver the parameters' gradients from dL/dlogits of shape (batch, n_classes).

        The gradients fill :attr:`grads`, or go to ``sinks`` (one
        :class:`~mlp.layers.GradSink` per parameter, in :attr:`params` order), e.g. an
        optimizer's :attr:`~mlp.optim.Optimizer.sinks`, which then steps without arrays.
        Returns dL/dx of shape (batch, in_dim) only if ``need_input_grad``: for the first
        layer that is a full matrix product that training does not need.
        """
        if sinks is not None and len(sinks) != len(self.params):
            raise ValueError(f"{len(sinks)} gradient sinks for {len(self.params)} parameters")
        per_layer = [None] * len(self.linears) if sinks is None else \
            [tuple(sinks[2 * i:2 * i + 2]) for i in range(len(self.linears))]
        g = grad_logits
        for i in range(len(self.linears) - 1, 0, -1):
            g = self.linears[i].backward(g, sinks=per_layer[i])  # dL/dh_{i}
            g = self.drops[i - 1].backward(g, out=g)
            g = self.acts[i - 1].backward(g, out=g)  # dL/du_{i}
        return self.linears[0].backward(g, need_input_grad=need_input_grad, sinks=per_layer[0])

    def share(self, alloc) -> None:
        """Move the parameters, values kept, into arrays made by ``alloc(shape, dtype)``
        (shared memory for a team's helpers, :mod:`mlp.split`); :attr:`params` then names
        the new arrays. Give an optimizer the same with :meth:`Optimizer.share
        <mlp.optim.Optimizer.share>`."""
        for lin in self.linears:
            for name in ("W", "b"):
                old = getattr(lin, name)
                new = alloc(old.shape, old.dtype)
                new[...] = old
                setattr(lin, name, new)
        self.params = [p for lin in self.linears for p in lin.params]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, named ``W1, b1, W2, b2, ...``."""
        return {f"{k}{i + 1}": p.copy() for i, lin in enumerate(self.linears)
                for k, p in zip("Wb", lin.params)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy parameters from :meth:`state_dict` output, checking names and shapes."""
        own = self.state_dict()
        if set(state) != set(own):
            raise ValueError(f"parameter names {sorted(state)} do not match {sorted(own)}")
        for i, lin in enumerate(self.linears):
            for k, p in zip("Wb", lin.params):
                src = np.asarray(state[f"{k}{i + 1}"])
                if src.shape != p.shape:
                    raise ValueError(f"{k}{i + 1}: shape {src.shape} does not match {p.shape}")
                p[...] = src

    def __repr__(self) -> str:
        return (f"MLP(sizes={self.sizes}, activation={self.activation!r}, "
                f"dropout={self.drops[0].p if self.drops else 0.0}, dtype={self.dtype.name!r})")
