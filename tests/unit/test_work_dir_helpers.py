"""Slot work directories are emptied before and after every task; /proc I/O counters are read per task."""

import os

from scalebox_stream.executors.process import read_proc_io
from scalebox_stream.executors.slot_support import empty_dir


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
