"""A job that fails at run time for want of memory, as it happens to users: the planning's
memory check (mlp_sweeps/plan/options.py) lets a configuration through when it fits the memory
the machine has available, but the sweep runs under an address-space limit (``ulimit -v``,
RLIMIT_AS, as a shared machine or a scheduler may set) too small for it; building its
network then raises MemoryError in the worker. Launcher and workers fit in the limit
(about 2 GiB of address space each, measured); the network's weights (drawn in float64),
their float32 copy and the process itself take more than 3 GiB while it is built. The
machine needs 15.4 GB available for the configuration to pass planning."""

from __future__ import annotations

import resource

AS_LIMIT = 3 * 2**30
TOO_BIG = 300_000  # hidden units: 15.4 GB by mlp.train.memory_bytes, over 3 GiB to build


def limit_memory() -> None:
    """``preexec_fn`` for the sweep's process (its workers inherit the limit)."""
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
