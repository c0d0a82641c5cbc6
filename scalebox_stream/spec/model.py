"""The app model: `AppSpec` and `ModuleSpec` (pydantic v2, frozen).

Validators that need the app directory (relative program paths, `FILE:` start tasks) read it from the
validation context `{"app_dir": Path}`; without one they use the current directory. Validators raise
`FieldError` to point at a precise sub-field; the loader maps it to the YAML line.

Task policy keys of a module (the policies themselves are in `scalebox_stream.policy`):

| key | meaning |
| --- | --- |
| `task_max_seconds` | per attempt: the run is killed after this many seconds (exit code 124) |
| `task_deadline_seconds` | overall, across attempts, from the task's creation; attempts are shortened to fit |
| `queue_timeout_seconds` | max wait between an attempt's creation and its start |
| `retry_rules` | Scalebox retry rules `['1:3','2:2','*']` (`spec.retry_rules`) |
| `retry` | structured retry rules, `max_attempts`, `backoff` (`spec.retry_spec`) |
| `error_budget` | `{max_failures, window}`: stop admitting tasks after too many failures (`spec.error_budget`) |

Flow-control and placement keys:

| key | meaning |
| --- | --- |
| `check` | admission command run on the agent's host before each attempt (argv + body, headers); 0 admits |
| `dir_quota_gb` | `{dir: GB}`: admit only while each directory's total size is below GB (Scalebox `/dir~GB` too) |
| `free_space_gb` | `{dir: GB}`: admit only while the partition holding each directory has GB free |
| `max_tasks_per_host` | tasks of this module in flight at once on one host, across all its agents there |
| `max_backlog` | producers of this module's tasks slow down while more than this many wait |
| `host_wait_seconds` | HOST-BOUND: how long a task waits for an agent of its host (default 30) |
| `on_missing_host` | HOST-BOUND: then `fail` (default) or `reroute` to any host |

`container_mode` (docker and podman): `task` (default) runs one container per attempt; `slot` keeps one
long-lived container per agent slot that runs the slot's tasks one after another (`setup.sh` once when
it starts, `teardown.sh` once when the agent stops).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from scalebox_stream.policy.retry import RetryPolicy

from .error_budget import ErrorBudgetSpec
from .errors import FieldError
from .retry_rules import RetryRule, parse_rules
from .retry_spec import RetrySpec, build_retry_policy

Executor = Literal["docker", "podman", "apptainer", "process"]
CONTAINER_EXECUTORS = ("docker", "podman", "apptainer")
SLOT_MODE_EXECUTORS = ("docker", "podman")
DEFAULT_COMMAND = "/app/bin/run.sh"
DEFAULT_OUTPUT_TEXT_SIZE = 65536
MAX_OUTPUT_TEXT_SIZE = 1 << 30
APP_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MODULE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
CLUSTER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXECUTOR_ALIASES = {"singularity": "apptainer"}


def _app_dir(info: ValidationInfo) -> Path:
    """The app directory from the validation context (default: the current directory)."""
    context = info.context if isinstance(info.context, dict) else {}
    return Path(context.get("app_dir") or Path.cwd())


def _reject_bool(value: Any) -> Any:
    """YAML `true` is not a number: refuse it before pydantic's lax int/float coercion."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


def _env_text(value: Any) -> str:
    """An environment value as text: numbers via str(), booleans as true/false, null as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(f"expected a scalar value, got {type(value).__name__}")


class ModuleSpec(BaseModel):
    """One module of an app: what to run, where, and with which task policies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    image: str | None = None
    executor: Executor = "process"
    command: list[str] = Field(default_factory=list)
    slots: int = Field(default=1, ge=1)
    sink_modules: list[str] = Field(default_factory=list)
    environments: dict[str, str] = Field(default_factory=dict)
    volumes: list[str] = Field(default_factory=list)
    task_max_seconds: float | None = Field(default=None, gt=0)
    task_deadline_seconds: float | None = Field(default=None, gt=0)
    queue_timeout_seconds: float | None = Field(default=None, gt=0)
    retry_rules: list[RetryRule] = Field(default_factory=list)
    retry: RetrySpec | None = None
    error_budget: ErrorBudgetSpec | None = None
    start_task: list[str] = Field(default_factory=list)
    output_text_size: int = Field(default=DEFAULT_OUTPUT_TEXT_SIZE, gt=0, le=MAX_OUTPUT_TEXT_SIZE)
    text_trunc_mode: Literal["HEAD", "TAIL"] = "HEAD"  # Scalebox: HEAD drops the head (keeps the tail)
    pod_id: str | None = None
    task_dist_mode: Literal["DEFAULT", "HOST-BOUND", "SLOT-BOUND"] = "DEFAULT"
    check: list[str] = Field(default_factory=list)
    dir_quota_gb: dict[str, float] = Field(default_factory=dict)
    free_space_gb: dict[str, float] = Field(default_factory=dict)
    max_tasks_per_host: int | None = Field(default=None, ge=1)
    max_backlog: int | None = Field(default=None, ge=1)
    host_wait_seconds: float = Field(default=30.0, ge=0)
    on_missing_host: Literal["fail", "reroute"] = "fail"
    container_mode: Literal["task", "slot"] = "task"
    cluster: str | None = None
    """The Kafka cluster whose agents run this module (default: the app's `cluster`)."""

    @field_validator("check", mode="before")
    @classmethod
    def _split_check(cls, value: Any) -> Any:
        """Like `command`: a string is split without a shell."""
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split check: {exc}") from None
        return value

    @field_validator("check")
    @classmethod
    def _resolve_check(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """A relative check program (`./check.sh`) is resolved against the app dir and must exist."""
        if value and "/" in value[0] and not os.path.isabs(value[0]):
            path = (_app_dir(info) / value[0]).resolve()
            if not path.exists():
                raise ValueError(f"check program {value[0]!r} not found (looked for {path})")
            return [str(path), *value[1:]]
        return value

    @field_validator("dir_quota_gb", "free_space_gb", mode="before")
    @classmethod
    def _dir_limits(cls, value: Any) -> Any:
        """A mapping, Scalebox's JSON string `{"/dir": GB}`, or its older `/dir~GB` form."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                import json

                try:
                    return json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"not a JSON object: {exc}") from None
            directory, sep, gb = text.rpartition("~")
            if not sep:
                raise ValueError("expected {dir: GB}, a JSON object or '/dir~GB'")
            return {directory: gb}
        return value

    @field_validator("dir_quota_gb", "free_space_gb")
    @classmethod
    def _absolute_dirs(cls, value: dict[str, float]) -> dict[str, float]:
        for directory, gb in value.items():
            if not os.path.isabs(directory) or gb < 0:
                raise ValueError(f"{directory!r}: expected an absolute directory and a number of GB >= 0")
        return value

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Executor: docker with an image (apptainer for a `.sif`), else process; image command default."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        image = data.get("image")
        if data.get("executor") is None:
            if isinstance(image, str) and image:
                data["executor"] = "apptainer" if image.endswith(".sif") else "docker"
            else:
                data["executor"] = "process"
        executor = _EXECUTOR_ALIASES.get(str(data["executor"]).lower(), str(data["executor"]).lower())
        if data.get("command") is None and image and executor in CONTAINER_EXECUTORS:
            data["command"] = [DEFAULT_COMMAND]
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not MODULE_NAME_RE.fullmatch(value):
            raise ValueError(f"bad module name {value!r}: use letters, digits, '_' and '-' (no dots)")
        return value

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("image must not be empty")
        return value

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_alias(cls, value: Any) -> Any:
        return _EXECUTOR_ALIASES.get(value.lower(), value.lower()) if isinstance(value, str) else value

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        """A string is split like a shell would (no expansion); list items may be numbers."""
        if isinstance(value, str):
            if "{{" in value:
                raise ValueError("Scalebox launch templates ({{IMAGE}}, {{ENVS}}...) are not supported; "
                                 "give the program to run inside the container")
            try:
                value = shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split command: {exc}") from None
        if isinstance(value, list):
            value = [str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in value]
            if not value:
                raise ValueError("command must not be empty")
        return value

    @field_validator("command")
    @classmethod
    def _resolve_program(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Process executor: a relative program path (`./calc/run.sh`) is resolved against the app dir."""
        if info.data.get("executor") != "process" or not value:
            return value
        program = value[0]
        if "/" not in program or os.path.isabs(program):
            return value
        path = (_app_dir(info) / program).resolve()
        if not path.is_file():
            raise FieldError.at((0,), f"program {program!r} not found (looked for {path})")
        if not os.access(path, os.X_OK):
            raise FieldError.at((0,), f"program {program!r} is not executable (chmod +x {path})")
        return [str(path), *value[1:]]

    @field_validator("slots", mode="before")
    @classmethod
    def _check_slots(cls, value: Any) -> Any:
        if isinstance(value, list) or (isinstance(value, str) and ":" in value):
            raise ValueError("Scalebox host slot lists ('h0:2') are not supported; give the number of "
                             "parallel tasks per agent, e.g. slots: 2")
        return _reject_bool(value)

    @field_validator("task_max_seconds", "task_deadline_seconds", "queue_timeout_seconds", "output_text_size",
                     mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return _reject_bool(value)

    @field_validator("sink_modules", mode="before")
    @classmethod
    def _sinks(cls, value: Any) -> Any:
        """A single name, or a comma-separated string, is accepted as a list."""
        if value is None:
            return []
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("environments", mode="before")
    @classmethod
    def _environments(cls, value: Any) -> Any:
        """A map, or Scalebox's list of `KEY=value`; values become text."""
        if value is None:
            return {}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        out: dict[str, str] = {}
        if isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, str) or "=" not in item:
                    problems.append(((index,), f"expected KEY=value, got {item!r}"))
                    continue
                key, _, text = item.partition("=")
                key = key.strip()
                if not _ENV_KEY.fullmatch(key):
                    problems.append(((index,), f"bad variable name {key!r}"))
                elif key in out:
                    problems.append(((index,), f"variable {key!r} given twice"))
                else:
                    out[key] = text
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _ENV_KEY.fullmatch(str(key)):
                    problems.append(((key,), f"bad variable name {key!r}"))
                    continue
                try:
                    out[str(key)] = _env_text(item)
                except ValueError as exc:
                    problems.append(((key,), str(exc)))
        else:
            raise ValueError("expected a map of KEY: value or a list of KEY=value")
        if problems:
            raise FieldError(problems)
        return out

    @field_validator("volumes", mode="before")
    @classmethod
    def _volumes(cls, value: Any, info: ValidationInfo) -> Any:
        """Each `src:dst[:ro|rw]` with an absolute dst; a `./src` is resolved against the app dir."""
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError("expected a list of 'src:dst[:ro|rw]'")
        problems: list[tuple[tuple[str | int, ...], str]] = []
        out: list[str] = []
        for index, item in enumerate(value):
            parts = item.split(":") if isinstance(item, str) else []
            if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
                problems.append(((index,), f"expected 'src:dst[:ro|rw]', got {item!r}"))
                continue
            if not parts[1].startswith("/"):
                problems.append(((index,), f"container path {parts[1]!r} must be absolute"))
                continue
            if len(parts) == 3 and parts[2] not in ("ro", "rw"):
                problems.append(((index,), f"mode {parts[2]!r} must be 'ro' or 'rw'"))
                continue
            if parts[0].startswith("."):
                parts[0] = str((_app_dir(info) / parts[0]).resolve())
            out.append(":".join(parts))
        if problems:
            raise FieldError(problems)
        return out

    @field_validator("retry_rules", mode="before")
    @classmethod
    def _retry_rules(cls, value: Any) -> Any:
        return parse_rules(value)

    @field_validator("start_task", mode="before")
    @classmethod
    def _start_task(cls, value: Any, info: ValidationInfo) -> Any:
        """A body (string or number), a list of them; `FILE:name` expands to the file's non-blank lines."""
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        problems: list[tuple[tuple[str | int, ...], str]] = []
        out: list[str] = []
        for index, item in enumerate(items):
            loc: tuple[str | int, ...] = (index,) if isinstance(value, list) else ()
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                problems.append((loc, f"expected a task body (string), got {item!r}"))
                continue
            text = str(item)
            if not text.startswith("FILE:"):
                out.append(text)
                continue
            path = _app_dir(info) / text[len("FILE:"):].strip()
            try:
                content = path.read_text(encoding="utf-8")
            except OSError as exc:
                problems.append((loc, f"cannot read start task file {str(path)!r}: {exc.strerror or exc}"))
                continue
            out.extend(line.strip() for line in content.splitlines() if line.strip())
        if problems:
            raise FieldError(problems)
        return out

    @field_validator("text_trunc_mode", "task_dist_mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("container_mode", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("pod_id", mode="before")
    @classmethod
    def _pod_id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _check_executor(self) -> ModuleSpec:
        """Container executors need an image; the process executor needs a command."""
        if self.executor in CONTAINER_EXECUTORS and not self.image:
            raise FieldError.at(("executor",), f"executor {self.executor!r} needs an image")
        if self.executor == "process" and not self.command:
            if self.image:
                raise FieldError.at(("command",), "the process executor needs a command")
            raise FieldError.at((), "a module needs an image or a command")
        if self.container_mode == "slot" and self.executor not in SLOT_MODE_EXECUTORS:
            raise FieldError.at(("container_mode",), f"container_mode 'slot' needs the docker executor (or podman) "
                                                      f"(this module uses the {self.executor} executor)")
        return self

    @model_validator(mode="after")
    def _check_retry_forms(self) -> ModuleSpec:
        """Scalebox `retry_rules` and structured `retry.rules` exclude each other."""
        if self.retry is not None and self.retry.rules is not None and "retry_rules" in self.model_fields_set:
            raise FieldError.at(("retry", "rules"), "give either retry_rules (Scalebox form) or retry.rules, "
                                                    "not both")
        return self

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy from `retry.rules` or `retry_rules`, with `retry`'s max_attempts and backoff."""
        return build_retry_policy(self.retry, self.retry_rules)


class AppSpec(BaseModel):
    """A whole app: its modules (in file order) and where it was loaded from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    label: str | None = None
    main_router: str | None = None
    cluster: str = "local"
    """The app's home cluster: where it is run from and projected, and where modules without a `cluster` run."""
    modules: dict[str, ModuleSpec]
    app_dir: Path
    source: Path

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not APP_NAME_RE.fullmatch(value):
            raise ValueError(f"bad app name {value!r}: use letters, digits, '.', '_' and '-'")
        return value

    @model_validator(mode="after")
    def _check_clusters(self) -> AppSpec:
        """Cluster names are plain names (they name MirrorMaker 2 flows and tag every event)."""
        bad = "bad cluster name {!r}: use letters, digits, '_' and '-'"
        named = [(("cluster",), self.cluster)] + [(("modules", name, "cluster"), m.cluster)
                                                   for name, m in self.modules.items() if m.cluster is not None]
        problems = [(path, bad.format(value)) for path, value in named if not CLUSTER_NAME_RE.fullmatch(value)]
        if problems:
            raise FieldError(problems)
        return self

    @model_validator(mode="after")
    def _check_references(self) -> AppSpec:
        """At least one module; main_router and every sink name a module of the app."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if not self.modules:
            problems.append((("modules",), "an app needs at least one module"))
        known = ", ".join(self.modules) or "none"
        if self.main_router is not None and self.main_router not in self.modules:
            problems.append((("main_router",), f"unknown module {self.main_router!r} (modules: {known})"))
        for name, module in self.modules.items():
            if module.name != name:
                problems.append((("modules", name, "name"), f"module name {module.name!r} != key {name!r}"))
            for index, sink in enumerate(module.sink_modules):
                if sink not in self.modules:
                    problems.append((("modules", name, "sink_modules", index),
                                     f"unknown module {sink!r} (modules: {known})"))
        if problems:
            raise FieldError(problems)
        return self

    def entry_module(self) -> str:
        """Where `scalebox run` sends the first task: main_router, else the first module with a
        start_task, else the first module."""
        if self.main_router:
            return self.main_router
        for name, module in self.modules.items():
            if module.start_task:
                return name
        return next(iter(self.modules))

    def cluster_of(self, module: str) -> str:
        """The cluster whose agents run `module`."""
        return self.modules[module].cluster or self.cluster

    def sinks_of(self, module: str) -> list[str]:
        """Where a module's output goes by default: its sink_modules, else the main router
        (unless it is the main router), else nowhere."""
        sinks = self.modules[module].sink_modules
        if sinks:
            return list(sinks)
        if self.main_router and self.main_router != module:
            return [self.main_router]
        return []
