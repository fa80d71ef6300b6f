"""One run on several threads (mlp/team.py, mlp/split.py, the prepared BLAS calls of
mlp/blas.py): the team runs every part in its own process, passes on failures and
ends with its caller, blocks cover their range,
and a step split across 2 or 3 threads gives the bits of the undivided step, for every
kind of layer, loss, optimizer, batch shape and dtype, with checkpoints resumed on another
thread count."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from mlp import checkpoint
from mlp.blas import gemm_tn, gemm_tn_rows, gemv_t, gemv_t_cols
from mlp.config import DataConfig, TrainConfig
from mlp.split import ALIGN, SplitStep
from mlp.team import Team, blocks, competing_pools, shared_empty
from mlp.train import build, train, warn_competing

TIME_KEYS = {"epoch_time_s", "eval_time_s"}


def _cfg(**kw) -> TrainConfig:
    base = dict(hidden_size=64, epochs=2, test_every=1, lr=1e-3,
                data=DataConfig(train_limit=2000, test_limit=500))
    return TrainConfig(**{**base, **kw})


def _numbers(history):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in history]


def _same(a, b) -> None:
    assert a.status == b.status
    assert _numbers(a.history) == _numbers(b.history)
    for p, q in zip(a.model.params, b.model.params, strict=True):
        assert np.array_equal(p, q)


# -- the team ----------------------------------------------------------------------------

def test_team_runs_every_part_in_its_own_process():
    pids, runs = shared_empty((3,), np.int64), shared_empty((3,), np.int64)
    runs[:] = 0

    def part(k):
        pids[k] = os.getpid()
        runs[k] += 1

    with Team(3) as team:
        for i in range(1, 51):  # many hand-offs: none lost, none doubled
            team.run(part)
            assert list(runs) == [i] * 3
        assert pids[0] == os.getpid() and len(set(pids)) == 3
        helpers = list(pids[1:])
    for pid in helpers:  # closed: the helpers have ended (and were reaped)
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


@pytest.mark.parametrize("failing", [0, 1])
def test_a_part_that_fails_is_raised_after_all_parts_ran(failing):
    done = shared_empty((2,), np.int64)
    done[:] = 0

    def part(k):
        if k == failing:
            raise ValueError(f"part {k} failed")
        done[k] += 1

    def fine(k):
        done[k] += 1

    with Team(2) as team:
        team.register(part, fine)
        with pytest.raises(ValueError, match=f"part {failing} failed"):
            team.run(part)
        assert done[1 - failing] == 1 and done[failing] == 0
        team.run(fine)  # the team still works
        assert done[1 - failing] == 2 and done[failing] == 1


def test_a_function_the_team_did_not_know_when_it_forked_is_refused():
    def first(k):
        pass

    def later(k):
        pass

    with Team(2) as team:
        team.run(first)
        with pytest.raises(RuntimeError, match="later.*registered after the team forked"):
            team.run(later)
        team.run(first)


def test_a_helper_that_dies_is_named_and_its_cpu_time_is_counted():
    def spend(k):
        t = time.process_time()
        while time.process_time() - t < 0.05:
            pass

    def die(k):
        if k == 1:
            os._exit(3)

    with Team(2) as team:
        team.register(spend, die)
        team.run(spend)
        assert team.helpers_cpu_s() >= 0.05
        with pytest.raises(RuntimeError, match=r"team member 1 \(process \d+\) ended with exit "
                                               r"code 3"):
            team.run(die)


def test_helpers_end_when_their_caller_is_killed(tmp_path):
    script = (
        "import os, sys, time\n"
        "from mlp.team import Team, shared_empty\n"
        "pid = shared_empty((1,), 'int64')\n"
        "def part(k):\n"
        "    if k: pid[0] = os.getpid()\n"
        "team = Team(2)\n"
        "team.run(part)\n"
        "print(int(pid[0]), flush=True)\n"
        "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    helper = int(proc.stdout.readline())
    os.kill(helper, 0)  # alive while its caller is
    proc.kill()
    proc.wait()
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"helper {helper} outlived its killed caller")


def test_a_closed_team_refuses_work_and_bad_sizes_are_named():
    team = Team(2)
    team.close()
    team.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        team.run(lambda k: None)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=repr(bad)):
            Team(bad)


@pytest.mark.parametrize("n,parts,align", [(100, 2, 16), (784, 3, 16), (10, 2, 16), (0, 2, 1),
                                           (7, 4, 1), (1000, 4, 16)])
def test_blocks_cover_the_range_in_order_on_aligned_boundaries(n, parts, align):
    bs = blocks(n, parts, align)
    assert len(bs) == parts and bs[0].start == 0 and bs[-1].stop == n
    for a, b in zip(bs[:-1], bs[1:]):
        assert a.stop == b.start and a.stop % align == 0
    assert sum(b.stop - b.start for b in bs) == n


# -- prepared BLAS calls -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("b,m,n", [(100, 784, 784), (100, 784, 10), (37, 300, 33)])
def test_blocks_of_prepared_products_give_the_whole_products_bits(dtype, b, m, n, one_thread):
    """Against the whole product at one thread, as a split step's undivided twin runs (the
    library's own threads split a product elsewhere)."""
    rng = np.random.default_rng(0)
    x, g = rng.random((b, m)).astype(dtype), rng.random((b, n)).astype(dtype)
    c, bias = rng.random((m, n)).astype(dtype), rng.random(n).astype(dtype)
    ones = np.ones(b, dtype)
    whole, whole_b = c.copy(), bias.copy()
    gemm_tn(x, g, whole, 0.9)
    gemv_t(g, ones, whole_b, 0.5)
    for parts in (1, 2, 3):
        out, out_b = c.copy(), bias.copy()
        for s in blocks(m, parts, ALIGN):
            gemm_tn_rows(x, g, out, 0.9, s)()
        for s in blocks(n, parts, ALIGN):
            gemv_t_cols(g, ones, out_b, 0.5, s)()
        assert np.array_equal(out, whole) and np.array_equal(out_b, whole_b)


def test_prepared_products_refuse_operands_they_would_copy():
    x = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        gemm_tn_rows(x[:, ::2], np.zeros((4, 3), np.float32), np.zeros((3, 3), np.float32),
                     0.0, slice(0, 3))
    with pytest.raises(ValueError, match="do not fit"):
        gemm_tn_rows(x, np.zeros((5, 3), np.float32), np.zeros((6, 3), np.float32), 0.0,
                     slice(0, 6))


# -- a split step: the bits of the undivided one -----------------------------------------

@pytest.mark.parametrize("overrides", [
    {},
    {"depth": 2, "dropout": 0.2, "activation": "gelu"},
    {"depth": 2, "dropout": 0.2, "dropout_mask": "fixed"},  # the study's mask, rows split
    {"optimizer": "adam", "activation": "swish", "weight_decay": 1e-3, "loss": "focal"},
    {"batch_size": 37, "activation": "selu", "loss": "hinge"},  # a partial last batch of 2
    {"batch_size": 200, "activation": "sigmoid", "loss": "mse", "momentum": 0.0},
    {"batch_size": 10},  # too small to split: undivided on every thread count
    {"dtype": "float64", "depth": 2, "hidden_size": 300},  # float64: undivided
    {"hidden_size": 784, "depth": 0, "batch_size": 64},  # no hidden layer
])
def test_split_steps_give_the_undivided_bits(mnist_small, overrides):
    one = train(_cfg(**overrides), data=mnist_small, threads=1)
    for n in (2, 3):
        _same(one, train(_cfg(**overrides), data=mnist_small, threads=n))


def test_a_checkpoint_resumes_on_another_thread_count_bit_for_bit(mnist_small, tmp_path):
    cfg = _cfg(epochs=3, dropout=0.2, optimizer="adam")
    whole = train(cfg, data=mnist_small, threads=1)
    states = []
    train(cfg, data=mnist_small, threads=2, checkpoint_every=1, on_checkpoint=states.append)
    state = checkpoint.load(checkpoint.save(tmp_path / "ck.npz", states[0]))
    _same(whole, train(cfg, data=mnist_small, threads=3, resume=state))


def test_small_batches_are_not_split_large_ones_are(mnist_small):
    def worth(b, **kw):
        net, loss, opt = build(_cfg(**kw), mnist_small.n_features, mnist_small.n_classes)
        with Team(2) as team:
            return SplitStep(net, loss, opt, team).worth(b)

    assert worth(100) and not worth(10)
    assert worth(2 * ALIGN, hidden_size=784) and not worth(ALIGN, hidden_size=784)
    assert not worth(2 * ALIGN, hidden_size=16)  # blocks of 48 x 784 x 16: OpenBLAS's small
    assert not worth(100, dtype="float64")


def test_bad_thread_counts_are_named(mnist_small):
    for bad in (0, -2, 1.5, "2"):
        with pytest.raises(ValueError, match=f"threads={bad!r}"):
            train(_cfg(epochs=1), data=mnist_small, threads=bad)


# -- competing BLAS pools ----------------------------------------------------------------

def test_competing_pools_are_named_once_and_a_run_has_none():
    with threadpool_limits(2, user_api="blas"):
        info = threadpool_info()
    blas = [i for i in info if i["user_api"] == "blas"]
    assert len(blas) >= 2, "NumPy and SciPy each bring their own BLAS here"
    busy = competing_pools(info)
    assert len(busy) == len(blas) and all("(2 threads)" in b for b in busy)
    with pytest.warns(RuntimeWarning, match="compete") as w:
        msg = warn_competing(info, 2)
    for i in blas:
        assert i["filepath"].rsplit("/", 1)[-1] in str(w[0].message) == msg
    assert warn_competing(info, 2) is None  # once
    with threadpool_limits(1, user_api="blas"):
        assert competing_pools(threadpool_info()) == []


def test_training_pins_blas_to_one_thread_and_warns_nothing(mnist_small):
    seen = []

    def look(record):
        seen.append(sorted({i["num_threads"] for i in threadpool_info()
                            if i["user_api"] == "blas"}))

    with threadpool_limits(2, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("error")
        train(_cfg(epochs=1), data=mnist_small, threads=2, callback=look)
        after = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
    assert seen == [[1]] and after == [2]  # restored after the run
