"""Optimizers: the registry; SGD (momentum, coupled weight decay: the study's rule) and Adam
against hand-worked steps; SGD's fused BLAS update against the plain NumPy one it replaced,
through a real network's backward; state round trips."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import losses, optim
from mlp.network import MLP
from mlp.optim import SGD, Adam


def test_two_hand_worked_steps_with_momentum_and_weight_decay():
    """v <- m v + (g + wd p);  p <- p - lr v   with lr = 0.1, m = 0.9, wd = 0.01.

    Step 1 (v = 0):
      w: v = [0.5 + 0.01*1.0, -1.0 + 0.01*(-2.0)] = [0.51, -1.02]
         p = [1.0 - 0.1*0.51, -2.0 - 0.1*(-1.02)] = [0.949, -1.898]
      b: v = 0.2 + 0.01*0.5 = 0.205;  p = 0.5 - 0.0205 = 0.4795
    Step 2 (g_w = [0.1, 0.3], g_b = -0.4):
      w: v = 0.9*[0.51, -1.02] + [0.1, 0.3] + 0.01*[0.949, -1.898]
           = [0.459 + 0.1 + 0.00949, -0.918 + 0.3 - 0.01898] = [0.56849, -0.63698]
         p = [0.949 - 0.056849, -1.898 + 0.063698] = [0.892151, -1.834302]
      b: v = 0.9*0.205 - 0.4 + 0.01*0.4795 = 0.1845 - 0.4 + 0.004795 = -0.210705
         p = 0.4795 + 0.0210705 = 0.5005705   (the bias is decayed too)
    Without momentum, step 2 would give w = [0.949 - 0.1*(0.1 + 0.00949), ...] = [0.938051, ...].
    """
    w = np.array([1.0, -2.0])
    b = np.array([0.5])
    opt = SGD([w, b], lr=0.1, momentum=0.9, weight_decay=0.01)

    opt.step([np.array([0.5, -1.0]), np.array([0.2])])
    np.testing.assert_allclose(w, [0.949, -1.898], rtol=1e-14)
    np.testing.assert_allclose(b, [0.4795], rtol=1e-14)
    np.testing.assert_allclose(opt.velocity[0], [0.51, -1.02], rtol=1e-14)

    opt.step([np.array([0.1, 0.3]), np.array([-0.4])])
    np.testing.assert_allclose(opt.velocity[0], [0.56849, -0.63698], rtol=1e-13)
    np.testing.assert_allclose(opt.velocity[1], [-0.210705], rtol=1e-13)
    np.testing.assert_allclose(w, [0.892151, -1.834302], rtol=1e-14)
    np.testing.assert_allclose(b, [0.5005705], rtol=1e-14)


def test_plain_sgd_without_momentum_or_decay():
    # p = [1, 2] - 0.5 * [0.2, -0.4] = [0.9, 2.2]; then - 0.5 * [1, 1] = [0.4, 1.7]
    p = np.array([1.0, 2.0])
    opt = SGD([p], lr=0.5)
    opt.step([np.array([0.2, -0.4])])
    np.testing.assert_allclose(p, [0.9, 2.2], rtol=1e-15)
    opt.step([np.array([1.0, 1.0])])  # no momentum: the first gradient is forgotten
    np.testing.assert_allclose(p, [0.4, 1.7], rtol=1e-15)


def test_weight_decay_alone_shrinks_parameters_geometrically():
    # g = 0: p <- p - lr wd p = (1 - 0.1 * 0.5) p = 0.95 p per step
    p = np.array([2.0, -4.0])
    opt = SGD([p], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        opt.step([np.zeros(2)])
    np.testing.assert_allclose(p, np.array([2.0, -4.0]) * 0.95**3, rtol=1e-14)


def test_step_updates_the_given_arrays_in_place():
    p = np.ones((2, 3), dtype=np.float32)
    opt = SGD([p], lr=0.1, momentum=0.5)
    assert opt.params[0] is p
    opt.step([np.ones((2, 3), dtype=np.float32)])
    np.testing.assert_allclose(p, 0.9, rtol=1e-7)
    assert p.dtype == np.float32 and opt.velocity[0].dtype == np.float32


def test_state_dict_round_trip_resumes_identically():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=3) for _ in range(4)]
    p1 = np.zeros(3)
    a = SGD([p1], lr=0.1, momentum=0.9, weight_decay=0.01)
    for g in grads:
        a.step([g])
    p2 = np.zeros(3)
    b = SGD([p2], lr=0.1, momentum=0.9, weight_decay=0.01)
    for g in grads[:2]:
        b.step([g])
    c = SGD([p2], lr=0.1, momentum=0.9, weight_decay=0.01)
    c.load_state_dict(b.state_dict())
    for g in grads[2:]:
        c.step([g])
    np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("kwargs, shown", [
    ({"lr": 0.0}, "0.0"),
    ({"lr": -1.0}, "-1.0"),
    ({"lr": 0.1, "momentum": 1.0}, "1.0"),
    ({"lr": 0.1, "momentum": -0.1}, "-0.1"),
    ({"lr": 0.1, "weight_decay": -1e-3}, "-0.001"),
])
def test_bad_hyperparameters_are_rejected(kwargs, shown):
    with pytest.raises(ValueError) as exc:
        SGD([np.zeros(2)], **kwargs)
    assert shown in str(exc.value)


# --- the registry ----------------------------------------------------------------------------


def test_registry_names_and_own_settings():
    assert {"sgd", "adam"} <= set(optim.names())
    assert optim.params("sgd") == {}  # lr, momentum, weight_decay are shared, top-level keys
    assert optim.params("adam") == {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    assert isinstance(optim.get("adam", [np.zeros(2)], lr=0.1, momentum=0.9), Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; valid optimizers: "
                                         "adam, sgd"):
        optim.get("rmsprop", [], lr=0.1)
    with pytest.raises(ValueError, match="optimizer 'sgd' has no setting 'beta1'"):
        optim.get("sgd", [], lr=0.1, beta1=0.9)


@pytest.mark.parametrize("name", optim.names())
def test_every_optimizer_resumes_bit_identically_from_its_state_dict(name):
    """The interface every optimizer keeps: state_dict() is all a checkpoint needs."""
    rng = np.random.default_rng(0)
    grads = [[rng.normal(size=(3, 2)), rng.normal(size=2)] for _ in range(6)]
    init = [rng.normal(size=(3, 2)), rng.normal(size=2)]
    a_params = [x.copy() for x in init]
    a = optim.get(name, a_params, lr=0.05, momentum=0.9, weight_decay=0.01)
    for g in grads:
        a.step([x.copy() for x in g])
    b_params = [x.copy() for x in init]
    b = optim.get(name, b_params, lr=0.05, momentum=0.9, weight_decay=0.01)
    for g in grads[:3]:
        b.step([x.copy() for x in g])
    c = optim.get(name, b_params, lr=0.05, momentum=0.9, weight_decay=0.01)
    c.load_state_dict(b.state_dict())
    for g in grads[3:]:
        c.step([x.copy() for x in g])
    for pa, pb in zip(a_params, b_params):
        np.testing.assert_array_equal(pa, pb)
    with pytest.raises(ValueError, match="does not match"):
        c.load_state_dict({k: [np.zeros(5)] * 2 if isinstance(v, list) else v
                           for k, v in c.state_dict().items()})


# --- Adam --------------------------------------------------------------------------------


def test_adam_two_hand_worked_steps():
    """lr = 0.1, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, no weight decay (PyTorch's form):
    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    Step 1, g = [0.5, -1.0]:  m = 0.1 g = [0.05, -0.1];  v = 0.001 g^2 = [0.00025, 0.001]
      lr / (1 - 0.9) = 1;  sqrt(v / 0.001) = [0.5, 1.0]
      p = [1 - 0.05 / (0.5 + 1e-8), -2 + 0.1 / (1 + 1e-8)] = [0.900000002, -1.900000001]
      (the first step is lr * sign(g), up to eps)
    Step 2, g = [0.1, 0.3]:
      m = 0.9 [0.05, -0.1] + 0.1 [0.1, 0.3] = [0.055, -0.06]
      v = 0.999 [0.00025, 0.001] + 0.001 [0.01, 0.09] = [0.00025975, 0.001089]
      lr / (1 - 0.81) = 0.1 / 0.19 = 0.526315789...;  1 - 0.999^2 = 0.001999
      sqrt(v / 0.001999) = [sqrt(0.12993997), sqrt(0.54477239)] = [0.36047187, 0.73808698]
      p = [0.900000002 - 0.52631579 * 0.055 / 0.36047188,
           -1.900000001 + 0.52631579 * 0.06 / 0.73808699]
        = [0.900000002 - 0.08030410, -1.900000001 + 0.04278486] = [0.81969591, -1.85721514]
    """
    p = np.array([1.0, -2.0])
    opt = Adam([p], lr=0.1)
    opt.step([np.array([0.5, -1.0])])
    np.testing.assert_allclose(opt.m[0], [0.05, -0.1], rtol=1e-15)
    np.testing.assert_allclose(opt.v[0], [0.00025, 0.001], rtol=1e-15)
    np.testing.assert_allclose(p, [0.900000002, -1.900000001], rtol=1e-15)
    opt.step([np.array([0.1, 0.3])])
    np.testing.assert_allclose(opt.m[0], [0.055, -0.06], rtol=1e-15)
    np.testing.assert_allclose(opt.v[0], [0.00025975, 0.001089], rtol=1e-14)
    np.testing.assert_allclose(p, [0.8196959063846512, -1.8572151424292261], rtol=1e-14)
    assert opt.t == 2


def test_adam_weight_decay_is_added_to_the_gradient():
    """g = 0, wd = 0.5, p = 2: the gradient seen is 0 + 0.5 * 2 = 1, so m = 0.1, v = 0.001,
    and p = 2 - (0.1 / 0.1) * 0.1 / (sqrt(0.001) / sqrt(0.001) + 1e-8) = 2 - 0.1 / (1 + 1e-8)."""
    p = np.array([2.0])
    opt = Adam([p], lr=0.1, weight_decay=0.5)
    opt.step([np.zeros(1)])
    np.testing.assert_allclose(p, [2.0 - 0.1 / (1 + 1e-8)], rtol=1e-15)


@pytest.mark.parametrize("kwargs, shown", [
    ({"beta1": 1.0}, "beta1 must be in [0, 1), got 1.0"),
    ({"beta2": -0.1}, "beta2 must be in [0, 1), got -0.1"),
    ({"eps": 0.0}, "eps must be > 0, got 0.0"),
])
def test_adam_bad_settings_are_rejected(kwargs, shown):
    with pytest.raises(ValueError) as exc:
        Adam([np.zeros(2)], lr=0.1, **kwargs)
    assert shown in str(exc.value)


# --- SGD's fused update, through a real network ----------------------------------------------


def _plain_sgd(params, velocity, grads, lr, momentum, weight_decay):
    """The update SGD ran before the BLAS form, six NumPy passes per parameter (reference)."""
    for p, v, g in zip(params, velocity, grads):
        v *= momentum
        v += g
        v += weight_decay * p
        p -= lr * v


def _steps(dtype, momentum, weight_decay, n_steps, fused=True):
    """``n_steps`` SGD steps of a 2-hidden-layer MLP on fixed random batches: (params, velocity).
    ``fused``: gradients delivered into the velocity by the backward (what training does);
    otherwise the plain NumPy update above from ``net.grads``."""
    rng = np.random.default_rng(5)
    net = MLP([20, 16, 12, 4], activation="relu", seed=1, dtype=dtype)
    loss = losses.get("cross_entropy")
    opt = SGD(net.params, lr=0.05, momentum=momentum, weight_decay=weight_decay)
    velocity = [np.zeros_like(p) for p in net.params]
    for _ in range(n_steps):
        x = rng.standard_normal((8, 20)).astype(dtype)
        y = rng.integers(0, 4, 8)
        loss.forward(net.forward(x), y)
        if fused:
            net.backward(loss.backward(), sinks=opt.sinks)
            opt.step()
        else:
            net.backward(loss.backward())
            _plain_sgd(net.params, velocity, net.grads, 0.05, momentum, weight_decay)
    return [p.copy() for p in net.params], opt.velocity if fused else velocity


@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("momentum, weight_decay", [(0.9, 1e-3), (0.0, 1e-3), (0.9, 0.0),
                                                     (0.0, 0.0)])
def test_fused_sgd_equals_the_plain_numpy_update_within_rounding(dtype, rtol, momentum,
                                                                  weight_decay):
    """All layers and biases; momentum 0 (beta = 0: BLAS overwrites the velocity) and
    weight decay 0 (its pass skipped) included. After 20 steps the two agree to float
    rounding (BLAS fuses multiply-adds; the orders of the sums differ)."""
    fused_p, fused_v = _steps(dtype, momentum, weight_decay, 20)
    plain_p, plain_v = _steps(dtype, momentum, weight_decay, 20, fused=False)
    for a, b, va, vb in zip(fused_p, plain_p, fused_v, plain_v):
        assert a.dtype == b.dtype == va.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
        np.testing.assert_allclose(va, vb, rtol=rtol, atol=rtol * np.abs(vb).max())
    assert not all(np.array_equal(a, b) for a, b in zip(fused_p, _steps(dtype, momentum,
                                                                           weight_decay, 19)[0]))


def test_fused_sgd_gives_the_same_bits_run_to_run():
    a, va = _steps("float32", 0.9, 1e-3, 10)
    b, vb = _steps("float32", 0.9, 1e-3, 10)
    for x, y in zip(a + va, b + vb):
        np.testing.assert_array_equal(x, y)


def test_gradients_given_as_arrays_equal_the_fused_delivery():
    """step(grads) delivers the arrays to the same sinks (out <- g + beta out): the same
    update as the backward's delivery, within rounding."""
    net = MLP([10, 8, 3], seed=2, dtype="float64")
    twin = MLP([10, 8, 3], seed=2, dtype="float64")
    loss = losses.get("cross_entropy")
    a = SGD(net.params, lr=0.1, momentum=0.9, weight_decay=0.01)
    b = SGD(twin.params, lr=0.1, momentum=0.9, weight_decay=0.01)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x, y = rng.standard_normal((6, 10)), rng.integers(0, 3, 6)
        loss.forward(net.forward(x), y)
        net.backward(loss.backward(), sinks=a.sinks)
        a.step()
        loss.forward(twin.forward(x), y)
        twin.backward(loss.backward())
        b.step(twin.grads)
    for p, q in zip(net.params, twin.params):
        np.testing.assert_allclose(p, q, rtol=1e-13)
