"""Training checkpoints: everything needed to continue a run bit for bit.

A checkpoint holds the parameters, the optimizer's velocity, the states of the shuffling and
dropout random generators, the epoch reached, the history and timing so far, and the
training config it belongs to. Saved as one ``.npz`` (arrays + a JSON header), written
atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "save", "load", "check_matches"]

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, or made for another configuration."""


def save(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (from the training loop) to ``path`` atomically."""
    path = Path(path)
    arrays = {f"param:{k}": v for k, v in state["params"].items()}
    arrays.update({f"velocity:{i}": v for i, v in enumerate(state["velocity"])})
    meta = {k: v for k, v in state.items() if k not in ("params", "velocity")}
    meta["format"] = FORMAT
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path: str | os.PathLike) -> dict[str, Any]:
    """The state saved by :func:`save`."""
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            params = {k.split(":", 1)[1]: z[k] for k in z.files if k.startswith("param:")}
            n_vel = sum(k.startswith("velocity:") for k in z.files)
            velocity = [z[f"velocity:{i}"] for i in range(n_vel)]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')} is not {FORMAT}")
    return {**meta, "params": params, "velocity": velocity}


def check_matches(state: dict[str, Any], config: dict[str, Any]) -> None:
    """Raise :class:`CheckpointError` naming the settings that differ."""
    saved = state.get("config", {})
    diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if diff:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs config {config.get(k)!r}"
                            for k in diff)
        raise CheckpointError(f"the checkpoint was made for another configuration ({details})")
