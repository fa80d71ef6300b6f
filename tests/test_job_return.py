"""mlp_sweeps.run.job_return: a job's return goes back to the launcher without its config,
after the configured Hydra callbacks have seen it whole."""

from __future__ import annotations

import pickle

from hydra._internal.callbacks import Callbacks
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from mlp_sweeps.run.job_return import LeanReturns

SEEN: list[tuple[bool, bool]] = []


class Recorder(Callback):
    """A user's ``hydra.callbacks`` entry: records whether it saw the job's configs."""

    def on_job_end(self, config, job_return, **kwargs):
        SEEN.append((job_return.cfg is not None, job_return.hydra_cfg is not None))


def test_a_job_return_loses_its_configs_after_the_callbacks_saw_them():
    config = OmegaConf.create({"hydra": {"callbacks": {
        "recorder": {"_target_": f"{__name__}.Recorder"}}}})
    callbacks = LeanReturns(Callbacks(config))
    task_cfg = OmegaConf.create({"lr": 0.1, "loss": {"name": "mse"}})
    hydra_cfg = OmegaConf.create({"hydra": {"job": {"name": "train", "num": 3}}})
    ret = JobReturn(overrides=["lr=0.1"], cfg=task_cfg, hydra_cfg=hydra_cfg,
                    working_dir="/somewhere", task_name="train", status=JobStatus.COMPLETED,
                    _return_value={"final_test_acc": 0.9})
    SEEN.clear()
    callbacks.on_job_end(config=config, job_return=ret)
    assert SEEN == [(True, True)]  # the user's callback saw the whole return
    assert ret.cfg is None and ret.hydra_cfg is None
    # what the sweep reads is kept, and what goes back to the launcher is small
    assert ret.status == JobStatus.COMPLETED and ret.return_value == {"final_test_acc": 0.9}
    assert ret.overrides == ["lr=0.1"] and ret.task_name == "train"
    assert len(pickle.dumps(ret)) < 1000
    # every other callback is Hydra's own, passed on
    assert callbacks.callbacks == callbacks._callbacks.callbacks
    callbacks.on_job_start(config=config, task_function=lambda cfg: None)
    # and it travels to a worker with the hydra context
    again = pickle.loads(pickle.dumps(callbacks))
    assert isinstance(again, LeanReturns) and len(again.callbacks) == 1
