"""Losses: exact gradients for every registered loss and reduction, hand-computed values,
numerical stability, reductions and parameter validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import assert_gradient_matches, kink_free_logits, numerical_gradient
from mlp import losses

ALL = losses.names()
REDUCTIONS = ["mean", "sum"]

# Every registered loss with its defaults, plus extra parameter settings of the losses that
# have parameters (focal: gamma 0 / 0.5 / 2, scalar and per-class alpha; hinge: another margin).
CASES = [(name, {}) for name in ALL] + [
    ("focal", {"gamma": 0.0, "alpha": 1.0}),
    ("focal", {"gamma": 0.5, "alpha": 0.25}),
    ("focal", {"gamma": 2.0, "alpha": [0.1, 0.4, 1.0, 2.5]}),
    ("focal", {"gamma": 0.5, "alpha": [1.0, 0.0, 0.3, 0.7]}),
    ("hinge", {"margin": 1.0}),
]


def _case_id(case):
    name, kw = case
    return name + "".join(f"-{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_gradient_matches_finite_differences(case, reduction):
    name, kw = case
    rng = np.random.default_rng(10)
    z, labels = kink_free_logits(rng, n=6, k=4)
    loss = losses.get(name, reduction=reduction, **kw)
    loss.forward(z, labels)
    analytic = loss.backward().copy()
    probe = losses.get(name, reduction=reduction, **kw)
    numeric = numerical_gradient(lambda: probe.forward(z, labels), z)
    assert_gradient_matches(analytic, numeric, f"{_case_id(case)} ({reduction})")


def test_kink_free_logits_exercise_both_hinge_regimes():
    """The hinge gradient check is meaningful only if some margins are active and some not."""
    z, labels = kink_free_logits(np.random.default_rng(10), n=6, k=4)
    for margin in (5.0, 1.0):
        m = margin - z[np.arange(6), labels][:, None] + z
        m[np.arange(6), labels] = np.nan
        m = m[~np.isnan(m)]
        assert np.min(np.abs(m)) > 0.1
        assert np.any(m > 0) and np.any(m < 0)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_sum_is_n_times_mean(case):
    name, kw = case
    rng = np.random.default_rng(11)
    z, labels = kink_free_logits(rng, n=7, k=4)
    mean, total = (losses.get(name, reduction=r, **kw) for r in REDUCTIONS)
    v_mean, v_sum = mean.forward(z, labels), total.forward(z, labels)
    np.testing.assert_allclose(v_sum, 7 * v_mean, rtol=1e-12)
    np.testing.assert_allclose(total.backward(), 7 * mean.backward(), rtol=1e-12, atol=1e-15)
    # ``mean`` is the per-example mean whatever the reduction.
    assert mean.mean == pytest.approx(v_mean, rel=1e-14)
    assert total.mean == pytest.approx(v_sum / 7, rel=1e-14)


@pytest.mark.parametrize("name", ALL)
def test_backward_can_be_called_twice(name):
    z, labels = kink_free_logits(np.random.default_rng(12), n=5, k=4)
    loss = losses.get(name)
    loss.forward(z, labels)
    g1 = loss.backward().copy()
    np.testing.assert_array_equal(loss.backward(), g1)


@pytest.mark.parametrize("name", ALL)
def test_forward_does_not_modify_logits(name):
    z, labels = kink_free_logits(np.random.default_rng(13), n=5, k=4)
    before = z.copy()
    loss = losses.get(name)
    loss.forward(z, labels)
    loss.backward()
    np.testing.assert_array_equal(z, before)


@pytest.mark.parametrize("name", ALL)
def test_shape_mismatch_is_rejected(name):
    loss = losses.get(name)
    with pytest.raises(ValueError, match="labels"):
        loss.forward(np.zeros((3, 4)), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="logits"):
        loss.forward(np.zeros(4), np.zeros(4, dtype=np.int64))


# ---------------------------------------------------------------- cross-entropy


def test_cross_entropy_equals_minus_log_softmax():
    z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    labels = np.array([2, 1])
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = -np.log(p[[0, 1], [2, 1]])
    ce = losses.get("cross_entropy", reduction="mean")
    assert ce.forward(z, labels) == pytest.approx(expected.mean(), rel=1e-14)
    onehot = np.eye(3)[labels]
    np.testing.assert_allclose(ce.backward(), (p - onehot) / 2, rtol=1e-13)


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [-1e4, 0.0, 1e4]])
    labels = np.array([1, 0, 2])
    ce = losses.get("cross_entropy", reduction="sum")
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        value = ce.forward(z, labels)
        g = ce.backward()
    # -log softmax: row 0: 1e4 + log(1 + e^-1e4 + e^-2e4) = 1e4; row 1: log 2; row 2: 0.
    assert value == pytest.approx(1e4 + math.log(2.0), rel=1e-15)
    expected = np.array([[1.0, -1.0, 0.0], [-0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(g, expected, atol=1e-15)


# ---------------------------------------------------------------- focal


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_gamma0_alpha1_is_cross_entropy(reduction):
    rng = np.random.default_rng(14)
    z = rng.normal(scale=3.0, size=(8, 10))
    labels = rng.integers(0, 10, size=8)
    focal = losses.get("focal", reduction=reduction, gamma=0.0, alpha=1.0)
    ce = losses.get("cross_entropy", reduction=reduction)
    assert focal.forward(z, labels) == pytest.approx(ce.forward(z, labels), rel=1e-13)
    np.testing.assert_allclose(focal.backward(), ce.backward(), rtol=1e-12, atol=1e-15)


def test_focal_hand_value_with_study_parameters():
    # Two classes, equal logits: p_t = 0.5.
    # l = -alpha (1 - p_t)^gamma log p_t = -0.1 * 0.25 * log 0.5 = 0.025 log 2 = 0.0173286...
    focal = losses.get("focal")  # study defaults: gamma = 2, alpha = 0.1
    assert (focal.gamma, focal.alpha) == (2.0, 0.1)
    value = focal.forward(np.zeros((1, 2)), np.array([0]))
    assert value == pytest.approx(0.025 * math.log(2.0), rel=1e-14)


def test_focal_per_class_alpha_weights_by_true_class():
    z = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    alpha = [0.2, 5.0, 3.0]
    focal = losses.get("focal", reduction="sum", gamma=1.0, alpha=alpha)
    # p_t = 1/3 in both rows: l = -alpha_t * (2/3) * log(1/3).
    expected = (0.2 + 3.0) * (2.0 / 3.0) * math.log(3.0)
    assert focal.forward(z, labels) == pytest.approx(expected, rel=1e-14)
    assert focal.alpha == alpha


def test_focal_larger_gamma_down_weights_confident_examples():
    """Published finding 9: larger gamma lowers the loss of confident samples relative to
    unconfident ones (10 classes)."""
    # logits giving p_t = 0.9 (confident) and p_t = 0.2 (unconfident) among 10 classes
    def logits_for(pt):
        return np.array([[math.log(pt * 9 / (1 - pt))] + [0.0] * 9])

    ratios = []
    for gamma in (0.0, 0.5, 1.0, 2.0, 5.0):
        focal = losses.get("focal", gamma=gamma, alpha=1.0)
        confident = focal.forward(logits_for(0.9), np.array([0]))
        unconfident = focal.forward(logits_for(0.2), np.array([0]))
        ratios.append(confident / unconfident)
    assert all(a > b for a, b in zip(ratios, ratios[1:])), ratios


def test_focal_confident_example_has_finite_small_gradient():
    z = np.array([[60.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 1])
    for gamma in (0.0, 0.5, 2.0):
        focal = losses.get("focal", reduction="sum", gamma=gamma, alpha=1.0)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            value = focal.forward(z, labels)
            g = focal.backward()
        assert np.isfinite(value) and np.all(np.isfinite(g))
        assert np.max(np.abs(g[0])) < 1e-20  # the confident row contributes ~nothing


# ---------------------------------------------------------------- MSE and hinge


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_hand_value_has_no_half_factor(reduction):
    z = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, -1.0]])
    labels = np.array([0, 2])
    # row 0: (1-1)^2 + 2^2 + 0^2 = 4; row 1: 0.5^2 + 0^2 + (-1-1)^2 = 4.25; sum 8.25
    # (with a 1/2 factor it would be 4.125).
    mse = losses.get("mse", reduction=reduction)
    value = mse.forward(z, labels)
    # dl/dz = 2 (z - onehot)
    g = np.array([[0.0, 4.0, 0.0], [1.0, 0.0, -4.0]])
    if reduction == "mean":
        assert value == pytest.approx(8.25 / 2, rel=1e-15)
        np.testing.assert_allclose(mse.backward(), g / 2, rtol=1e-15)
    else:
        assert value == pytest.approx(8.25, rel=1e-15)
        np.testing.assert_allclose(mse.backward(), g, rtol=1e-15)


def test_hinge_hand_value_with_margin_5():
    hinge = losses.get("hinge", reduction="mean")
    assert hinge.margin == 5.0
    z = np.array([[2.0, 0.0, 1.0], [10.0, 0.0, 6.0]])
    labels = np.array([0, 0])
    # row 0: max(0, 5-2+0) + max(0, 5-2+1) = 3 + 4 = 7
    # row 1: max(0, 5-10+0) + max(0, 5-10+6) = 0 + 1 = 1;   mean = 4
    assert hinge.forward(z, labels) == pytest.approx(4.0, rel=1e-15)
    # dl/dz_k = 1[active] for k != t, dl/dz_t = -(number active); / 2 for the mean
    expected = np.array([[-2.0, 1.0, 1.0], [-1.0, 0.0, 1.0]]) / 2
    np.testing.assert_allclose(hinge.backward(), expected, rtol=1e-15)


def test_hinge_margin_parameter():
    hinge = losses.get("hinge", reduction="sum", margin=3.0)
    # max(0, 3-2+0) + max(0, 3-2+1) = 1 + 2 = 3
    assert hinge.forward(np.array([[2.0, 0.0, 1.0]]), np.array([0])) == pytest.approx(3.0)


# ---------------------------------------------------------------- registry and validation


def test_registry_and_parameters():
    # every concrete Loss class of the module is registered, under its own name
    defined = {c for c in vars(losses).values() if isinstance(c, type)
               and issubclass(c, losses.Loss) and c is not losses.Loss}
    assert {c.name for c in defined} == set(ALL)
    assert all(losses._REGISTRY.get(c.name) is c for c in defined)
    assert {"cross_entropy", "focal", "hinge", "mse"} <= set(ALL)
    assert losses.params("focal") == {"gamma": 2.0, "alpha": 0.1}
    assert losses.params("hinge") == {"margin": 5.0}
    assert losses.params("mse") == {}
    assert losses.params("cross_entropy") == {}


@pytest.mark.parametrize("name", ALL)
def test_every_loss_accepts_its_own_defaults(name):
    loss = losses.get(name, reduction="sum", **losses.params(name))
    assert loss.name == name and loss.reduction == "sum"
    assert np.isnan(loss.mean)  # nothing computed yet
    assert losses.study_reduction(name) in losses.REDUCTIONS


def test_study_reductions_follow_the_published_code():
    # published_claims.md: gradients of the batch SUM for CE, hinge and focal; MSE's of the MEAN.
    assert losses.study_reduction("cross_entropy") == "sum"
    assert losses.study_reduction("hinge") == "sum"
    assert losses.study_reduction("focal") == "sum"
    assert losses.study_reduction("mse") == "mean"


@pytest.mark.parametrize("name", ALL)
def test_bad_reduction_is_rejected(name):
    with pytest.raises(ValueError, match="'average'"):
        losses.get(name, reduction="average")


@pytest.mark.parametrize("bad", ["foo", "crossentropy", None])
def test_unknown_loss_lists_valid_names(bad):
    with pytest.raises(ValueError) as exc:
        losses.get(bad)
    assert repr(bad) in str(exc.value)
    for name in ALL:
        assert name in str(exc.value)
    with pytest.raises(ValueError, match=repr(bad)):
        losses.params(bad)
    with pytest.raises(ValueError, match=repr(bad)):
        losses.study_reduction(bad)


@pytest.mark.parametrize("name", ALL)
def test_unknown_parameter_is_rejected(name):
    with pytest.raises(ValueError) as exc:
        losses.get(name, temperature=2.0)
    assert "'temperature'" in str(exc.value)


@pytest.mark.parametrize("kw, shown", [
    ({"gamma": -1.0}, "-1.0"),
    ({"gamma": -2}, "-2"),
    ({"gamma": math.inf}, "inf"),
    ({"alpha": -0.1}, "-0.1"),
    ({"alpha": [0.1, -0.5, 0.2]}, "-0.5"),
    ({"alpha": []}, "[]"),
])
def test_focal_bad_parameters_are_rejected(kw, shown):
    with pytest.raises(ValueError) as exc:
        losses.get("focal", **kw)
    assert shown in str(exc.value)


@pytest.mark.parametrize("margin", [0.0, -1.0, math.nan])
def test_hinge_bad_margin_is_rejected(margin):
    with pytest.raises(ValueError, match=repr(margin)):
        losses.get("hinge", margin=margin)


def test_focal_alpha_of_wrong_length_is_rejected():
    focal = losses.get("focal", alpha=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError) as exc:
        focal.forward(np.zeros((2, 10)), np.array([0, 1]))
    assert "3 values" in str(exc.value) and "10 classes" in str(exc.value)
    # the same rule, before any data (config validation): one weight per class
    focal.check_classes(3)
    with pytest.raises(ValueError, match="3 values but there are 10 classes"):
        focal.check_classes(10)
    losses.get("focal", alpha=0.5).check_classes(10)  # a number: any number of classes
