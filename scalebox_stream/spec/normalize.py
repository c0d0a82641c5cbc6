"""Flatten Scalebox's app layout into the model's fields; warn about the knobs this engine ignores.

Scalebox spreads module settings over flat keys, `arguments:` and `parameters:`, and has older names
for some keys (`base_image`, `sink_jobs`, `start_message`...). This step maps them all onto the flat
model fields and remembers, for each model field, the path it came from (so errors can name the key
the user actually wrote, and its line).

Every key of Scalebox's app spec is either honoured (a model field) or accepted with a one-line warning
that says what is ignored and why (`IGNORED_KEYS`, `SLOT_OPTIONS`): a harmless knob never makes a file
fail. `comment`/`comments` are ignored silently. A key nobody knows is an error, with a "did you mean".
A blank value (`''` or nothing, as `KEY=` in `scalebox.env` gives) leaves a knob unset, as in Scalebox.

Scalebox forms read here: `slot_options` (comma-separated: `slot_on_head`, `tmpfs_workdir`,
`disable_local_mapping`...), `slot_on_head: yes`, `schedule_mode: HEAD`, a `slots:` host list (moved to the
model's `placement`), a `command:` launch template with `{{IMAGE}}` (moved to the model's `launch`), and
dotted app names (`retry_test.test-app`, run as `retry_test-test-app`: see `dotless_name`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .yamlsrc import Path_

APP_FIELDS = frozenset({"name", "label", "main_router", "modules", "cluster", "version", "initial_status",
                        "clusters", "default_idle_polls"})
MODULE_FIELDS = frozenset({
    "image", "command", "executor", "slots", "sink_modules", "environments", "volumes",
    "task_max_seconds", "task_min_seconds", "retry_rules", "start_task", "output_text_size", "text_trunc_mode",
    "pod_id", "task_dist_mode", "task_deadline_seconds", "queue_timeout_seconds", "retry", "error_budget",
    "check", "dir_quota_gb", "free_space_gb", "max_tasks_per_host", "max_backlog", "host_wait_seconds",
    "on_missing_host", "on_host_down", "max_idle_polls", "poll_interval_seconds", "container_mode", "cluster",
    "wait_semaphore",
    "code_path", "network", "tmpfs_workdir", "slot_on_head", "local_data_mapping", "cluster_data_mapping",
    "user", "cap_add", "resources", "read_only_rootfs", "secrets",
})
NESTS = frozenset({"arguments", "parameters"})
SILENT = frozenset({"comment", "comments", "memo", "label", "version"})
"""Ignored without a warning (where they are not model fields: a module's `label` and `version`)."""
ALIASES = {
    "base_image": "image", "sink_jobs": "sink_modules", "start_message": "start_task",
    "task_timeout_seconds": "task_max_seconds", "message_router": "main_router",
    "default_message_router": "main_router", "jobs": "modules", "variables": "arguments", "paths": "volumes",
    "hosts": "slots", "space_free_gb": "free_space_gb", "dir_limit_gb": "dir_quota_gb",
    "dir_free_gb": "free_space_gb", "envs": "environments", "environmens": "environments",
    "max_sleep_count": "max_idle_polls", "sleep_interval_seconds": "poll_interval_seconds",
    "default_sleep_count": "default_idle_polls", "router_index": "main_router_index",
    "task_progress_diff": "node_progress_gap", "progress_counter_diff": "node_progress_gap",
    "bulk_message_size": "task_batch_size", "task_cache_expired_minutes": "task_dedup_cache_ttl_minutes",
    "initial_status_code": "initial_task_status", "dir_quota": "dir_quota_gb",
}
_POLLING = "agents are fed by Kafka and send their own heartbeat"
_NOT_YET = "not yet supported by scalebox-stream"
IGNORED_KEYS = {
    # app level
    "is_cluster_admin": "there are no system apps here",
    "slot_group": "slots are not created on new hosts automatically; start `scalebox agent` on each host",
    "datasets": "an old Scalebox key with no meaning today",
    # module level
    "grpc_server": "there is no controld: agents talk to Kafka",
    "local_ip_index": "agents name their host themselves (`scalebox agent --host`); no IP is picked",
    "heartbeat_seconds": _POLLING,
    "task_batch_size": f"one run.sh per task; Kafka batches the fetching already (batch runs are {_NOT_YET})",
    "batch_atomic": f"one run.sh per task (batch runs are {_NOT_YET})",
    "timezone_mode": f"containers keep their image's timezone ({_NOT_YET})",
    "max_slot_workdir_gb": "unused in Scalebox too",
    "priority": "unused in Scalebox too",
    "key_group_regex": f"tasks run in arrival order; ordering by key group is {_NOT_YET}",
    "key_group_index": f"tasks run in arrival order; ordering by key group is {_NOT_YET}",
    "initial_task_status": f"tasks are ready when sent (INITIAL tasks are {_NOT_YET})",
    "initial_slot_status": "agents start ready; pause a module with `scalebox module suspend`",
    "slot_recoverable": "there are no slot records to recover: a stopped agent's tasks go to the others",
    "slot_max_retries": "there are no slot records to recover: a stopped agent's tasks go to the others",
    "slot_timeout_minutes": "there are no slot records to time out: agents report themselves when they start",
    "task_global_timeout_scale": "a task whose agent dies is taken over through Kafka (no exit code 123)",
    "main_router_index": f"one main router per app (several are {_NOT_YET})",
    "task_dedup_cache_ttl_minutes": "there is no dispatch cache: Kafka hands each attempt to one agent",
    "visible": "there is no pipeline graph view",
    "task_id_in_headers": _NOT_YET,
    "app_id_in_headers": _NOT_YET,
    "node_progress_gap": _NOT_YET,
    "vtask_role": f"vtasks are {_NOT_YET}",
    "vtask_size": f"vtasks are {_NOT_YET}",
    "vtask_size_sema_copy": f"vtasks are {_NOT_YET}",
    "max_tasks_per_minute": "slots have no ERROR state here; error_budget stops a failing module",
    "autoscaling": f"slot autoscaling is {_NOT_YET}",
    "slot_req": f"slot autoscaling is {_NOT_YET}",
    "sink_vmodules": "logical links only draw the pipeline graph, which is not shown here",
    "input_datasets": "an old Scalebox key with no meaning today",
    "output_datasets": "an old Scalebox key with no meaning today",
    "resource_claim": "an old Scalebox key with no meaning today",
}
SLOT_OPTIONS: dict[str, tuple[str, bool] | str] = {
    "slot_on_head": ("slot_on_head", True),
    "tmpfs_workdir": ("tmpfs_workdir", True),
    "disable_local_mapping": ("local_data_mapping", False),
    "disable_data_mapping": ("cluster_data_mapping", False),
    "always_running": ("always_running", True),
    "reserved_on_exit": f"keeping a slot's container after it exits is {_NOT_YET}",
    "wrap_debug": "agent tracing is in the event log (`scalebox logs`)",
    "enable_trace": "agent tracing is in the event log (`scalebox logs`)",
    "async_task_creation": "tasks a run adds are sent when it ends, in its own transaction",
    "with_headers": "headers are always passed as $2",
    "hide_local_ip": "no IP is passed to tasks",
}
"""Scalebox slot options: a model field and its value, or why the option is ignored."""
BLANK_IS_VALUE = frozenset({"name", "image", "command", "modules", "start_task"})
"""Keys whose blank value is still a value (and an error where one is needed); any other blank is unset."""


@dataclass
class Normalized:
    """Model input, the raw path behind each model field, problems and warnings found (raw path, message),
    and the app file's `clusters:` (validated by `spec.cluster` when a run places agents)."""

    data: dict[str, Any]
    origin: dict[Path_, Path_] = field(default_factory=dict)
    issues: list[tuple[Path_, str]] = field(default_factory=list)
    warnings: list[tuple[Path_, str]] = field(default_factory=list)
    clusters: dict[str, Any] = field(default_factory=dict)

    def raw_path(self, loc: Path_) -> Path_:
        """Translate a model loc (e.g. from a pydantic error) into the path written in the file."""
        for size in range(len(loc), -1, -1):
            if loc[:size] in self.origin:
                return self.origin[loc[:size]] + loc[size:]
        return loc


def dotless_name(name: str) -> str:
    """A Scalebox app name with its dots turned into `-` (`retry_test.test-app` -> `retry_test-test-app`):
    Kafka reads `.` and `_` in topic names alike, so a dotted name's topics could collide with another app's."""
    return name.replace(".", "-")


def normalize_app(raw: dict[str, Any]) -> Normalized:
    """Flatten an app mapping (already known to be a dict) into `AppSpec` input."""
    result = Normalized(data={}, origin={(): ()})
    _flatten(raw, (), (), APP_FIELDS, result.data, result)
    _app_forms(result)
    modules_raw = result.data.get("modules")
    if "modules" not in result.data:
        return result
    modules_path = result.origin[("modules",)]
    if modules_raw is None:
        modules_raw = {}
    if not isinstance(modules_raw, dict):
        result.issues.append((modules_path, "expected a mapping of module name -> module settings"))
        result.data["modules"] = {}
        return result
    modules: dict[str, Any] = {}
    for name, settings in modules_raw.items():
        path = modules_path + (name,)
        result.origin[("modules", name)] = path
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            result.issues.append((path, "expected a mapping of module settings"))
            continue
        module: dict[str, Any] = {"name": name}
        _flatten(settings, path, ("modules", name), MODULE_FIELDS, module, result)
        _module_forms(module, ("modules", name), result)
        modules[name] = module
    result.data["modules"] = modules
    return result


def _app_forms(result: Normalized) -> None:
    """App-level Scalebox forms: a dotted name, `clusters:` (kept apart from the model input)."""
    data = result.data
    name = data.get("name")
    if isinstance(name, str) and "." in name:
        dotless = dotless_name(name)
        result.warnings.append((result.origin[("name",)],
                                f"app name {name!r} is run as {dotless!r}: Kafka treats '.' and '_' in topic names "
                                f"alike, so a dotted name's topics could collide with those of app "
                                f"{name.replace('.', '_')!r}"))
        data["name"] = dotless
    if "clusters" in data:
        clusters = data.pop("clusters")
        path = result.origin.pop(("clusters",))
        if isinstance(clusters, dict):
            result.clusters = clusters
        elif clusters is not None:
            result.issues.append((path, "expected a mapping of cluster name -> cluster definition"))


def _module_forms(module: dict[str, Any], model_path: Path_, result: Normalized) -> None:
    """Module-level Scalebox forms: a host list in `slots:` and a launch template in `command:` move to the
    model's `placement` and `launch`."""
    slots = module.get("slots")
    if isinstance(slots, list) or (isinstance(slots, str) and ":" in slots):
        module["placement"] = module.pop("slots")
        result.origin[model_path + ("placement",)] = result.origin.pop(model_path + ("slots",))
    command = module.get("command")
    if isinstance(command, str) and "{{" in command:
        module["launch"] = module.pop("command")
        result.origin[model_path + ("launch",)] = result.origin.pop(model_path + ("command",))


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _yes(value: Any) -> bool | None:
    """Scalebox's yes/no (also true/false, on/off, 1/0, booleans); None if it is neither."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "y", "true", "on", "1"):
        return True
    if text in ("no", "n", "false", "off", "0"):
        return False
    return None


def _set(out: dict[str, Any], model_path: Path_, canon: str, value: Any, path: Path_, result: Normalized) -> None:
    """Put one model field, refusing a field given twice."""
    if canon in out:
        other = ".".join(str(p) for p in result.origin[model_path + (canon,)])
        result.issues.append((path, f"{canon!r} is given twice (also as {other})"))
        return
    out[canon] = value
    result.origin[model_path + (canon,)] = path


def _flatten(mapping: dict[str, Any], raw_path: Path_, model_path: Path_, fields: frozenset[str],
             out: dict[str, Any], result: Normalized, nested: bool = False) -> None:
    """Copy known keys of `mapping` (and of its `arguments:`/`parameters:`) into `out`."""
    for key, value in mapping.items():
        canon = ALIASES.get(key, key)
        path = raw_path + (key,)
        if canon in NESTS and not nested:
            if value is None:
                continue
            if not isinstance(value, dict):
                result.issues.append((path, "expected a mapping of settings"))
                continue
            _flatten(value, path, model_path, fields, out, result, nested=True)
        elif canon in fields:
            if _is_blank(value) and canon not in BLANK_IS_VALUE:
                continue
            if canon == "slot_on_head":
                _slot_on_head(out, model_path, value, path, result)
            else:
                _set(out, model_path, canon, value, path, result)
        elif canon in SILENT:
            continue
        elif model_path and canon == "slot_options":
            _slot_options(out, model_path, value, path, result)
        elif model_path and canon == "schedule_mode":
            _schedule_mode(out, model_path, value, path, result)
        elif canon in IGNORED_KEYS:
            if not _is_blank(value):
                result.warnings.append((path, f"ignored: {IGNORED_KEYS[canon]}"))
        else:
            targets = fields | (NESTS if not nested else frozenset())
            candidates = sorted(targets | {alias for alias, to in ALIASES.items() if to in targets})
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            result.issues.append((path, f"unknown field {key!r}{hint}"))


def _slot_on_head(out: dict[str, Any], model_path: Path_, value: Any, path: Path_, result: Normalized) -> None:
    """`slot_on_head: yes` (Scalebox's parameter form) or `true`."""
    flag = _yes(value)
    if flag is None:
        result.issues.append((path, f"expected yes or no, got {value!r}"))
    elif model_path + ("slot_on_head",) not in result.origin:
        _set(out, model_path, "slot_on_head", flag, path, result)


def _slot_options(out: dict[str, Any], model_path: Path_, value: Any, path: Path_, result: Normalized) -> None:
    """Scalebox's comma-separated slot options: each sets a model field or is ignored with a warning."""
    if _is_blank(value):
        return
    if isinstance(value, str):
        options = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        options = [item.strip() for item in value if item.strip()]
    else:
        result.issues.append((path, f"expected comma-separated slot options such as 'slot_on_head,tmpfs_workdir', "
                                    f"got {value!r}"))
        return
    for option in options:
        effect = SLOT_OPTIONS.get(option)
        if isinstance(effect, tuple):
            target, flag = effect
            if model_path + (target,) not in result.origin:
                _set(out, model_path, target, flag, path, result)
        elif isinstance(effect, str):
            result.warnings.append((path, f"slot option {option!r} ignored: {effect}"))
        else:
            close = difflib.get_close_matches(option, list(SLOT_OPTIONS), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(SLOT_OPTIONS)})"
            result.warnings.append((path, f"unknown slot option {option!r} ignored{hint}"))


def _schedule_mode(out: dict[str, Any], model_path: Path_, value: Any, path: Path_, result: Normalized) -> None:
    """Scalebox's old `schedule_mode`: HEAD is `slot_on_head`; NODE (a slot on every node) is not placed here."""
    if _is_blank(value):
        return
    mode = str(value).strip().upper()
    if mode == "HEAD":
        if model_path + ("slot_on_head",) not in result.origin:
            _set(out, model_path, "slot_on_head", True, path, result)
    else:
        result.warnings.append((path, f"schedule_mode {value!r} ignored: only HEAD (one slot on the head) is read; "
                                      "start `scalebox agent` on the other hosts"))
