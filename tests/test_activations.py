"""Activations: registry, values against the published formulas, exact gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import assert_gradient_matches, away_from_zero, numerical_gradient
from mlp import activations

ALL = activations.names()


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# The study's definitions (published_claims.md: SELU lambda = 1.0507, alpha = 1.67326 as
# printed, i.e. to 5 significant digits; Swish x * sigmoid(x); GELU's tanh approximation).
REFERENCE = {
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": _sigmoid,
    "selu": lambda x: 1.0507 * np.where(x > 0, x, 1.67326 * (np.exp(x) - 1.0)),
    "swish": lambda x: x * _sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
}


def test_registry_lists_the_study_activations():
    # every concrete Activation class of the module is registered, under its own name
    defined = {c for c in vars(activations).values() if isinstance(c, type)
               and issubclass(c, activations.Activation) and c is not activations.Activation}
    assert {c.name for c in defined} == set(ALL)
    assert all(activations._REGISTRY.get(c.name) is c for c in defined)
    assert set(REFERENCE) <= set(ALL)


def test_get_returns_a_new_instance_named_as_registered():
    for name in ALL:
        a, b = activations.get(name), activations.get(name)
        assert a is not b
        assert a.name == name


@pytest.mark.parametrize("bad", ["foo", "ReLU", "", None, ["relu"]])
def test_unknown_activation_lists_valid_names(bad):
    with pytest.raises(ValueError) as exc:
        activations.get(bad)
    msg = str(exc.value)
    assert repr(bad) in msg
    for name in ALL:
        assert name in msg


def test_register_rejects_a_duplicate_name():
    with pytest.raises(ValueError, match="relu"):
        activations.register("relu")(type("Dup", (activations.Activation,), {}))
    assert activations.names() == ALL


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_forward_matches_published_formula(name):
    x = np.linspace(-6.0, 6.0, 121).reshape(11, 11)
    y = activations.get(name).forward(x.copy())
    # rtol 1e-5 covers the 5-digit SELU constants; the others agree to rounding.
    np.testing.assert_allclose(y, REFERENCE[name](x), rtol=1e-5, atol=1e-12)


def test_selu_constants_are_the_self_normalizing_ones():
    selu = activations.get("selu")
    # Klambauer et al.: lambda = 1.0507009873554805, alpha = 1.6732632423543772.
    y = selu.forward(np.array([[1.0, -50.0]]))
    np.testing.assert_allclose(y, [[1.0507009873554805, -1.0507009873554805 * 1.6732632423543772]],
                               rtol=1e-15)


@pytest.mark.parametrize("name", ALL)
def test_gradient_matches_finite_differences(name):
    """d sum(f(x) * R) / dx, central differences, float64, x away from 0 (ReLU/SELU kink)."""
    rng = np.random.default_rng(1)
    x = away_from_zero(rng, (4, 6))
    r = rng.normal(size=(4, 6))
    act = activations.get(name)
    act.forward(x.copy())
    analytic = act.backward(r.copy()).copy()

    probe = activations.get(name)
    numeric = numerical_gradient(lambda: np.sum(probe.forward(x.copy()) * r), x)
    assert_gradient_matches(analytic, numeric, f"activation {name}")


@pytest.mark.parametrize("name", ALL)
def test_in_place_buffers_give_the_same_result(name):
    """The network calls forward(u, out=u) and backward(g, out=g); aliasing must not change
    the values."""
    rng = np.random.default_rng(2)
    x = away_from_zero(rng, (5, 3))
    gy = rng.normal(size=(5, 3))
    ref = activations.get(name)
    y_ref = ref.forward(x.copy()).copy()
    gx_ref = ref.backward(gy.copy()).copy()

    act = activations.get(name)
    buf = x.copy()
    y = act.forward(buf, out=buf)
    assert y is buf
    np.testing.assert_array_equal(y, y_ref)
    g = gy.copy()
    gx = act.backward(g, out=g)
    assert gx is g
    np.testing.assert_array_equal(gx, gx_ref)


@pytest.mark.parametrize("name", ALL)
def test_backward_uses_the_last_forward(name):
    """Calling forward twice (same shape, reused scratch buffers) then backward gives the
    gradient at the second input."""
    rng = np.random.default_rng(3)
    x1, x2 = away_from_zero(rng, (3, 4)), away_from_zero(rng, (3, 4))
    gy = rng.normal(size=(3, 4))
    fresh = activations.get(name)
    fresh.forward(x2.copy())
    expected = fresh.backward(gy.copy()).copy()
    act = activations.get(name)
    act.forward(x1.copy())
    act.forward(x2.copy())
    np.testing.assert_array_equal(act.backward(gy.copy()), expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ALL)
def test_large_inputs_stay_finite_without_warnings(name, dtype):
    x = np.array([[-100.0, -30.0, -1.0, 1.0, 30.0, 100.0]], dtype=dtype)
    act = activations.get(name)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = act.forward(x.copy())
        gx = act.backward(np.ones_like(x))
    assert y.dtype == x.dtype and gx.dtype == x.dtype
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(gx))
    # No slope of these activations exceeds SELU's lambda * alpha ~ 1.758 (at 0-).
    assert np.all(np.abs(gx) <= 1.76)
