"""What a job sends back to the launching process: its status and return value, not its
config.

Hydra's ``run_job`` returns a ``JobReturn`` holding the job's whole config twice over
(``cfg``, and ``hydra_cfg`` with the ``hydra`` node: a few hundred OmegaConf nodes). A
launcher running the job in another process pickles it back, and the launcher keeps every
job's return until the sweep ends: about 0.3 MB a job in the launching process (a
1,000-job sweep of tiny runs peaked at 437 MiB against 142 MiB for its plan), plus the
pickling on both sides. The sweep reads only each return's status and value (the run's
summary, or the job's exception); the job's config is in its output folder
(``.hydra/``) and in the store.

:class:`LeanReturns` wraps Hydra's callbacks (the sweeper hands it to every launcher, with
the hydra context): when a job ends, the configured ``hydra.callbacks`` see its full
return first, then the two configs are dropped from it, in the process that ran it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LeanReturns"]


class LeanReturns:
    """Hydra's ``Callbacks`` (every call passed on), with job returns sent back without
    their ``cfg`` and ``hydra_cfg`` (module docstring). Pickled with the hydra context."""

    def __init__(self, callbacks: Any):
        self._callbacks = callbacks

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_callbacks":
            raise AttributeError(name)
        return getattr(self._callbacks, name)

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        self._callbacks.on_job_end(config=config, job_return=job_return, **kwargs)
        job_return.cfg = None
        job_return.hydra_cfg = None
