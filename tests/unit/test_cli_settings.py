"""The CLI's settings model: flags beat the environment beat defaults, and it cannot be changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from scalebox_stream.config import ENVIRONMENT, CliSettings, child_environment

ENV = {"SCALEBOX_KAFKA": "env-kafka:9092", "SCALEBOX_PG": "postgresql://env", "SCALEBOX_HOME": "/tmp/env-home",
       "SCALEBOX_CLUSTER": "east", "JAVA_HOME": "/opt/jdk"}


def test_defaults_without_flags_or_environment() -> None:
    settings = CliSettings.load(environ={})
    assert settings.kafka is None and settings.pg is None and settings.cluster is None
    assert settings.home == Path("~/.scalebox").expanduser().resolve()  # a default is made absolute too
    assert settings.flush_timeout_s == 30.0 and settings.progress_poll_s == 0.3


def test_environment_beats_defaults() -> None:
    settings = CliSettings.load(environ=ENV)
    assert (settings.kafka, settings.pg, settings.cluster) == ("env-kafka:9092", "postgresql://env", "east")
    assert settings.home == Path("/tmp/env-home") and settings.java_home == Path("/opt/jdk")


def test_flags_beat_environment_and_unset_flags_do_not() -> None:
    settings = CliSettings.load(environ=ENV, kafka="flag-kafka:9092", pg=None, flush_timeout_s=5)
    assert settings.kafka == "flag-kafka:9092"
    assert settings.pg == "postgresql://env"  # the flag was not given
    assert settings.flush_timeout_s == 5.0


def test_an_empty_variable_counts_as_unset() -> None:
    assert CliSettings.load(environ={"SCALEBOX_KAFKA": ""}).kafka is None


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCALEBOX_HOME", str(tmp_path))
    monkeypatch.setenv("SCALEBOX_KAFKA", "here:1")
    settings = CliSettings.load()
    assert settings.home == tmp_path and settings.kafka == "here:1"


def test_frozen_and_strict() -> None:
    settings = CliSettings.load(environ={})
    with pytest.raises(ValidationError):
        settings.kafka = "elsewhere:9092"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        CliSettings.load(environ={}, no_such_setting=1)
    with pytest.raises(ValidationError):
        CliSettings.load(environ={}, flush_timeout_s=0)


def test_every_environment_variable_names_a_field() -> None:
    assert set(ENVIRONMENT) <= set(CliSettings.model_fields)


def test_children_inherit_the_environment_with_connections_on_top(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEBOX_KAFKA", "old:1")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    env = child_environment({"SCALEBOX_KAFKA": "new:2"})
    assert env["SCALEBOX_KAFKA"] == "new:2" and env["SOMETHING_ELSE"] == "kept"
