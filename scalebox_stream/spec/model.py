"""The app model: `AppSpec` and `ModuleSpec` (pydantic v2, frozen).

Validators that need the app directory (relative program paths, `FILE:` start tasks) read it from the
validation context `{"app_dir": Path}`; without one they use the current directory. Validators raise
`FieldError` to point at a precise sub-field; the loader maps it to the YAML line.

Task policy keys of a module (the policies themselves are in `scalebox_stream.policy`):

| key | meaning |
| --- | --- |
| `task_max_seconds` | per attempt: the run is killed after this many seconds (exit code 124) |
| `task_min_seconds` | attempts ending sooner, several in a row in one slot, suspend the module on the agent (GREEDY) |
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
| `on_host_down` | HOST-BOUND: tasks already on a host's topic when it goes down `wait` (default) or `reroute` |
| `max_idle_polls` × `poll_interval_seconds` | the agent stops after so long without a task (default: never) |

Every number has a range, and names, files and bodies have limits: see `spec.limits`. App names have no
`.` (Kafka treats `.` and `_` in topic names alike, so `col.x` and `col_x` would share topics; the loader
runs a dotted Scalebox name with `-` instead, `normalize.dotless_name`);
`start_task: FILE:` reads only regular files inside the app's directory.

Scalebox module keys read into typed fields (their executor wiring is the agent's and the executors' job):

| key | meaning |
| --- | --- |
| `code_path` | the module's code directory (absolute, resolved against the app dir), mounted at `/app/bin` |
| `slots` as a host list | `placement`: [(host or pattern, count)], `h0` being the head (see `spec.placement`) |
| `slot_on_head` | one slot on the head (`slot_options: slot_on_head`, `slot_on_head: yes`) |
| `command` with `{{IMAGE}}` | `launch`: a Scalebox launch template, read (see `spec.launch`) |
| `network` | `none`, `bridge` (default: transfer modules reach their peers) or `host` |
| `tmpfs_workdir` | `/work` on a tmpfs (`slot_options: tmpfs_workdir`) |
| `local_data_mapping` | the host's `/` at `/local_data_root` (default on; `disable_local_mapping` turns it off) |
| `cluster_data_mapping` | the cluster data directory at `/cluster_data_root` (default on; `disable_data_mapping`) |
| `ACTION_RUN`... in `environments` | `actions`: the scripts that replace run.sh, setup.sh, teardown.sh, check.sh |

A module without a `command` of its own (an image, or the process executor with a `code_path`) follows
Scalebox's module contract (`follows_contract`): the agent runs `sbx-action run` in its runtime, which finds
the script (see `scalebox_stream/intask/bin/sbx-action`).

Lock-down keys (`user`, `cap_add`, `resources`, `read_only_rootfs`, `secrets`): see `spec.lockdown`.

`task_dist_mode: SLOT-BOUND` (a `to_slot` header picks the slot) is refused: agents here take tasks per host.

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
from .errors import FieldError, SpecIssue
from .files import FileProblem, inside, read_capped
from .launch import LaunchTemplate, engine_of, parse_launch
from .limits import (
    MAX_BACKLOG,
    MAX_DURATION_S,
    MAX_GB,
    MAX_MODULES,
    MAX_NAME_CHARS,
    MAX_OUTPUT_TEXT_SIZE,
    MAX_SLOTS,
    MAX_START_TASK_FILE_BYTES,
    MAX_START_TASKS,
    MAX_TASKS_PER_HOST,
    check_body,
    shown,
    within_limit,
)
from .lockdown import ResourcesSpec, SecretSource, check_caps, check_secrets, check_user
from .names import host_topic_clash
from .placement import DEFAULT_HEAD, SlotPlacement, parse_placement, slots_on
from .retry_rules import RetryRule, parse_rules
from .retry_spec import RetrySpec, build_retry_policy

Executor = Literal["docker", "podman", "apptainer", "process"]
CONTAINER_EXECUTORS = ("docker", "podman", "apptainer")
SLOT_MODE_EXECUTORS = ("docker", "podman")
DEFAULT_COMMAND = "/app/bin/run.sh"
DEFAULT_OUTPUT_TEXT_SIZE = 65536
APP_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_NAME_CHARS - 1}}}")
MODULE_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_NAME_CHARS - 1}}}")
CLUSTER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXECUTOR_ALIASES = {"singularity": "apptainer"}
ACTIONS = {"run": "ACTION_RUN", "setup": "ACTION_SETUP", "teardown": "ACTION_TEARDOWN", "check": "ACTION_CHECK"}
"""The in-container scripts a module's environment may replace, and the variables that name them."""
DEFAULT_NETWORK = "bridge"
"""Containers reach the network through the engine's bridge, so transfer modules work; `network: none`
locks a module down."""
CODE_DIR = "/app/bin"
LOCAL_DATA_ROOT = "/local_data_root"
CLUSTER_DATA_ROOT = "/cluster_data_root"
SHM_DIR = "/dev/shm"
_YES = {"yes": True, "y": True, "true": True, "on": True, "1": True,
        "no": False, "n": False, "false": False, "off": False, "0": False}


def _app_dir(info: ValidationInfo) -> Path:
    """The app directory from the validation context (default: the current directory)."""
    context = info.context if isinstance(info.context, dict) else {}
    return Path(context.get("app_dir") or Path.cwd())


_UPPER_LIMITS = {"slots": ("MAX_SLOTS", MAX_SLOTS), "output_text_size": ("MAX_OUTPUT_TEXT_SIZE", MAX_OUTPUT_TEXT_SIZE),
                 "max_tasks_per_host": ("MAX_TASKS_PER_HOST", MAX_TASKS_PER_HOST),
                 "max_backlog": ("MAX_BACKLOG", MAX_BACKLOG), "task_max_seconds": ("MAX_DURATION_S", MAX_DURATION_S),
                 "task_min_seconds": ("MAX_DURATION_S", MAX_DURATION_S),
                 "task_deadline_seconds": ("MAX_DURATION_S", MAX_DURATION_S),
                 "queue_timeout_seconds": ("MAX_DURATION_S", MAX_DURATION_S),
                 "host_wait_seconds": ("MAX_DURATION_S", MAX_DURATION_S)}
"""Numeric module fields and their upper limit (name, value) from `spec.limits`."""


def _within_limit(value: Any, field: str) -> Any:
    """Refuse a boolean (YAML `true` is not a number), a non-finite number, or a number over the field's
    limit, naming the limit (before pydantic's lax coercion and checks, whose message for `1e26` as an int
    would not)."""
    name, limit = _UPPER_LIMITS[field]
    return within_limit(value, limit, name)


def _context(info: ValidationInfo, key: str, default: Any) -> Any:
    """A value from the validation context (the loader puts `app_dir`, `allow_outside` and `head` there)."""
    context = info.context if isinstance(info.context, dict) else {}
    return context.get(key, default)


def _flag(value: Any) -> Any:
    """Scalebox's yes/no (true/false, on/off, 1/0) as a boolean; anything else is left to pydantic."""
    if isinstance(value, str) and value.strip().lower() in _YES:
        return _YES[value.strip().lower()]
    return value


def _raw_environment(value: Any) -> dict[str, str]:
    """The KEY -> value pairs of a raw `environments` (a map or a list of KEY=value), leniently."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return dict(str(item).partition("=")[::2] for item in value if isinstance(item, str) and "=" in item)
    return {}


def _env_text(value: Any) -> str:
    """An environment value as text: numbers via str(), booleans as true/false, null as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(f"expected a scalar value, got {type(value).__name__}")



ENGINE_EXECUTORS = ("process", "docker", "podman")
"""The executors this engine has; `app validate` refuses the others at the key that chose them (the executors
package builds them: `executors.make_executor`)."""

class ModuleSpec(BaseModel):
    """One module of an app: what to run, where, and with which task policies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    image: str | None = None
    executor: Executor = "process"
    command: list[str] = Field(default_factory=list)
    slots: int = Field(default=1, ge=1, le=MAX_SLOTS)
    sink_modules: list[str] = Field(default_factory=list)
    environments: dict[str, str] = Field(default_factory=dict)
    volumes: list[str] = Field(default_factory=list)
    task_max_seconds: float | None = Field(default=None, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    task_min_seconds: float | None = Field(default=None, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    """Scalebox's GREEDY slot: attempts that keep ending sooner suspend the module on the agent (`policy.greedy`);
    passed to tasks as TASK_MIN_SECONDS."""
    task_deadline_seconds: float | None = Field(default=None, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    queue_timeout_seconds: float | None = Field(default=None, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
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
    max_tasks_per_host: int | None = Field(default=None, ge=1, le=MAX_TASKS_PER_HOST)
    wait_semaphore: str | None = None
    """Admit a task only while this semaphore of the app is positive, taking one from it (the wait-queue)."""
    max_backlog: int | None = Field(default=None, ge=1, le=MAX_BACKLOG)
    host_wait_seconds: float = Field(default=30.0, ge=0, le=MAX_DURATION_S, allow_inf_nan=False)
    on_missing_host: Literal["fail", "reroute"] = "fail"
    on_host_down: Literal["wait", "reroute"] = "wait"
    """HOST-BOUND tasks already on a host's topic when that host goes down: `wait` for an agent of that host (as
    Scalebox), or `reroute` them to the module's agents on live hosts (see `policy.takeover`)."""
    max_idle_polls: int | None = Field(default=None, ge=1, le=1_000_000)
    """The agent stops after this many idle polls (`poll_interval_seconds` each) without a task; None: never."""
    poll_interval_seconds: float = Field(default=6.0, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    always_running: bool = False
    """Never stop when idle (`slot_options: always_running`)."""
    container_mode: Literal["task", "slot"] = "task"
    cluster: str | None = None
    """The Kafka cluster whose agents run this module (default: the app's `cluster`)."""
    placement: list[SlotPlacement] = Field(default_factory=list)
    """Scalebox's host list: `count` slots on each matching host; empty: `slots` on every host of an agent."""
    slot_on_head: bool = False
    code_path: Path | None = None
    """The module's code directory, mounted at /app/bin (Scalebox's `code_path`)."""
    network: Literal["none", "bridge", "host"] = DEFAULT_NETWORK
    tmpfs_workdir: bool = False
    local_data_mapping: bool = True
    cluster_data_mapping: bool = True
    launch: LaunchTemplate | None = None
    """A Scalebox launch template given as `command` (`docker run {{ENVS}} {{VOLUMES}} {{IMAGE}}`)."""
    user: str | None = None
    """`uid:gid` a container runs as; None: the executor's non-root default."""
    cap_add: list[str] = Field(default_factory=list)
    """Capabilities a container keeps (all others are dropped)."""
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    read_only_rootfs: bool = False
    secrets: dict[str, SecretSource] = Field(default_factory=dict)
    """Environment variables the agent fills from a file or its own environment (never from the app file)."""

    @field_validator("user", mode="before")
    @classmethod
    def _user(cls, value: Any) -> Any:
        return check_user(value)

    @field_validator("cap_add", mode="before")
    @classmethod
    def _cap_add(cls, value: Any) -> Any:
        return check_caps(value)

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets(cls, value: Any) -> Any:
        return check_secrets(value)

    @field_validator("resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> Any:
        return {} if value is None else value

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
            if not os.path.isabs(directory) or not 0 <= gb <= MAX_GB:  # NaN fails both comparisons
                raise ValueError(f"{directory!r}: expected an absolute directory and a number of GB >= 0 "
                                 f"and <= {shown(MAX_GB)} (the limit, MAX_GB), got {gb!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any, info: ValidationInfo) -> Any:
        """Executor: the launch template's engine, else docker with an image (apptainer for a `.sif`), else
        process; image command default (`ACTION_RUN` if the environment names one); Scalebox's forms."""
        if not isinstance(data, dict):
            return data
        data = _scalebox_forms(dict(data), _context(info, "head", DEFAULT_HEAD))
        image = data.get("image")
        if data.get("executor") is None:
            if isinstance(image, str) and image:
                data["executor"] = "apptainer" if image.endswith(".sif") else "docker"
            else:
                data["executor"] = "process"
        executor = _EXECUTOR_ALIASES.get(str(data["executor"]).lower(), str(data["executor"]).lower())
        if data.get("command") is None and (image and executor in CONTAINER_EXECUTORS
                                            or executor == "process" and data.get("code_path") is not None):
            run = _raw_environment(data.get("environments")).get(ACTIONS["run"], "").strip()
            data["command"] = [run or DEFAULT_COMMAND]
        return data

    @field_validator("placement", mode="before")
    @classmethod
    def _placement(cls, value: Any) -> Any:
        """A Scalebox host list (`[h0:2, 'n-[01][01]:4']`), each entry checked (see `spec.placement`)."""
        if value is None or _placed(value):
            return value or []
        return parse_placement(value)

    @field_validator("launch", mode="before")
    @classmethod
    def _launch(cls, value: Any) -> Any:
        """A launch template string, read by `spec.launch.parse_launch`."""
        if isinstance(value, str):
            return parse_launch(value)
        return value

    @field_validator("code_path", mode="before")
    @classmethod
    def _code_path(cls, value: Any, info: ValidationInfo) -> Any:
        """A directory, relative to the app dir unless absolute; it must exist (it is mounted at /app/bin)."""
        if not isinstance(value, str | Path):
            raise ValueError(f"expected the path of the module's code directory, got {value!r}")
        path = (_app_dir(info) / str(value).strip()).resolve()
        if not path.is_dir():
            raise ValueError(f"code_path {str(value)!r} is not a directory (looked for {path})")
        return path

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("tmpfs_workdir", "local_data_mapping", "cluster_data_mapping", "slot_on_head",
                     "read_only_rootfs", mode="before")
    @classmethod
    def _flags(cls, value: Any) -> Any:
        return _flag(value)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not MODULE_NAME_RE.fullmatch(value):
            raise ValueError(f"bad module name {value!r}: use letters, digits, '_' and '-' (no dots; at most "
                             f"{MAX_NAME_CHARS} characters, MAX_NAME_CHARS)")
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
                raise ValueError("a Scalebox launch template ({{IMAGE}}, {{ENVS}}...) is read from a module's "
                                 "`command` in an app file, not here")
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
        return _within_limit(value, "slots")

    @field_validator("task_max_seconds", "task_min_seconds", "task_deadline_seconds", "queue_timeout_seconds",
                     "output_text_size", "max_tasks_per_host", "max_backlog", "host_wait_seconds", mode="before")
    @classmethod
    def _numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return _within_limit(value, str(info.field_name))

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
        """A body (string or number), a list of them; `FILE:name` expands to the file's non-blank lines.

        Every body passes `limits.check_body`; a FILE: must be a regular file inside the app directory
        (unless the context allows outside files), its lines split on `\\n` only.
        """
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
                if problem := check_body(text):
                    problems.append((loc, problem))
                out.append(text)
                continue
            try:
                bodies = _start_task_file(text[len("FILE:"):].strip(), info)
            except FileProblem as exc:
                problems.append((loc, str(exc)))
                continue
            for number, body in bodies:
                if problem := check_body(body):
                    problems.append((loc, f"{text[len('FILE:'):].strip()}, line {number}: {problem}"))
                    break
            out.extend(body for _, body in bodies)
        if len(out) > MAX_START_TASKS:
            problems.append(((), f"{len(out)} start tasks, over the limit of {MAX_START_TASKS} (MAX_START_TASKS)"))
        if problems:
            raise FieldError(problems)
        return out

    @field_validator("text_trunc_mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("task_dist_mode", mode="before")
    @classmethod
    def _dist_mode(cls, value: Any) -> Any:
        """Upper case; blank is DEFAULT (Scalebox's `task_dist_mode: ${TASK_DIST_MODE}` with `TASK_DIST_MODE=`);
        SLOT-BOUND is refused, saying why."""
        if not isinstance(value, str):
            return value
        mode = value.strip().upper() or "DEFAULT"
        if mode == "SLOT-BOUND":
            raise ValueError("SLOT-BOUND (a to_slot header picks the slot) is not supported: agents here take tasks "
                             "per host, not per slot; use HOST-BOUND with a to_host header, or DEFAULT")
        return mode

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
        clash = sorted(set(self.secrets) & set(self.environments))
        if clash:
            raise FieldError.at(("secrets", clash[0]), f"{clash[0]} is also set in environments: a secret's "
                                                        "variable must come from the secret alone")
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

    @property
    def follows_contract(self) -> bool:
        """Whether the module's program is Scalebox's run script (no `command` of its own, or `/app/bin/run.sh`):
        the agent then runs it under the module contract (`ACTION_RUN`, else `run.sh` from `/app/bin`, else
        `/app/share/bin`; for the process executor from `code_path`), with setup and teardown once per slot."""
        return self.command in ([DEFAULT_COMMAND], [self.actions.get("run", DEFAULT_COMMAND)])

    @property
    def actions(self) -> dict[str, str]:
        """The scripts the environment names instead of run.sh, setup.sh, teardown.sh and check.sh
        (`ACTION_RUN`...: `{"check": "/app/bin/mycheck.sh"}`); a blank `ACTION_CHECK=` names none."""
        return {action: self.environments[var].strip() for action, var in ACTIONS.items()
                if self.environments.get(var, "").strip()}

    def slots_on(self, host: str) -> int:
        """How many slots this module has on `host`: from the host list, else `slots` on any host."""
        if not self.placement:
            return self.slots
        return slots_on(self.placement, host)

    def standard_mounts(self, cluster_data_dir: Path | None) -> list[str]:
        """Scalebox's standard mounts for this module as `src:dst[:mode]`: `code_path` at /app/bin (read-only),
        the host's / at /local_data_root, the cluster data directory at /cluster_data_root, and /dev/shm."""
        mounts = [f"{self.code_path}:{CODE_DIR}:ro"] if self.code_path else []
        if self.local_data_mapping:
            mounts.append(f"/:{LOCAL_DATA_ROOT}")
        if self.cluster_data_mapping and cluster_data_dir is not None:
            mounts.append(f"{cluster_data_dir}:{CLUSTER_DATA_ROOT}")
        mounts.append(f"{SHM_DIR}:{SHM_DIR}")
        return mounts


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
    version: str | None = None
    default_idle_polls: int | None = Field(default=None, ge=1, le=1_000_000)
    """Every module's `max_idle_polls` unless it sets its own."""
    initial_status: Literal["RUNNING", "INITIAL", "PAUSED"] = "RUNNING"
    """Scalebox's app state after creation: RUNNING starts at once; INITIAL and PAUSED wait to be started."""
    head_host: str = DEFAULT_HEAD
    """The head host's name in host lists: `h0` unless the file's `clusters:` gives a host `role: head`."""
    cluster_data_dir: Path | None = None
    """The cluster data directory (`${CLUSTER_DATA_DIR}`), mounted at /cluster_data_root."""
    clusters: dict[str, Any] = Field(default_factory=dict)
    """The app file's `clusters:` as written (read by `spec.cluster`: hosts and how agents start there)."""
    warnings: tuple[SpecIssue, ...] = ()
    """What the loader accepted but ignores, one line each (`file:line: field: message`), for the CLI to print."""

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("initial_status", mode="before")
    @classmethod
    def _initial_status(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if "." in value and APP_NAME_RE.fullmatch(value.replace(".", "_")):
            twin = value.replace(".", "_")
            raise ValueError(f"bad app name {value!r}: no '.' in app names; Kafka treats '.' and '_' in topic names "
                             f"alike, so the task topics of {value!r} (sbx.tasks.{value}.<module>) would collide "
                             f"with those of app {twin!r}; use letters, digits, '_' and '-', e.g. {twin!r}")
        if not APP_NAME_RE.fullmatch(value):
            raise ValueError(f"bad app name {value!r}: use letters, digits, '_' and '-' "
                             f"(at most {MAX_NAME_CHARS} characters, MAX_NAME_CHARS)")
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
    def _check_topic_names(self) -> AppSpec:
        """No more than MAX_MODULES modules; no module's task topic may be another's host topic to Kafka."""
        if len(self.modules) > MAX_MODULES:
            raise FieldError.at(("modules",), f"{len(self.modules)} modules, over the limit of {MAX_MODULES} "
                                              "(MAX_MODULES)")
        problems = [(("modules", name, "name"), message)
                    for name in self.modules if (message := host_topic_clash(self.name, name, self.modules))]
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


def _scalebox_forms(data: dict[str, Any], head: str) -> dict[str, Any]:
    """What a launch template implies (executor, network, tmpfs /work) unless given; `slots` from a host
    list (the head's share, else the first entry's); `slot_on_head` as a placement on the head."""
    launch = data.get("launch")
    if isinstance(launch, str):
        if data.get("executor") is None and (engine := engine_of(launch)):
            data["executor"] = engine
        try:
            template = parse_launch(launch)
        except ValueError:
            template = None  # the field validator reports it
        if template is not None:
            if data.get("network") is None and template.network:
                data["network"] = template.network
            if data.get("tmpfs_workdir") is None and "/work" in [t.split(":")[0] for t in template.tmpfs]:
                data["tmpfs_workdir"] = True
    placement = data.get("placement")
    if placement is not None and data.get("slots") is None:
        try:
            entries = parse_placement(placement) if not _placed(placement) else placement
        except ValueError:
            entries = []
        if entries:
            data["slots"] = slots_on(entries, head) or entries[0].count
    elif _flag(data.get("slot_on_head")) is True:
        slots = data.get("slots", 1)
        count = slots if isinstance(slots, int) and not isinstance(slots, bool) and slots >= 1 else 1
        data["placement"] = [SlotPlacement(host=head, count=count)]
    return data


def _placed(value: Any) -> bool:
    """Whether `value` is already a list of SlotPlacement."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, SlotPlacement) for v in value)


def _start_task_file(name: str, info: ValidationInfo) -> list[tuple[int, str]]:
    """The non-blank lines (number, text) of a start task file; FileProblem if it may not or cannot be read."""
    app_dir = _app_dir(info)
    path = app_dir / name
    context = info.context if isinstance(info.context, dict) else {}
    if not context.get("allow_outside") and (os.path.isabs(name) or not inside(path, app_dir)):
        raise FileProblem(f"start task file {name!r} is outside the app directory {str(app_dir)!r}: FILE: names "
                          "a file in the app's directory or below it (copy or move the file there)")
    content = read_capped(path, MAX_START_TASK_FILE_BYTES, what=f"start task file {str(path)!r}",
                          limit_name="MAX_START_TASK_FILE_BYTES", regular_only=True)
    lines = ((number, line.strip(" \t\r")) for number, line in enumerate(content.split("\n"), start=1))
    return [(number, line) for number, line in lines if line]
