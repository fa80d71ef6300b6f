"""How busy the machine is now (:func:`probe_load`): which threads are runnable, at which
nice level and in which autogroup; the sweep's threads get their weighted fair share of the
cores (:func:`fair_share`), as Linux's scheduler gives it. Every ratio is stretched by it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mlp_sweeps.plan.cost.machine import busy_seconds





@dataclass(frozen=True)
class Load:
    """How busy the machine is now (:func:`probe_load`)."""

    share: float  # of a core one thread of this process got in the probe (1: a core to itself)
    others: float  # cores other processes kept busy meanwhile
    loadavg: float = 0.0  # runnable threads, averaged over the last minute
    # other processes' threads seen runnable during the probe (Linux), each as (the
    # fraction of the probe's samples it was runnable in, its scheduler weight relative to
    # a thread of ours at nice 0 (nice +5: 1.25**-5 = 0.33), its scheduling group: "" for
    # this process's own, else another autogroup (a session: another terminal, a service)
    runnable: tuple[tuple[float, float, str], ...] | None = None
    # the other groups' weights relative to ours (an autogroup's own nice level)
    group_weights: tuple[tuple[str, float], ...] = ()
    # this process is in the root autogroup (see :func:`fair_share`)
    root_group: bool = False

    def competing(self, cores: int | None = None) -> float:
        """Threads of other processes that will compete with the sweep's. From the
        runnable threads seen when known (each counted by the time it was runnable);
        else the most of the cores they kept busy, the last minute's load average and, on
        a saturated machine, as many as give the share the probe got (short bursts make
        the probe's share optimistic, the load average slow: each alone misses some
        load)."""
        if self.runnable is not None:
            return sum(t[0] for t in self.runnable)
        cores = cores or os.cpu_count() or 1
        from_share = cores / self.share - 1 if self.share < 0.9 else 0.0
        return max(self.others, self.loadavg, from_share)

    def slowdown(self, threads: int, cores: int | None = None) -> float:
        """Expected stretch of run times when the sweep's ``threads`` join (in this
        process's scheduling group, as its workers will be). With the runnable threads
        known: the scheduler's weighted fair share (:func:`fair_share`). Else the
        competing threads and ours shared equally over the cores."""
        cores = cores or os.cpu_count() or 1
        if self.runnable is not None:
            return 1.0 / fair_share(self.runnable, threads, cores, dict(self.group_weights),
                                    self.root_group)
        return max(1.0, (self.competing(cores) + threads) / cores)


def _level(entries: Sequence[tuple[float, float]], capacity: float) -> float:
    """Weighted water-filling: the level ``s`` at which sum(min(demand, s * weight)) =
    ``capacity`` (inf when every demand fits)."""
    if sum(d for d, _ in entries) <= capacity:
        return math.inf
    lo, hi = 0.0, max(d / w for d, w in entries if w > 0) if entries else 1.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sum(min(d, mid * w) for d, w in entries) < capacity else (lo, mid)
    return lo


def fair_share(others: Sequence[tuple], threads: int, cores: int,
               group_weights: dict[str, float] | None = None,
               root_group: bool = False) -> float:
    """The share of a core each of ``threads`` busy threads (weight 1, in this process's
    scheduling group) gets beside ``others`` ((demand in cores, weight[, group]) each: no
    group or "" is ours) on ``cores`` cores, as Linux's fair scheduler divides them: first
    between the groups (autogroups: sessions) by their weights, each group using at most
    what its threads ask for, then within our group between its threads by their nice
    weights, each thread at most a core and at most what it asks for.

    The root autogroup (:data:`ROOT_AUTOGROUP`; ours when ``root_group``) is no group of
    its own: its threads are peers of the sessions' groups, each weighed by its nice."""
    if threads <= 0:
        return 1.0
    weights = group_weights or {}
    ours = [(1.0, 1.0)] * threads
    groups: dict[str, float] = {}
    top = []  # (demand, weight) of what shares the cores first: groups, root threads
    for t in others:
        d, w, g = (t[0], t[1], t[2] if len(t) > 2 else "")
        if g == ROOT_AUTOGROUP:
            top.append((min(d, 1.0), w))
        elif g:
            groups[g] = groups.get(g, 0.0) + d
        else:
            ours.append((min(d, 1.0), w))
    top += [(min(cores, d), weights.get(g, 1.0)) for g, d in groups.items()]
    if root_group:  # ours are root threads too
        return min(1.0, _level(top + ours, cores))
    ours_cores = min(cores, sum(d for d, _ in ours))
    ours_cores = min(ours_cores, _level([(ours_cores, 1.0)] + top, cores))
    return min(1.0, _level(ours, ours_cores))


def nice_weight(nice: int) -> float:
    """The scheduler weight of a nice level relative to nice 0 (Linux's table: 1024 at 0,
    about 1.25x per level)."""
    return 1.25 ** -nice


ROOT_AUTOGROUP = "/"  # where a process never moved by setsid() (PID 1's, and its children's)


def _autogroup(pid: int | str) -> tuple[str, int] | None:
    """A process's autogroup and the group's nice level, from ``/proc/PID/autogroup``
    ("/autogroup-816 nice 0"). The kernel writes nothing for the root autogroup (PID 1's,
    and that of every process no ``setsid()`` moved out of it, e.g. a service's children):
    that is :data:`ROOT_AUTOGROUP`, at nice 0. None where the file cannot be read."""
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            text = f.read()
    except OSError:
        return None
    if not text.strip():
        return ROOT_AUTOGROUP, 0
    try:
        name, _, nice = text.split()
        return name, int(nice)
    except ValueError:
        return None


def _autogroups_enabled() -> bool:
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def runnable_threads(skip_pid: int | None = None) -> dict[int, tuple[int, int]] | None:
    """``{thread id: (process id, nice)}`` of the threads runnable now (state R in /proc),
    leaving out those of ``skip_pid`` and of its descendants (a sweep's own workers, busy
    importing while it probes, will run its jobs: they are not load); None where /proc
    cannot be read."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    parent: dict[int, int] = {}
    threads: dict[int, tuple[int, int]] = {}
    for p in pids:
        pid = int(p)
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        parent[pid] = int(stat[stat.rfind(b")") + 2:].split()[1])
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) "
            if len(fields) > 16 and fields[0] == b"R":
                threads[int(t)] = (pid, int(fields[16]))
    if skip_pid is None:
        return threads
    ours = {skip_pid}
    grew = True
    while grew:  # descendants, whatever the order /proc listed them in
        new = {c for c, pp in parent.items() if pp in ours and c not in ours}
        ours |= new
        grew = bool(new)
    return {t: v for t, v in threads.items() if v[0] not in ours}


def probe_load(seconds: float = 0.3, samples: int = 10) -> Load:
    """Run a single-threaded loop for ``seconds`` of wall time; its CPU time over the wall
    time is the share of a core a new thread gets now, /proc/stat tells the cores the
    other processes used meanwhile, and ``samples`` looks at /proc say which threads
    were runnable, at which nice level, in which autogroup (Linux; elsewhere: idle)."""
    me = os.getpid()
    own_nice = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0
    seen: dict[int, list[int]] = {}  # tid -> [samples runnable in, pid, nice]
    looked = 0
    x = np.ones(64)
    busy0, w0, c0 = busy_seconds(), time.perf_counter(), time.process_time()
    while True:
        elapsed = time.perf_counter() - w0
        if elapsed >= seconds:
            break
        if looked < samples and elapsed >= looked * seconds / samples:
            now = runnable_threads(skip_pid=me)
            if now is None:
                samples = looked = 0
            else:
                looked += 1
                for tid, (pid, nice) in now.items():
                    seen.setdefault(tid, [0, pid, nice])[0] += 1
        for _ in range(200):
            x = x * 1.0000001
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    busy = busy_seconds() - busy0
    others = (busy - cpu) / wall if math.isfinite(busy) else 0.0
    try:
        loadavg = os.getloadavg()[0]
    except OSError:
        loadavg = 0.0
    if not looked:
        return Load(min(1.0, cpu / wall), max(0.0, others), loadavg)
    mine = _autogroup("self") if _autogroups_enabled() else None
    runnable, weights = group_runnable(seen.values(), looked, own_nice, mine)
    return Load(min(1.0, cpu / wall), max(0.0, others), loadavg, runnable, weights,
                root_group=mine is not None and mine[0] == ROOT_AUTOGROUP)


def group_runnable(seen, looked: int, own_nice: int, mine: tuple[str, int] | None,
                   autogroup=_autogroup):
    """``(runnable, group weights)`` for :class:`Load` from ``seen`` ``[samples runnable
    in, pid, nice]`` of other threads over ``looked`` samples. With autogroups on (``mine``:
    our process's autogroup) the scheduler shares the cores between sessions first: a
    thread of another autogroup counts in its group (weighed by the group's nice against
    ours), not by its own nice against ours."""
    groups: dict[int, tuple[str, int] | None] = {}
    runnable, weights = [], {}
    for n, pid, nice in seen:
        if mine is not None and pid not in groups:
            groups[pid] = autogroup(pid)
        g = groups.get(pid)
        if g is not None and g[0] != mine[0]:
            weights[g[0]] = nice_weight(g[1] - mine[1])
            runnable.append((n / looked, nice_weight(nice), g[0]))
        else:
            runnable.append((n / looked, nice_weight(nice - own_nice), ""))
    return tuple(runnable), tuple(weights.items())
