"""User-facing errors: Hydra prints their message alone, without a traceback."""

from __future__ import annotations

from hydra.errors import CompactHydraException

NOTHING_RECORDED = "Nothing was run or recorded."


class UserError(CompactHydraException):
    """Bad input from the user (config, store, data): the message says what and how to fix.

    A subclass with ``before_anything = True`` is raised before any run is started or
    recorded, and its message says so (:data:`NOTHING_RECORDED`, on a line of its own).
    """

    before_anything = False

    def __init__(self, message: str = ""):
        if self.before_anything and NOTHING_RECORDED not in message:
            message = f"{message}\n{NOTHING_RECORDED}"
        super().__init__(message)


class InvalidConfig(UserError, ValueError):
    """A bad configuration value; nothing was run or recorded."""

    before_anything = True


class TrackingError(UserError, RuntimeError):
    """The tracking store cannot be used (unreachable server, bad URI)."""


class WorkerLost(RuntimeError):
    """A launcher lost workers: a process, Ray task or SLURM job died before its job
    returned (the job's own code did not fail: that is a failed run, returned per job).

    Each launcher raises it (or a subclass) for its own kind of loss, with the loss it saw
    as ``__cause__``; the mlp sweeper then closes the runs in flight KILLED and launches them
    again. ``why``: a job's position in the batch -> the reason, when the launcher knows;
    ``relaunch = False``: those jobs are not launched again in this sweep (SLURM: scancel
    and time limits are decisions).
    """

    relaunch = True

    def __init__(self, message: str = "", why: dict[int, str] | None = None):
        self.why = dict(why or {})
        super().__init__(message)
