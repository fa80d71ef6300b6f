"""SGD with momentum and coupled weight decay: hand-worked steps, the study's rule."""

from __future__ import annotations

import numpy as np
import pytest

from mlp.optim import SGD


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


@pytest.mark.parametrize("momentum, weight_decay", [(0.9, 1e-3), (0.0, 1e-3), (0.9, 0.0),
                                                     (0.0, 0.0)])
def test_scratch_gradients_give_the_same_bits(momentum, weight_decay):
    """step(grads, scratch=True), as the training loop calls it, computes the update in the
    gradient arrays: the same operations, so the same bits as the default step."""
    rng = np.random.default_rng(1)
    shapes = [(7, 5), (5,), (5, 3), (3,)]
    init = [rng.normal(size=s).astype(np.float32) for s in shapes]
    steps = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(5)]
    a_params, b_params = [x.copy() for x in init], [x.copy() for x in init]
    a = SGD(a_params, lr=0.05, momentum=momentum, weight_decay=weight_decay)
    b = SGD(b_params, lr=0.05, momentum=momentum, weight_decay=weight_decay)
    for grads in steps:
        a.step([g.copy() for g in grads])
        spent = [g.copy() for g in grads]
        b.step(spent, scratch=True)
    for pa, pb, va, vb in zip(a_params, b_params, a.velocity, b.velocity):
        np.testing.assert_array_equal(pa, pb)
        np.testing.assert_array_equal(va, vb)
    assert b._tmp is None  # no scratch arrays were needed


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
