"""Search spaces, samplers and successive halving's decisions, without processes: the space
read from Hydra's sweep syntax, Optuna's draws seeded, the rungs and what a free worker does
next on hand-made ladders, and the core's pause and resume bit for bit."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from mlp import TrainConfig
from mlp.train import train
from mlp_sweeps.launch import halving
from mlp_sweeps.plan.samplers import Search, key_of
from mlp_sweeps.plan.space import InvalidSpace, parse


# ---------------------------------------------------------------------------------------
# the space
# ---------------------------------------------------------------------------------------
def test_space_reads_hydra_sweep_syntax_and_writes_overrides_that_read_back():
    s = parse(["epochs=3", "lr=tag(log,interval(1e-4,1e-1))", "hidden_size=tag(int,interval(32,256))",
               "batch_size=range(50,550,50)", "activation=relu,gelu", "momentum=choice(0.5,0.9)",
               "seed=0,1", "epochs=4"])
    assert s.fixed == ["epochs=4"]  # a later override of a key replaces an earlier one
    assert s.seeds == ["seed=0", "seed=1"]  # replicates, not searched
    lr, hs, bs = s.dims["lr"], s.dims["hidden_size"], s.dims["batch_size"]
    assert (lr.low, lr.high, lr.log) == (1e-4, 1e-1, True)
    assert (hs.low, hs.high, hs.step) == (32, 256, 1)
    assert (bs.low, bs.high, bs.step) == (50, 500, 50)  # Hydra's range leaves out its stop
    assert s.dims["activation"].choices == ("relu", "gelu")
    assert s.size() is None  # an interval: infinitely many configurations
    params = {"lr": 0.0012345678901234567, "hidden_size": 100, "batch_size": 150,
              "activation": "gelu", "momentum": 0.9}
    jobs = s.overrides(params)
    assert len(jobs) == 2 and jobs[0][-1] == "seed=0"
    assert s.trial_of(jobs[1]) == params  # exactly, floats included
    # another fixed value, a missing or extra key, a value outside: not of this space
    assert s.trial_of([o.replace("epochs=4", "epochs=5") for o in jobs[0]]) is None
    assert s.trial_of(jobs[0][:-2] + ["seed=0"]) is None
    assert s.trial_of(jobs[0] + ["dropout=0.1"]) is None
    assert s.trial_of([o.replace("batch_size=150", "batch_size=175") for o in jobs[0]]) is None
    # what a sweep adds at launch is not part of a run's identity as a trial
    assert s.trial_of(jobs[0] + ["tracking.rung=1", "blas_threads=2"]) == params


@pytest.mark.parametrize("bad,words", [
    (["lr=interval(0.1,0.1)"], ["start < end"]),
    (["lr=tag(log,interval(0,1))"], ["log interval", "start > 0"]),
    (["hidden_size=tag(int,interval(1.5,8))"], ["integer ends"]),
    (["lr=tag(fast,interval(0,1))"], ["unknown tag", "fast", "log, int"]),
    (["seed=interval(0,5)"], ["seeds are replicates"]),
    (["activation=relu,relu"], ["listed twice"]),
])
def test_a_bad_space_is_refused_naming_the_value(bad, words):
    with pytest.raises(InvalidSpace) as e:
        parse(bad)
    for w in words:
        assert w in str(e.value)


def test_the_same_seed_draws_the_same_distinct_configurations():
    s = parse(["lr=tag(log,interval(1e-4,1e-1))", "momentum=0.0,0.5,0.9"])
    a = Search("random", s, 3, True).ask(6)
    assert a == Search("random", s, 3, True).ask(6)
    assert a != Search("random", s, 4, True).ask(6)
    assert len({key_of(p) for p in a}) == 6
    # a space smaller than what is asked: every configuration once, then no more
    small = parse(["momentum=0.0,0.5,0.9", "activation=relu,gelu"])
    got = Search("random", small, 0, True).ask(10)
    assert len(got) == 6 == len({key_of(p) for p in got})


# ---------------------------------------------------------------------------------------
# successive halving's decisions
# ---------------------------------------------------------------------------------------
def test_rungs():
    assert halving.rungs(1, 3, 27) == [1, 3, 9, 27]
    assert halving.rungs(1, 3, 20) == [1, 3, 9, 20]
    assert halving.rungs(2, 2, 16) == [2, 4, 8, 16]
    assert halving.rungs(5, 3, 6) == [5, 6]


def _run(run_id, status, tags):
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, status=status, start_time=0),
                           data=SimpleNamespace(tags=tags, metrics={}))


def _ladder(values: dict[str, dict[int, float]], running=()):
    """Trials a..: paused at their highest epoch with these val_acc values."""
    jobs, latest = {}, {}
    for name, vals in values.items():
        job = SimpleNamespace(config_hash=name, overrides=[f"x={name}"])
        jobs[(f"x={name}",)] = [job]
        if name in running:
            latest[name] = _run(name, "RUNNING", {"rung": "1"})
        elif vals:
            top = max(vals)
            latest[name] = _run(name, "KILLED", {
                "status": "paused", "checkpoint_epoch": str(top), "rung": "0",
                "rung_metrics": json.dumps({str(e): {"val_acc": v} for e, v in vals.items()})})
    return halving.read(jobs, latest, [1, 3, 9])


def test_a_free_worker_promotes_the_top_third_first_else_starts_a_new_one():
    # 5 at rung 0: floor(5/3) = 1 due (the best, c), f not started
    state = _ladder({"a": {1: 0.5}, "b": {1: 0.6}, "c": {1: 0.9}, "d": {1: 0.4},
                     "e": {1: 0.7}, "f": {}})
    w = halving.next_work(state, [1, 3, 9], 3, "val_acc", True, set())
    assert (w.key, w.rung, w.run_id, w.epoch) == (("x=c",), 1, "c", 1)
    # handed out already: the next worker starts a new configuration
    w2 = halving.next_work(state, [1, 3, 9], 3, "val_acc", True, {(("x=c",), 0, 1)})
    assert (w2.key, w2.rung, w2.run_id) == (("x=f",), 0, None)
    # minimizing a loss: the lowest goes on
    w3 = halving.next_work(state, [1, 3, 9], 3, "val_acc", False, set())
    assert w3.key == ("x=d",)


def test_higher_rungs_first_and_nothing_due_when_the_top_is_taken():
    state = _ladder({"a": {1: 0.9, 3: 0.95}, "b": {1: 0.8, 3: 0.7}, "c": {1: 0.85, 3: 0.9},
                     "d": {1: 0.1}, "e": {1: 0.2}, "f": {1: 0.3}, "g": {1: 0.4},
                     "h": {1: 0.5}, "i": {1: 0.6}})
    # rung 1: 3 ranked, a is the top third: promoted to rung 2 before anything at rung 0
    w = halving.next_work(state, [1, 3, 9], 3, "val_acc", True, set())
    assert (w.key, w.rung, w.epoch) == (("x=a",), 2, 3)
    # rung 0: 9 ranked, top 3 = a, c, b, all gone on: nothing due, nothing new
    assert halving.next_work(state, [1, 3, 9], 3, "val_acc", True,
                             {(("x=a",), 0, 2)}) is None


def test_pause_and_resume_are_bit_for_bit_the_straight_run():
    cfg = TrainConfig(epochs=5, test_every=1, hidden_size=24, dropout=0.2,
                      data={"train_limit": 1500, "test_limit": 300, "val_size": 300})
    straight = train(cfg, threads=1)
    states = []
    a = train(cfg, threads=1, stop_at=1, on_checkpoint=states.append)
    b = train(cfg, threads=1, stop_at=3, resume=states[-1], on_checkpoint=states.append)
    c = train(cfg, threads=1, resume=states[-1])
    assert [a.status, b.status, c.status] == ["paused", "paused", "finished"]
    assert [len(a.history), len(b.history)] == [1, 3]
    assert c.history == [dict(r, epoch_time_s=s["epoch_time_s"], eval_time_s=s["eval_time_s"])
                         for r, s in zip(straight.history, c.history)]
    w1, w2 = straight.model.state_dict(), c.model.state_dict()
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)
    # resumed where it was to pause: paused there, nothing trained
    again = train(cfg, threads=1, stop_at=1, resume=states[0])
    assert again.status == "paused" and len(again.history) == 1
    assert "val_acc" in straight.history[-1] and straight.metrics["final_val_acc"] > 0


def test_the_asha_progress_line_counts_epochs_against_the_budget_with_an_eta():
    """5 configurations paused at rung 0 (1 epoch each), one running to rung 1 (its first
    epoch counted), 9-epoch rungs 1, 3, 9 at eta 3: 6 of the budget's 14 epochs
    (6 x 21/81 x 9) in 60 s: 80 s to go at that pace; before any epoch, no ETA."""
    from mlp_sweeps.launch.asha import Asha

    names = "abcdef"
    jobs = [SimpleNamespace(config=SimpleNamespace(epochs=9), config_hash=n,
                            overrides=[f"x={n}"]) for n in names]
    asha = Asha(jobs, 3, 1, "val_acc", True, ledger=None)
    state = _ladder({n: {1: 0.5} for n in names[:5]} | {"f": {}}, running=("f",))
    assert asha.eta_text(state, 60.0) == "6/14 epochs of the budget | elapsed 1:00 | ETA 1:20"
    new = _ladder({n: {} for n in names})
    assert asha.eta_text(new, 5.0) == "0/14 epochs of the budget | elapsed 0:05"
