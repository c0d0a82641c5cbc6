"""``scalebox local up`` without java/mvn: exit code 2 and an install hint, no services needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalebox_stream.cli.local import app
from scalebox_stream.local.kafka import parse_java_major


@pytest.fixture
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty PATH dir, no JAVA_HOME, and a throwaway SCALEBOX_HOME."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("SCALEBOX_HOME", str(tmp_path / "home"))
    return bin_dir


def test_up_without_java_exits_2_with_install_hint(bare_env: Path) -> None:
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 2, result.output
    assert "java" in result.stderr
    assert "apt-get install openjdk-17-jre-headless maven" in result.stderr
    assert "Traceback" not in result.output


def test_up_with_old_java_exits_2(bare_env: Path) -> None:
    fake = bare_env / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    fake.chmod(0o755)
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 2, result.output
    assert "Java 11" in result.stderr and "openjdk-17" in result.stderr


@pytest.mark.parametrize(
    ("text", "major"),
    [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_392"', 8), ('openjdk version "25"', 25)],
)
def test_parse_java_major(text: str, major: int) -> None:
    assert parse_java_major(text) == major
