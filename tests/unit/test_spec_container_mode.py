"""`container_mode: slot | task`: parsing, Scalebox nesting, and errors naming field and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalebox_stream.executors import make_executor
from scalebox_stream.spec import AppSpec, SpecError, load_app

pytestmark = pytest.mark.usefixtures("no_host_env_files")


def load(tmp_path: Path, text: str) -> AppSpec:
    path = tmp_path / "app.yaml"
    path.write_text(text)
    return load_app(path, environ={})


def error_of(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text)
    return info.value


def test_default_is_task(tmp_path: Path) -> None:
    app = load(tmp_path, "name: a\nmodules:\n  m:\n    image: img:1\n")
    assert app.modules["m"].container_mode == "task"


def test_slot_flat_and_case_insensitive(tmp_path: Path) -> None:
    app = load(tmp_path, "name: a\nmodules:\n  m:\n    image: img:1\n    container_mode: SLOT\n")
    assert app.modules["m"].container_mode == "slot"


def test_slot_nested_under_arguments(tmp_path: Path) -> None:
    app = load(tmp_path, "name: a\nmodules:\n  m:\n    base_image: img:1\n    arguments:\n"
                         "      container_mode: slot\n      slots: 2\n")
    assert app.modules["m"].container_mode == "slot" and app.modules["m"].slots == 2


def test_bad_value_names_field_and_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: img:1\n    container_mode: pod\n")
    assert "app.yaml:5: modules.m.container_mode:" in str(err)


def test_nested_bad_value_names_the_nested_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: img:1\n    arguments:\n"
                             "      container_mode: 3\n")
    assert "app.yaml:6: modules.m.arguments.container_mode:" in str(err)


def test_slot_rejected_with_process_executor(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    command: ./run.sh\n    container_mode: slot\n")
    assert "app.yaml:5: modules.m.container_mode:" in str(err)
    assert "needs the docker executor" in str(err) and "process" in str(err)


def test_given_twice_is_an_error(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\nmodules:\n  m:\n    image: img:1\n    container_mode: slot\n"
                             "    arguments: {container_mode: task}\n")
    assert "given twice" in str(err)


def test_make_executor_by_mode() -> None:
    assert type(make_executor("docker")).__name__ == "DockerExecutor"
    assert type(make_executor("docker", container_mode="task")).__name__ == "DockerExecutor"
    slot = make_executor("docker", container_mode="slot")
    assert type(slot).__name__ == "DockerSlotExecutor" and slot.name == "docker"
    with pytest.raises(ValueError, match="docker executor"):
        make_executor("process", container_mode="slot")
    with pytest.raises(ValueError, match="container_mode"):
        make_executor("docker", container_mode="pod")
