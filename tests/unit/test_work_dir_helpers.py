"""Slot work directories are emptied before and after every task; /proc I/O counters are read per task."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from scalebox_stream.executors.process import read_proc_io
from scalebox_stream.executors.slot_support import empty_dir, move_contents


def test_empty_dir_creates_a_missing_directory(tmp_path):
    target = tmp_path / "a" / "slot0"
    empty_dir(target)
    assert target.is_dir() and not any(target.iterdir())


def test_empty_dir_removes_files_subdirectories_and_links_but_not_their_targets(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    slot = tmp_path / "slot"
    (slot / "sub" / "deeper").mkdir(parents=True)
    (slot / "sub" / "deeper" / "f").write_text("x")
    (slot / "sink-tasks.txt").write_text("x\n")
    (slot / "link").symlink_to(outside, target_is_directory=True)
    empty_dir(slot)
    assert list(slot.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "x"


def test_read_proc_io_gives_counters_and_nothing_for_a_missing_process():
    io = read_proc_io(os.getpid())
    assert {"rchar", "wchar"} <= io.keys() and all(isinstance(v, int) for v in io.values())
    assert read_proc_io(2**22 + 12345) == {}


def test_moving_across_filesystems_copies_files_and_links_but_never_opens_a_fifo(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary directory")
    src = Path(tempfile.mkdtemp(dir=shm))
    try:
        (src / "out.dat").write_bytes(b"x" * 10)
        (src / "custom-out.txt").symlink_to("/etc/shadow")
        os.mkfifo(src / "pipe")
        (src / "sub").mkdir()
        (src / "sub" / "in.dat").write_bytes(b"y")
        os.mkfifo(src / "sub" / "pipe")
        dst = tmp_path / "dst"
        move_contents(src, dst)  # a blocking open of a FIFO would hang here
        assert list(src.iterdir()) == []
        assert sorted(p.name for p in dst.iterdir()) == ["custom-out.txt", "out.dat", "sub"]
        assert (dst / "out.dat").read_bytes() == b"x" * 10 and (dst / "sub" / "in.dat").read_bytes() == b"y"
        assert os.readlink(dst / "custom-out.txt") == "/etc/shadow"
        assert not (dst / "sub" / "pipe").exists()
    finally:
        shutil.rmtree(src, ignore_errors=True)
