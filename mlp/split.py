"""How one training step is split across the threads of a :class:`~mlp.threads.Team`, bit for
bit the step of the undivided loop.

A step runs in three parts, each on every thread at once, the BLAS libraries at one
thread each (their own thread pools would compete with the team and with each other):

1. **forward, by batch rows**: each thread gathers its rows of the batch and runs them
   through the network (a row of the output depends on that row of the input only);
   then, on the calling thread, the loss and the accuracy on the whole batch (small);
2. **backward, by batch rows**: each thread carries its rows of the loss gradient down
   the layers (``gx = gu W^T``, dropout, the activation's derivative);
3. **weight gradients and update, by parameter rows**: each thread computes its block of
   rows of every ``dW = x^T gu`` (a block of the input features, the whole batch) into the
   optimizer's sink, its block of every bias gradient, and updates those blocks.

Every element is computed by the same operations in the same order as in the undivided
step: a product is split only into blocks large enough for BLAS to compute them with the
kernels of the whole (:data:`SMALL`), on multiples of :data:`ALIGN` rows; the dropout masks
are drawn for the whole batch from the same stream; the update is element-wise. So float32
results do not depend on the number of threads (``tests/test_split.py``, OpenBLAS's
Haswell and SkylakeX kernels); float64 steps are not split (:meth:`SplitStep.worth`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import activations
from .blas import Prepared, gemm_tn_rows, gemv_t_cols
from .network import MLP
from .optim import Optimizer
from .threads import Team, blocks

__all__ = ["ALIGN", "SplitStep"]

# rows per block a split starts on: a block of rows of a float32 product gives the whole
# product's bits only if it starts on a multiple of the kernel's row step. Measured with
# OpenBLAS 0.3.30-0.3.31 at one thread, every cut of 784- and 2048-row products (x W,
# g W^T, x^T g) on a multiple of 16: the SkylakeX kernels keep the bits at every cut,
# the Haswell kernels only at multiples of 48. 48 serves both.
ALIGN = 48
# OpenBLAS computes products of at most 100^3 multiply-adds with other ("small matrix",
# "direct") kernels: a block that small sums in another order than the whole. Such
# products are not split (they are cheap anyway); larger ones are split into larger blocks.
SMALL = 100 ** 3


def _large(parts: list[slice], per_row: int) -> bool:
    """Whether every non-empty block of ``parts`` is a product of more than :data:`SMALL`
    multiply-adds, ``per_row`` per row of the block."""
    return all((s.stop - s.start) * per_row > SMALL for s in parts if s.stop > s.start)


def _whole(n: int, parts: int, owner: int) -> list[slice]:
    """All of ``range(n)`` to thread ``owner``, nothing to the others."""
    return [slice(0, n) if k == owner else slice(0, 0) for k in range(parts)]


@dataclass
class _Plan:
    """The buffers and prepared products of one batch size."""

    xb: np.ndarray  # the batch
    hidden: list[np.ndarray]  # each hidden layer's output (activation applied in place)
    dropped: list[np.ndarray | None]  # its dropout output, if the layer drops
    logits: np.ndarray
    grad_logits: np.ndarray  # the loss gradient, copied here (fixed address)
    gx: list[np.ndarray | None]  # dL/d(input) of layers 1.., per layer index
    rows: list[slice]  # batch rows per thread
    work: list[list[tuple[Prepared, list[slice]]]]  # per thread: (a product, then the update
    # of the block it wrote: one slice per parameter)


class SplitStep:
    """Training steps of ``net`` (with ``loss`` and ``opt``) split across ``team``.

    ``step(x_train, idx, y)`` trains on the batch ``x_train[idx]`` with labels ``y``, as
    the training loop's undivided step does (gather, forward, loss, backward into the
    optimizer's sinks, update), and returns the number of correct predictions, or None if
    the loss is not finite (nothing updated).
    """

    def __init__(self, net: MLP, loss, opt: Optimizer, team: Team):
        if len(opt.sinks) != len(net.params):
            raise ValueError(f"{len(opt.sinks)} gradient sinks for {len(net.params)} "
                             f"parameters")
        self.net, self.loss, self.opt, self.team = net, loss, opt, team
        # activations keep what their backward needs: one set per thread (its rows)
        self.acts = [[activations.get(net.activation) for _ in net.acts] for _ in range(team.n)]
        self._plans: dict[int, _Plan] = {}
        self._idx: np.ndarray | None = None
        self._x_train: np.ndarray | None = None
        self._masks: list[np.ndarray | None] = []
        self._gather_s = 0.0

    def _plan(self, b: int) -> _Plan:
        plan = self._plans.get(b)
        if plan is None:
            plan = self._plans[b] = self._make_plan(b)
        return plan

    def _make_plan(self, b: int) -> _Plan:
        net, n, dt = self.net, self.team.n, self.net.dtype
        lins = net.linears
        xb = np.empty((b, net.sizes[0]), dt)
        hidden = [np.empty((b, lin.W.shape[1]), dt) for lin in lins[:-1]]
        dropped = [np.empty_like(h) if d.p else None for h, d in zip(hidden, net.drops)]
        logits = np.empty((b, net.sizes[-1]), dt)
        grad_logits = np.empty_like(logits)
        gx = [None] + [np.empty((b, lin.W.shape[0]), dt) for lin in lins[1:]]
        inputs = [xb] + [d if d is not None else h for h, d in zip(hidden, dropped)]
        grads_out = gx[1:] + [grad_logits]  # dL/du of each layer
        ones = np.ones(b, dt)
        # batch rows: split if every hidden layer's products are large in every block
        rows = blocks(b, n, ALIGN)
        if any(not _large([r], lin.W.shape[0] * lin.W.shape[1]) for lin in lins[:-1]
               for r in rows if r.stop > r.start):
            rows = _whole(b, n, 0)
        sinks = self.opt.sinks
        n_params = len(sinks)
        work: list[list[tuple[Prepared, list[slice]]]] = [[] for _ in range(n)]

        def task(k: int, product: Prepared, j: int, block: slice) -> None:
            sel = [slice(0, 0)] * n_params
            sel[j] = block
            work[k].append((product, sel))

        for i, lin in enumerate(lins):
            m, o = lin.W.shape
            w_rows = blocks(m, n, ALIGN)
            if not _large(w_rows, o * b):  # small: whole, on the threads in turn
                w_rows = _whole(m, n, (n - 1 - i) % n)
            owner_b = (n - 1 - i) % n  # a bias gradient is small: whole
            sw, sb = sinks[2 * i], sinks[2 * i + 1]
            for k in range(n):  # (in cache-sized chunks: 1.7x slower, each packs all of gu)
                if w_rows[k].stop > w_rows[k].start:
                    task(k, gemm_tn_rows(inputs[i], grads_out[i], sw.out, sw.beta, w_rows[k]),
                         2 * i, w_rows[k])
            task(owner_b, gemv_t_cols(grads_out[i], ones, sb.out, sb.beta, slice(0, o)),
                 2 * i + 1, slice(0, o))
        return _Plan(xb, hidden, dropped, logits, grad_logits, gx, rows, work)

    # -- the three parts, on thread k ------------------------------------------------------

    def _forward(self, plan: _Plan, k: int) -> None:
        r = plan.rows[k]
        if r.start == r.stop:
            return
        t0 = time.perf_counter()
        x_train, idx, xb = self._x_train, self._idx[r], plan.xb[r]
        if x_train.dtype == xb.dtype:
            x_train.take(idx, axis=0, out=xb, mode="clip")
        else:
            xb[...] = x_train[idx]
        if k == 0:
            self._gather_s = time.perf_counter() - t0
        h, lins = xb, self.net.linears
        for i, act in enumerate(self.acts[k]):
            u = plan.hidden[i][r]
            np.matmul(h, lins[i].W, out=u)
            np.add(u, lins[i].b, out=u)
            act.forward(u, out=u)
            if self._masks[i] is not None:  # training, or a fixed mask in evaluation too
                h = np.multiply(u, self._masks[i][r], out=plan.dropped[i][r])
            else:
                h = u

    def _backward(self, plan: _Plan, k: int) -> None:
        r = plan.rows[k]
        if r.start == r.stop:
            return
        lins = self.net.linears
        for i in range(len(lins) - 1, 0, -1):
            gx = plan.gx[i][r]
            if i < len(lins) - 1:  # the output layer's product: done whole, by the caller
                np.matmul(g, lins[i].W.T, out=gx)
            if self._masks[i - 1] is not None:
                np.multiply(gx, self._masks[i - 1][r], out=gx)
            self.acts[k][i - 1].backward(gx, out=gx)
            g = gx

    def _update(self, plan: _Plan, k: int) -> None:
        for product, sel in plan.work[k]:
            product()
            self.opt.step_part(sel)

    def _logits(self, plan: _Plan):
        """The output layer (a few classes: small), whole, on the caller; returns it."""
        out = self.net.linears[-1]
        h = plan.xb if not plan.hidden else \
            plan.dropped[-1] if self._masks[-1] is not None else plan.hidden[-1]
        np.matmul(h, out.W, out=plan.logits)
        np.add(plan.logits, out.b, out=plan.logits)
        return out

    # -- a step ---------------------------------------------------------------------------

    def worth(self, b: int) -> bool:
        """Whether a batch of ``b`` rows is split: its rows go to several threads. Smaller
        ones (not two blocks of ``ALIGN`` rows: under 72 rows for 2 threads) run undivided:
        three hand-offs between threads per step cost more than splitting their weight
        gradients gains
        (batch_size=10 on 2 cores: 1.4x slower split). float64 steps run undivided too:
        OpenBLAS's double kernels give blocks of rows other last bits than the whole
        product (measured at widths 100 and 300, Haswell and SkylakeX kernels); float32
        ones give the same bits, and the result may not depend on the thread count."""
        if self.net.dtype != np.float32:
            return False
        plan = self._plan(b)
        return sum(r.stop > r.start for r in plan.rows) > 1

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
        """(mean loss, accuracy) in evaluation mode, as :func:`mlp.train.evaluate`, each
        batch's rows split across the team."""
        total, correct, loss = 0.0, 0, self.loss
        self._x_train, self._gather_s = x, 0.0
        self._masks = [np.broadcast_to(d.mask, (batch_size, d.mask.shape[1]))
                       if d.p and d.fixed else None for d in self.net.drops]
        for i in range(0, x.shape[0], batch_size):
            yb = y[i:i + batch_size]
            plan = self._plan(len(yb))
            self._idx = np.arange(i, i + len(yb))
            self.team.run(lambda k: self._forward(plan, k))
            self._logits(plan)
            loss.forward(plan.logits, yb)
            total += loss.mean * len(yb)
            correct += int(np.count_nonzero(plan.logits.argmax(axis=1) == yb))
        return total / x.shape[0], correct / x.shape[0]

    def step(self, x_train: np.ndarray, idx: np.ndarray, y: np.ndarray,
             timing: dict[str, float] | None = None) -> int | None:
        plan = self._plan(len(idx))
        self._x_train, self._idx = x_train, idx
        clock = time.perf_counter
        t0 = clock()
        self._gather_s = 0.0
        # the masks of the whole batch, layer after layer: the undivided step's draws (a
        # fixed mask: the same row for every example)
        self._masks = [None if not d.p else np.broadcast_to(d.mask, h.shape) if d.fixed
                       else d.draw(h.shape, h.dtype)
                       for d, h in zip(self.net.drops, plan.hidden)]
        self.team.run(lambda k: self._forward(plan, k))
        out = self._logits(plan)
        loss = self.loss
        loss.forward(plan.logits, y)
        if not math.isfinite(loss.mean):
            return None
        correct = int(np.count_nonzero(plan.logits.argmax(axis=1) == y))
        t1 = clock()
        np.copyto(plan.grad_logits, loss.backward())
        if len(plan.gx) > 1:
            np.matmul(plan.grad_logits, out.W.T, out=plan.gx[-1])
        self.team.run(lambda k: self._backward(plan, k))
        t2 = clock()
        self.opt.begin_step()
        self.team.run(lambda k: self._update(plan, k))
        t3 = clock()
        if timing is not None:
            timing["data"] += self._gather_s
            timing["forward"] += t1 - t0 - self._gather_s
            timing["backward"] += t2 - t1
            timing["update"] += t3 - t2  # the weight gradients with it: one part
        return correct
