"""Scalebox's module contract, as one module's agent applies it to every attempt, in any executor.

- The scripts: `ACTION_RUN`/`ACTION_SETUP`/`ACTION_TEARDOWN`/`ACTION_CHECK`, else `run.sh`, `setup.sh`,
  `teardown.sh`, `check.sh` from `/app/bin`, then `/app/share/bin` (the process executor: from `code_path`).
  `sbx-action` (an in-task tool, POSIX sh) finds and runs them in the module's own runtime.
- `setup.sh` and `teardown.sh` once per slot (the executors' `ExecRequest.setup`/`teardown`); `check.sh`
  before each attempt, in the runtime too (`ModuleContract.check`): exit 0 admits the task.
- The standard mounts: `code_path` at `/app/bin`, the host's `/` at `/local_data_root`, the cluster data
  directory at `/cluster_data_root`, `/dev/shm`, for a module written Scalebox's way (no `command` of its
  own, a `code_path` or a launch template; a module with its own command sees only its `volumes`, as
  before); the module's `network` (default bridge); `tmpfs_workdir`
  (the work directory in memory: on the host's `/dev/shm`, where the agent reads what the task leaves).
- The environment Scalebox scripts read (`APP_ID`, `MODULE_ID`, `JOB_ID`, `SLOT_ID`, `CLUSTER_DATA_ROOT`, ...:
  see `TaskRunner._request`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scalebox_stream.intask import BIN_DIR, CONTAINER_BIN_DIR
from scalebox_stream.spec.model import CLUSTER_DATA_ROOT, AppSpec, ModuleSpec

log = logging.getLogger(__name__)

ACTION_PROGRAM = "sbx-action"
ImageFiles = Callable[[str, list[str]], set[str]]
"""Which of the given files an image holds (the docker executors' `files_in_image`)."""
TMPFS_WORK_ROOT = Path("/dev/shm/scalebox-work")
"""Where the work directories of a module with `tmpfs_workdir` live (a tmpfs on Linux)."""


@dataclass(frozen=True)
class ModuleContract:
    """What the contract adds to each attempt of one module run by one executor."""

    run: list[str] | None
    """The program of an attempt (before body and headers) when the module follows the contract, else None."""
    setup: list[str] | None = None
    teardown: list[str] | None = None
    check: list[str] | None = None
    """The admission script's argv (before body and headers), None when the module has none."""
    mounts: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    work_root: Path | None = None
    """Where the work directories go instead of the agent's work root (tmpfs_workdir), else None."""

    @classmethod
    def of(cls, spec: AppSpec, module: ModuleSpec, executor: str,
           image_files: ImageFiles | None = None) -> ModuleContract:
        """The contract of `module` of `spec` under `executor` ("process" or a container engine). `image_files`
        looks for a `check.sh` the module's image ships (a standard module's, in `/app/share/bin`)."""
        in_container = executor != "process"
        program = f"{CONTAINER_BIN_DIR}/{ACTION_PROGRAM}" if in_container else str(BIN_DIR / ACTION_PROGRAM)
        actions = module.actions
        code = module.code_path
        scripts = {name: bool(actions.get(name)) or (code is not None and (code / f"{name}.sh").is_file())
                   for name in ("setup", "teardown", "check")}
        if not scripts["check"] and in_container and module.follows_contract and module.image and image_files:
            scripts["check"] = _image_has_check(module, image_files)
        slot_scripts = module.follows_contract or scripts["setup"] or scripts["teardown"]
        scalebox_style = module.follows_contract or code is not None or module.launch is not None
        env: dict[str, str] = {}
        if not in_container:
            env["SBX_CODE_DIRS"] = str(code) if code is not None else str(spec.app_dir)
        data_dir = spec.cluster_data_dir if module.cluster_data_mapping else None
        if data_dir is not None and (scalebox_style or not in_container):
            env["CLUSTER_DATA_ROOT"] = CLUSTER_DATA_ROOT if in_container else str(data_dir)
        if module.tmpfs_workdir:
            env["TMPFS_WORKDIR"] = "yes"
        return cls(
            run=[program, "run"] if module.follows_contract else None,
            setup=[program, "setup"] if slot_scripts else None,
            teardown=[program, "teardown"] if slot_scripts else None,
            check=[program, "check"] if scripts["check"] else None,
            mounts=module.standard_mounts(spec.cluster_data_dir) if in_container and scalebox_style else [],
            env=env,
            network=module.network if in_container else None,
            work_root=TMPFS_WORK_ROOT if module.tmpfs_workdir else None,
        )


def _image_has_check(module: ModuleSpec, image_files: ImageFiles) -> bool:
    """Whether the module's image has a check.sh where the contract looks (not under a mounted code_path)."""
    paths = [f"{directory}/check.sh" for directory in ("/app/bin", "/app/share/bin")
             if directory != "/app/bin" or module.code_path is None]
    try:
        return bool(image_files(str(module.image), paths))
    except Exception as exc:  # no engine yet, or no such image: the attempts will say so
        log.warning("could not look for check.sh in image %s: %s", module.image, exc)
        return False
