"""User-facing errors: Hydra prints their message alone, without a traceback."""

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """Bad input from the user (config, store, data): the message says what and how to fix."""


class InvalidConfig(UserError, ValueError):
    """A bad configuration value; nothing was run or recorded."""


class TrackingError(UserError, RuntimeError):
    """The tracking store cannot be used (unreachable server, bad URI)."""
