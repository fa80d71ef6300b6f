"""Linear and Dropout: exact gradients, initialisation, dropout masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import assert_gradient_matches, numerical_gradient
from mlp.layers import DROPOUT_MASKS, INITS, Dropout, FixedDropout, Linear


def _linear(rng, in_dim=5, out_dim=7):
    lin = Linear(in_dim, out_dim, init="xavier", rng=rng, dtype="float64")
    lin.b[...] = rng.normal(size=out_dim)  # non-zero biases, so b matters in the forward
    return lin


def test_linear_forward_is_x_w_plus_b():
    rng = np.random.default_rng(20)
    lin = _linear(rng)
    x = rng.normal(size=(3, 5))
    np.testing.assert_allclose(lin.forward(x), x @ lin.W + lin.b, rtol=1e-14)
    assert lin.W.shape == (5, 7) and lin.b.shape == (7,)
    assert lin.params[0] is lin.W and lin.params[1] is lin.b
    assert lin.grads[0] is lin.dW and lin.grads[1] is lin.db


@pytest.mark.parametrize("wrt", ["W", "b", "x"])
def test_linear_gradients_match_finite_differences(wrt):
    """Objective sum(u * R), u = x W + b."""
    rng = np.random.default_rng(21)
    lin = _linear(rng)
    x = rng.normal(size=(3, 5))
    r = rng.normal(size=(3, 7))
    lin.forward(x)
    dx = lin.backward(r.copy(), need_input_grad=True).copy()
    analytic = {"W": lin.dW.copy(), "b": lin.db.copy(), "x": dx}[wrt]
    target = {"W": lin.W, "b": lin.b, "x": x}[wrt]
    numeric = numerical_gradient(lambda: np.sum(lin.forward(x) * r), target)
    assert_gradient_matches(analytic, numeric, f"Linear d/d{wrt}")


def test_linear_skips_the_input_gradient_on_request():
    rng = np.random.default_rng(22)
    lin = _linear(rng)
    x = rng.normal(size=(3, 5))
    gu = rng.normal(size=(3, 7))
    lin.forward(x)
    assert lin.backward(gu, need_input_grad=False) is None
    np.testing.assert_allclose(lin.dW, x.T @ gu, rtol=1e-13)
    np.testing.assert_allclose(lin.db, gu.sum(axis=0), rtol=1e-13)


def test_linear_study_init_is_normal_0_01_with_zero_bias():
    lin = Linear(400, 300, init="normal", rng=np.random.default_rng(23), dtype="float64")
    assert np.all(lin.b == 0.0)
    assert abs(lin.W.mean()) < 1e-4  # standard error 0.01 / sqrt(120000) ~ 3e-5
    assert lin.W.std() == pytest.approx(0.01, rel=0.02)


@pytest.mark.parametrize("init, std", [
    ("he", math.sqrt(2.0 / 400)),
    ("xavier", math.sqrt(6.0 / 700) / math.sqrt(3.0)),  # U(-a, a) has std a / sqrt(3)
])
def test_linear_other_inits_have_the_documented_scale(init, std):
    lin = Linear(400, 300, init=init, rng=np.random.default_rng(24), dtype="float64")
    assert lin.W.std() == pytest.approx(std, rel=0.02)
    if init == "xavier":
        assert np.max(np.abs(lin.W)) <= math.sqrt(6.0 / 700)


def test_linear_init_is_seeded_and_typed():
    a = Linear(4, 3, init="normal", rng=np.random.default_rng(5), dtype="float32")
    b = Linear(4, 3, init="normal", rng=np.random.default_rng(5), dtype="float32")
    np.testing.assert_array_equal(a.W, b.W)
    assert a.W.dtype == a.b.dtype == a.dW.dtype == a.db.dtype == np.float32


def test_unknown_init_is_rejected():
    assert INITS == ("normal", "he", "xavier")
    with pytest.raises(ValueError, match="'bad'"):
        Linear(3, 2, init="bad", rng=np.random.default_rng(0))


def test_dropout_gradient_with_fixed_mask_matches_finite_differences():
    """Objective sum(y * R), y = x * M with a fixed, already scaled mask M."""
    rng = np.random.default_rng(25)
    p = 0.3
    x = rng.normal(size=(4, 6))
    r = rng.normal(size=(4, 6))
    mask = (rng.random((4, 6)) >= p) / (1.0 - p)
    assert 0 < np.count_nonzero(mask) < mask.size
    drop = Dropout(p, rng=np.random.default_rng(0))
    y = drop.forward(x, train=True, mask=mask)
    np.testing.assert_array_equal(y, x * mask)
    analytic = drop.backward(r.copy()).copy()
    np.testing.assert_array_equal(analytic, r * mask)
    numeric = numerical_gradient(lambda: np.sum(drop.forward(x, train=True, mask=mask) * r), x)
    assert_gradient_matches(analytic, numeric, "Dropout d/dx")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_mask_is_inverted_dropout(dtype):
    p = 0.2  # the study's keep probability 0.8
    drop = Dropout(p, rng=np.random.default_rng(26))
    x = np.ones((200, 50), dtype=dtype)
    y = drop.forward(x, train=True)
    assert y.dtype == x.dtype
    kept = y != 0
    # 10000 draws: the dropped fraction has standard deviation 0.004; allow 5 of them.
    assert abs(1.0 - kept.mean() - p) < 0.02
    np.testing.assert_allclose(y[kept], 1.0 / (1.0 - p), rtol=1e-6)
    # E[y] = x: the scaling keeps the expected activation
    assert y.mean() == pytest.approx(1.0, abs=0.03)
    # backward applies the same mask
    np.testing.assert_array_equal(drop.backward(np.full_like(x, 2.0)), 2.0 * y)


def test_dropout_masks_differ_between_calls_and_are_seeded():
    x = np.ones((10, 20))
    a, b = Dropout(0.5, np.random.default_rng(7)), Dropout(0.5, np.random.default_rng(7))
    ya1, ya2 = a.forward(x).copy(), a.forward(x).copy()
    assert not np.array_equal(ya1, ya2)
    np.testing.assert_array_equal(b.forward(x), ya1)


def test_dropout_is_identity_in_evaluation_and_at_p0():
    x = np.random.default_rng(27).normal(size=(3, 4))
    drop = Dropout(0.5, np.random.default_rng(0))
    np.testing.assert_array_equal(drop.forward(x, train=False), x)
    g = np.ones_like(x)
    np.testing.assert_array_equal(drop.backward(g), g)
    zero = Dropout(0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(zero.forward(x, train=True), x)
    np.testing.assert_array_equal(zero.backward(g), g)


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1])
def test_dropout_rejects_bad_probability(p):
    with pytest.raises(ValueError, match=repr(p)):
        Dropout(p)


def test_the_studys_fixed_mask_keeps_the_same_units_in_training_and_evaluation_unscaled():
    p, width = 0.2, 2000
    drop = FixedDropout(p, np.random.default_rng(3), width=width, dtype=np.float32)
    x = np.random.default_rng(4).normal(size=(5, width)).astype(np.float32)
    kept = drop.mask[0] != 0
    # 2000 draws: the dropped fraction has standard deviation 0.009; allow 5 of them
    assert abs(1.0 - kept.mean() - p) < 0.045
    for train in (True, False):  # the same units, at test time too, unscaled
        y = drop.forward(x, train=train)
        np.testing.assert_array_equal(y[:, kept], x[:, kept])
        assert not y[:, ~kept].any()
    np.testing.assert_array_equal(drop.forward(x[:1]), drop.forward(x)[:1])  # every row alike
    g = np.ones_like(x)
    np.testing.assert_array_equal(drop.backward(g), np.broadcast_to(drop.mask, x.shape))
    again = FixedDropout(p, np.random.default_rng(3), width=width, dtype=np.float32)
    np.testing.assert_array_equal(again.mask, drop.mask)  # seeded
    zero = FixedDropout(0.0, np.random.default_rng(3), width=width)
    assert zero.forward(x) is x and zero.backward(g) is g


def test_fixed_mask_gradient_is_exact():
    rng = np.random.default_rng(28)
    x, r = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    drop = FixedDropout(0.4, np.random.default_rng(1), width=6, dtype=np.float64)
    assert 0 < np.count_nonzero(drop.mask) < 6
    drop.forward(x)
    analytic = drop.backward(r.copy()).copy()
    numeric = numerical_gradient(lambda: np.sum(drop.forward(x) * r), x)
    assert_gradient_matches(analytic, numeric, "FixedDropout d/dx")


@pytest.mark.parametrize("mask", list(DROPOUT_MASKS))
def test_every_dropout_mask_rejects_bad_probability(mask):
    with pytest.raises(ValueError, match="1.5"):
        DROPOUT_MASKS[mask](1.5, width=3)
