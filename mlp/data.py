"""MNIST-format datasets: IDX files (gzip or raw), verified by content hash, decoded once.

Load path:

1. find the four IDX files under ``root`` (``train-images-idx3-ubyte`` or
   ``train-images.idx3-ubyte``, with or without ``.gz``), downloading them from the
   canonical mirrors if none are there;
2. verify each file by the SHA256 of its *decompressed* bytes;
3. decode and preprocess once into a float32/uint8 ``.npy`` cache (keyed by the content
   hashes and the preprocessing) and memory-map it, so a second load, and every parallel
   worker, shares one decoded copy through the page cache.

A small manifest in the cache remembers (path, size, mtime) -> verified hash, so a
second load neither decompresses nor hashes; any change to a file re-verifies it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import PROJECT_ROOT, atomic_write

__all__ = ["DATASETS", "NORMALIZATIONS", "Dataset", "DataError", "load", "default_cache_dir",
           "n_classes", "split_sizes", "data_sizes"]

_PARTS = ("train-images", "train-labels", "t10k-images", "t10k-labels")
_KIND = {"images": "idx3", "labels": "idx1"}

# name -> default folder, download mirrors, number of classes, SHA256 of the decompressed
# IDX files.
DATASETS: dict[str, dict] = {
    "mnist": {
        "root": PROJECT_ROOT / "data" / "mnist",
        "classes": 10,
        "train": 60_000, "test": 10_000, "features": 784,  # what the files hold (verified)
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        "sha256": {
            "train-images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    },
    "fashion_mnist": {
        # where Debian's dataset-fashion-mnist package installs it
        "root": Path("/usr/share/datasets/fashion-mnist"),
        "classes": 10,
        "train": 60_000, "test": 10_000, "features": 784,
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "sha256": {
            "train-images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    },
}

# name -> (shift, scale): x -> (x - shift) / scale
NORMALIZATIONS = {"study": (128.0, 255.0), "unit": (0.0, 255.0), "none": (0.0, 1.0)}


class DataError(RuntimeError):
    """A dataset file is missing, truncated, altered or malformed."""


@dataclass(frozen=True)
class Dataset:
    """Train/test split. Images: ndarray of shape (n, 784), float32 (read-only,
    usually memory-mapped); labels: ndarray of shape (n,), int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    # held out of the training set (``val_size``): None when there is none
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        """The registry's count for a known dataset; else from the labels (arrays given by
        hand, e.g. ``Dataset("tiny", x, y, xt, yt)``)."""
        if self.name in DATASETS:
            return n_classes(self.name)
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def split_sizes(name: str, train_limit: int | None = None, test_limit: int | None = None,
                val_size: int = 0) -> tuple[int, int, int]:
    """(training, test, validation) examples of dataset ``name`` with these settings, known
    before loading it: the validation examples are the training set's last ``val_size``,
    the training examples the first ``train_limit`` of the rest."""
    n_train, n_test = DATASETS[name]["train"], DATASETS[name]["test"]
    rest = n_train - val_size
    return (min(rest, train_limit) if train_limit else rest,
            min(n_test, test_limit) if test_limit else n_test, val_size)


def data_sizes(data: Any) -> tuple[int, int, int, int]:
    """(training examples, test examples, features, classes) that data settings ``data`` (a
    :class:`mlp.config.DataConfig`: ``name``, ``train_limit``, ``test_limit``, ``val_size``)
    select, known before loading anything: what the cost model, the memory check and the
    tracked dataset input count."""
    n_train, n_test, _ = split_sizes(data.name, data.train_limit, data.test_limit,
                                     data.val_size)
    return n_train, n_test, DATASETS[data.name]["features"], DATASETS[data.name]["classes"]


def n_classes(name: str) -> int:
    """Number of classes of dataset ``name`` (known before loading it: config validation)."""
    return DATASETS[name]["classes"]


def default_cache_dir() -> Path:
    """``$MLP_SWEEPS_CACHE``, else ``$XDG_CACHE_HOME/mlp-sweeps``, else ``~/.cache/mlp-sweeps``."""
    env = os.environ.get("MLP_SWEEPS_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mlp-sweeps"


def _candidates(root: Path, part: str) -> list[Path]:
    base, kind = part.rsplit("-", 1)
    stems = [f"{base}-{kind}-{_KIND[kind]}-ubyte", f"{base}-{kind}.{_KIND[kind]}-ubyte"]
    return [root / (s + ext) for s in stems for ext in (".gz", "")]


def _find(root: Path, part: str) -> Path | None:
    for p in _candidates(root, part):
        if p.is_file():
            return p
    return None


def _read_bytes(path: Path) -> bytes:
    """The decompressed content of an IDX file (gzip detected by its magic bytes)."""
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # truncated or corrupt gzip stream
        raise DataError(f"{path}: cannot be decompressed ({e}); the file is damaged: "
                        f"delete it and copy or download it again") from None


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    """IDX format: 2 zero bytes, type code (0x08 = uint8), ndim, big-endian int32 dims."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4).tolist()
    start = 4 + 4 * ndim
    if len(data) - start != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but the file has {len(data) - start} "
                        f"data bytes (truncated?)")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)


def _download(name: str, root: Path) -> None:
    spec = DATASETS[name]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{name}: the files are not in {root} and it cannot be created ({e}); "
                        f"put the four IDX files there or pass data.root") from None
    for part in _PARTS:
        if _find(root, part):
            continue
        fname = _candidates(root, part)[0].name  # canonical name, .gz
        errors = []
        for mirror in spec["mirrors"]:
            url = mirror + fname
            try:  # a partial download leaves nothing behind
                with urllib.request.urlopen(url, timeout=10) as r, \
                        atomic_write(root / fname) as f:
                    shutil.copyfileobj(r, f)
                break
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                errors.append(f"{url}: {e}")
        else:
            raise DataError(
                f"{name}: {fname} is missing from {root} and could not be downloaded:\n  "
                + "\n  ".join(errors)
                + f"\nOffline? Copy the four IDX files ({', '.join(_PARTS)}; .gz or raw) into "
                  f"{root}, or point data.root at a folder that has them.")


def _verified_arrays(name: str, root: Path, manifest: dict) -> tuple[dict, dict]:
    """Find, verify and hash the four files. Returns (hashes, paths)."""
    spec = DATASETS[name]
    if not any(_find(root, p) for p in _PARTS):
        _download(name, root)
    hashes, paths = {}, {}
    for part in _PARTS:
        path = _find(root, part)
        if path is None:
            tried = ", ".join(p.name for p in _candidates(root, part))
            raise DataError(f"{name}: {part} is missing from {root} (looked for {tried}); "
                            f"copy it there (or delete the folder's files to download all four)")
        st = path.stat()
        key = str(path.resolve())
        seen = manifest.get(key)
        expected = spec["sha256"][part]
        if seen and seen["size"] == st.st_size and seen["mtime_ns"] == st.st_mtime_ns \
                and seen["sha256"] == expected:
            hashes[part] = expected
        else:
            digest = hashlib.sha256(_read_bytes(path)).hexdigest()
            if digest != expected:
                raise DataError(
                    f"{path}: SHA256 of the decompressed content is {digest}, expected {expected}. "
                    f"The file is altered or truncated: replace it with a good copy "
                    f"(e.g. from the canonical mirror {spec['mirrors'][0]}{_candidates(root, part)[0].name}).")
            manifest[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            hashes[part] = digest
        paths[part] = path
    return hashes, paths


def _load_manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load(name: str = "mnist", root: str | os.PathLike | None = None, *,
         normalize: str = "study", train_limit: int | None = None,
         test_limit: int | None = None, cache_dir: str | os.PathLike | None = None,
         val_size: int = 0) -> Dataset:
    """Load a dataset, verified and cached.

    Parameters
    ----------
    name : {"mnist", "fashion_mnist"}
    root : path, optional
        Folder with the four IDX files; defaults to the project's ``data/mnist`` for MNIST
        and ``/usr/share/datasets/fashion-mnist`` (Debian) for Fashion-MNIST.
    normalize : {"study", "unit", "none"}
        ``study``: (x - 128) / 255 as in the published code; ``unit``: x / 255;
        ``none``: raw 0..255 as float32.
    train_limit, test_limit : int, optional
        Use only the first N examples (views; nothing is copied).
    val_size : int
        Hold out the training set's last ``val_size`` examples as a validation set
        (``x_val``, ``y_val``; views), never trained on; ``train_limit`` then counts from
        the first of the rest. 0: no validation set.
    cache_dir : path, optional
        Defaults to :func:`default_cache_dir`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
    for label, lim in (("train_limit", train_limit), ("test_limit", test_limit)):
        if lim is not None and (not isinstance(lim, (int, np.integer)) or lim < 1):
            raise ValueError(f"{label} must be a positive integer or None, got {lim!r}")
    root = Path(root) if root is not None else DATASETS[name]["root"]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    manifest_path = cache / "verified.json"
    manifest = _load_manifest(manifest_path)
    before = json.dumps(manifest, sort_keys=True)
    hashes, paths = _verified_arrays(name, root, manifest)
    if json.dumps(manifest, sort_keys=True) != before:
        with atomic_write(manifest_path, "w") as f:
            f.write(json.dumps(manifest, indent=1))

    shift, scale = NORMALIZATIONS[normalize]
    arrays = {}
    for part in _PARTS:
        is_images = part.endswith("images")
        tag = f"{normalize}-f32" if is_images else "i64"
        f = cache / f"{name}-{part}-{hashes[part][:16]}-{tag}.npy"
        if not f.exists():
            raw = _parse_idx(_read_bytes(paths[part]), paths[part])
            if is_images:
                arr = raw.reshape(raw.shape[0], -1).astype(np.float32)
                arr -= np.float32(shift)
                arr /= np.float32(scale)
            else:
                arr = raw.astype(np.int64)
            with atomic_write(f) as out:  # parallel workers never see half a file
                np.save(out, arr)
        arrays[part] = np.load(f, mmap_mode="r")
    n_train = arrays["train-images"].shape[0]
    n_test = arrays["t10k-images"].shape[0]
    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)) \
            or not 0 <= val_size < n_train:
        raise ValueError(f"val_size={val_size!r} must be an integer from 0 to {n_train - 1} "
                         f"(the {n_train} training examples of {name}, at least one left to "
                         f"train on)")
    rest = n_train - int(val_size)
    tl = rest if train_limit is None else min(int(train_limit), rest)
    sl = n_test if test_limit is None else min(int(test_limit), n_test)
    val = (arrays["train-images"][rest:], arrays["train-labels"][rest:]) if val_size else (None, None)
    return Dataset(name, arrays["train-images"][:tl], arrays["train-labels"][:tl],
                   arrays["t10k-images"][:sl], arrays["t10k-labels"][:sl], *val)
