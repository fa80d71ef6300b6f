"""The MLP end to end: composition, exact gradients for every activation x loss, dropout,
seeding, state dicts and dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SMALL_SIZES, assert_gradient_matches, numerical_gradient
from mlp import activations, losses
from mlp.network import MLP
from mlp.optim import SGD

ACTS = activations.names()
LOSSES = losses.names()
N_HIDDEN = len(SMALL_SIZES) - 2


def _manual_forward(net: MLP, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits and hidden pre-activations, composed by hand from the parameters (no dropout)."""
    h, pre = x, []
    for i, lin in enumerate(net.linears):
        u = h @ lin.W + lin.b
        if i == len(net.linears) - 1:
            return u, pre
        pre.append(u)
        h = activations.get(net.activation).forward(u.copy())


def _setup(activation: str, seed: int = 0, dropout: float = 0.0):
    """A 5-7-6-4 float64 network with non-zero biases and a batch of 3, checked to be away
    from the ReLU/SELU kink at 0 (every hidden pre-activation has |u| > 1e-3)."""
    net = MLP(SMALL_SIZES, activation=activation, dropout=dropout, init="xavier", seed=seed,
              dtype="float64")
    rng = np.random.default_rng(100 + seed)
    for lin in net.linears:
        lin.b[...] = rng.normal(scale=0.5, size=lin.b.shape)
    x = rng.normal(size=(3, SMALL_SIZES[0]))
    labels = np.array([0, 3, 1])
    _, pre = _manual_forward(net, x)
    assert min(np.min(np.abs(u)) for u in pre) > 1e-3, "setup too close to a kink"
    return net, x, labels


def test_params_and_grads_are_the_layers_arrays_in_order():
    net = MLP(SMALL_SIZES, seed=0, dtype="float64")
    assert len(net.params) == len(net.grads) == 2 * (len(SMALL_SIZES) - 1)
    shapes = []
    for i, o in zip(SMALL_SIZES[:-1], SMALL_SIZES[1:]):
        shapes += [(i, o), (o,)]
    assert [p.shape for p in net.params] == shapes
    assert [g.shape for g in net.grads] == shapes
    for k, lin in enumerate(net.linears):
        assert net.params[2 * k] is lin.W and net.params[2 * k + 1] is lin.b
        assert net.grads[2 * k] is lin.dW and net.grads[2 * k + 1] is lin.db


@pytest.mark.parametrize("activation", ACTS)
def test_forward_is_the_composition_of_the_layers(activation):
    net, x, _ = _setup(activation)
    expected, _ = _manual_forward(net, x)
    np.testing.assert_allclose(net.forward(x, train=True), expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(net.forward(x, train=False), expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTS)
def test_network_gradients_match_finite_differences(activation, loss_name):
    """All parameters and the input, 2 hidden layers, every activation x every loss."""
    net, x, labels = _setup(activation)
    loss = losses.get(loss_name, reduction="mean")

    def objective():
        return loss.forward(net.forward(x, train=True), labels)

    logits = net.forward(x, train=True)
    if loss_name == "hinge":  # away from the margin boundaries too
        m = loss.margin - logits[np.arange(len(labels)), labels][:, None] + logits
        m[np.arange(len(labels)), labels] = np.inf
        assert np.min(np.abs(m)) > 1e-3, "setup too close to a hinge boundary"
    objective()
    dx = net.backward(loss.backward(), need_input_grad=True).copy()
    analytic = [g.copy() for g in net.grads]
    names = [f"{k}{i + 1}" for i in range(len(net.linears)) for k in "Wb"]
    for name, p, g in zip(names, net.params, analytic):
        assert_gradient_matches(g, numerical_gradient(objective, p),
                                f"{activation}/{loss_name} d/d{name}")
    assert_gradient_matches(dx, numerical_gradient(objective, x), f"{activation}/{loss_name} d/dx")


@pytest.mark.parametrize("activation", ACTS)
def test_network_gradients_with_dropout_match_finite_differences(activation):
    """Dropout in both hidden layers, masks made identical across evaluations by reseeding
    the layers' generators before every forward pass."""
    net, x, labels = _setup(activation, dropout=0.4)
    loss = losses.get("cross_entropy", reduction="sum")

    def objective():
        for i, drop in enumerate(net.drops):
            drop.rng = np.random.default_rng(1000 + i)
        return loss.forward(net.forward(x, train=True), labels)

    objective()
    assert all(0 < np.count_nonzero(d.mask) < d.mask.size for d in net.drops)
    dx = net.backward(loss.backward(), need_input_grad=True).copy()
    analytic = [g.copy() for g in net.grads]
    for k, (p, g) in enumerate(zip(net.params, analytic)):
        if not np.any(g):  # a unit dropped for the whole batch has an exactly zero gradient
            np.testing.assert_array_equal(numerical_gradient(objective, p), 0.0)
            continue
        assert_gradient_matches(g, numerical_gradient(objective, p), f"{activation} param {k}")
    assert_gradient_matches(dx, numerical_gradient(objective, x), f"{activation} d/dx")


def test_backward_returns_input_gradient_only_on_request():
    net, x, labels = _setup("relu")
    loss = losses.get("cross_entropy")
    loss.forward(net.forward(x), labels)
    assert net.backward(loss.backward()) is None
    g_default = [g.copy() for g in net.grads]
    gx = net.backward(loss.backward(), need_input_grad=True)
    assert gx.shape == x.shape
    for a, b in zip(g_default, net.grads):
        np.testing.assert_array_equal(a, b)


def test_no_hidden_layer_is_a_linear_model():
    net = MLP([5, 4], activation="relu", init="xavier", seed=3, dtype="float64")
    assert len(net.params) == 2 and net.acts == [] and net.drops == []
    x = np.random.default_rng(0).normal(size=(3, 5))
    np.testing.assert_allclose(net.forward(x), x @ net.params[0], rtol=1e-14)
    g = np.ones((3, 4))
    np.testing.assert_allclose(net.backward(g, need_input_grad=True), g @ net.params[0].T)
    np.testing.assert_allclose(net.grads[0], x.T @ g)


def test_same_seed_same_network_different_seed_different_network():
    a = MLP([20, 16, 16, 10], seed=4, dropout=0.5)
    b = MLP([20, 16, 16, 10], seed=4, dropout=0.5)
    c = MLP([20, 16, 16, 10], seed=5, dropout=0.5)
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(a.params[0], c.params[0])
    x = np.ones((8, 20), dtype=np.float32)
    # dropout masks come from the seed too
    np.testing.assert_array_equal(a.forward(x, train=True), b.forward(x, train=True))


def test_dropout_changes_training_but_not_evaluation_outputs():
    plain = MLP([20, 16, 16, 10], init="he", seed=6, dropout=0.0, dtype="float64")
    dropped = MLP([20, 16, 16, 10], init="he", seed=6, dropout=0.5, dtype="float64")
    x = np.random.default_rng(1).normal(size=(8, 20))
    # the weights do not depend on the dropout rate (independent random streams)
    for p, q in zip(plain.params, dropped.params):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(dropped.forward(x, train=False), plain.forward(x, train=False))
    assert not np.allclose(dropped.forward(x, train=True), plain.forward(x, train=True))


def test_forward_returns_a_new_array():
    net = MLP([6, 5, 3], seed=0, dtype="float64")
    x = np.random.default_rng(2).normal(size=(4, 6))
    first = net.forward(x)
    kept = first.copy()
    net.forward(2 * x)
    np.testing.assert_array_equal(first, kept)


def test_state_dict_round_trip_and_checks():
    a = MLP([6, 5, 3], seed=0)
    b = MLP([6, 5, 3], seed=1)
    state = a.state_dict()
    assert sorted(state) == ["W1", "W2", "b1", "b2"]
    state["W1"][0, 0] = 99.0  # a copy: the network is unchanged
    assert a.params[0][0, 0] != 99.0
    b.load_state_dict(a.state_dict())
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)
    with pytest.raises(ValueError, match="W3"):
        b.load_state_dict({**a.state_dict(), "W3": np.zeros(1)})
    with pytest.raises(ValueError, match="W1"):
        b.load_state_dict({**a.state_dict(), "W1": np.zeros((5, 6))})


@pytest.mark.parametrize("kwargs, shown", [
    ({"sizes": [5]}, "[5]"),
    ({"sizes": [5, 0, 3]}, "[5, 0, 3]"),
    ({"sizes": [5, 3], "dtype": "float16"}, "'float16'"),
    ({"sizes": [5, 4, 3], "activation": "tanhh"}, "'tanhh'"),
    ({"sizes": [5, 4, 3], "dropout": 1.0}, "1.0"),
])
def test_bad_network_arguments_are_rejected(kwargs, shown):
    with pytest.raises(ValueError) as exc:
        MLP(**kwargs)
    assert shown in str(exc.value)


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTS)
def test_float32_stays_float32(activation, loss_name):
    """No silent float64 up-cast: logits, loss gradient, parameter gradients, input gradient,
    optimizer state and updated parameters are all float32 (dropout on)."""
    net = MLP([12, 9, 7, 5], activation=activation, dropout=0.2, seed=0, dtype="float32")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 12)).astype(np.float32)
    labels = rng.integers(0, 5, size=6)
    loss = losses.get(loss_name, reduction="mean")
    logits = net.forward(x, train=True)
    assert logits.dtype == np.float32
    loss.forward(logits, labels)
    g = loss.backward()
    assert g.dtype == np.float32
    gx = net.backward(g, need_input_grad=True)
    assert gx.dtype == np.float32
    opt = SGD(net.params, lr=0.1, momentum=0.9, weight_decay=1e-3)
    before = [p.copy() for p in net.params]
    opt.step(net.grads)
    opt.step(net.grads)
    assert all(a.dtype == np.float32 for a in net.grads + net.params + opt.velocity)
    assert any(not np.array_equal(a, b) for a, b in zip(before, net.params))
    assert net.forward(x, train=False).dtype == np.float32
