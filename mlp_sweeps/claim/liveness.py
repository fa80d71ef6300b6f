"""Whether the process that holds a run is still alive, where that can be known at once.

A heartbeat is the only way to judge a process of another machine, and it takes a timeout
to judge (a run killed a second ago still has a fresh heartbeat). On the machine that ran
it, the kernel knows: a run's claim records where its process lives (:func:`here`: the
host, the kernel's boot id, the pid, and the process's start time in clock ticks since
boot, field 22 of ``/proc/<pid>/stat``, and its pid namespace), and a reader on the same
host decides from that at once (:func:`verdict`):

- another boot of this host (the boot id differs): the process is gone;
- another pid namespace (another container sharing the host's name): unknown;
- no process with that pid, or one that started at another time (the pid was reused): gone;
- the same pid and start time: alive (the heartbeat still decides whether it still runs
  *this* run: a worker process outlives the jobs it ran).

Anywhere else (another host, no ``/proc``, a run recorded without these tags) the verdict is
unknown and the heartbeat rule alone decides (:func:`mlp_sweeps.claim.ledger.alive`).
"""

from __future__ import annotations

import functools
import os
import socket
from typing import Mapping

__all__ = ["here", "verdict", "boot_id", "pid_namespace", "process_start"]

# the tags (mlp_sweeps.claim.ledger.Tag names them)
HOST, BOOT_ID, PID_NS, PID, PID_START = "host", "boot_id", "pid_ns", "pid", "pid_start"


@functools.lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot of this machine's kernel ("" where the kernel does not say)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def pid_namespace() -> str:
    """This process's pid namespace, e.g. ``pid:[4026531836]`` ("" where unknown)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot ("" if there is no such
    process, or the kernel does not say)."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read()
    except (OSError, ValueError):
        return ""
    # the command name (field 2) is in parentheses and may hold spaces or ')': fields
    # after the last ')' are plain; the start time is field 22, the 20th of those
    fields = stat[stat.rfind(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else ""


def here() -> dict[str, str]:
    """Where this process lives, as the tags a run records."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), BOOT_ID: boot_id(), PID_NS: pid_namespace(),
            PID: str(pid), PID_START: process_start(pid)}


def verdict(tags: Mapping[str, str]) -> bool | None:
    """True if the process the tags name is alive, False if it is gone, None if that cannot
    be known from this host (see the module)."""
    host, boot, ns, pid, start = (str(tags.get(k, "")) for k in (HOST, BOOT_ID, PID_NS, PID,
                                                                  PID_START))
    if not (host and boot and ns and pid.isdigit() and start and boot_id()) \
            or host != socket.gethostname():
        return None
    if boot != boot_id():
        return False
    if ns != pid_namespace():
        return None
    return process_start(int(pid)) == start
