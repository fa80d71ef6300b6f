"""Checkpoints: a run continued from a saved state ends bit-identical to an uninterrupted
one (weights, history), with dropout on, through a file on disk."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import TrainConfig, checkpoint, train


def _cfg(**kw) -> TrainConfig:
    cfg = TrainConfig(hidden_size=32, depth=2, dropout=0.2, epochs=6, test_every=2, lr=1e-3,
                      seed=3, **kw)
    cfg.data.train_limit, cfg.data.test_limit = 2000, 500
    return cfg


def test_resume_from_a_checkpoint_file_is_bit_identical(mnist_small, one_thread, tmp_path):
    full = train(_cfg(), data=mnist_small)
    saved = []
    train(_cfg(), data=mnist_small, checkpoint_every=2,
          on_checkpoint=lambda st: saved.append(checkpoint.save(tmp_path / f"e{st['epoch']}.npz", st)))
    assert [p.name for p in saved] == ["e2.npz", "e4.npz"]  # none after the last epoch
    state = checkpoint.load(tmp_path / "e4.npz")
    assert state["epoch"] == 4 and len(state["history"]) == 4
    resumed = train(_cfg(), data=mnist_small, resume=state)
    def metrics(h):  # wall times aside, every epoch's metrics must match exactly
        return [{k: v for k, v in r.items() if not k.endswith("_time_s")} for r in h]

    assert metrics(resumed.history) == metrics(full.history)
    for a, b in zip(resumed.model.params, full.model.params):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_checkpoint_of_another_config_is_rejected(mnist_small, tmp_path):
    saved = []
    train(_cfg(), data=mnist_small, checkpoint_every=2,
          on_checkpoint=lambda st: saved.append(checkpoint.save(tmp_path / "c.npz", st)))
    state = checkpoint.load(tmp_path / "c.npz")
    with pytest.raises(checkpoint.CheckpointError, match=r"lr: checkpoint 0.001 vs config 0.01"):
        train(TrainConfig(**{**_cfg().__dict__, "lr": 1e-2}), data=mnist_small, resume=state)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(bad)
