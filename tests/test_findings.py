"""The findings' judges on small synthetic studies: each verdict a judge can give, the
protocol rule (no verdict from runs shorter than the study's), timings under load."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlp_sweeps.report.study.findings import FINDINGS, Part, Verdict, combine, evaluate, in_grids
from mlp_sweeps.report.study.protocol import CONFIG_KEYS, PROTOCOL, config_key, configurations
from mlp_sweeps.report.study.timing import configurations_to_time

STUDY = configurations()
BY_NUMBER = {f.number: f for f in FINDINGS}


def study_runs(acc=lambda c: 0.98, gap=lambda c: 0.01, reach=lambda c: 10,
               jitter=lambda c: 0.0, status=lambda c: "finished", epochs=PROTOCOL.epochs,
               test_every=PROTOCOL.test_every, seeds=(0, 1, 2),
               noise=lambda c, s: 0.0002 * (s - 1), steps=None, seed_reach=None):
    """A run per study configuration and seed: final test accuracy ``acc(c)`` plus the
    seed's ``noise(c, s)``, train accuracy that plus ``gap``, a train-accuracy curve rising
    linearly to its final value at epoch ``reach(c)`` (then flat), test accuracy evaluated
    every ``test_every`` epochs alternating by ``jitter(c)`` around its final value.
    ``steps(c, s)``: a batch-loss curve's values, logged every 50 iterations;
    ``seed_reach(c, s)``: the epoch of a seed's own run (instead of ``reach(c)``)."""
    rows, curves, logged = [], [], []
    for i, c in enumerate(STUDY.to_dict("records")):
        for s in seeds:
            rid = f"r{i}-{s}"
            a = acc(c) + noise(c, s)
            t = a + gap(c)
            r = seed_reach(c, s) if seed_reach is not None else reach(c)
            if steps is not None:
                logged += [(rid, "batch_train_loss", 50 * (k + 1), v)
                           for k, v in enumerate(steps(c, s))]
            rows.append({**c, "run_id": rid, "run_name": rid, "seed": s, "epochs": epochs,
                         "train_limit": np.nan, "status": status(c), "test_acc": a,
                         "train_acc": t, "start_time": i, "config_hash": rid})
            for e in range(1, epochs + 1):
                curves.append((rid, "train_acc", e, t * min(1.0, e / max(r, 1e-9))))
                curves.append((rid, "train_loss", e, 1.0 / e))
                if e % test_every == 0 or e == epochs:
                    sign = 1 if (e // test_every) % 2 else -1
                    curves.append((rid, "test_acc", e, a + sign * jitter(c) * (e != epochs)))
    out = (pd.DataFrame(rows), pd.DataFrame(curves, columns=["run_id", "key", "epoch", "value"]))
    if steps is not None:
        return (*out, pd.DataFrame(logged, columns=["run_id", "key", "iteration", "value"]))
    return out


def timing(epoch_s=lambda c: 1.0, other_cpu=0.0):
    t = configurations_to_time(STUDY)
    t["epoch_s"] = [epoch_s(c) for c in t.to_dict("records")]
    t["eval_s"], t["other_cpu"], t["epochs"] = 0.1, other_cpu, 3
    return t


def verdict(n, runs_curves, t=None):
    runs, curves, *steps = runs_curves
    return evaluate(BY_NUMBER[n], runs, curves, t if t is not None else timing(),
                    steps=steps[0] if steps else None)


def test_combine_gives_each_verdict():
    yes, no, unk = Part("a", True, ""), Part("b", False, ""), Part("c", None, "why")
    assert combine([yes, yes]) is Verdict.HOLDS
    assert combine([yes, no]) is Verdict.PARTLY
    assert combine([yes, unk]) is Verdict.PARTLY  # a claim not measured whole does not hold whole
    assert combine([no, no]) is Verdict.DOES_NOT_HOLD
    assert combine([no, unk]) is Verdict.DOES_NOT_HOLD
    assert combine([unk]) is Verdict.NOT_MEASURED


@pytest.mark.parametrize("finding", [f for f in FINDINGS if f.grids], ids=lambda f: f.topic)
def test_runs_shorter_than_the_study_give_no_verdict_and_say_so(finding):
    j = evaluate(finding, *study_runs(epochs=10, test_every=5), timing())
    assert j.verdict is Verdict.NOT_MEASURED
    assert "10 epochs" in j.why and f"{PROTOCOL.epochs}" in j.why
    assert "10 epochs" in j.runs


@pytest.mark.parametrize("finding", [f for f in FINDINGS if f.grids], ids=lambda f: f.topic)
def test_a_grid_run_in_part_gives_no_verdict_and_names_what_is_missing(finding):
    """A verdict rests on every configuration of its grids: one missing (not run yet, or
    failed) and the finding is not measured, naming it; what the runs there are would give
    is said."""
    runs, curves = study_runs()
    full = evaluate(finding, runs, curves, timing())
    assert "not run yet" not in full.why and "the study's ran" not in full.why, full.why
    mine = runs[in_grids(runs, finding.grids)]
    for k, v in finding.where.items():
        mine = mine[mine[k] == v]
    keys = config_key(runs)
    gone = config_key(mine).iloc[len(mine) // 2]  # every seed of one configuration
    status = runs["status"].where(keys != gone, "failed")
    j = evaluate(finding, runs.assign(status=status), curves, timing())
    assert j.verdict is Verdict.NOT_MEASURED
    assert f"1 of the {config_key(mine).nunique()} configurations it rests on not run yet" \
        in j.why
    assert "it would be: " in j.why and "scripts/reproduce.py --only" in j.why
    assert j.parts  # the parts are still shown


@pytest.mark.parametrize("finding", [f for f in FINDINGS if f.grids], ids=lambda f: f.topic)
def test_no_runs_is_not_measured_and_names_the_command(finding):
    runs, curves = study_runs()
    j = evaluate(finding, runs.iloc[0:0], curves.iloc[0:0], timing())
    assert j.verdict is Verdict.NOT_MEASURED and "scripts/reproduce.py --only" in j.why


# 1. activations -----------------------------------------------------------------------------------
def act_acc(c):
    return 0.975 if c["activation"] == "sigmoid" else 0.98


def act_time(c):
    return {"gelu": 1.3, "relu": 0.9}.get(c["activation"], 1.0) * c["depth"]


def test_activations_hold():
    j = verdict(1, study_runs(acc=act_acc, reach=lambda c: 40 if c["activation"] == "sigmoid"
                              else 10), timing(act_time))
    assert j.verdict is Verdict.HOLDS, j.evidence()


def test_activations_timings_under_load_are_not_used():
    j = verdict(1, study_runs(acc=act_acc, reach=lambda c: 40 if c["activation"] == "sigmoid"
                              else 10), timing(act_time, other_cpu=1.5))
    assert j.verdict is Verdict.PARTLY
    assert "under load (other processes used 1.50 cores)" in j.why
    assert [p.held for p in j.parts][-2:] == [None, None]


def test_activations_do_not_hold():
    j = verdict(1, study_runs(acc=lambda c: 0.99 if c["activation"] == "sigmoid" else 0.96,
                              reach=lambda c: 5 if c["activation"] == "sigmoid" else 10),
                timing(lambda c: {"gelu": 0.5, "relu": 2.0}.get(c["activation"], 1.0)))
    assert j.verdict is Verdict.DOES_NOT_HOLD, j.evidence()


# 2. losses -----------------------------------------------------------------------------------------
def loss_acc(mse_swish=0.891):
    def acc(c):
        if c["loss"] != "mse" or c["loss.reduction"] != "mean":
            return 0.985
        return {"relu": 0.9444, "swish": mse_swish, "selu": 0.918}.get(c["activation"], 0.95)
    return acc


def test_losses_hold():
    assert verdict(2, study_runs(acc=loss_acc())).verdict is Verdict.HOLDS


def test_losses_partly_when_a_published_mse_number_is_off_by_more_than_the_tolerance():
    j = verdict(2, study_runs(acc=loss_acc(mse_swish=0.891 + (PROTOCOL.tolerance_pts + 0.2) / 100)))
    assert j.verdict is Verdict.PARTLY
    assert [p.claim for p in j.parts if p.held is False] == ["MSE + swish 89.1%"]


def test_a_published_number_is_compared_with_the_table_not_the_claims_rounding():
    """The claim says 94.4% for MSE + relu; the table says 94.44%: 94.70% is within 0.3
    points of the table (and 0.30000000000000027 from the rounded 94.4 in floats)."""
    def acc(c):
        return 0.947 if (c["loss"], c["activation"]) == ("mse", "relu") else loss_acc()(c)

    part = next(p for p in verdict(2, study_runs(acc=acc)).parts if p.claim.endswith("94.4%"))
    assert part.held is True and "94.44% (the published table)" in part.evidence


def test_losses_do_not_hold():
    j = verdict(2, study_runs(acc=lambda c: 0.95 if c["loss"] != "mse" else 0.97))
    assert j.verdict is Verdict.DOES_NOT_HOLD


# 3. depth ----------------------------------------------------------------------------------------
def test_depth_holds_no_gain_and_double_time():
    j = verdict(3, study_runs(), timing(lambda c: 1.0 * c["depth"]))
    assert j.verdict is Verdict.HOLDS, j.evidence()
    assert "three matrix products" in j.evidence()


def test_depth_does_not_hold_with_a_clear_gain_and_triple_time():
    j = verdict(3, study_runs(acc=lambda c: 0.97 + 0.01 * c["depth"]),
                timing(lambda c: 1.0 if c["depth"] == 1 else 3.0))
    assert j.verdict is Verdict.DOES_NOT_HOLD
    assert "median +1.00 points" in j.evidence()


# 4. learning rate ---------------------------------------------------------------------------------
LR_REACH = {1e-5: 90, 5e-5: 30, 1e-4: 10}


def test_learning_rate_holds():
    j = verdict(4, study_runs(acc=lambda c: 0.95 if c["lr"] == 1e-5 else 0.98,
                              reach=lambda c: LR_REACH.get(c["lr"], 5),
                              status=lambda c: "diverged" if c["lr"] == 1e-2 else "finished"))
    assert j.verdict is Verdict.HOLDS, j.evidence()


def test_learning_rate_does_not_hold():
    j = verdict(4, study_runs(acc=lambda c: 0.90 + 0.1 * (c["lr"] == 1e-5) - 0.05 * (c["lr"] == 1e-3),
                              reach=lambda c: 100 - LR_REACH.get(c["lr"], 5)))
    assert j.verdict is Verdict.PARTLY or j.verdict is Verdict.DOES_NOT_HOLD
    assert not any(p.held for p in j.parts[:3])


# 5. momentum -------------------------------------------------------------------------------------
def test_momentum_holds_and_does_not_hold():
    up = verdict(5, study_runs(acc=lambda c: 0.97 + 0.01 * c["momentum"],
                               reach=lambda c: 50 - 40 * c["momentum"]))
    assert up.verdict is Verdict.HOLDS, up.evidence()
    down = verdict(5, study_runs(acc=lambda c: 0.99 - 0.01 * c["momentum"],
                                 reach=lambda c: 10 + 40 * c["momentum"]))
    assert down.verdict is Verdict.DOES_NOT_HOLD


def test_convergence_read_from_the_seed_mean_curves_is_checked_seed_by_seed():
    # seeds 0 and 2 converge faster with momentum, seed 1 slower: the mean curves still
    # say faster, the seeds do not agree: not resolved (the verdict then partly)
    def r(c, s):
        return 10 + 40 * c["momentum"] if s == 1 else 90 - 80 * c["momentum"]

    f = verdict(5, study_runs(acc=lambda c: 0.97 + 0.01 * c["momentum"], seed_reach=r))
    part = f.parts[0]
    assert part.held is None and part.mark == "not resolved", f.evidence()
    assert "at seeds 0, 1, 2: -1.00, +1.00, -1.00" in part.evidence
    assert f.verdict is Verdict.PARTLY
    # sigmoid slowest at seeds 0 and 2 only
    slow = verdict(1, study_runs(seed_reach=lambda c, s: 60 if c["activation"] == "sigmoid"
                                 and s != 1 else 20))
    part = next(p for p in slow.parts if p.claim == "sigmoid converges slowest")
    assert part.mark == "not resolved", slow.evidence()
    assert "seed 1: sigmoid 20, next slowest 20" in part.evidence


# 6. weight decay ---------------------------------------------------------------------------------
def test_weight_decay_holds_and_partly():
    wd_gap = lambda c: 0.01 + c["weight_decay"]  # noqa: E731 - grows with decay
    j = verdict(6, study_runs(acc=lambda c: 0.95 if c["weight_decay"] == 0.1 else 0.98,
                              gap=wd_gap))
    assert j.verdict is Verdict.HOLDS, j.evidence()
    shrinking = verdict(6, study_runs(acc=lambda c: 0.95 if c["weight_decay"] == 0.1 else 0.98,
                                      gap=lambda c: 0.05 - c["weight_decay"]))
    assert shrinking.verdict is Verdict.PARTLY
    assert shrinking.parts[-1].held is False and "|train - test accuracy|" in shrinking.parts[-1].evidence


# 7. batch size -----------------------------------------------------------------------------------
def batch_loss(amplitude):
    """A batch-loss curve of 200 logs alternating by ``amplitude(c, s)`` around 0.05."""
    return lambda c, s: [0.05 + (-1) ** k * amplitude(c, s) for k in range(200)]


def test_batch_size_holds_when_batch_10_jitters_most():
    j = verdict(7, study_runs(steps=batch_loss(
        lambda c, s: (0.01 if c["batch_size"] == 10 else 0.001) * (1 + 0.01 * s))))
    assert j.verdict is Verdict.HOLDS, j.evidence()
    assert "batch train loss between logs every 50 iterations" in j.parts[0].evidence


def test_batch_10_jittering_as_much_as_another_batch_is_not_resolved():
    """Batch 10 and 100 alike, within the seeds' spread: the data cannot say which is most."""
    j = verdict(7, study_runs(steps=batch_loss(
        lambda c, s: (0.01 if c["batch_size"] in (10, 100) else 0.001) * (1 + 0.05 * s))))
    osc = j.parts[0]
    assert osc.held is None and osc.unresolved and "1.00x" in osc.evidence
    assert osc.text().startswith("batch 10 oscillates most: not resolved")
    assert j.verdict is Verdict.PARTLY and "not resolved" in j.why


def test_batch_10_resolved_above_another_but_not_visibly_does_not_hold():
    j = verdict(7, study_runs(steps=batch_loss(
        lambda c, s: (0.012 if c["batch_size"] == 10 else 0.01 if c["batch_size"] == 50
                      else 0.001) * (1 + 0.001 * s))))
    assert j.parts[0].held is False and "1.20x" in j.parts[0].evidence


def test_batch_size_does_not_hold_when_another_jitters_more():
    j = verdict(7, study_runs(acc=lambda c: 0.96, steps=batch_loss(
        lambda c, s: (0.01 if c["batch_size"] == 1000 else 0.001) * (1 + 0.01 * s))))
    assert j.verdict is Verdict.DOES_NOT_HOLD, j.evidence()


def test_batch_size_without_training_curves_is_not_measured_not_false():
    j = verdict(7, study_runs())  # no batch metrics logged
    osc = j.parts[0]
    assert osc.held is None and not osc.unresolved and "log_every_steps=50" in osc.evidence
    assert j.verdict is Verdict.PARTLY and "no training curves" in j.why


# 8. hidden size -----------------------------------------------------------------------------------
def hid_acc(c):
    return min(0.98, 0.90 + 0.01 * math.log2(c["hidden_size"]))


def test_hidden_size_holds():
    j = verdict(8, study_runs(acc=hid_acc, reach=lambda c: 100 / math.log2(c["hidden_size"])),
                timing(lambda c: c["hidden_size"] / 1000))
    assert j.verdict is Verdict.HOLDS, j.evidence()


def test_hidden_size_time_under_load_and_flat_time():
    loaded = verdict(8, study_runs(acc=hid_acc, reach=lambda c: 100 / math.log2(c["hidden_size"])),
                     timing(lambda c: c["hidden_size"] / 1000, other_cpu=0.9))
    assert loaded.verdict is Verdict.PARTLY and loaded.parts[-1].held is None
    flat = verdict(8, study_runs(acc=hid_acc, reach=lambda c: 100 / math.log2(c["hidden_size"])),
                   timing(lambda c: 1.0))
    assert flat.verdict is Verdict.PARTLY and flat.parts[-1].held is False


# 9. focal loss -----------------------------------------------------------------------------------
def test_focal_loss_holds_without_runs():
    j = evaluate(BY_NUMBER[9], *study_runs(epochs=1), None)
    assert j.verdict is Verdict.HOLDS and "gamma 5" in j.evidence()


# 10. dropout --------------------------------------------------------------------------------------
def test_dropout_holds():
    j = verdict(10, study_runs(acc=lambda c: 0.970 + 0.003 * (c["dropout"] > 0),
                               gap=lambda c: 0.02 - 0.005 * (c["dropout"] > 0),
                               reach=lambda c: 30 if c["dropout"] > 0 else 10))
    assert j.verdict is Verdict.HOLDS, j.evidence()


def test_dropout_a_larger_negative_gap_is_not_a_shrinking_gap():
    # test above train in both runs: |gap| grows from 0.5 to 1.0 points with dropout
    j = verdict(10, study_runs(acc=lambda c: 0.97, gap=lambda c: -0.010 if c["dropout"] > 0
                               else -0.005, reach=lambda c: 5 if c["dropout"] > 0 else 10))
    gap = j.parts[-1]
    assert gap.held is False and "0.50 -> 1.00" in gap.evidence
    assert j.verdict is Verdict.DOES_NOT_HOLD


def test_table_of_findings_is_complete_and_ordered():
    assert [f.number for f in FINDINGS] == list(range(1, 11))
    grids = set().union(*(f.grids for f in FINDINGS))
    assert grids <= set(STUDY["grid"].str.split(",").explode())
    assert set(CONFIG_KEYS) <= set(STUDY.columns)


# the remaining verdicts each judge can give ----------------------------------------------------------
def test_depth_partly_no_gain_but_triple_time():
    j = verdict(3, study_runs(), timing(lambda c: 1.0 if c["depth"] == 1 else 3.0))
    assert j.verdict is Verdict.PARTLY and [p.held for p in j.parts] == [True, False]


def test_momentum_partly_faster_but_not_higher():
    j = verdict(5, study_runs(acc=lambda c: 0.99 - 0.01 * c["momentum"],
                              reach=lambda c: 50 - 40 * c["momentum"]))
    assert j.verdict is Verdict.PARTLY and [p.held for p in j.parts] == [True, False]


def test_weight_decay_does_not_hold():
    j = verdict(6, study_runs(acc=lambda c: 0.90 + c["weight_decay"] / 2 - 0.02 * (c["weight_decay"] == 1e-3),
                              gap=lambda c: 0.05 - c["weight_decay"]))
    assert j.verdict is Verdict.DOES_NOT_HOLD, j.evidence()


def test_hidden_size_does_not_hold():
    j = verdict(8, study_runs(acc=lambda c: 0.99 - 0.001 * c["hidden_size"] / 16,
                              reach=lambda c: c["hidden_size"] / 10),
                timing(lambda c: 1.0 / c["hidden_size"]))
    assert j.verdict is Verdict.DOES_NOT_HOLD, j.evidence()


def test_dropout_partly():
    j = verdict(10, study_runs(acc=lambda c: 0.970 + 0.003 * (c["dropout"] > 0),
                               gap=lambda c: 0.02 - 0.005 * (c["dropout"] > 0),
                               reach=lambda c: 5 if c["dropout"] > 0 else 10))
    assert j.verdict is Verdict.PARTLY and [p.held for p in j.parts] == [False, True, True]


def test_hidden_size_with_one_width_run_is_not_measured_not_false():
    runs, curves = study_runs(acc=hid_acc)
    one = runs[(runs["hidden_size"] == 2048) | ~runs["grid"].str.contains("hidden_size")]
    j = evaluate(BY_NUMBER[8], one, curves, timing(lambda c: c["hidden_size"] / 1000))
    assert [p.held for p in j.parts] == [None, None, None, True]
    assert "fewer than 3 widths run" in j.evidence()
    assert j.verdict is Verdict.NOT_MEASURED
    assert "7 of the 8 configurations it rests on not run yet (hidden_size=16, " in j.why
    assert "3 more" in j.why and "it would be: partly" in j.why


# the seeds' noise ---------------------------------------------------------------------------------
def test_a_difference_is_resolved_only_beyond_its_standard_errors():
    from mlp_sweeps.report.study.findings import NOISE, compare

    d = compare([0.980, 0.981, 0.982], [0.975, 0.976, 0.977])  # 0.5 points, se 0.08
    assert d.resolved and d.d == pytest.approx(0.005) and d.se == pytest.approx(0.000816, rel=1e-3)
    close = compare([0.980, 0.982, 0.984], [0.979, 0.981, 0.983])  # 0.1 points, se 0.16
    assert not close.resolved and abs(close.d) < NOISE * close.se
    one = compare([0.99], [0.95])  # one seed: the noise is unknown, nothing is resolved
    assert not one.resolved and "one seed" in one.text()


def test_activation_times_within_one_configurations_epoch_spread_are_not_resolved():
    t = timing(act_time)
    t["epoch_s_min"], t["epoch_s_max"] = t["epoch_s"] * 0.7, t["epoch_s"] * 1.3  # 1.86x noise
    j = verdict(1, study_runs(acc=act_acc, reach=lambda c: 40 if c["activation"] == "sigmoid"
                              else 10), t)
    assert [p.mark for p in j.parts][-2:] == ["not resolved", "not resolved"]
    assert j.verdict is Verdict.PARTLY and "less than one configuration's epochs do" in j.why


def test_weight_decay_gaps_within_the_seeds_noise_are_not_resolved():
    runs, curves = study_runs(acc=lambda c: 0.95 if c["weight_decay"] == 0.1 else 0.98,
                              gap=lambda c: 0.01 + c["weight_decay"] / 1000)
    runs["train_acc"] += 0.002 * (runs["seed"] - 1)  # the gaps' seeds spread by 0.2 points
    j = verdict(6, (runs, curves))
    gap = j.parts[-1]
    assert gap.held is None and gap.unresolved, gap.evidence
    assert j.parts[0].held is True  # 3 points below: resolved, and below at every evaluation


def test_weight_decay_a_drop_within_the_noise_is_not_clear():
    j = verdict(6, study_runs(acc=lambda c: 0.979 if c["weight_decay"] == 0.1 else 0.98,
                              noise=lambda c, s: 0.003 * (s - 1)))
    assert j.parts[0].held is None and j.parts[0].unresolved


def test_dropout_is_judged_on_the_studys_fixed_mask_with_the_training_set_evaluated():
    runs, curves = study_runs(acc=lambda c: 0.970 + 0.003 * (c["dropout"] > 0),
                              gap=lambda c: 0.0, reach=lambda c: 30 if c["dropout"] > 0 else 10)
    # the evaluated train accuracy: a gap of 1.0 point without dropout, 0.5 with the fixed mask
    fixed = runs["dropout_mask"] == "fixed"
    ev = runs["test_acc"] + np.where(runs["dropout"] > 0, 0.005, 0.010)
    curves = pd.concat([curves, pd.DataFrame({"run_id": runs["run_id"], "key": "train_eval_acc",
                                              "epoch": PROTOCOL.epochs, "value": ev})])
    j = verdict(10, (runs, curves))
    assert j.verdict is Verdict.HOLDS, j.evidence()
    assert "the study's fixed mask" in j.parts[0].evidence
    assert "the training set evaluated as the test set" in j.parts[-1].evidence
    assert fixed.any()
    # without the fixed-mask runs the configuration is missing: not measured, naming it
    j = verdict(10, (runs[~fixed], curves))
    assert j.verdict is Verdict.NOT_MEASURED and "dropout_mask=fixed" in j.why


def test_runs_at_different_seeds_say_how_many_configurations_ran_at_which():
    from mlp_sweeps.report.study.findings import describe_runs

    runs, _ = study_runs()
    grid = runs[in_grids(runs, ["momentum"])]
    one = grid[(grid["momentum"] != 0.0) | (grid["seed"] == 0)]  # momentum 0: seed 0 only
    assert describe_runs(grid) == "21 runs, 100 epochs, seeds 0, 1, 2"
    assert describe_runs(one) == ("19 runs, 100 epochs, seeds 0, 1, 2 for 6 configurations; "
                                  "seed 0 for 1 configuration")
