"""Where a CLI command's library logs go: its log file, and the terminal only with --verbose; a long-running
command (agent, projector) logs on stderr, which `scalebox run` points at the child's log file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from scalebox_stream.cli import common
from scalebox_stream.kafka.config import LIBRDKAFKA_LOG, admin_config, consumer_config, producer_config


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root, verbose = logging.getLogger(), common._verbose
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], common._verbose = handlers, verbose
    root.setLevel(level)


def test_librdkafka_logs_through_python_logging_unless_silenced() -> None:
    assert producer_config("k:1")["logger"] is LIBRDKAFKA_LOG
    assert consumer_config("k:1", "g")["logger"] is LIBRDKAFKA_LOG
    assert "logger" not in admin_config("k:1", log_level=0)


def test_a_cli_command_logs_to_its_file_not_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    common.cli_logging(tmp_path / "logs/scalebox.log")
    LIBRDKAFKA_LOG.warning("FAIL [rdkafka#producer-1]: Connection refused")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert capfd.readouterr().err == ""
    assert "FAIL [rdkafka#producer-1]" in (tmp_path / "logs/scalebox.log").read_text()


def test_verbose_shows_them_on_stderr_too(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    common.cli_logging(tmp_path / "scalebox.log", verbose=True)
    LIBRDKAFKA_LOG.warning("Coordinator load in progress")
    assert "librdkafka: Coordinator load in progress" in capfd.readouterr().err
    assert "Coordinator load in progress" in (tmp_path / "scalebox.log").read_text()


def test_a_long_running_command_logs_on_stderr(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    common.cli_logging(tmp_path / "scalebox.log")
    common.setup_logging()
    logging.getLogger("scalebox_stream.agent").info("agent started")
    assert "agent started" in capfd.readouterr().err
