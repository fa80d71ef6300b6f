"""What one configuration computes (pure), as counts of kernels a run executes.

Per training batch of ``b`` rows with layer sizes ``[d_0, ..., d_L]``: the forward product
``x_i W_i`` of every layer, the weight gradient ``x_i^T gu_i`` of every layer and the input
gradient ``gu_i W_i^T`` of every layer but the first; the hidden layers' activation (and
dropout) forward and backward; one SGD update (about 15 array passes over every parameter:
at small batches it costs more than the products); and the step's fixed Python/NumPy
dispatch. The last, partial batch is its own shape. Test evaluations (every ``test_every``
epochs and after the last) run the forward pass in batches of 1000. The sizes are the real
data's (:func:`mlp.data.data_sizes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from mlp import TrainConfig
from mlp.data import data_sizes
from mlp.train import EVAL_BATCH


UPDATE_PASSES = 15  # array reads + writes of one SGD step per parameter (mlp/optim.py)


class Gemm(NamedTuple):
    """A matrix product ``(m, k) @ (k, n)``; ``layout``: ``nn`` (x W), ``tn`` (x^T gu: x is
    stored (k, m) and read transposed), ``nt`` (gu W^T). ``rows``: which dimension is the
    batch (``m`` or ``k``), the one that is scaled down for timing."""

    m: int
    k: int
    n: int
    layout: str
    dtype: str

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.k * self.n

    @property
    def rows(self) -> str:
        return "k" if self.layout == "tn" else "m"


class Hidden(NamedTuple):
    """A hidden layer's element-wise work on (batch, width): activation forward (and, in
    training, dropout forward, dropout and activation backward)."""

    activation: str
    dropout: bool
    batch: int
    width: int
    train: bool
    dtype: str


class Update(NamedTuple):
    """One SGD step (momentum, weight decay) over a network's parameters."""

    sizes: tuple[int, ...]
    momentum: bool
    weight_decay: bool
    dtype: str

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in zip(self.sizes[:-1], self.sizes[1:]))


class Step(NamedTuple):
    """The fixed cost of one training step: the loop's Python and NumPy dispatch, measured
    as a real training step (mlp.train) of this depth on tiny shapes."""

    depth: int
    activation: str
    loss: str
    dropout: bool
    dtype: str


Kernel = Gemm | Hidden | Update | Step


def key(k: Kernel) -> str:
    """A kernel as a stable string (the rate cache's key)."""
    return f"{type(k).__name__.lower()} " + " ".join(
        "x".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in k)


@dataclass
class Work:
    """What one configuration computes: kernel -> times it runs."""

    counts: dict[Kernel, float]
    sizes: tuple[int, ...]
    n_train: int
    n_test: int
    steps: int  # training steps (batches) in all
    evaluations: int

    @property
    def flops(self) -> float:
        """Floating-point operations of the matrix products, training and evaluation."""
        return sum(c * k.flops for k, c in self.counts.items() if isinstance(k, Gemm))

    @property
    def update_bytes(self) -> float:
        """Bytes the SGD updates stream through memory."""
        return sum(c * k.n_params * UPDATE_PASSES * np.dtype(k.dtype).itemsize
                   for k, c in self.counts.items() if isinstance(k, Update))


def evaluations(epochs: int, test_every: int) -> int:
    """Test evaluations of a run: every ``test_every`` epochs and after the last."""
    return epochs // test_every + (epochs % test_every != 0)


def _batches(n: int, batch: int) -> list[tuple[int, int]]:
    """(rows, count) of an epoch's batches: the full ones and a partial last one."""
    full, rest = divmod(n, batch)
    return [(b, c) for b, c in ((batch, full), (rest, 1)) if b and c]


def _add(counts: dict, k: Kernel, times: float) -> None:
    counts[k] = counts.get(k, 0.0) + times


def train_gemms(sizes: Sequence[int], b: int, dtype: str) -> list[Gemm]:
    """The matrix products of one training step on ``b`` rows: ``x_i W_i`` for every
    layer, ``x_i^T gu_i`` (dW) for every layer, ``gu_i W_i^T`` (dx) for all but the first."""
    out = []
    for i, (a, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        out += [Gemm(b, a, o, "nn", dtype), Gemm(a, b, o, "tn", dtype)]
        if i:
            out.append(Gemm(b, o, a, "nt", dtype))
    return out


def work(cfg: TrainConfig) -> Work:
    """The kernels of a whole run of ``cfg`` (all its epochs and evaluations) and their
    counts. Pure: no data is loaded."""
    n_train, n_test, feat, classes = data_sizes(cfg.data)
    sizes = (feat,) + (cfg.hidden_size,) * cfg.depth + (classes,)
    counts: dict[Kernel, float] = {}
    steps = 0
    for b, c in _batches(n_train, cfg.batch_size):
        times = c * cfg.epochs
        steps += times
        for k in train_gemms(sizes, b, cfg.dtype):
            _add(counts, k, times)
        for _ in range(cfg.depth):
            _add(counts, Hidden(cfg.activation, cfg.dropout > 0, b, cfg.hidden_size, True,
                                cfg.dtype), times)
    _add(counts, Update(sizes, cfg.momentum > 0, cfg.weight_decay > 0, cfg.dtype), steps)
    _add(counts, Step(cfg.depth, cfg.activation, cfg.loss, cfg.dropout > 0, cfg.dtype), steps)
    n_eval = evaluations(cfg.epochs, cfg.test_every)
    for b, c in _batches(n_test, EVAL_BATCH):  # the forward pass only
        for a, o in zip(sizes[:-1], sizes[1:]):
            _add(counts, Gemm(b, a, o, "nn", cfg.dtype), c * n_eval)
        for _ in range(cfg.depth):
            _add(counts, Hidden(cfg.activation, False, b, cfg.hidden_size, False, cfg.dtype),
                 c * n_eval)
    return Work(counts, sizes, n_train, n_test, steps, n_eval)
