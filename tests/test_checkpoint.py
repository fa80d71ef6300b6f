"""Checkpoints: a run continued from a saved state ends bit-identical to an uninterrupted
one (weights, history), with dropout on, through a file on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlp import TrainConfig, checkpoint, optim, train


def _opt_state_keys(name: str) -> set[str]:
    return set(optim.get(name, [np.zeros(1)], lr=0.1).state_dict())


def _cfg(**kw) -> TrainConfig:
    cfg = TrainConfig(hidden_size=32, depth=2, dropout=0.2, epochs=6, test_every=2, lr=1e-3,
                      seed=3, **kw)
    cfg.data.train_limit, cfg.data.test_limit = 2000, 500
    return cfg


@pytest.mark.parametrize("optimizer", optim.names())
def test_resume_from_a_checkpoint_file_is_bit_identical(mnist_small, one_thread, tmp_path,
                                                        optimizer):
    full = train(_cfg(optimizer=optimizer), data=mnist_small)
    saved = []
    train(_cfg(optimizer=optimizer), data=mnist_small, checkpoint_every=2,
          on_checkpoint=lambda st: saved.append(checkpoint.save(tmp_path / f"e{st['epoch']}.npz", st)))
    assert [p.name for p in saved] == ["e2.npz", "e4.npz"]  # none after the last epoch
    state = checkpoint.load(tmp_path / "e4.npz")
    assert state["epoch"] == 4 and len(state["history"]) == 4
    assert set(state["optimizer"]) == _opt_state_keys(optimizer)
    resumed = train(_cfg(optimizer=optimizer), data=mnist_small, resume=state)
    def metrics(h):  # wall times aside, every epoch's metrics must match exactly
        return [{k: v for k, v in r.items() if not k.endswith("_time_s")} for r in h]

    assert metrics(resumed.history) == metrics(full.history)
    for a, b in zip(resumed.model.params, full.model.params):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_a_resumed_run_counts_its_training_time_before_the_checkpoint(mnist_small, one_thread,
                                                                       tmp_path):
    """train_time_s is the run's whole training time, not only the resumed process's share:
    the estimator learns run times from it, and a killed-and-resumed run is still one run."""
    states = []
    train(_cfg(), data=mnist_small, checkpoint_every=2, on_checkpoint=states.append)
    path = checkpoint.save(tmp_path / "e4.npz", states[-1])
    before = sum(r["epoch_time_s"] + r.get("eval_time_s", 0.0) for r in states[-1]["history"])
    assert states[-1]["elapsed_s"] >= before > 0
    resumed = train(_cfg(), data=mnist_small, resume=checkpoint.load(path))
    epochs = sum(r["epoch_time_s"] + r.get("eval_time_s", 0.0) for r in resumed.history)
    assert len(resumed.history) == 6
    assert resumed.metrics["train_time_s"] >= epochs  # all six epochs, four of them before
    # the CPU time is carried over the same way (the estimator's share of a core the run got)
    assert states[-1]["cpu_s"] > 0 and resumed.metrics["cpu_time_s"] > 0
    heavy = dict(checkpoint.load(path), cpu_s=1000.0)
    assert train(_cfg(), data=mnist_small, resume=heavy).metrics["cpu_time_s"] >= 1000.0
    # a checkpoint from before elapsed_s was saved: the epochs' times stand in for it
    old = {k: v for k, v in checkpoint.load(path).items() if k != "elapsed_s"}
    again = train(_cfg(), data=mnist_small, resume=old)
    assert again.metrics["train_time_s"] >= sum(r["epoch_time_s"] + r.get("eval_time_s", 0.0)
                                                for r in again.history)


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


def test_a_format_1_checkpoint_still_resumes(mnist_small, one_thread, tmp_path):
    """Checkpoints written before optimizers were selectable (format 1: SGD's velocity as
    ``velocity:<i>``) are read as SGD's state: an unfinished run continues after an upgrade."""
    full = train(_cfg(), data=mnist_small)
    states = []
    train(_cfg(), data=mnist_small, checkpoint_every=2, on_checkpoint=states.append)
    st = states[-1]
    # the format-1 layout, as the previous checkpoint.save wrote it
    arrays = {f"param:{k}": v for k, v in st["params"].items()}
    arrays.update({f"velocity:{i}": v for i, v in enumerate(st["optimizer"]["velocity"])})
    meta = {k: v for k, v in st.items() if k not in ("params", "optimizer")}
    meta["format"] = 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    state = checkpoint.load(tmp_path / "old.npz")
    assert set(state["optimizer"]) == {"velocity"}
    resumed = train(_cfg(), data=mnist_small, resume=state)
    for a, b in zip(resumed.model.params, full.model.params):
        assert np.array_equal(a, b)


def test_checkpoint_of_another_optimizer_is_rejected(mnist_small, tmp_path):
    states = []
    train(_cfg(), data=mnist_small, checkpoint_every=2, on_checkpoint=states.append)
    with pytest.raises(checkpoint.CheckpointError, match=r"optimizer: checkpoint None vs config "
                                                         r"'adam'"):
        train(_cfg(optimizer="adam"), data=mnist_small, resume=states[0])
