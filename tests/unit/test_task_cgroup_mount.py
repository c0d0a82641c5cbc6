"""Which cgroup v2 mounts let the process executor move a program into its cgroup on the spawning thread."""

from __future__ import annotations

from pathlib import Path

from scalebox_stream.executors.task_cgroup import favors_dynamic_moves

HYBRID = """\
31 25 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
34 31 0:30 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,{options}
"""
PURE = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,{options}\n"


def _mountinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mountinfo"
    path.write_text(text)
    return path


def test_the_option_on_the_tree_s_own_mount_counts(tmp_path: Path) -> None:
    hybrid = _mountinfo(tmp_path, HYBRID.format(options="favordynmods"))
    assert favors_dynamic_moves(Path("/sys/fs/cgroup/unified"), hybrid)
    assert not favors_dynamic_moves(Path("/sys/fs/cgroup"), hybrid)  # the tmpfs above it is no cgroup2 mount
    pure = _mountinfo(tmp_path, PURE.format(options="nsdelegate,favordynmods,memory_recursiveprot"))
    assert favors_dynamic_moves(Path("/sys/fs/cgroup"), pure)


def test_without_the_option_or_the_file_moves_go_to_the_helper_thread(tmp_path: Path) -> None:
    assert not favors_dynamic_moves(Path("/sys/fs/cgroup"), _mountinfo(tmp_path, PURE.format(options="nsdelegate")))
    assert not favors_dynamic_moves(Path("/sys/fs/cgroup/unified"),
                                    _mountinfo(tmp_path, HYBRID.format(options="nsdelegate")))
    assert not favors_dynamic_moves(Path("/sys/fs/cgroup"), tmp_path / "absent")
    # an option of the mount point (before " - ") is not a super-block option
    odd = "41 31 0:38 / /sys/fs/cgroup rw,favordynmods - cgroup2 cgroup2 rw\n"
    assert not favors_dynamic_moves(Path("/sys/fs/cgroup"), _mountinfo(tmp_path, odd))
