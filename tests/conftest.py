"""Shared helpers and fixtures for the NumPy core's tests.

- :func:`numerical_gradient` / :func:`assert_gradient_matches`: central finite differences in
  float64, compared with an analytic gradient by a relative error (see :func:`relative_error`).
- Session fixtures load the real MNIST / Fashion-MNIST files once, into a temporary cache
  (never ``~/.cache``), so every test that needs data shares one decoded copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mlp.data import load

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MNIST_ROOT = PROJECT_ROOT / "data" / "mnist"
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")

# Central differences in float64: truncation error ~ eps^2 |f'''| ~ 1e-12, rounding error
# ~ 1e-16 |f| / eps ~ 1e-10 |f|; both far below the 1e-6 tolerance for the O(0.01..10)
# values and gradients used in the checks.
FD_EPS = 1e-6
GRAD_RTOL = 1e-6

# Shapes of the small networks used in gradient checks: 2 hidden layers.
SMALL_SIZES = [5, 7, 6, 4]


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = FD_EPS) -> np.ndarray:
    """Central differences (f(x + eps e_i) - f(x - eps e_i)) / 2 eps of the scalar ``f()``
    with respect to every entry of ``x``, which is perturbed in place and restored."""
    assert x.dtype == np.float64, "finite-difference checks run in float64"
    grad = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        f_plus = float(f())
        x[idx] = old - eps
        f_minus = float(f())
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a - n| / max(max |a|, max |n|): every entry must be right to the tolerance,
    relative to the scale of the whole gradient array."""
    scale = max(np.max(np.abs(analytic)), np.max(np.abs(numeric)))
    return float(np.max(np.abs(analytic - numeric)) / scale)


def assert_gradient_matches(analytic: np.ndarray, numeric: np.ndarray, what: str,
                            rtol: float = GRAD_RTOL) -> None:
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    assert np.all(np.isfinite(analytic)), f"{what}: non-finite analytic gradient"
    # A gradient that is zero everywhere would make the check vacuous.
    assert np.max(np.abs(numeric)) > 1e-8, f"{what}: numeric gradient is ~0, check is vacuous"
    err = relative_error(analytic, numeric)
    assert err < rtol, f"{what}: relative error {err:.3g} >= {rtol:g}"


def away_from_zero(rng: np.random.Generator, shape, lo: float = 0.1, hi: float = 3.0) -> np.ndarray:
    """Random values with |x| in [lo, hi] and random signs: never near the kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(lo, hi, size=shape)


def kink_free_logits(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels whose hinge margins m - z_t + z_k (integer m) stay >= 0.15 from 0.

    z_t = integer + 0.5, z_k = integer + 0.25 (k != t), each plus noise in [-0.05, 0.05]:
    z_k - z_t has fractional part in [0.65, 0.85], so it is never within 0.15 of an integer.
    """
    labels = rng.integers(0, k, size=n)
    z = rng.integers(-3, 4, size=(n, k)).astype(np.float64) + 0.25
    z[np.arange(n), labels] += 0.25
    z += rng.uniform(-0.05, 0.05, size=(n, k))
    return z, labels


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One decoded-array cache for the whole session (not ~/.cache)."""
    return tmp_path_factory.mktemp("mlp-sweeps-cache")


@pytest.fixture(scope="session")
def mnist(data_cache):
    return load("mnist", MNIST_ROOT, cache_dir=data_cache)


@pytest.fixture(scope="session")
def mnist_small(mnist, data_cache):
    """2000 train / 500 test examples (served from the session cache)."""
    return load("mnist", MNIST_ROOT, train_limit=2000, test_limit=500, cache_dir=data_cache)


@pytest.fixture
def one_thread():
    """One BLAS thread: bit-for-bit reproducible matrix products."""
    with threadpool_limits(1):
        yield


def pytest_collection_modifyitems(config, items):
    """The slow tests (real sweeps, servers, clusters, the reproduction) first, each group
    in its own order: pytest-xdist hands tests to its workers in this order, so the long ones
    start early and the short ones fill both workers at the end (alphabetically, the
    reproduction's 2-3 minutes started last, one worker finishing alone)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
