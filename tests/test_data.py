"""The dataset loader on the real files: content, verification, damage detection, caching.

Every load uses a temporary cache (``cache_dir=``), never ~/.cache. Damaged copies live
in ``tmp_path``; no test needs the network (one file missing, not all four, so the loader
does not try to download).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FASHION_ROOT, MNIST_ROOT
from mlp.data import DATASETS, DataError, load

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
PARTS = ("train-images", "train-labels", "t10k-images", "t10k-labels")


def _mnist_file(part: str) -> Path:
    (path,) = MNIST_ROOT.glob(f"{part}*.gz")
    return path


def _copy_mnist(dest: Path, skip: str | None = None) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    copies = {}
    for part in PARTS:
        if part != skip:
            src = _mnist_file(part)
            copies[part] = Path(shutil.copy2(src, dest / src.name))
    return copies


def _decompress(gz: Path) -> Path:
    """Replace ``x.gz`` by the raw file ``x``."""
    raw = gz.with_suffix("")
    raw.write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    return raw


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- content


def test_mnist_shapes_and_types(mnist):
    assert mnist.x_train.shape == (60000, 784)
    assert mnist.x_test.shape == (10000, 784)
    assert mnist.y_train.shape == (60000,) and mnist.y_test.shape == (10000,)
    assert mnist.x_train.dtype == np.float32 and mnist.x_test.dtype == np.float32
    assert mnist.y_train.dtype.kind == "i" and mnist.y_test.dtype.kind == "i"
    assert mnist.n_features == 784 and mnist.n_classes == 10


def test_mnist_study_normalization_range(mnist):
    # (x - 128) / 255 for pixels 0..255: [-128/255, 127/255]
    lo, hi = np.float32(-128.0) / np.float32(255.0), np.float32(127.0) / np.float32(255.0)
    for x in (mnist.x_train, mnist.x_test):
        assert x.min() == lo and x.max() == hi
    assert float(lo) == pytest.approx(-128 / 255, rel=1e-7)
    # every value is (k - 128) / 255 for an integer pixel k
    sample = np.asarray(mnist.x_train[:500]) * np.float32(255.0) + np.float32(128.0)
    np.testing.assert_allclose(sample, np.round(sample), atol=1e-4)


def test_mnist_canonical_label_counts(mnist):
    assert np.bincount(mnist.y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert len(mnist.y_test) == 10000


def test_mnist_first_labels_are_the_canonical_ones(mnist):
    # the well-known first training digits 5, 0, 4, 1, 9, 2, 1, 3 and first test digits 7, 2, 1, 0
    assert mnist.y_train[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert mnist.y_test[:4].tolist() == [7, 2, 1, 0]


def test_expected_hashes_match_the_shipped_checksums():
    sums = {}
    for line in (MNIST_ROOT / "SHA256SUMS.uncompressed").read_text().splitlines():
        digest, name = line.split()
        sums[name.split(".")[0].replace("-idx3-ubyte", "").replace("-idx1-ubyte", "")] = digest
    assert sums == DATASETS["mnist"]["sha256"]


def test_limits_take_the_first_examples(mnist, data_cache):
    small = load("mnist", MNIST_ROOT, train_limit=1000, test_limit=100, cache_dir=data_cache)
    assert small.x_train.shape == (1000, 784) and small.y_train.shape == (1000,)
    assert small.x_test.shape == (100, 784) and small.y_test.shape == (100,)
    np.testing.assert_array_equal(small.x_train, mnist.x_train[:1000])
    np.testing.assert_array_equal(small.y_test, mnist.y_test[:100])
    # a limit above the size is the whole set
    big = load("mnist", MNIST_ROOT, train_limit=10**6, test_limit=np.int64(10**6),
               cache_dir=data_cache)
    assert big.x_train.shape[0] == 60000 and big.x_test.shape[0] == 10000


@pytest.mark.parametrize("kwargs, shown", [
    ({"name": "cifar10"}, "'cifar10'"),
    ({"normalize": "zscore"}, "'zscore'"),
    ({"train_limit": 0}, "train_limit"),
    ({"test_limit": -5}, "test_limit"),
    ({"train_limit": 2.5}, "2.5"),
])
def test_bad_arguments_are_rejected(kwargs, shown, tmp_path):
    kwargs = {"name": "mnist", **kwargs}
    with pytest.raises(ValueError) as exc:
        load(root=MNIST_ROOT, cache_dir=tmp_path, **kwargs)
    assert shown in str(exc.value)


def test_fashion_mnist_loads_with_6000_per_class(data_cache):
    ds = load("fashion_mnist", FASHION_ROOT, cache_dir=data_cache)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.x_train.dtype == np.float32
    assert np.bincount(ds.y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(ds.y_test, minlength=10).tolist() == [1000] * 10
    assert ds.x_train.min() == np.float32(-128.0) / np.float32(255.0)


# ---------------------------------------------------------------- cache


def test_second_load_is_served_from_the_cache(mnist, data_cache):
    npys = sorted(data_cache.glob("mnist-*.npy"))
    assert len(npys) == 4  # one decoded array per part, study normalization
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in npys}
    manifest = json.loads((data_cache / "verified.json").read_text())
    assert {m["sha256"] for m in manifest.values()} >= set(DATASETS["mnist"]["sha256"].values())

    again = load("mnist", MNIST_ROOT, cache_dir=data_cache)
    for arr in (again.x_train, again.y_train, again.x_test, again.y_test):
        assert isinstance(arr, np.memmap)
        assert Path(arr.filename).parent == data_cache
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in npys} == stamps  # not rewritten
    np.testing.assert_array_equal(again.y_train, mnist.y_train)
    # read-only: a shared cache cannot be corrupted through the arrays
    with pytest.raises(ValueError):
        again.x_train[0, 0] = 1.0


def test_raw_idx_file_is_accepted(tmp_path, mnist, data_cache):
    root = tmp_path / "mnist"
    copies = _copy_mnist(root)
    _decompress(copies["train-labels"])
    ds = load("mnist", root, cache_dir=data_cache)
    np.testing.assert_array_equal(ds.y_train, mnist.y_train)


# ---------------------------------------------------------------- damaged files


def test_altered_file_is_rejected_naming_file_and_expected_hash(tmp_path):
    root = tmp_path / "mnist"
    copies = _copy_mnist(root)
    raw = _decompress(copies["train-labels"])
    _flip_byte(raw, 8 + 1234)  # a label byte, past the 8-byte header
    expected = DATASETS["mnist"]["sha256"]["train-labels"]
    with pytest.raises(DataError) as exc:
        load("mnist", root, cache_dir=tmp_path / "cache")
    msg = str(exc.value)
    assert str(raw) in msg
    assert expected in msg
    assert hashlib.sha256(raw.read_bytes()).hexdigest() in msg  # and the hash it found


def test_truncated_gz_file_is_rejected(tmp_path):
    root = tmp_path / "mnist"
    copies = _copy_mnist(root)
    gz = copies["t10k-labels"]
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(DataError) as exc:
        load("mnist", root, cache_dir=tmp_path / "cache")
    assert str(gz) in str(exc.value)


def test_truncated_raw_file_is_rejected(tmp_path):
    root = tmp_path / "mnist"
    copies = _copy_mnist(root)
    raw = _decompress(copies["t10k-labels"])
    raw.write_bytes(raw.read_bytes()[:-100])
    with pytest.raises(DataError) as exc:
        load("mnist", root, cache_dir=tmp_path / "cache")
    assert str(raw) in str(exc.value)
    assert DATASETS["mnist"]["sha256"]["t10k-labels"] in str(exc.value)


def test_a_missing_file_is_named(tmp_path):
    root = tmp_path / "mnist"
    _copy_mnist(root, skip="t10k-labels")
    with pytest.raises(DataError) as exc:
        load("mnist", root, cache_dir=tmp_path / "cache")
    msg = str(exc.value)
    assert "t10k-labels" in msg and "missing" in msg and str(root) in msg


def test_a_file_changed_after_verification_is_verified_again(tmp_path, data_cache):
    """The manifest skips re-hashing only for an unchanged (size, mtime) file."""
    root = tmp_path / "mnist"
    copies = _copy_mnist(root)
    raw = _decompress(copies["t10k-labels"])
    load("mnist", root, cache_dir=data_cache)  # verified, recorded in the manifest
    st = raw.stat()
    _flip_byte(raw, 8 + 10)
    # same size; a later modification time, as a real edit would have
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    with pytest.raises(DataError, match="t10k-labels"):
        load("mnist", root, cache_dir=data_cache)
