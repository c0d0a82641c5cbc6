"""`scalebox run` with no app file, as Scalebox's `app run` does it: the `app.yaml` of the current directory,
else a one-module app made from a code directory (`./code`), with a main router from `./mr-code` if there is
one. The made-up app file is written under `$SCALEBOX_HOME/apps/<name>/` so that agents started later (and
detached ones) load the same file."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

AGENT_IMAGE = "hub.cstcloud.cn/scalebox/agent"
"""The image Scalebox's `app run` uses when none is named (the agent base image, built locally)."""
MODULE = "main"
ROUTER = "mr-module"
"""The module names of a made-up app: the code directory's module and its main router."""
APP_FILE = "app.yaml"
ENV_FILE = "scalebox.env"


@dataclass(frozen=True)
class QuickOptions:
    """The options of `scalebox run` that shape a made-up app (each falls back to Scalebox's `_NAME` variable,
    then to its default)."""

    app_name: str | None = None
    image_name: str | None = None
    code_path: Path | None = None
    slot_regex: str | None = None
    mr_image_name: str | None = None
    mr_code_path: Path | None = None
    executor: str | None = None
    """`process` runs `CODE/run.sh` on this machine instead of in the image (no container needed)."""
    cluster: str | None = None
    """The app's `cluster` (here its home Kafka cluster; default `local`)."""


START_ITEM_KEYS = frozenset({"cluster", "image_name", "code_path", "slot_regex", "mr_image_name", "mr_code_path",
                             "start_task"})
"""The keys of Scalebox's JSON start item (`app run '{"image_name":...,"start_task":...}'`)."""


def start_item(text: str) -> dict[str, str] | None:
    """Scalebox's JSON start item: a JSON object whose keys are all `START_ITEM_KEYS` (string values), as a
    dict; None for anything else, which stays a task body (a JSON body with its own keys among them)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(data, dict) or not data or not set(data) <= START_ITEM_KEYS:
        return None
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in data.items()}


def with_start_item(options: QuickOptions, item: Mapping[str, str]) -> QuickOptions:
    """`options` with a start item's settings where the command line gave none (its `start_task` is a body)."""
    given = {key: item[key] for key in ("cluster", "image_name", "slot_regex", "mr_image_name") if item.get(key)}
    paths = {key: Path(item[key]) for key in ("code_path", "mr_code_path") if item.get(key)}
    return replace(options, **{key: value for key, value in {**given, **paths}.items()
                               if getattr(options, key) is None})


def shapes_app(item: Mapping[str, str]) -> bool:
    """Whether a start item sets more than its start task (settings of an app made from a code directory)."""
    return any(key != "start_task" for key in item)


class QuickAppError(ValueError):
    """No app file and no code directory: nothing to make an app from."""


def _env(value: object, name: str, environ: Mapping[str, str]) -> str | None:
    if value is not None and str(value) != "":
        return str(value)
    return environ.get(name) or None


def app_name_for(directory: Path) -> str:
    """An app name from a directory name: letters, digits and `-` (Kafka topic names take few others)."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", directory.resolve().name).strip("-").lower()
    return name or "app"


def quick_app_yaml(options: QuickOptions, cwd: Path, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(app name, app file text) of the one-module app of `cwd`'s code directory; QuickAppError if there is
    none. Relative paths are resolved against `cwd`."""
    environ = os.environ if environ is None else environ
    code_text = _env(options.code_path, "_CODE_PATH", environ) or ("code" if (cwd / "code").is_dir() else None)
    if code_text is None:
        raise QuickAppError(f"no {APP_FILE} and no code directory in {cwd}: give an app file, or --code-path DIR "
                            "(or create ./code with a run.sh)")
    code = (cwd / code_text).resolve()
    if not code.is_dir():
        raise QuickAppError(f"code path {code_text!r} is not a directory (looked for {code})")
    mr_default = "mr-code" if (cwd / "mr-code").is_dir() else None
    mr_text = _env(options.mr_code_path, "_MR_CODE_PATH", environ) or mr_default
    name = _env(options.app_name, "_APP_NAME", environ) or app_name_for(cwd)
    image = _env(options.image_name, "_IMAGE_NAME", environ) or AGENT_IMAGE
    slots = _env(options.slot_regex, "_SLOT_REGEX", environ) or "h0"
    executor = _env(options.executor, "_EXECUTOR", environ)
    modules: dict[str, dict] = {MODULE: _module(code, image, slots, executor)}
    app: dict = {"name": name}
    if cluster := _env(options.cluster, "_CLUSTER", environ):
        app["cluster"] = cluster
    if mr_text is not None:
        mr_code = (cwd / mr_text).resolve()
        if not mr_code.is_dir():
            raise QuickAppError(f"main router code path {mr_text!r} is not a directory (looked for {mr_code})")
        mr_image = _env(options.mr_image_name, "_MR_IMAGE_NAME", environ) or AGENT_IMAGE
        modules[ROUTER] = _module(mr_code, mr_image, "h0", executor)
        app["parameters"] = {"main_router": ROUTER}
    app["modules"] = modules
    return name, yaml.safe_dump(app, sort_keys=False)


def _module(code: Path, image: str, slots: str, executor: str | None) -> dict:
    """One module running `code`'s run.sh: in `image` (code mounted at /app/bin), or as a process."""
    placement = [slots if ":" in slots else f"{slots}:1"]
    if executor == "process":
        return {"executor": "process", "command": str(code / "run.sh"), "slots": placement}
    module: dict = {"base_image": image, "code_path": str(code), "slots": placement}
    if executor:
        module["executor"] = executor
    return module


def write_quick_app(home: Path, name: str, text: str) -> Path:
    """Write the made-up app file to `$SCALEBOX_HOME/apps/<name>/app.yaml` (replacing an older one)."""
    directory = home / "apps" / name
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / APP_FILE
    path.write_text(text)
    return path


def local_env_files(cwd: Path, app_file: Path) -> tuple[Path, ...]:
    """`./scalebox.env` of the directory the command runs in, when the app file lives elsewhere (Scalebox reads
    it from the current directory; the loader reads the app file's own)."""
    env = cwd / ENV_FILE
    return (env,) if env.is_file() and env.resolve().parent != app_file.resolve().parent else ()
