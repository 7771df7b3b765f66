"""Atomic writes: whole new file or the old one, with normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from flopscalc.atomic import write_atomic, write_text_atomic


def test_new_file_has_umask_permissions_not_mkstemps_0600(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a.json", "{}\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "{}\n"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "keep.txt"
    write_text_atomic(path, "old")

    def half(f):
        f.write(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_directory_is_refused_before_anything_is_written(tmp_path):
    from flopscalc.errors import UsageError

    with pytest.raises(UsageError, match="is a directory"):
        write_text_atomic(tmp_path, "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        write_text_atomic(tmp_path / "file" / "out.json", "x")


def test_a_folder_without_write_permission_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    from flopscalc.atomic import check_writable_file
    from flopscalc.errors import UsageError

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access  # the suite may run as root, whom os.access never refuses: stand in for a user
    monkeypatch.setattr(os, "access", lambda p, mode, **k: os.fspath(p) != os.fspath(locked) and real_access(p, mode, **k))
    with pytest.raises(UsageError, match="cannot write in .*locked"):
        check_writable_file(locked / "new" / "a.json")
    assert check_writable_file(tmp_path / "fine.json") == tmp_path / "fine.json"
    assert list(locked.iterdir()) == []
