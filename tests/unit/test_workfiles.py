"""Work-dir files are read without following links, without blocking and up to a cap; file lists count only
regular files the program could name inside its work directory or volumes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scalebox_stream.agent.limits import MAX_LISTED_FILES, MAX_PERSPECTIVE_FILE_BYTES, MAX_PROBLEMS, MAX_TEXT_BYTES
from scalebox_stream.agent.perspective import read_bytes, read_perspective
from scalebox_stream.agent.workfiles import ProgramView, file_size, program_view, read_one

SECRET = b"host-secret-4b1d"


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    """A file outside the work directory, standing for /etc/shadow."""
    secret = tmp_path / "host" / "shadow"
    secret.parent.mkdir()
    secret.write_bytes(SECRET + b"\n")
    return secret


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def test_a_regular_file_is_read_whole_under_the_cap(work):
    (work / "custom-out.txt").write_bytes(b"hello\n")
    read = read_one(work, "custom-out.txt", 100)
    assert (read.data, read.problem, read.size, read.truncated) == (b"hello\n", None, 6, False)


def test_a_missing_file_or_a_directory_reads_as_absent(work):
    (work / "dir").mkdir()
    for name in ("missing", "dir"):
        read = read_one(work, name, 100)
        assert (read.data, read.problem) == (None, None)
    assert read_one(work / "gone", "x", 100).data is None


def test_a_symlink_to_a_host_file_is_refused_and_not_read(work, host_secret):
    (work / "custom-out.txt").symlink_to(host_secret)
    read = read_one(work, "custom-out.txt", 1 << 20)
    assert read.data is None
    assert read.problem == "custom-out.txt is a symbolic link: not read"
    p = read_perspective(work)
    assert p.custom_out == b"" and p.error == "custom-out.txt is a symbolic link: not read"
    assert SECRET not in repr(p).encode()


def test_a_symlink_loop_and_a_link_to_dev_zero_are_refused(work):
    (work / "custom-out.txt").symlink_to(work / "custom-out.txt")
    (work / "timestamps.txt").symlink_to("/dev/zero")
    p = read_perspective(work)
    assert p.refused == ["custom-out.txt is a symbolic link: not read",
                         "timestamps.txt is a symbolic link: not read"]
    assert (p.custom_out, p.timestamps) == (b"", [])


def test_a_symlinked_parent_is_not_followed_either(work, host_secret):
    (work / "out").symlink_to(host_secret.parent, target_is_directory=True)
    (work / "input-files.txt").write_text("out/shadow\n")
    p = read_perspective(work, program_view("docker", work))
    assert p.input_bytes == 0
    assert p.problems == ["input-files.txt: out/shadow is not counted: Not a directory (links are not followed)"]


def test_a_fifo_is_refused_at_once_without_blocking(work):
    os.mkfifo(work / "custom-out.txt")
    os.mkfifo(work / "sink-tasks.txt")
    # in a child with a timeout: a blocking open would hang it, not this test
    script = textwrap.dedent(f"""
        from pathlib import Path
        from scalebox_stream.agent.perspective import read_perspective
        from scalebox_stream.agent.sink import SinkLineError, read_sink_file
        print(read_perspective(Path({str(work)!r})).refused)
        try:
            read_sink_file(Path({str(work)!r}), set())
        except SinkLineError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['custom-out.txt is a FIFO: not read']", "sink-tasks.txt is a FIFO: not read"]


def test_a_socket_is_refused(work):
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(work / "custom-out.txt"))
        assert read_one(work, "custom-out.txt", 10).problem == "custom-out.txt is a socket: not read"
    finally:
        server.close()


def test_a_huge_file_is_read_only_up_to_the_cap_from_the_end_asked_for(work):
    with open(work / "custom-out.txt", "wb") as f:
        f.write(b"HEAD")
        f.truncate(1 << 30)  # a sparse GiB
        f.seek((1 << 30) - 4)
        f.write(b"TAIL")
    tail = read_one(work, "custom-out.txt", 1000, keep="tail")
    head = read_one(work, "custom-out.txt", 1000, keep="head")
    assert len(tail.data) == len(head.data) == 1000 and tail.size == 1 << 30 and tail.truncated
    assert tail.data.endswith(b"TAIL") and head.data.startswith(b"HEAD")
    kept = read_perspective(work, text_limit=1 << 30).custom_out  # output_text_size: 1 GiB
    assert len(kept) == MAX_TEXT_BYTES and kept.endswith(b"TAIL")
    assert read_perspective(work, text_limit=10, mode="TAIL").custom_out == b"HEAD" + b"\0" * 6


def test_an_oversized_perspective_file_is_not_read(work):
    (work / "timestamps.txt").write_bytes(b"2023-10-24T10:00:00Z\n" * (MAX_PERSPECTIVE_FILE_BYTES // 21 + 1))
    p = read_perspective(work)
    assert p.timestamps == []
    assert p.problems == [f"timestamps.txt is larger than {MAX_PERSPECTIVE_FILE_BYTES} bytes: not read"]


def test_read_bytes_refuses_links(work, host_secret):
    (work / "sink-tasks.txt").symlink_to(host_secret)
    assert read_bytes(work / "sink-tasks.txt") is None


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/shadow", "..", "/work/../etc/shadow",
                                  "a/../../x", "//etc/shadow"])
def test_paths_escaping_the_work_dir_are_a_problem_and_never_stated(work, name):
    size, problem = file_size(program_view("docker", work), name)
    assert size is None and problem == f"{name} is outside the work directory and the module's volumes: not counted"


def test_file_lists_count_regular_files_in_the_work_dir_and_volumes(tmp_path, work, host_secret):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "in.dat").write_bytes(b"x" * 30)
    (work / "a.dat").write_bytes(b"x" * 100)
    (work / "d").mkdir()
    (work / "d" / "b.dat").write_bytes(b"x" * 7)
    (work / "link.dat").symlink_to(host_secret)
    os.mkfifo(work / "pipe")
    (work / "input-files.txt").write_text("a.dat\n/work/d/b.dat\n./d/../a.dat\n/data/sub/in.dat\n\n")
    (work / "output-files.txt").write_text("link.dat\npipe\nd\n/etc/shadow\n")
    view = program_view("docker", work, [f"{data}:/data:ro"])
    p = read_perspective(work, view)
    assert (p.input_bytes, p.output_bytes) == (100 + 7 + 100 + 30, 0)
    assert p.problems == [
        "output-files.txt: link.dat is a symbolic link: not counted",
        "output-files.txt: pipe is a FIFO: not counted",
        "output-files.txt: d is a directory: not counted",
        "output-files.txt: /etc/shadow is outside the work directory and the module's volumes: not counted",
    ]
    assert p.refused == []  # the lists themselves were read: what they name is only not counted


def test_without_a_view_only_the_work_dir_counts_under_its_host_path(work):
    (work / "b.dat").write_bytes(b"y" * 7)
    (work / "output-files.txt").write_text(f"{work / 'b.dat'}\n/etc/passwd\n")
    p = read_perspective(work)
    assert p.output_bytes == 7 and p.problems == [
        "output-files.txt: /etc/passwd is outside the work directory and the module's volumes: not counted"]


def test_a_host_process_names_paths_as_it_sees_them(work):
    """A process runs as the agent's user on this host: it can stat what it names itself."""
    (work / "a.dat").write_bytes(b"x" * 5)
    view = program_view("process", work)
    assert view == ProgramView(work, host=True)
    assert file_size(view, "a.dat") == (5, None)
    assert file_size(view, "/etc/passwd") == (os.path.getsize("/etc/passwd"), None)
    assert file_size(view, "/dev/null") == (None, "/dev/null is a character device: not counted")


def test_task_exec_file_lists_use_the_view_too(work):
    (work / "task-exec.json").write_text('{"inputFiles": ["/etc/passwd", "x.dat"], "outputFiles": "no list"}')
    (work / "x.dat").write_bytes(b"z" * 3)
    p = read_perspective(work, program_view("docker", work))
    assert (p.input_bytes, p.output_bytes) == (3, None)
    assert p.problems == ["task-exec.json inputFiles: /etc/passwd is outside the work directory and the "
                          "module's volumes: not counted"]


def test_problems_and_listed_files_are_bounded(work):
    (work / "input-files.txt").write_text("".join(f"/nope/{i}\n" for i in range(MAX_LISTED_FILES + 5)))
    p = read_perspective(work, program_view("docker", work))
    assert len(p.problems) == MAX_PROBLEMS + 1
    assert p.problems[-1] == f"and {MAX_LISTED_FILES + 1 - MAX_PROBLEMS} more problems"


def test_lines_are_split_on_newline_only(work):
    (work / "timestamps.txt").write_bytes("2023-10-24T10:00:00Z,a\x0bb\u2028c\r\n".encode())
    assert read_perspective(work).timestamps == [(1698141600 * 1_000_000, "a\x0bb\u2028c")]


def test_a_deeply_nested_task_exec_is_a_problem(work):
    (work / "task-exec.json").write_text("[" * 100_000 + "]" * 100_000)
    p = read_perspective(work)
    assert len(p.problems) == 1 and p.problems[0].startswith("task-exec.json: ")
