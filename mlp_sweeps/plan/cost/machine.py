"""What this machine is, as the costs measured on it are keyed: its CPU, the BLAS NumPy
links and its kernel (:func:`machine`), and how much CPU every process has used
(:func:`busy_seconds`, for a load measured while something is timed)."""

from __future__ import annotations

import os
import platform

import numpy as np
from threadpoolctl import threadpool_info


def numpy_blas() -> dict:
    """threadpoolctl's record of the BLAS NumPy links (its wheel's own OpenBLAS, under
    ``numpy.libs``), else of the first BLAS loaded. SciPy's wheel brings another OpenBLAS,
    and the order threadpoolctl lists them in is not fixed: "the first" named either."""
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))  # site-packages
    own = [i for i in blas if os.path.basename(os.path.dirname(i.get("filepath", "")))
           in ("numpy.libs", ".dylibs") or str(i.get("filepath", "")).startswith(
               os.path.join(numpy_dir, "numpy"))]
    return (own or blas or [{}])[0]


def machine() -> dict:
    """What a timing ran on: CPU model and cores, BLAS library, kernel and threads, NumPy."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = numpy_blas()
    return {"cpu": cpu, "cores": os.cpu_count(), "blas": blas.get("internal_api", "unknown"),
            "blas_version": blas.get("version"), "kernel": blas.get("architecture"),
            "forced_kernel": os.environ.get("OPENBLAS_CORETYPE"), "blas_threads": 1,
            "numpy": np.__version__, "python": platform.python_version()}


def busy_seconds() -> float:
    """CPU seconds all processes have used since boot (Linux); NaN elsewhere."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return float("nan")
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
