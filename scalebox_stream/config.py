"""The CLI's settings: one frozen model filled from flags, then the environment, then defaults.

This is the one module of the CLI side (commands, `launch`, `local`) that reads environment variables;
the others are handed a `CliSettings` or ask `CliSettings.load()`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENVIRONMENT: dict[str, str] = {
    "kafka": "SCALEBOX_KAFKA",
    "pg": "SCALEBOX_PG",
    "home": "SCALEBOX_HOME",
    "cluster": "SCALEBOX_CLUSTER",
    "java_home": "JAVA_HOME",
    "app_retention_s": "SCALEBOX_APP_RETENTION_S",
    "child_restarts": "SCALEBOX_CHILD_RESTARTS",
    "child_restart_window_s": "SCALEBOX_CHILD_RESTART_WINDOW_S",
}
"""Which environment variable fills which field (an empty variable counts as unset)."""


@dataclass(frozen=True)
class Connections:
    """The Kafka bootstrap servers and the PostgreSQL DSN a command uses."""

    kafka: str
    pg: str


class CliSettings(BaseModel):
    """What a `scalebox` command needs to know besides its own arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    kafka: str | None = Field(None, description="Kafka bootstrap servers; None: the local broker.")
    pg: str | None = Field(None, description="PostgreSQL DSN; None: the local PostgreSQL.")
    home: Path = Field(Path("~/.scalebox"), description="Where local services, logs and work directories live.")
    cluster: str | None = Field(None, description="The cluster an agent stamps on its events; None: the one the "
                                                  "app file places its module on.")
    java_home: Path | None = Field(None, description="The JDK for the local Kafka and MirrorMaker 2; None: PATH.")

    flush_timeout_s: float = Field(30.0, gt=0, description="How long records may wait for Kafka's acknowledgement "
                                                           "(or a transaction for its commit) before a command fails.")
    metadata_timeout_s: float = Field(15.0, gt=0, description="How long a command waits for topic metadata.")
    probe_timeout_s: float = Field(5.0, gt=0, description="How long a command waits for Kafka and PostgreSQL to "
                                                          "answer at its start before it says they are out of reach.")
    dead_letter_grace_s: float = Field(30.0, ge=0, description="How long `scalebox run` keeps waiting without "
                                                               "progress once the projector dead-lettered an "
                                                               "event of its app.")
    progress_poll_s: float = Field(0.3, gt=0, description="How often `scalebox run` reads the run's progress.")
    backlog_poll_s: float = Field(0.2, gt=0, description="How often feeding start tasks re-reads a full backlog.")
    app_retention_s: float = Field(3600.0, ge=0, description="How long a finished app's task topics and "
                                                             "consumer groups stay on the broker before `scalebox "
                                                             "run` or `local up` deletes them (0: at once).")
    children_grace_s: float = Field(15.0, ge=0, description="How long agents and projector get to stop after "
                                                            "SIGTERM before SIGKILL.")
    child_restarts: int = Field(5, ge=0, description="How many times `scalebox run` and the app server restart "
                                                     "one child (an agent, the projector, the state owner) that "
                                                     "ended unexpectedly within `child_restart_window_s` before "
                                                     "they give up and fail (0: never restart).")
    child_restart_window_s: float = Field(600.0, gt=0, description="The window `child_restarts` counts in.")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> CliSettings:
        """Flags (those not None) beat the environment (`ENVIRONMENT`, default `os.environ`) beat defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {name: env[var] for name, var in ENVIRONMENT.items() if env.get(var)}
        values.update({name: value for name, value in flags.items() if value is not None})
        return cls(**values)


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with `extra` on top: what child processes (agents, projector) get."""
    return {**os.environ, **extra}

