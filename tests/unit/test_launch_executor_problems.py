"""`app validate` names a module whose executor cannot run on this host."""

from __future__ import annotations

from pathlib import Path

from scalebox_stream.launch.operations import executor_problems
from scalebox_stream.spec.loader import load_app


def test_a_podman_module_is_named_when_no_podman_service_answers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCALEBOX_PODMAN_SOCKET", str(tmp_path / "no-such.sock"))
    (tmp_path / "app.yaml").write_text("name: a\nmodules:\n  p:\n    image: x\n    executor: podman\n"
                                       "  q:\n    command: [/bin/true]\n")
    problems = executor_problems(load_app(tmp_path / "app.yaml"))
    assert len(problems) == 1 and problems[0].startswith("modules.p.executor: ")
    assert "podman system service" in problems[0]


def test_process_and_docker_modules_pass(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("name: a\nmodules:\n  d:\n    image: x\n  q:\n    command: [/bin/true]\n")
    assert executor_problems(load_app(tmp_path / "app.yaml")) == []
