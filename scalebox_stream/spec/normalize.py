"""Flatten Scalebox's app layout into the model's fields, rejecting unknown keys.

Scalebox spreads module settings over flat keys, `arguments:` and `parameters:`, and has older names
for some keys (`base_image`, `sink_jobs`, `start_message`...). This step maps them all onto the flat
model fields and remembers, for each model field, the path it came from (so errors can name the key
the user actually wrote, and its line). Harmless Scalebox keys (`label`, `comment`, `version`) are
ignored; anything else unknown is an error, with a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .yamlsrc import Path_

APP_FIELDS = frozenset({"name", "label", "main_router", "modules", "cluster"})
MODULE_FIELDS = frozenset({
    "image", "command", "executor", "slots", "sink_modules", "environments", "volumes",
    "task_max_seconds", "retry_rules", "start_task", "output_text_size", "text_trunc_mode", "pod_id",
    "task_dist_mode", "task_deadline_seconds", "queue_timeout_seconds", "retry", "error_budget",
    "check", "dir_quota_gb", "free_space_gb", "max_tasks_per_host", "max_backlog", "host_wait_seconds",
    "on_missing_host", "container_mode", "cluster",
})
NESTS = frozenset({"arguments", "parameters"})
IGNORED = frozenset({"label", "comment", "comments", "version"})
ALIASES = {
    "base_image": "image", "sink_jobs": "sink_modules", "start_message": "start_task",
    "task_timeout_seconds": "task_max_seconds", "message_router": "main_router", "jobs": "modules",
    "variables": "arguments", "paths": "volumes", "hosts": "slots", "space_free_gb": "free_space_gb",
    "dir_limit_gb": "dir_quota_gb", "dir_free_gb": "free_space_gb",
}
UNSUPPORTED = frozenset({
    # app level
    "initial_status", "default_sleep_count", "default_idle_polls", "is_cluster_admin", "slot_group",
    "clusters", "datasets",
    # module level
    "sink_vmodules", "schedule_mode", "input_datasets", "output_datasets", "resource_claim",
    "grpc_server", "local_ip_index", "task_min_seconds", "poll_interval_seconds", "max_idle_polls",
    "task_batch_size", "batch_atomic", "heartbeat_seconds",
    "timezone_mode", "max_slot_workdir_gb", "slot_options", "priority", "key_group_regex",
    "key_group_index", "initial_task_status", "initial_slot_status", "slot_recoverable",
    "slot_max_retries", "slot_timeout_minutes", "task_global_timeout_scale", "main_router_index",
    "task_dedup_cache_ttl_minutes", "task_cache_expired_minutes", "visible", "task_id_in_headers",
    "app_id_in_headers", "node_progress_gap", "vtask_role", "vtask_size", "vtask_size_sema_copy",
    "max_tasks_per_minute", "autoscaling", "slot_req",
})
HINTS = {
    "code_path": "not supported; run the code with the process executor (command: ./dir/run.sh) "
                 "or mount it with volumes: ['./dir:/app/bin:ro']",
}


@dataclass
class Normalized:
    """Model input, the raw path behind each model field, and problems found (raw path, message)."""

    data: dict[str, Any]
    origin: dict[Path_, Path_] = field(default_factory=dict)
    issues: list[tuple[Path_, str]] = field(default_factory=list)

    def raw_path(self, loc: Path_) -> Path_:
        """Translate a model loc (e.g. from a pydantic error) into the path written in the file."""
        for size in range(len(loc), -1, -1):
            if loc[:size] in self.origin:
                return self.origin[loc[:size]] + loc[size:]
        return loc


def normalize_app(raw: dict[str, Any]) -> Normalized:
    """Flatten an app mapping (already known to be a dict) into `AppSpec` input."""
    result = Normalized(data={}, origin={(): ()})
    _flatten(raw, (), (), APP_FIELDS, result.data, result)
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
        modules[name] = module
    result.data["modules"] = modules
    return result


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
            if canon in out:
                other = ".".join(str(p) for p in result.origin[model_path + (canon,)])
                result.issues.append((path, f"{canon!r} is given twice (also as {other})"))
                continue
            out[canon] = value
            result.origin[model_path + (canon,)] = path
        elif canon in IGNORED:
            continue
        elif key in HINTS:
            result.issues.append((path, f"Scalebox field {key!r} is {HINTS[key]}"))
        elif key in UNSUPPORTED:
            result.issues.append((path, f"Scalebox field {key!r} is not supported by scalebox-stream"))
        else:
            targets = fields | (NESTS if not nested else frozenset())
            candidates = sorted(targets | {alias for alias, to in ALIASES.items() if to in targets})
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            result.issues.append((path, f"unknown field {key!r}{hint}"))
