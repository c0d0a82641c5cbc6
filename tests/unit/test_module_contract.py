"""Scalebox's module contract without services: what the agent adds to a module's attempts
(`agent.contract.ModuleContract`), how `sbx-action` finds a script, setup and teardown once per slot in the
process executor, and `removed-files.txt`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from scalebox_stream.agent.contract import TMPFS_WORK_ROOT, ModuleContract
from scalebox_stream.agent.workfiles import ProgramView, program_view, remove_listed_files
from scalebox_stream.executors.base import ExecRequest
from scalebox_stream.executors.process import ProcessExecutor
from scalebox_stream.intask import BIN_DIR
from scalebox_stream.spec import AppSpec, load_app

SBX_ACTION = str(BIN_DIR / "sbx-action")
HOME = {"SCALEBOX_HOME": "/sbx-home"}

pytestmark = pytest.mark.usefixtures("no_host_env_files")


def _load(tmp_path: Path, modules: str) -> AppSpec:
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "app.yaml").write_text(f"name: contract\nmodules:\n{modules}")
    return load_app(tmp_path / "app.yaml", environ={"PWD": str(tmp_path), **HOME})


def test_a_scalebox_module_runs_sbx_action_with_the_standard_mounts_and_the_bridge(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "check.sh").write_text("exit 0\n")
    app = _load(tmp_path, "  m:\n    base_image: hub.cstcloud.cn/scalebox/agent\n"
                          "    arguments: {code_path: code, slot_options: tmpfs_workdir}\n")
    contract = ModuleContract.of(app, app.modules["m"], "docker")
    action = "/usr/local/sbx/bin/sbx-action"
    assert contract.run == [action, "run"]
    assert (contract.setup, contract.teardown, contract.check) == ([action, "setup"], [action, "teardown"],
                                                                   [action, "check"])
    assert contract.mounts == [f"{tmp_path / 'code'}:/app/bin:ro", "/:/local_data_root",
                               "/sbx-home/cluster-data:/cluster_data_root", "/dev/shm:/dev/shm"]
    assert contract.network == "bridge"
    assert contract.env == {"CLUSTER_DATA_ROOT": "/cluster_data_root", "TMPFS_WORKDIR": "yes"}
    assert contract.work_root == TMPFS_WORK_ROOT


def test_a_module_with_its_own_command_keeps_it_and_sees_only_its_volumes(tmp_path: Path) -> None:
    app = _load(tmp_path, "  m:\n    image: scalebox/base:busybox\n    command: [/bin/true]\n    network: none\n")
    contract = ModuleContract.of(app, app.modules["m"], "docker")
    assert (contract.run, contract.setup, contract.teardown, contract.check) == (None, None, None, None)
    assert contract.mounts == [] and contract.network == "none" and contract.work_root is None


def test_a_check_sh_in_the_image_is_found_once_per_module(tmp_path: Path) -> None:
    app = _load(tmp_path, "  m:\n    base_image: wait-queue\n    code_path: code\n")
    asked: list[tuple[str, list[str]]] = []

    def image_files(image: str, paths: list[str]) -> set[str]:
        asked.append((image, paths))
        return {"/app/share/bin/check.sh"}

    contract = ModuleContract.of(app, app.modules["m"], "docker", image_files)
    assert contract.check == ["/usr/local/sbx/bin/sbx-action", "check"]
    assert asked == [("wait-queue", ["/app/share/bin/check.sh"])], "code_path hides the image's /app/bin"

    def no_engine(image: str, paths: list[str]) -> set[str]:
        raise OSError("no dockerd")

    assert ModuleContract.of(app, app.modules["m"], "docker", no_engine).check is None


def test_a_process_module_with_a_code_path_finds_its_scripts_there(tmp_path: Path) -> None:
    app = _load(tmp_path, "  m:\n    executor: process\n    code_path: code\n"
                          "    environments: [ACTION_CHECK=./gate.sh]\n")
    module = app.modules["m"]
    assert module.command == ["/app/bin/run.sh"] and module.follows_contract
    contract = ModuleContract.of(app, module, "process")
    assert contract.run == [SBX_ACTION, "run"] and contract.check == [SBX_ACTION, "check"]
    assert contract.env["SBX_CODE_DIRS"] == str(tmp_path / "code")
    assert contract.mounts == [] and contract.network is None


def _action(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SBX_ACTION, *args], capture_output=True, text=True, timeout=10,
                          env={"PATH": os.environ["PATH"], **env})


def test_sbx_action_takes_the_override_then_the_first_directory_that_has_the_script(tmp_path: Path) -> None:
    first, second = tmp_path / "bin", tmp_path / "share"
    for directory in (first, second):
        directory.mkdir()
    (second / "run.sh").write_text("#!/bin/sh\necho share-run \"$@\"\n")
    (second / "run.sh").chmod(0o755)
    (second / "setup.sh").write_text("#!/bin/sh\necho not-executable \"$1\"\n")  # mode 644: its #! runs it
    dirs = {"SBX_CODE_DIRS": f"{first} {second}"}
    assert _action("run", "b", "{}", env=dirs).stdout == "share-run b {}\n"
    assert _action("setup", "x", env=dirs).stdout == "not-executable x\n"
    (first / "run.sh").write_text("#!/bin/sh\necho bin-run\n")
    (first / "run.sh").chmod(0o755)
    assert _action("run", "b", "{}", env=dirs).stdout == "bin-run\n"
    assert _action("run", "b", "{}", env={**dirs, "ACTION_RUN": "echo custom --flag"}).stdout == "custom --flag b {}\n"
    assert _action("run", "b", "{}", env={**dirs, "ACTION_RUN": "  "}).stdout == "bin-run\n", "blank: no override"
    assert _action("teardown", env=dirs).returncode == 0, "no teardown.sh: nothing to do"
    assert _action("check", "b", "{}", env=dirs).returncode == 0, "no check.sh: admitted"
    missing = _action("run", "b", "{}", env={"SBX_CODE_DIRS": str(tmp_path / "none")})
    assert missing.returncode == 127 and "no run.sh" in missing.stderr
    assert _action("fly", env=dirs).returncode == 2


def _request(work: Path, slot: int, trace: Path, setup: str = "setup") -> ExecRequest:
    return ExecRequest(argv=["/bin/sh", "-c", f'echo run >> {trace}'], env={}, work_dir=work, name="t", slot=slot,
                       setup=["/bin/sh", "-c", f'echo {setup} >> {trace}; [ {setup} = setup ]'],
                       teardown=["/bin/sh", "-c", f'echo teardown >> {trace}'])


def test_the_process_executor_runs_setup_once_per_slot_and_teardown_when_it_closes(tmp_path: Path) -> None:
    work, trace = tmp_path / "work", tmp_path / "trace"
    work.mkdir()
    executor = ProcessExecutor()
    failed = executor.run(_request(work, 0, trace, setup="broken"), lambda _c: None)
    assert failed.exit_code == 1 and "setup failed" in (failed.error or "")
    for slot in (0, 0, 1):
        assert executor.run(_request(work, slot, trace), lambda _c: None).exit_code == 0
    executor.close()
    assert trace.read_text().split() == ["broken", "setup", "run", "run", "setup", "run", "teardown", "teardown"]


def test_removed_files_are_deleted_only_inside_the_mounts_and_never_through_a_link(tmp_path: Path) -> None:
    work, data, outside = tmp_path / "work", tmp_path / "data", tmp_path / "outside"
    for directory in (work, data, outside):
        directory.mkdir()
    for path in (data / "a", data / "b", outside / "keep", work / "w"):
        path.write_text("x")
    (data / "link").symlink_to(outside / "keep")
    listed = ["/data/a", "/data/link", "/work/w", str(outside / "keep"), "/data/../outside/keep"]
    (work / "removed-files.txt").write_text("\n".join(listed) + "\n")
    problems = remove_listed_files(work, program_view("docker", work, [f"{data}:/data"]))
    assert not (data / "a").exists() and not (work / "w").exists() and not (data / "link").exists()
    assert (outside / "keep").exists() and (data / "b").exists()
    assert len(problems) == 2 and all("outside the work directory" in p for p in problems)
    (work / "removed-files.txt").write_text(f"{data / 'b'}\n")
    assert remove_listed_files(work, ProgramView(work, host=True)) == []
    assert not (data / "b").exists()
