"""How one training step is split across the members of a :class:`~mlp.team.Team`, bit for
bit the step of the undivided loop.

A step runs in three parts, each on every member at once, the BLAS libraries at one
thread each (their own thread pools would compete with the team and with each other):

1. **forward, by batch rows**: each member gathers its rows of the batch and runs them
   through the network (a row of the output depends on that row of the input only);
   then, in the caller, the loss and the accuracy on the whole batch (small);
2. **backward, by batch rows**: each member carries its rows of the loss gradient down
   the layers (``gx = gu W^T``, dropout, the activation's derivative);
3. **weight gradients and update, by parameter rows**: each member computes its block of
   rows of every ``dW = x^T gu`` (a block of the input features, the whole batch) into the
   optimizer's sink, its block of every bias gradient, and updates those blocks.

The team's helpers are processes forked at the first step: what they read that changes,
and what they write, is in shared memory (:func:`mlp.team.shared_empty`): the parameters
and the optimizer's state (moved there by :meth:`MLP.share <mlp.network.MLP.share>` and
:meth:`Optimizer.share <mlp.optim.Optimizer.share>`), the buffers of a batch of up to
``max_rows`` rows, its indices and dropout masks, and the command of the part to run (the
batch size, which input array, training or evaluation). The input arrays are those the
helpers were forked with (``inputs``: the training, test and validation sets).

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
from .team import Team, blocks, shared_empty

__all__ = ["ALIGN", "SplitStep", "MAX_ROWS"]

MAX_ROWS = 1000  # rows of the largest batch split by default (evaluation's batches)

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
    """The buffers (views of the shared ones) and prepared products of one batch size."""

    xb: np.ndarray  # the batch
    idx: np.ndarray  # its rows of the input array
    hidden: list[np.ndarray]  # each hidden layer's output (activation applied in place)
    dropped: list[np.ndarray | None]  # its dropout output, if the layer drops
    masks: list[np.ndarray | None]  # its training mask, if drawn per step
    logits: np.ndarray
    grad_logits: np.ndarray  # the loss gradient, copied here
    gx: list[np.ndarray | None]  # dL/d(input) of layers 1.., per layer index
    rows: list[slice]  # batch rows per member
    work: list[list[tuple[Prepared, list[slice]]]]  # per member: (a product, then the update
    # of the block it wrote: one slice per parameter)


def _key(a: np.ndarray) -> tuple:
    return a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str


class SplitStep:
    """Training steps of ``net`` (with ``loss`` and ``opt``) split across ``team``.

    ``step(x_train, idx, y)`` trains on the batch ``x_train[idx]`` with labels ``y``, as
    the training loop's undivided step does (gather, forward, loss, backward into the
    optimizer's sinks, update), and returns the number of correct predictions, or None if
    the loss is not finite (nothing updated). ``x_train`` (and the arrays :meth:`evaluate`
    reads) must be among ``inputs`` once the team has forked (at the first step); batches
    have at most ``max_rows`` rows. The net's parameters and the optimizer's state move to
    shared memory here (values kept).
    """

    def __init__(self, net: MLP, loss, opt: Optimizer, team: Team,
                 inputs: tuple[np.ndarray, ...] | list[np.ndarray] = (),
                 max_rows: int = MAX_ROWS):
        if len(opt.sinks) != len(net.params):
            raise ValueError(f"{len(opt.sinks)} gradient sinks for {len(net.params)} "
                             f"parameters")
        self.net, self.loss, self.opt, self.team = net, loss, opt, team
        self.max_rows = int(max_rows)
        alloc = shared_empty if team.n > 1 else np.empty
        net.share(alloc)
        opt.share(net.params, alloc)
        # activations keep what their backward needs: one set per member (its rows)
        self.acts = [[activations.get(net.activation) for _ in net.acts] for _ in range(team.n)]
        self._inputs: list[np.ndarray] = []
        for x in inputs:
            self._source(x)
        r, dt, lins = self.max_rows, net.dtype, net.linears
        widths = [lin.W.shape[1] for lin in lins[:-1]]
        self._xb = alloc((r, net.sizes[0]), dt)
        self._idx = alloc((r,), np.intp)
        self._hidden = [alloc((r, w), dt) for w in widths]
        self._dropped = [alloc((r, w), dt) if d.p else None for w, d in zip(widths, net.drops)]
        self._masks = [alloc((r, w), dt) if d.p and not d.fixed else None
                       for w, d in zip(widths, net.drops)]
        self._logits = alloc((r, net.sizes[-1]), dt)
        self._grad_logits = alloc((r, net.sizes[-1]), dt)
        self._gx = [None] + [alloc((r, lin.W.shape[0]), dt) for lin in lins[1:]]
        self._ctl = alloc((3,), np.int64)  # the part's command: batch rows, input, training
        self._plans: dict[int, _Plan] = {}
        self._now: tuple[_Plan, np.ndarray, list[np.ndarray | None]] | None = None
        self._gather_s = 0.0
        team.register(self._forward_part, self._backward_part, self._update_part)

    def _source(self, x: np.ndarray) -> int:
        """The index of ``x`` among the input arrays (added while the team has not forked)."""
        key = _key(x)
        for i, a in enumerate(self._inputs):
            if _key(a) == key:
                return i
        if self.team.started:
            raise ValueError(f"an input array of shape {x.shape} the team's helpers were not "
                             f"forked with: give it in SplitStep(..., inputs=...)")
        self._inputs.append(x)
        return len(self._inputs) - 1

    def _plan(self, b: int) -> _Plan:
        plan = self._plans.get(b)
        if plan is None:
            plan = self._plans[b] = self._make_plan(b)
        return plan

    def _make_plan(self, b: int) -> _Plan:
        if not 0 < b <= self.max_rows:
            raise ValueError(f"a batch of {b} rows; a split step takes 1 to {self.max_rows}")
        net, n = self.net, self.team.n
        lins = net.linears
        xb, hidden = self._xb[:b], [h[:b] for h in self._hidden]
        dropped = [None if d is None else d[:b] for d in self._dropped]
        masks = [None if m is None else m[:b] for m in self._masks]
        logits, grad_logits = self._logits[:b], self._grad_logits[:b]
        gx = [None if g is None else g[:b] for g in self._gx]
        inputs = [xb] + [d if d is not None else h for h, d in zip(hidden, dropped)]
        grads_out = gx[1:] + [grad_logits]  # dL/du of each layer
        ones = np.ones(b, net.dtype)
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
            if not _large(w_rows, o * b):  # small: whole, on the members in turn
                w_rows = _whole(m, n, (n - 1 - i) % n)
            owner_b = (n - 1 - i) % n  # a bias gradient is small: whole
            sw, sb = sinks[2 * i], sinks[2 * i + 1]
            for k in range(n):  # (in cache-sized chunks: 1.7x slower, each packs all of gu)
                if w_rows[k].stop > w_rows[k].start:
                    task(k, gemm_tn_rows(inputs[i], grads_out[i], sw.out, sw.beta, w_rows[k]),
                         2 * i, w_rows[k])
            task(owner_b, gemv_t_cols(grads_out[i], ones, sb.out, sb.beta, slice(0, o)),
                 2 * i + 1, slice(0, o))
        return _Plan(xb, self._idx[:b], hidden, dropped, masks, logits, grad_logits, gx,
                     rows, work)

    # -- the command, written by the caller, read by every member ---------------------------

    def _command(self, b: int, source: int, train: bool) -> _Plan:
        self._ctl[:] = (b, source, int(train))
        return self._plan(b)

    def _load(self) -> None:
        """This part's batch, input array and dropout masks, from the command."""
        b, source, train = (int(v) for v in self._ctl)
        plan = self._plan(b)
        masks = [None if not d.p else np.broadcast_to(d.mask, h.shape) if d.fixed
                 else m if train else None
                 for d, m, h in zip(self.net.drops, plan.masks, plan.hidden)]
        self._now = plan, self._inputs[source], masks

    # -- the three parts, on member k ------------------------------------------------------

    def _forward_part(self, k: int) -> None:
        self._load()
        plan, x_train, masks = self._now
        r = plan.rows[k]
        if r.start == r.stop:
            return
        t0 = time.perf_counter()
        idx, xb = plan.idx[r], plan.xb[r]
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
            if masks[i] is not None:  # training, or a fixed mask in evaluation too
                h = np.multiply(u, masks[i][r], out=plan.dropped[i][r])
            else:
                h = u

    def _backward_part(self, k: int) -> None:
        plan, _, masks = self._now
        r = plan.rows[k]
        if r.start == r.stop:
            return
        lins = self.net.linears
        for i in range(len(lins) - 1, 0, -1):
            gx = plan.gx[i][r]
            if i < len(lins) - 1:  # the output layer's product: done whole, by the caller
                np.matmul(g, lins[i].W.T, out=gx)
            if masks[i - 1] is not None:
                np.multiply(gx, masks[i - 1][r], out=gx)
            self.acts[k][i - 1].backward(gx, out=gx)
            g = gx

    def _update_part(self, k: int) -> None:
        if k:  # the caller began the step before the part (its count, e.g. Adam's)
            self.opt.begin_step()
        for product, sel in self._now[0].work[k]:
            product()
            self.opt.step_part(sel)

    def _output(self):
        """The output layer (a few classes: small), whole, in the caller; returns it."""
        plan, _, masks = self._now
        out = self.net.linears[-1]
        h = plan.xb if not plan.hidden else \
            plan.dropped[-1] if masks[-1] is not None else plan.hidden[-1]
        np.matmul(h, out.W, out=plan.logits)
        np.add(plan.logits, out.b, out=plan.logits)
        return out

    # -- a step ---------------------------------------------------------------------------

    def worth(self, b: int) -> bool:
        """Whether a batch of ``b`` rows is split: its rows go to several members. Smaller
        ones (not two blocks of ``ALIGN`` rows: under 72 rows for 2 members) run undivided:
        three hand-offs per step cost more than splitting their weight gradients gains
        (batch_size=10 on 2 cores: 1.4x slower split), and so do batches of more than
        ``max_rows`` rows. float64 steps run undivided too:
        OpenBLAS's double kernels give blocks of rows other last bits than the whole
        product (measured at widths 100 and 300, Haswell and SkylakeX kernels); float32
        ones give the same bits, and the result may not depend on the member count."""
        if self.net.dtype != np.float32 or not 0 < b <= self.max_rows:
            return False
        plan = self._plan(b)
        return sum(r.stop > r.start for r in plan.rows) > 1

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
        """(mean loss, accuracy) in evaluation mode, as :func:`mlp.train.evaluate`, each
        batch's rows split across the team."""
        total, correct, loss = 0.0, 0, self.loss
        source, self._gather_s = self._source(x), 0.0
        for i in range(0, x.shape[0], batch_size):
            yb = y[i:i + batch_size]
            plan = self._command(len(yb), source, train=False)
            plan.idx[:] = np.arange(i, i + len(yb))
            self.team.run(self._forward_part)
            self._output()
            loss.forward(plan.logits, yb)
            total += loss.mean * len(yb)
            correct += int(np.count_nonzero(plan.logits.argmax(axis=1) == yb))
        return total / x.shape[0], correct / x.shape[0]

    def step(self, x_train: np.ndarray, idx: np.ndarray, y: np.ndarray,
             timing: dict[str, float] | None = None) -> int | None:
        plan = self._command(len(idx), self._source(x_train), train=True)
        clock = time.perf_counter
        t0 = clock()
        np.copyto(plan.idx, idx)
        self._gather_s = 0.0
        # the masks of the whole batch, layer after layer: the undivided step's draws
        for d, m in zip(self.net.drops, plan.masks):
            if m is not None:
                np.copyto(m, d.draw(m.shape, m.dtype))
        self.team.run(self._forward_part)
        out = self._output()
        loss = self.loss
        loss.forward(plan.logits, y)
        if not math.isfinite(loss.mean):
            return None
        correct = int(np.count_nonzero(plan.logits.argmax(axis=1) == y))
        t1 = clock()
        np.copyto(plan.grad_logits, loss.backward())
        if len(plan.gx) > 1:
            np.matmul(plan.grad_logits, out.W.T, out=plan.gx[-1])
        self.team.run(self._backward_part)
        t2 = clock()
        self.opt.begin_step()
        self.team.run(self._update_part)
        t3 = clock()
        if timing is not None:
            timing["data"] += self._gather_s
            timing["forward"] += t1 - t0 - self._gather_s
            timing["backward"] += t2 - t1
            timing["update"] += t3 - t2  # the weight gradients with it: one part
        return correct
