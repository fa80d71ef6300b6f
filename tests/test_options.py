"""The rules of the options around training (mlp_sweeps/plan/options.py): every bad value named
with what it may be, every good one let through; the memory check against a given and the
real available memory."""

from __future__ import annotations

import pytest

from mlp import TrainConfig
from mlp_sweeps.plan import options
from mlp_sweeps.errors import InvalidConfig

GOOD = {"blas_threads": [None, 1, 8], "checkpoint_every": [None, 0, 5],
        "tracking.uri": [None, "sqlite:///x.db", "http://127.0.0.1:5000", "mlruns",
                         "./store", "/tmp/store", "file:///tmp/s", "postgresql+psycopg2://u@h/d"],
        "tracking.experiment": ["study", "a b"], "tracking.heartbeat_timeout_s": [0.5, 60]}
BAD = {"blas_threads": [0, -1, True, 1.5], "checkpoint_every": [-1, 2.5],
       "tracking.uri": ["ftp://x", "", "s3://bucket/path", 5], "tracking.experiment": ["", "  "],
       "tracking.heartbeat_timeout_s": [0, -5, float("nan"), float("inf")]}


def _nested(key, value):
    out = d = {}
    *heads, last = key.split(".")
    for h in heads:
        d = d.setdefault(h, {})
    d[last] = value
    return out


@pytest.mark.parametrize("key,value", [(k, v) for k, vs in GOOD.items() for v in vs])
def test_good_values_pass(key, value):
    options.check_run(_nested(key, value))


@pytest.mark.parametrize("key,value", [(k, v) for k, vs in BAD.items() for v in vs])
def test_bad_values_are_named_with_what_they_may_be(key, value):
    with pytest.raises(InvalidConfig, match=f"{key}=.*must be") as e:
        options.check_run(_nested(key, value))
    assert repr(value) in str(e.value)


def test_sweeper_settings_are_checked_by_name():
    class S:
        max_batch_size = 0

    with pytest.raises(InvalidConfig, match=r"hydra.sweeper.max_batch_size=0 .* >= 1"):
        options.check_sweeper(S())
    S.max_batch_size = None
    options.check_sweeper(S())


def test_a_configuration_larger_than_the_memory_is_refused():
    cfg = TrainConfig(hidden_size=4096, depth=2)
    with pytest.raises(InvalidConfig, match=r"hidden_size=4096.*GiB of memory.*0.1 GiB"):
        options.check_memory(cfg, 784, 10, available=2**30 // 10)
    options.check_memory(cfg, 784, 10, available=2**34)
    options.check_memory(TrainConfig(), 784, 10)  # the baseline fits this machine
    assert options.available_memory() > 2**28
