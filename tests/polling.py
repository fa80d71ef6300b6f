"""Waiting in tests for what real processes do."""

from __future__ import annotations

import os
import signal
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


def freeze_when(pgid: int, pred, timeout: float = 300, every: float = 0.2):
    """Wait until ``pred()`` holds *with the process group ``pgid`` stopped* (SIGSTOP), and
    return its value, the group left stopped. What a test then does to the processes (a
    SIGKILL) finds exactly the state ``pred`` saw: nothing can change between the look and
    the kill. When the state moved on between a look and the stop, the group is continued
    and the wait goes on."""
    def frozen():
        if not pred():
            return None
        os.killpg(pgid, signal.SIGSTOP)
        value = pred()
        if not value:
            os.killpg(pgid, signal.SIGCONT)
        return value

    return wait_for(frozen, timeout, every)
