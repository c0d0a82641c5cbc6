"""`scalebox app validate`: summary on success, exit 2 with file:line messages otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalebox_stream.cli.app import app

SPECS = Path(__file__).parent / "specs"


pytestmark = pytest.mark.usefixtures("no_host_env_files")


def run(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of the app command group."""
    result = CliRunner().invoke(app, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.stdout, result.stderr


def test_validate_ok() -> None:
    code, out, _ = run("validate", str(SPECS / "minimal.yaml"))
    assert code == 0
    assert "app hello: 1 module" in out and "docker hello-scalebox:latest /app/bin/run.sh" in out
    assert "slots=1" in out


def test_validate_with_env_file(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("name: a\nmodules:\n  m: {image: 'img:${TAG}', slots: 3}\n"
                                       "  r: {command: /bin/true}\nparameters: {main_router: r}\n")
    (tmp_path / "extra.env").write_text("TAG=v9\n")
    code, out, _ = run("validate", str(tmp_path / "app.yaml"), "--env-file", str(tmp_path / "extra.env"))
    assert code == 0, out
    assert "img:v9" in out and "slots=3  sinks=r" in out and "main router r" in out
    assert "process /bin/true" in out


def test_validate_invalid_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("name: a\nmodules:\n  calc:\n    image: x\n    slotz: 2\n    slots: 0\n")
    code, out, err = run("validate", str(path))
    assert code == 2 and out == ""
    assert f"{path}:5: modules.calc.slotz: unknown field 'slotz'" in err
    assert f"{path}:6: modules.calc.slots:" in err
    assert "2 problems found" in err and "Traceback" not in err


def test_validate_undefined_variable_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("name: a\nmodules:\n  m: {image: 'x:${SBX_SURELY_UNDEFINED_VAR}'}\n")
    code, _, err = run("validate", str(path))
    assert code == 2 and f"{path}:3: undefined variable ${{SBX_SURELY_UNDEFINED_VAR}}" in err


def test_validate_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = run("validate", str(tmp_path / "nope.yaml"))
    assert code == 2 and "no such file" in err


def test_validate_missing_env_file_exits_2(tmp_path: Path) -> None:
    code, _, err = run("validate", str(SPECS / "minimal.yaml"), "-e", str(tmp_path / "missing.env"))
    assert code == 2 and "env file not found" in err
