"""The process executor finds a bare program name on the program's PATH once, and again when it moves
(real processes, no Kafka)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from scalebox_stream.executors.base import ExecRequest
from scalebox_stream.executors.process import ProcessExecutor, ProgramPaths


def _script(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho {text}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_resolves_bare_names_on_the_given_path_and_leaves_paths_alone(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    found = _script(second, "tool", "x")
    programs = ProgramPaths()
    assert programs.resolve("tool", f"{first}:{second}") == str(found)
    assert programs.resolve("tool", str(first)) is None
    assert programs.resolve("./tool", str(second)) is None  # relative to the work dir: as it is
    assert programs.resolve("missing-tool", str(second)) is None


def test_a_remembered_program_that_moved_is_found_again(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    old = _script(first, "tool", "old-place")
    work = tmp_path / "work"
    work.mkdir()
    executor = ProcessExecutor()
    request = ExecRequest(argv=["tool", "body"], env={"PATH": f"{first}:{second}"}, work_dir=work, name="t")
    try:
        assert executor.run(request, lambda _cid: None).stdout == b"old-place\n"
        assert executor.programs.resolve("tool", f"{first}:{second}") == str(old)  # remembered
        os.unlink(old)
        _script(second, "tool", "new-place")
        result = executor.run(request, lambda _cid: None)
        assert (result.exit_code, result.stdout) == (0, b"new-place\n")
        os.unlink(second / "tool")
        assert executor.run(request, lambda _cid: None).exit_code == 127
    finally:
        executor.close()


def test_argv0_stays_the_name_given(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    executor = ProcessExecutor()
    try:
        result = executor.run(ExecRequest(argv=["sh", "-c", 'printf "%s" "$0"'], env={}, work_dir=work, name="t"),
                              lambda _cid: None)
        assert result.stdout == b"sh"
    finally:
        executor.close()
