"""The training loop: ``train(cfg) -> Result``. Nothing here knows about Hydra or MLflow;
callers observe progress through a callback."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from . import checkpoint
from .config import TrainConfig
from .data import Dataset, load
from .network import MLP
from .optim import Optimizer
from .split import SplitStep
from .team import Team, busy_pools, can_fork, competing_pools, cpu_s

__all__ = ["Result", "train", "evaluate", "load_data", "build", "cores", "warn_competing",
           "memory_bytes"]

EVAL_BATCH = 1000  # evaluation batch size: large batches, bounded memory

Callback = Callable[[dict[str, Any]], None]


@dataclass
class Result:
    """What a training run produced.

    Attributes
    ----------
    status : {"finished", "diverged", "paused"}
    history : list of dict
        One dict per completed epoch: ``epoch, train_loss, train_acc, epoch_time_s`` and,
        on evaluation epochs, ``test_loss, test_acc``.
    metrics : dict
        Summary: final and best metrics, ``train_time_s``, ``cpu_time_s`` (the CPU time the
        process used meanwhile, all its threads), ``samples_per_s``, ``epochs_completed``
        and, if diverged, ``diverged_epoch``.
    timing : dict
        Seconds spent in ``data`` (batch gathering), ``forward`` (network, loss and the
        train metrics), ``backward`` (loss gradient and network), ``update`` (optimizer) and
        ``eval``.
    model : MLP
    """

    status: str
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    timing: dict[str, float]
    model: MLP
    config: TrainConfig = field(repr=False, default=None)


def memory_bytes(cfg: TrainConfig, n_features: int, n_classes: int) -> int:
    """About the memory a training run of ``cfg`` allocates (data set excluded): the
    parameters with their gradients and the optimizer's state, twice over at a checkpoint
    (its copies), and per batch row (training's batch, evaluation's ``EVAL_BATCH``) some
    eight arrays of every layer's width (outputs, gradients, masks, activation caches)."""
    from . import optim

    sizes = [n_features] + [cfg.hidden_size] * cfg.depth + [n_classes]
    item = np.dtype(cfg.dtype).itemsize
    n_params = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    state = optim.optimizer_class(cfg.optimizer).state_per_param
    rows = cfg.batch_size + EVAL_BATCH
    return item * (n_params * (2 + 2 * state + 1) + 8 * rows * sum(sizes))


def load_data(cfg: TrainConfig) -> Dataset:
    d = cfg.data
    return load(d.name, d.root, normalize=d.normalize, train_limit=d.train_limit,
                test_limit=d.test_limit, val_size=d.val_size)


def build(cfg: TrainConfig, n_features: int, n_classes: int) -> tuple[MLP, Any, Optimizer]:
    """The network, loss and optimizer a config describes."""
    sizes = [n_features] + [cfg.hidden_size] * cfg.depth + [n_classes]
    net = MLP(sizes, activation=cfg.activation, dropout=cfg.dropout, init=cfg.init,
              seed=cfg.seed, dtype=cfg.dtype, dropout_mask=cfg.dropout_mask)
    return net, cfg.make_loss(), cfg.make_optimizer(net.params)


def evaluate(net: MLP, loss, x: np.ndarray, y: np.ndarray,
             batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """(mean loss, accuracy) of ``net`` in evaluation mode over (x, y), in large batches."""
    total, correct = 0.0, 0
    for i in range(0, x.shape[0], batch_size):
        xb = np.asarray(x[i:i + batch_size], dtype=net.dtype)
        yb = y[i:i + batch_size]
        logits = net.forward(xb, train=False)
        loss.forward(logits, yb)
        total += loss.mean * len(yb)
        correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
    return total / x.shape[0], correct / x.shape[0]


def train(cfg: TrainConfig | Mapping[str, Any], callback: Callback | None = None,
          data: Dataset | None = None, *, checkpoint_every: int = 0,
          on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
          resume: dict[str, Any] | None = None, threads: int | None = None,
          log_every_steps: int = 0, on_steps: Callback | None = None,
          stop_at: int | None = None, eval_train: bool = False) -> Result:
    """Train an MLP as ``cfg`` says; return a :class:`Result`.

    - Each epoch shuffles the training set from the seed and runs mini-batches of
      ``batch_size`` (the last, partial batch included).
    - Train loss/accuracy: per-example means over the epoch, measured on each mini-batch's
      forward pass before its update (as the study did).
    - Test loss/accuracy every ``test_every`` epochs and after the last epoch.
    - A non-finite loss stops the run with status ``"diverged"``; completed epochs are kept.
    - ``callback(record)`` is called after each completed epoch with its history record.

    - Every ``checkpoint_every`` epochs (0: never), ``on_checkpoint(state)`` receives the
      full training state (see :mod:`mlp.checkpoint`); ``resume=state`` continues from it.
    - ``stop_at`` (< ``cfg.epochs``): pause after that epoch, evaluated, with status
      ``"paused"`` and its state given to ``on_checkpoint``; resumed from that state, the
      run goes on as if it had never stopped (successive halving's rungs).

    - Every ``log_every_steps`` training steps (0: never; the study's ``dispfreq`` was 50),
      ``on_steps(record)`` receives that step's batch metrics: ``iteration`` (counted from
      the run's first step, across epochs), ``batch_train_loss``, ``batch_train_acc``
      (measured on the batch's forward pass before its update).
    - ``eval_train``: on evaluation epochs, also the whole training set in evaluation mode
      (``train_eval_loss``, ``train_eval_acc``): what the model does on the examples it
      learned from, without the mid-epoch updates and the training-mode dropout that the
      running ``train_*`` means include.
    - ``threads``: the threads the run uses, by default the cores it may run on
      (:func:`cores`). Steps of batches large enough are split across them
      (:mod:`mlp.split`: the caller and ``threads - 1`` helper processes forked at the
      first step, :mod:`mlp.team`), with every BLAS library at one thread; a warning, once,
      if a BLAS pool the limit cannot reach would compete with them. Where a process
      cannot fork (Windows), a warning and one thread.

    Same config and seed give identical results, bit for bit, whatever ``threads``, also
    across a checkpoint and resume (OpenBLAS, measured on its Haswell and SkylakeX kernels;
    ``tests/test_split.py``).
    """
    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.from_dict(cfg)
    cfg.validate()
    if threads is None:
        threads = cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r} must be an integer >= 1 or None (the cores)")
    if isinstance(log_every_steps, bool) or not isinstance(log_every_steps, int) \
            or log_every_steps < 0:
        raise ValueError(f"log_every_steps={log_every_steps!r} must be an integer >= 0")
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int)
                                or not 1 <= stop_at <= cfg.epochs):
        raise ValueError(f"stop_at={stop_at!r} must be an epoch from 1 to epochs={cfg.epochs}")
    with _threads(threads) as team:
        return _train(cfg, callback, data, checkpoint_every, on_checkpoint, resume, team,
                      log_every_steps, on_steps, stop_at, bool(eval_train))


def cores() -> int:
    """The cores this process may run on (its CPU affinity: a SLURM job's, a container's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_warned: set[tuple[str, ...]] = set()


def warn_competing(info: list[dict], threads: int) -> str | None:
    """Warn, once per process and set of libraries, when BLAS thread pools would compete
    during a run of ``threads`` threads: several pools with several threads each, or one
    next to a split step's threads (a pool the thread limit could not reach: a user's
    MKL, a conda build). ``info``: threadpoolctl's, read with the run's limit in force."""
    busy = competing_pools(info) or (busy_pools(info) if threads > 1 else [])
    if not busy or tuple(busy) in _warned:
        return None
    _warned.add(tuple(busy))
    msg = (f"BLAS thread pools compete for the cores: {', '.join(busy)}"
           f"{f' beside the run’s {threads} threads' if threads > 1 else ''}; each pool's "
           f"threads spin while another works (a 2-core run was 4x slower than one thread). "
           f"Limit them (OPENBLAS_NUM_THREADS=1, MKL_NUM_THREADS=1, OMP_NUM_THREADS=1)")
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return msg


@contextlib.contextmanager
def _threads(threads: int):
    """BLAS at one thread and a team of ``threads`` while training."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        warn_competing(threadpool_info(), threads)
        if threads > 1 and not can_fork:
            warnings.warn(f"threads={threads}: a run splits its steps across forked "
                          f"processes, which {sys.platform} cannot fork; one thread",
                          RuntimeWarning, stacklevel=4)
            threads = 1
        if threads == 1:
            yield None
            return
        with Team(threads) as team:
            yield team


def _train(cfg: TrainConfig, callback, data, checkpoint_every, on_checkpoint, resume,
           team: Team | None, log_every_steps: int = 0, on_steps=None,
           stop_at: int | None = None, eval_train: bool = False) -> Result:
    t_start, cpu_start = time.perf_counter(), cpu_s()  # the team's helpers included
    ds = data if data is not None else load_data(cfg)
    net, loss, opt = build(cfg, ds.n_features, ds.n_classes)
    # the arrays a split step reads: those its helpers are forked with at its first step
    inputs = [np.asarray(a) for a in (ds.x_train, ds.x_test, ds.x_val) if a is not None]
    split = SplitStep(net, loss, opt, team, inputs, max(cfg.batch_size, EVAL_BATCH)) \
        if team is not None else None
    shuffle_rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(2,)))

    # plain ndarray views of the (memory-mapped) arrays: no np.memmap subclass overhead per batch
    x_train, y_train = np.asarray(ds.x_train), np.asarray(ds.y_train)
    n, bs = x_train.shape[0], cfg.batch_size
    steps_per_epoch = -(-n // bs)
    timing = dict.fromkeys(("data", "forward", "backward", "update", "eval"), 0.0)
    history: list[dict[str, Any]] = []
    status, diverged_epoch = "finished", None
    batches: dict[int, np.ndarray] = {}  # batch buffers by size (the last may be partial)
    clock = time.perf_counter
    first, before_s, before_cpu_s = 1, 0.0, 0.0
    if resume is not None:
        first, before_s, before_cpu_s = _resume(resume, cfg, net, opt, shuffle_rng, history,
                                                timing)

    def state(epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "params": net.state_dict(), "optimizer": opt.state_dict(),
                "shuffle_rng": shuffle_rng.bit_generator.state,
                "dropout_rng": net.dropout_rng.bit_generator.state,
                "history": list(history), "timing": dict(timing), "config": cfg.to_dict(),
                "elapsed_s": before_s + clock() - t_start,
                "cpu_s": before_cpu_s + cpu_s() - cpu_start}

    with np.errstate(all="ignore"):  # overflow is detected as divergence, not warned about
        last = cfg.epochs if stop_at is None else stop_at
        if first > last and last < cfg.epochs:  # resumed where it was to pause: paused there
            status = "paused"
        for epoch in range(first, last + 1):
            t_epoch = clock()
            perm = shuffle_rng.permutation(n)
            loss_sum, correct = 0.0, 0
            for i_batch, start in enumerate(range(0, n, bs)):
                idx = perm[start:start + bs]  # contiguous slice of the epoch's permutation
                if split is not None and split.worth(len(idx)):  # the same step, split
                    got = split.step(x_train, idx, y_train[idx], timing)
                else:
                    got = _step(net, loss, opt, x_train, y_train, idx, batches, timing)
                if got is None:  # the loss is not finite: nothing was updated
                    status, diverged_epoch = "diverged", epoch
                    break
                loss_sum += loss.mean * len(idx)
                correct += got
                if log_every_steps and on_steps is not None:
                    iteration = (epoch - 1) * steps_per_epoch + i_batch + 1
                    if iteration % log_every_steps == 0:  # the study's dispfreq
                        on_steps({"iteration": iteration, "batch_train_loss": loss.mean,
                                  "batch_train_acc": got / len(idx)})
            if status == "diverged":
                break
            record: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": loss_sum / n,
                "train_acc": correct / n,
                "epoch_time_s": clock() - t_epoch,
            }
            if epoch % cfg.test_every == 0 or epoch == last:
                record.update(_evaluations(net, loss, ds, split, eval_train))
                timing["eval"] += record["eval_time_s"]
                if not math.isfinite(record["test_loss"]):  # the epoch's last updates blew up
                    status, diverged_epoch = "diverged", epoch
                    del record["test_loss"], record["test_acc"]
            history.append(record)
            if callback is not None:
                callback(record)
            if status == "diverged":
                break
            if epoch == last < cfg.epochs:  # paused: the state to resume from
                status = "paused"
                if on_checkpoint is not None:
                    on_checkpoint(state(epoch))
            elif on_checkpoint is not None and checkpoint_every \
                    and epoch % checkpoint_every == 0 and epoch < cfg.epochs:
                on_checkpoint(state(epoch))

    total = before_s + clock() - t_start  # a resumed run counts its time before the resume
    metrics = _summary(history, total, n)
    # the CPU time of the process's threads over the same span: against train_time_s it
    # tells how much of a core the run got (other processes on the machine take the rest)
    metrics["cpu_time_s"] = before_cpu_s + cpu_s() - cpu_start
    metrics["status"] = status
    if diverged_epoch is not None:
        metrics["diverged_epoch"] = diverged_epoch
    return Result(status, history, metrics, timing, net, cfg)


def _resume(resume: dict[str, Any], cfg: TrainConfig, net: MLP, opt: Optimizer,
            shuffle_rng: np.random.Generator, history: list[dict[str, Any]],
            timing: dict[str, float]) -> tuple[int, float, float]:
    """Restore a checkpoint's state (its config checked against ``cfg``) into the run's
    objects and lists; (the first epoch to train, the training seconds and the CPU seconds
    spent before the checkpoint, in other processes)."""
    checkpoint.check_matches(resume, cfg.to_dict())
    net.load_state_dict(resume["params"])
    opt.load_state_dict(resume["optimizer"])
    shuffle_rng.bit_generator.state = resume["shuffle_rng"]
    net.dropout_rng.bit_generator.state = resume["dropout_rng"]
    history[:] = [dict(r) for r in resume["history"]]
    timing.update(resume["timing"])
    # checkpoints written before "elapsed_s" existed: the epochs' and evaluations' times
    before_s = resume.get("elapsed_s", sum(r["epoch_time_s"] + r.get("eval_time_s", 0.0)
                                           for r in history))
    return resume["epoch"] + 1, before_s, resume.get("cpu_s", before_s)


def _step(net: MLP, loss, opt: Optimizer, x_train: np.ndarray, y_train: np.ndarray,
          idx: np.ndarray, batches: dict[int, np.ndarray],
          timing: dict[str, float]) -> int | None:
    """One undivided training step on the rows ``idx`` of ``x_train`` and ``y_train``: the
    number of correct predictions, or None if the loss is not finite (nothing updated).
    ``batches``: the batch buffers by size (the last batch may be partial)."""
    clock = time.perf_counter
    t0 = clock()
    xb = batches.get(len(idx))
    if xb is None:
        xb = batches[len(idx)] = np.empty((len(idx), x_train.shape[1]), net.dtype)
    if x_train.dtype == net.dtype:
        # mode="clip" (the indices are a permutation, always valid): with the default
        # "raise", take() buffers ``out`` and copies it a second time.
        x_train.take(idx, axis=0, out=xb, mode="clip")
    else:
        xb[...] = x_train[idx]
    yb = y_train[idx]
    t1 = clock()
    logits = net.forward(xb, train=True)
    loss.forward(logits, yb)
    if not math.isfinite(loss.mean):
        return None
    got = int(np.count_nonzero(logits.argmax(axis=1) == yb))
    t2 = clock()
    # the gradients go straight to the optimizer's sinks (SGD: into the velocity)
    net.backward(loss.backward(), sinks=opt.sinks)
    t3 = clock()
    opt.step()
    t4 = clock()
    timing["data"] += t1 - t0
    timing["forward"] += t2 - t1
    timing["backward"] += t3 - t2
    timing["update"] += t4 - t3
    return got


def _evaluations(net: MLP, loss, ds: Dataset, split: SplitStep | None,
                 eval_train: bool) -> dict[str, float]:
    """An evaluation epoch's figures: the test set's loss and accuracy, the validation
    set's if held out (what a search ranks by), the training set's with ``eval_train``,
    and ``eval_time_s``."""
    t0 = time.perf_counter()
    out: dict[str, float] = {}
    sets = [("test", ds.x_test, ds.y_test)]
    if ds.x_val is not None:
        sets.append(("val", ds.x_val, ds.y_val))
    if eval_train:
        sets.append(("train_eval", ds.x_train, ds.y_train))
    for name, x, y in sets:
        x = np.asarray(x)  # a plain view of a memory-mapped array: the split's input
        out[f"{name}_loss"], out[f"{name}_acc"] = \
            evaluate(net, loss, x, y) if split is None else split.evaluate(x, y, EVAL_BATCH)
    out["eval_time_s"] = time.perf_counter() - t0
    return out


def _summary(history: list[dict[str, Any]], total_s: float, n_train: int) -> dict[str, Any]:
    m: dict[str, Any] = {"epochs_completed": len(history), "train_time_s": total_s}
    train_s = sum(r["epoch_time_s"] for r in history)
    m["samples_per_s"] = n_train * len(history) / train_s if train_s > 0 else 0.0
    if history:
        last = history[-1]
        m["final_train_loss"], m["final_train_acc"] = last["train_loss"], last["train_acc"]
    tested = [r for r in history if "test_acc" in r]
    if tested:
        m["final_test_loss"] = tested[-1]["test_loss"]
        m["final_test_acc"] = tested[-1]["test_acc"]
        m["best_test_acc"] = max(r["test_acc"] for r in tested)
    validated = [r for r in history if "val_acc" in r]
    if validated:
        m["final_val_loss"] = validated[-1]["val_loss"]
        m["final_val_acc"] = validated[-1]["val_acc"]
    return m
