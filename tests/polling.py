"""Waiting in tests for what real processes do."""

from __future__ import annotations

import time


def wait_for(pred, timeout: float = 300, every: float = 0.2):
    """``pred()``'s first truthy value, polled every ``every`` s; AssertionError after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")
