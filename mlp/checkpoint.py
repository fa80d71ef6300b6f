"""Training checkpoints: everything needed to continue a run bit for bit.

A checkpoint holds the parameters, the optimizer's state (its ``state_dict()``, whatever the
optimizer), the states of the shuffling and dropout random generators, the epoch reached, the
history and timing so far, and the training config it belongs to. Saved as one ``.npz``
(arrays + a JSON header), written atomically.

Format 2 stores the optimizer's lists of arrays as ``optimizer:<name>:<i>`` and its numbers
in the header; format 1 (SGD only, ``velocity:<i>``) is still read, as SGD's state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write

__all__ = ["CheckpointError", "save", "load", "check_matches"]

FORMAT = 2
READABLE = (1, 2)


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, or made for another configuration."""


def save(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (from the training loop) to ``path`` atomically."""
    path = Path(path)
    arrays = {f"param:{k}": v for k, v in state["params"].items()}
    numbers = {}
    for key, value in state["optimizer"].items():
        if isinstance(value, list):
            arrays.update({f"optimizer:{key}:{i}": v for i, v in enumerate(value)})
        else:
            numbers[key] = value
    meta = {k: v for k, v in state.items() if k not in ("params", "optimizer")}
    meta["optimizer_numbers"] = numbers
    meta["format"] = FORMAT
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


def load(path: str | os.PathLike) -> dict[str, Any]:
    """The state saved by :func:`save`."""
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            params = {k.split(":", 1)[1]: z[k] for k in z.files if k.startswith("param:")}
            opt: dict[str, Any] = dict(meta.pop("optimizer_numbers", {}))
            lists: dict[str, dict[int, np.ndarray]] = {}
            for k in z.files:
                kind, _, rest = k.partition(":")
                if kind == "optimizer":  # optimizer:<name>:<i>
                    name, _, i = rest.rpartition(":")
                    lists.setdefault(name, {})[int(i)] = z[k]
                elif kind == "velocity":  # format 1: SGD's velocity:<i>
                    lists.setdefault("velocity", {})[int(rest)] = z[k]
            opt.update({name: [d[i] for i in range(len(d))] for name, d in lists.items()})
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None
    if meta.get("format") not in READABLE:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')} is not one of "
                              f"{', '.join(map(str, READABLE))}")
    meta["format"] = FORMAT
    return {**meta, "params": params, "optimizer": opt}


def check_matches(state: dict[str, Any], config: dict[str, Any]) -> None:
    """Raise :class:`CheckpointError` naming the settings that differ."""
    saved = state.get("config", {})
    diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if diff:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs config {config.get(k)!r}"
                            for k in diff)
        raise CheckpointError(f"the checkpoint was made for another configuration ({details})")
