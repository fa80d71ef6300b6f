"""User-facing errors: Hydra prints their message alone, without a traceback."""

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
