"""The sweep estimate: work counted by hand, the schedule on a hand example, the ratio learned
from a small runs frame, the machine-readable line, the rate cache (no timing asserts)."""

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from mlp import TrainConfig
from mlp.data import data_sizes
from mlp_sweeps.plan.cost import load as machine_load, rates as kernel_rates, ratios, schedule, work

F32 = "float32"
LINE = re.compile(r"^estimate: \d+(\.\d)? s of runs, \d+(\.\d)? s wall on \d+ workers$")


def tiny(**kw) -> TrainConfig:
    """784 -> 4 -> 10 on 7 training and 5 test examples, batches of 3, 2 epochs."""
    base = dict(hidden_size=4, batch_size=3, epochs=2, test_every=5,
                data={"train_limit": 7, "test_limit": 5})
    return TrainConfig(**{**base, **kw})


def test_work_matches_a_hand_count():
    w = work.work(tiny())
    # 7 examples in batches of 3: two full batches (3 rows) and one of 1 row per epoch, x2 epochs
    assert (w.steps, w.evaluations, w.sizes) == (6, 1, (784, 4, 10))
    hidden = ("relu", False)
    expected = {
        # per full batch: x W per layer, x^T gu per layer, gu W^T for the second layer only
        work.Gemm(3, 784, 4, "nn", F32): 4, work.Gemm(3, 4, 10, "nn", F32): 4,
        work.Gemm(784, 3, 4, "tn", F32): 4, work.Gemm(4, 3, 10, "tn", F32): 4,
        work.Gemm(3, 10, 4, "nt", F32): 4,
        work.Gemm(1, 784, 4, "nn", F32): 2, work.Gemm(1, 4, 10, "nn", F32): 2,
        work.Gemm(784, 1, 4, "tn", F32): 2, work.Gemm(4, 1, 10, "tn", F32): 2,
        work.Gemm(1, 10, 4, "nt", F32): 2,
        work.Hidden(*hidden, 3, 4, True, F32): 4, work.Hidden(*hidden, 1, 4, True, F32): 2,
        work.Update((784, 4, 10), True, True, F32): 6,
        work.Step(1, "relu", "cross_entropy", False, F32): 6,
        # one evaluation (after the last epoch): the forward pass over 5 test examples
        work.Gemm(5, 784, 4, "nn", F32): 1, work.Gemm(5, 4, 10, "nn", F32): 1,
        work.Hidden(*hidden, 5, 4, False, F32): 1,
    }
    assert w.counts == expected
    # flops: full step 2*3*(784*4 + 4*10) twice (forward, dW) + 2*3*10*4 (dx) = 38352;
    # 1-row step 2*1*3176*2 + 80 = 12784; evaluation 2*5*3176 = 31760
    assert w.flops == 4 * 38352 + 2 * 12784 + 31760
    # SGD: 784*4+4 + 4*10+10 = 3190 parameters, 15 passes of 4 bytes, 6 steps
    assert w.update_bytes == 3190 * 15 * 4 * 6


def test_work_follows_depth_dropout_and_evaluations():
    w = work.work(tiny(depth=2, dropout=0.2, epochs=12, test_every=5, dtype="float64"))
    assert w.sizes == (784, 4, 4, 10) and w.evaluations == 3  # epochs 5, 10 and 12
    nt = {k: c for k, c in w.counts.items() if isinstance(k, work.Gemm) and k.layout == "nt"}
    assert set(nt) == {work.Gemm(b, o, a, "nt", "float64") for b in (3, 1)
                       for a, o in ((4, 4), (4, 10))}  # no dx for the first layer
    train_hidden = {k: c for k, c in w.counts.items() if isinstance(k, work.Hidden) and k.train}
    assert train_hidden == {work.Hidden("relu", True, 3, 4, True, "float64"): 2 * 2 * 12,
                            work.Hidden("relu", True, 1, 4, True, "float64"): 2 * 12}
    assert work.evaluations(10, 5) == 2 and work.evaluations(3, 5) == 1 and work.evaluations(1, 1) == 1
    assert data_sizes(TrainConfig().data) == (60_000, 10_000, 784, 10)


def test_large_batches_are_timed_at_fewer_rows_and_scaled():
    big = work.Gemm(1000, 784, 2048, "nn", F32)
    assert kernel_rates.timed_as(big) == (work.Gemm(256, 784, 2048, "nn", F32), 1000 / 256)
    assert kernel_rates.timed_as(work.Gemm(784, 500, 10, "tn", F32)) == (work.Gemm(784, 256, 10, "tn", F32),
                                                           500 / 256)  # the inner dimension
    hid = work.Hidden("gelu", False, 1000, 16, False, F32)
    assert kernel_rates.timed_as(hid) == (hid._replace(batch=256), 1000 / 256)
    small = work.Gemm(100, 784, 784, "nt", F32)
    assert kernel_rates.timed_as(small) == (small, 1.0)


def test_schedule_longest_first_on_a_hand_example():
    # 2 workers: 5 -> w0 (ends 5), 4 -> w1 (4), 3 -> w1 (7), 3 -> w0 (8), 2 -> w1 (9)
    assert schedule.schedule([5, 4, 3, 3, 2], 2) == (9, [0, 1, 1, 0, 1])
    assert schedule.schedule([5, 4, 3, 3, 2], 1)[0] == 17
    assert schedule.schedule([5, 4], 8)[0] == 5
    assert schedule.schedule([], 2)[0] == 0


def test_the_line_has_the_exact_format():
    assert schedule.estimate_line(123.4, 61.04, 2) == "estimate: 123 s of runs, 61 s wall on 2 workers"
    assert schedule.estimate_line(3.25, 4.0, 1) == "estimate: 3.2 s of runs, 4.0 s wall on 1 workers"
    assert LINE.match(schedule.estimate_line(7200.0, 3700.5, 16))


def seeded_rates(tmp_path, configs, seconds=1e-6) -> kernel_rates.Rates:
    """A rate cache that already holds every kernel of ``configs`` at ``seconds``."""
    kernels = {work.key(kernel_rates.timed_as(k)[0]) for c in configs for k in work.work(c).counts}
    (tmp_path / "rates.json").write_text(json.dumps({kernel_rates.machine_key(1): dict.fromkeys(kernels,
                                                                                     seconds)}))
    return kernel_rates.Rates(1, tmp_path)


def runs_frame(rows) -> pd.DataFrame:
    """A load_runs-like frame: (config_hash, TrainConfig, time_s, status) per run."""
    out = []
    for h, c, t, status in rows:
        out.append({"config_hash": h, "status": status, "time_s": t, "epochs_done": c.epochs,
                    "activation": c.activation, "loss": c.loss, "depth": c.depth,
                    "hidden_size": c.hidden_size, "dropout": c.dropout, "momentum": c.momentum,
                    "weight_decay": c.weight_decay, "batch_size": c.batch_size,
                    "epochs": c.epochs, "test_every": c.test_every, "dtype": c.dtype,
                    "data": c.data.name, "train_limit": float(c.data.train_limit),
                    "test_limit": float(c.data.test_limit)})
    return pd.DataFrame(out)


def test_ratio_is_learned_per_configuration_then_shape_then_machine(tmp_path):
    a, same_shape, other = tiny(), tiny(activation="gelu"), tiny(hidden_size=8)
    rates = seeded_rates(tmp_path, [a, same_shape, other])
    fa = rates.floor(work.work(a))
    runs = runs_frame([("a", a, 2.0 * fa, "finished"), ("a", a, 2.2 * fa, "finished"),
                       ("a", a, 50 * fa, "failed"),  # not a measure of anything
                       ("g", same_shape, 3.0 * rates.floor(work.work(same_shape)), "finished")])
    past = ratios.past_ratios(runs, rates)
    assert rates.measured == []  # everything came from the cache
    assert sorted(past["ratio"].round(6)) == [2.0, 2.2, 3.0]

    own = ratios.ratio("a", a, past)
    assert (own.level, own.n, own.value) == ("config", 2, pytest.approx(2.1))
    assert own.uncertainty == ratios.MIN_UNCERTAINTY["config"]  # spread 0.1/2.1 is below it
    assert own.basis == "its own 2 past runs"
    shape = ratios.ratio("new", tiny(activation="swish"), past)  # 784-4-10, batch 3: 3 runs
    assert (shape.level, shape.n, shape.value) == ("shape", 3, pytest.approx(2.2))
    assert shape.uncertainty == pytest.approx(0.8 / 2.2)  # the largest deviation measured
    machine = ratios.ratio("new", tiny(hidden_size=8), past)
    assert (machine.level, machine.value) == ("machine", pytest.approx(2.2))
    # a run of a shape no job has counts only once its kernels are timed: none measured here
    unseen = runs_frame([("u", tiny(hidden_size=16), 1.0, "finished")])
    assert ratios.past_ratios(unseen, rates, shapes={ratios.shape(a)}) is None and rates.measured == []
    none = ratios.ratio("a", a, None)
    assert (none.level, none.value, none.uncertainty) == ("default", ratios.DEFAULT_RATIO, 0.40)
    assert none.basis == "no past runs on this machine"


def test_for_jobs_prints_the_table_and_the_line(tmp_path):
    configs = [tiny(), tiny(activation="gelu"), tiny(hidden_size=8)]
    rates = seeded_rates(tmp_path, configs, seconds=1e-3)
    runs = runs_frame([("h0", configs[0], 4 * rates.floor(work.work(configs[0])), "finished")])
    est = schedule.for_jobs(configs, 2, runs, names=["base", "gelu", "wide"], hashes=["h0", "h1", "h2"],
                     threads=1, load=machine_load.Load(share=0.5, others=2.0), cache_dir=tmp_path)
    assert est.measured == 0
    lines = est.lines()
    assert LINE.match(lines[-1]) and lines[-1] == schedule.estimate_line(est.total_s, est.wall_s, 2)
    assert "base" in lines[0] and "its own 1 past run" in lines[0]
    by = {j.name: j for j in est.jobs}
    # busy: 2 others (saturated: 2 cores / 0.5 share - 1 = 3 competing) + 2 threads of ours
    assert est.slowdown == pytest.approx((3 + 2) / 2)
    # every ratio (learned at an idle machine's pace) is stretched by the load now
    assert by["base"].ratio.value == pytest.approx(4)  # learned
    assert by["gelu"].ratio.level == "shape"
    assert by["wide"].ratio.level == "machine"
    assert {j.load for j in est.jobs} == {est.slowdown}
    assert est.total_s == pytest.approx(sum(j.floor_s * j.ratio.value * est.slowdown
                                            for j in est.jobs))
    makespan, _ = schedule.schedule([j.job_s for j in est.jobs], 2)
    assert est.wall_s == pytest.approx(makespan + schedule.SWEEP_OVERHEAD_S * est.slowdown)
    assert [j.job_s for j in est.jobs] == sorted((j.job_s for j in est.jobs), reverse=True)


def test_default_ratio_takes_the_load_now():
    est_idle = machine_load.Load(share=1.0, others=0.0)
    assert est_idle.slowdown(2, cores=2) == 1.0
    assert machine_load.Load(share=1.0, others=1.0).slowdown(2, cores=2) == 1.5
    assert machine_load.Load(share=0.25, others=1.9).slowdown(2, cores=2) == pytest.approx(4.5)
    # a load average above what the probe saw wins (other processes' bursts)
    assert machine_load.Load(share=0.25, others=1.9, loadavg=12.0).slowdown(2, cores=2) == 7.0


def test_a_past_run_counts_at_the_share_of_its_cores_it_got(tmp_path):
    a = tiny()
    rates = seeded_rates(tmp_path, [a])
    fa = rates.floor(work.work(a))
    runs = runs_frame([("a", a, 4.0 * fa, "finished"), ("b", a, 4.0 * fa, "finished"),
                       ("c", a, 4.0 * fa, "finished"), ("d", a, 4.0 * fa, "finished")])
    # a: half a core (CPU 2 of 4 s); b: two threads, 6 CPU s of 8 possible; c: a core to
    # itself; d: recorded no CPU time (an older run): counted as it is
    runs["cpu_s"] = [2.0 * fa, 6.0 * fa, 4.0 * fa, np.nan]
    runs["threads"] = [1, 2, 1, np.nan]
    past = ratios.past_ratios(runs, rates)
    assert list(past["ratio"].round(6)) == [2.0, 3.0, 4.0, 4.0]
    assert ratios.cpu_share({"cpu_s": 5.0, "time_s": 4.0, "threads": 1}) == 1.0  # at most 1


def test_weighted_fair_share_of_the_cores():
    niced = machine_load.nice_weight(5)
    assert niced == pytest.approx(1 / 1.25 ** 5) and machine_load.nice_weight(0) == 1.0
    # two of ours beside two busy threads at nice 5 on 2 cores: each core shared 1 : 0.33
    two_niced = machine_load.Load(1.0, 2.0, runnable=((1.0, niced), (1.0, niced)))
    assert two_niced.slowdown(2, cores=2) == pytest.approx(1 + niced, rel=1e-6)
    assert two_niced.competing() == 2.0
    # the same threads at nice 0: half a core each
    assert machine_load.Load(1.0, 2.0, runnable=((1.0, 1.0), (1.0, 1.0))).slowdown(2, 2) == \
        pytest.approx(2.0, rel=1e-6)
    # one busy thread, 3 threads on 2 cores: 2/3 of a core each
    assert machine_load.Load(1.0, 1.0, runnable=((1.0, 1.0),)).slowdown(2, 2) == \
        pytest.approx(1.5, rel=1e-6)
    # room for everyone; a thread runnable a tenth of the time takes no more than that
    assert machine_load.Load(1.0, 0.0, runnable=((1.0, 1.0),)).slowdown(1, 2) == 1.0
    # three threads a tenth of the time and one busy: 0.3 + 3 s = 2 cores
    assert machine_load.fair_share([(0.1, 1.0)] * 3 + [(1.0, 1.0)], 2, 2) == pytest.approx(1.7 / 3, rel=1e-6)
    assert machine_load.Load(1.0, 0.0, runnable=()).slowdown(4, 2) == pytest.approx(2.0)  # only ours


def test_another_session_shares_the_cores_as_a_group(tmp_path):
    niced = machine_load.nice_weight(5)
    # autogroups: two busy threads of another session, niced or not, take the half of the
    # cores their group is due; ours share the other half
    other = ((1.0, niced, "/autogroup-9"), (1.0, niced, "/autogroup-9"))
    assert machine_load.Load(1.0, 2.0, runnable=other).slowdown(2, 2) == pytest.approx(2.0, rel=1e-6)
    # ... unless the group itself is niced (autogroup nice 5): then as threads at nice 5
    assert machine_load.Load(1.0, 2.0, runnable=other, group_weights=(("/autogroup-9", niced),)) \
        .slowdown(2, 2) == pytest.approx(1 + niced, rel=1e-6)
    # a group asking for less than its due leaves the rest to ours
    light = ((0.5, 1.0, "/autogroup-9"),)
    assert machine_load.Load(1.0, 0.5, runnable=light).slowdown(2, 2) == pytest.approx(2 / 1.5, rel=1e-6)
    # the root autogroup's threads are peers of the groups: from the root group (a CI
    # runner's), our two threads and the other session's group share 2 cores three ways
    assert machine_load.Load(1.0, 2.0, runnable=other, root_group=True).slowdown(2, 2) == \
        pytest.approx(1.5, rel=1e-6)
    # and a busy root thread beside our session's group takes a core's worth like a group
    root = ((1.0, 1.0, machine_load.ROOT_AUTOGROUP),)
    assert machine_load.Load(1.0, 1.0, runnable=root).slowdown(2, 2) == pytest.approx(2.0, rel=1e-6)
    assert machine_load.Load(1.0, 1.0, runnable=root).slowdown(1, 2) == 1.0
    est = schedule.for_jobs([tiny()], 1, None, threads=1, load=machine_load.Load(1.0, 2.0, runnable=other),
                     cache_dir=tmp_path)
    assert "2.0 other threads on 2 cores (2.0 in other sessions)" in est.lines()[1]


def test_the_root_autogroup_is_a_group_like_any_other():
    # the kernel writes nothing in /proc/PID/autogroup for the root autogroup: PID 1's, and
    # that of every process no setsid() moved out of it (a CI runner's, a service's). A
    # launcher there still shares the cores with the sessions' groups (the CI failure:
    # our group unread, every thread was weighed as if in ours)
    if machine_load._autogroups_enabled():
        assert machine_load._autogroup(1) == (machine_load.ROOT_AUTOGROUP, 0)  # PID 1: init, never setsid()
    groups = {10: ("/autogroup-9", 0), 11: (machine_load.ROOT_AUTOGROUP, 0), 12: ("/autogroup-4", 5)}
    seen = [[10, 10, 7], [5, 11, 0], [10, 12, 0]]  # [samples runnable in, pid, nice]
    runnable, weights = machine_load.group_runnable(seen, 10, 0, (machine_load.ROOT_AUTOGROUP, 0), groups.get)
    assert runnable == ((1.0, machine_load.nice_weight(7), "/autogroup-9"), (0.5, 1.0, ""),
                        (1.0, 1.0, "/autogroup-4"))
    assert dict(weights) == {"/autogroup-9": 1.0, "/autogroup-4": machine_load.nice_weight(5)}
    # from a session's group, the root group's threads are another group's
    runnable, weights = machine_load.group_runnable(seen, 10, 0, ("/autogroup-9", 0), groups.get)
    assert [t[2] for t in runnable] == ["", machine_load.ROOT_AUTOGROUP, "/autogroup-4"]
    # autogroups off: every thread by its nice against ours
    runnable, weights = machine_load.group_runnable(seen, 10, 2, None, groups.get)
    assert runnable == ((1.0, machine_load.nice_weight(5), ""), (0.5, machine_load.nice_weight(-2), ""),
                        (1.0, machine_load.nice_weight(-2), "")) and weights == ()


class _Busy:
    """A busy Python loop at ``nice``: our child, or (``detached``) started through a shell
    that exits at once, in a session of its own: another program's process, as a shell's
    job would be, not one of ours."""

    def __init__(self, nice: int, detached: bool):
        import signal
        import subprocess
        import sys

        self._signal = signal
        loop = [sys.executable, "-c", "while True: pass"]
        if detached:
            out = subprocess.run(["sh", "-c", 'nice -n "$0" "$1" -c "$2" >/dev/null 2>&1 & '
                                  'echo $!', str(nice), *loop[:1], loop[2]],
                                 capture_output=True, text=True, check=True,
                                 start_new_session=True)
            self.pid, self._child = int(out.stdout), None
        else:
            self._child = subprocess.Popen(["nice", "-n", str(nice), *loop])
            self.pid = self._child.pid
        for _ in range(500):  # until it runs its loop (Python's start-up done)
            seen = machine_load.runnable_threads() or {}
            if (self.pid, nice) in seen.values():
                return
        self.kill()
        raise AssertionError(f"the busy process never showed as runnable: {seen}")

    def kill(self):
        if self._child is not None:
            self._child.kill()
            self._child.wait()
        else:
            import contextlib

            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, self._signal.SIGKILL)


def test_the_probe_sees_a_busy_process_with_its_nice_level_and_session():
    busy = _Busy(7, detached=True)
    try:
        load = machine_load.probe_load(0.2)
        entries = [t for t in load.runnable if t[0] > 0.5 and t[1] == pytest.approx(
            machine_load.nice_weight(7))]
        assert entries, load.runnable
        autogroups = open("/proc/sys/kernel/sched_autogroup_enabled").read().strip() == "1"
        # with autogroups on, its own session is another scheduling group than ours
        assert {bool(t[2]) for t in entries} == {autogroups}
    finally:
        busy.kill()


def test_the_probe_leaves_out_our_own_workers():
    # a sweep's workers, started (and busy importing) while it probes, run its jobs later:
    # they are not load (they made an idle machine's estimate twice too long)
    ours = _Busy(0, detached=False)
    try:
        assert ours.pid in {pid for pid, _ in (machine_load.runnable_threads() or {}).values()}
        assert ours.pid not in {pid for pid, _ in machine_load.runnable_threads(os.getpid()).values()}
    finally:
        ours.kill()


SMALL = [work.Gemm(2, 3, 4, "nn", F32), work.Gemm(3, 2, 4, "tn", F32), work.Gemm(2, 4, 3, "nt", F32),
         work.Hidden("gelu", True, 2, 3, True, F32), work.Update((3, 2), True, True, F32),
         work.Step(1, "relu", "cross_entropy", False, F32)]


def test_rates_are_measured_once_and_cached_per_machine_and_kernel(tmp_path):
    r1 = kernel_rates.Rates(1, tmp_path)
    r1.ensure(SMALL)
    assert sorted(r1.measured) == sorted(work.key(k) for k in SMALL)
    assert all(r1.seconds[work.key(k)] > 0 for k in SMALL)
    data = json.loads((tmp_path / "rates.json").read_text())
    assert list(data) == [r1.machine]
    # the key names the CPU and the BLAS kernel threadpoolctl reports
    from threadpoolctl import threadpool_info
    blas = next(i for i in threadpool_info() if i["user_api"] == "blas")
    assert str(blas["architecture"]) in r1.machine and "1 threads" in r1.machine
    r2 = kernel_rates.Rates(1, tmp_path)  # another process: reads, measures nothing
    r2.ensure(SMALL)
    assert r2.measured == [] and r2.seconds == r1.seconds
    # another BLAS kernel (or thread count) is another machine: its own rates
    data = {"other cpu | openblas 0.3 Haswell | numpy 2 | 1 threads": data[r1.machine]}
    (tmp_path / "rates.json").write_text(json.dumps(data))
    r3 = kernel_rates.Rates(1, tmp_path)
    r3.ensure(SMALL[:1])
    assert r3.measured == [work.key(SMALL[0])]
    assert set(json.loads((tmp_path / "rates.json").read_text())) == {*data, r1.machine}


def test_the_step_kernel_is_a_real_training_step(tmp_path):
    s = kernel_rates.measure(work.Step(2, "selu", "hinge", True, F32))
    assert np.isfinite(s) and s > 0


def test_the_rates_are_keyed_by_numpys_own_blas_whatever_else_is_loaded():
    import numpy as np
    import scipy.linalg.blas  # noqa: F401  (SciPy's wheel loads a second OpenBLAS)

    from mlp_sweeps.plan.cost.machine import numpy_blas

    built = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    assert numpy_blas()["version"] == built["version"]
    assert f"{numpy_blas()['version']} " in kernel_rates.machine_key(1)


def test_kernels_are_split_as_a_run_of_that_many_threads_splits_them():
    G, H, U, S = work.Gemm, work.Hidden, work.Update, work.Step
    assert kernel_rates.split_rows(G(100, 784, 784, "nn", "float32"), 2) == 100  # batch rows
    assert kernel_rates.split_rows(G(784, 100, 784, "tn", "float32"), 2) == 784  # weight rows
    assert kernel_rates.split_rows(G(100, 784, 10, "nn", "float32"), 2) is None  # the small output layer
    assert kernel_rates.split_rows(G(100, 784, 784, "nn", "float64"), 2) is None  # float64: undivided
    assert kernel_rates.split_rows(G(100, 784, 784, "nn", "float32"), 1) is None
    assert kernel_rates.split_rows(H("relu", False, 100, 784, True, "float32"), 2) == 100
    assert kernel_rates.split_rows(H("relu", False, 10, 784, True, "float32"), 2) is None
    assert kernel_rates.split_rows(U((784, 784, 10), True, True, "float32"), 2) == 0
    assert kernel_rates.split_rows(S(1, "relu", "cross_entropy", False, "float32"), 2) is None


def test_rates_of_several_threads_are_measured_split_and_kept_apart(tmp_path):
    one, two = kernel_rates.Rates(1, tmp_path), kernel_rates.Rates(2, tmp_path)
    assert one.machine != two.machine and "2 threads, split" in two.machine
    kernels = [work.Gemm(100, 784, 784, "nn", "float32"), work.Gemm(784, 100, 784, "tn", "float32"),
               work.Hidden("gelu", True, 100, 784, True, "float32"),
               work.Update((784, 784, 10), True, True, "float32"),
               work.Step(1, "relu", "cross_entropy", False, "float32")]
    two.ensure(kernels)
    for k in kernels:  # real measurements, through a team of 2 threads
        assert 0 < two.time(k) < 1
    assert json.loads((tmp_path / "rates.json").read_text()).keys() == {two.machine}


def test_the_launch_cost_counts_the_data_a_job_trains_on():
    """plan.cost is the work model's flops: a wide network on 1,000 examples costs less than
    a narrow one on all 60,000 (the old rule, weights x epochs, ranked them the other way)."""
    from mlp_sweeps.plan.jobs import cost

    small_data = TrainConfig(hidden_size=784, epochs=1, data={"train_limit": 1000})
    full_data = TrainConfig(hidden_size=256, epochs=1)
    assert cost(full_data) > 2 * cost(small_data)
    assert cost(TrainConfig(epochs=2)) == pytest.approx(2 * cost(TrainConfig(epochs=1)), rel=0.2)


def test_successive_halvings_budget_is_li_et_als():
    """81 configurations x 81 epochs, eta 3, survivors resumed: 297 epochs (Li et al.); a
    ladder estimate is the grid's scaled by that share, its wall time the runs' over the
    workers plus the sweep's overhead."""
    assert schedule.ladder_share([1, 3, 9, 27, 81], 3) * 81 * 81 == pytest.approx(297)
    assert schedule.ladder_share([1, 3, 9], 3) * 9 * 9 == pytest.approx(21)
    assert schedule.ladder_share([5], 3) == 1.0  # one rung: the grid
    configs = [TrainConfig(epochs=9, hidden_size=h, data={"train_limit": 1000})
               for h in (16, 32, 64)] * 3
    grid = schedule.for_jobs(configs, 2, load=False)
    ladder = schedule.LadderEstimate(grid, [1, 3, 9], 3)
    assert ladder.total_s == pytest.approx(grid.total_s * 21 / 81)
    assert ladder.rung_jobs == pytest.approx(9 + 3 + 1)
    assert ladder.wall_s == pytest.approx((ladder.total_s + 13 * schedule.JOB_OVERHEAD_S) / 2
                                          + grid.sweep_overhead_s)
    first, how_sure, last = ladder.lines()
    assert how_sure == grid.how_sure() == grid.lines()[1]
    assert "about 21 epochs of 9 configurations, 26% of the grid's 81" in first
    assert LINE.match(last) and last == schedule.estimate_line(ladder.total_s, ladder.wall_s, 2)
