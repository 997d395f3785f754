"""Which names beside the followed file count as its rotations, and in which order they are read."""

from __future__ import annotations

import os
from pathlib import Path

from tetrapipe.sources.follow.rotation import names_with_inode, rotated_after, rotation_siblings


def touch(path: Path, mtime_ns: int | None = None) -> Path:
    path.write_bytes(b"x\n")
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_rotation_names_of_lumberjack_and_logrotate_count_others_do_not(tmp_path: Path) -> None:
    log = touch(tmp_path / "tetragon.log")
    rotations = ["tetragon-2026-11-28T08-00-00.000.log", "tetragon.log.1", "tetragon.log-20261128"]
    others = ["tetragon.log.1.gz", "tetragon-2026.log.zst", "other.log", "tetragon.json", "ckpt.json",
              "ckpt.json.tmp-42"]
    for name in rotations + others:
        touch(tmp_path / name)
    (tmp_path / "tetragon.log.2").mkdir()  # not a regular file
    found = {e.name for e in rotation_siblings(str(log), str(tmp_path / "ckpt.json"))}
    assert found == set(rotations)


def test_rotated_after_lists_unread_rotations_oldest_first(tmp_path: Path) -> None:
    log = touch(tmp_path / "tetragon.log", 5_000)
    old = touch(tmp_path / "tetragon.log.3", 1_000)
    second = touch(tmp_path / "tetragon.log.1", 3_000)
    first = touch(tmp_path / "tetragon.log.2", 2_000)
    read = touch(tmp_path / "tetragon.log-read", 2_500)
    read_id = (read.stat().st_dev, read.stat().st_ino)
    listed = rotated_after(str(log), str(tmp_path / "ckpt"), 2_000, {read_id})
    assert [name for name, _ in listed] == [str(first), str(second)]
    assert str(old) not in [name for name, _ in listed]  # written before the file just finished
    assert all(ident == (os.stat(name).st_dev, os.stat(name).st_ino) for name, ident in listed)


def test_names_with_inode_finds_a_renamed_file_but_not_the_followed_path(tmp_path: Path) -> None:
    log = touch(tmp_path / "tetragon.log")
    inode = log.stat().st_ino
    renamed = tmp_path / "tetragon-backup.log"
    log.rename(renamed)
    touch(tmp_path / "tetragon.log")
    assert names_with_inode(str(tmp_path / "tetragon.log"), inode) == [str(renamed)]
    assert names_with_inode(str(renamed), inode) == []
