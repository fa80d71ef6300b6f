"""mlp.files: the project root and atomic writes."""

from __future__ import annotations

import pytest

from mlp.files import PROJECT_ROOT, atomic_write


def test_project_root_holds_the_project():
    assert (PROJECT_ROOT / "mlp" / "files.py").is_file()
    assert (PROJECT_ROOT / "conf" / "config.yaml").is_file()


def test_atomic_write_replaces_the_file_whole(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    with atomic_write(p, "w") as f:
        f.write("new")
        assert p.read_text() == "old"  # not visible before the write completes
    assert p.read_text() == "new"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(p) as f:
            f.write(b"half")
            raise RuntimeError("disk full")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.bin"]
