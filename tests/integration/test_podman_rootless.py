"""Rootless Podman: the executor contract tests run as a non-root user against that user's own Podman.

As root, .ci/install-podman.sh --rootless creates the user (with subordinate uid/gid ranges), starts the
user's API service on /run/user/UID/podman/podman.sock and copies the images into the user's store; then
the podman cases of test_executors.py (one container per attempt), of test_docker_slots.py that do not
need the container's cgroup, and of test_lockdown.py's default container run in a pytest session of that user,
with CI=true so that nothing is skipped. Rootless containers on this cgroup v1 host get no cgroup, so resource
counters and the pids limit are absent and a slot container's leftovers are not killed (docs/podman.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USER = "sbx-rootless"
SLOT_CASES_WITHOUT_CGROUP = ("exit_code or stdout or argv or each_task or one_container or missing or abort "
                             "or dead_agent or without_the_host_cgroup")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"rootless Podman is required under CI: {reason}")
    pytest.skip(f"rootless Podman not available: {reason}")


@pytest.fixture(scope="module")
def rootless_user(example_images: list[str]) -> str:
    """The rootless user, its Podman API service and its images (set up as root)."""
    if os.geteuid() != 0:
        _unavailable("setting up the rootless user needs root")
    proc = subprocess.run(["bash", str(REPO / ".ci" / "install-podman.sh"), "--rootless", USER], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        _unavailable(f".ci/install-podman.sh --rootless {USER} failed:\n{proc.stdout}\n{proc.stderr}")
    return USER


def _pytest_as(user: str, *args: str) -> tuple[int, str]:
    """Runs pytest as `user` (its own HOME and runtime dir, CI=true); returns (exit code, output)."""
    import pwd

    entry = pwd.getpwnam(user)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": entry.pw_dir, "CI": "true",
           "XDG_RUNTIME_DIR": f"/run/user/{entry.pw_uid}", "LANG": "C.UTF-8"}
    cmd = ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m",
           "pytest", "-p", "no:cacheprovider", "-q", *args]  # its tmp_path: /tmp/pytest-of-USER
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    return proc.returncode, proc.stdout + proc.stderr


def _counts(output: str) -> dict[str, int]:
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", output)}


def test_executor_contract_as_a_rootless_user(rootless_user: str) -> None:
    """One container per attempt: every podman case of test_executors.py passes as the rootless user."""
    code, output = _pytest_as(rootless_user, "tests/integration/test_executors.py", "-k", "podman")
    counts = _counts(output)
    assert code == 0, output[-6000:]
    assert counts.get("passed", 0) >= 17 and not counts.get("skipped") and not counts.get("failed"), output[-3000:]


def test_slot_contract_without_a_cgroup_as_a_rootless_user(rootless_user: str) -> None:
    """Slot containers: the podman cases of test_docker_slots.py that hold without the container's cgroup."""
    code, output = _pytest_as(rootless_user, "tests/integration/test_docker_slots.py", "-k",
                              f"podman and ({SLOT_CASES_WITHOUT_CGROUP}) and not pipeline")
    counts = _counts(output)
    assert code == 0, output[-6000:]
    assert counts.get("passed", 0) >= 10 and not counts.get("skipped") and not counts.get("failed"), output[-3000:]


def test_a_default_container_is_unprivileged_as_a_rootless_user(rootless_user: str) -> None:
    """Lockdown under rootless Podman, both container modes: not root, no new privileges, no capabilities (and,
    on this cgroup v1 host, no pids limit: the container has no cgroup)."""
    code, output = _pytest_as(rootless_user, "tests/integration/test_lockdown.py", "-k", "unprivileged and podman")
    counts = _counts(output)
    assert code == 0, output[-6000:]
    assert counts.get("passed", 0) == 2 and not counts.get("skipped") and not counts.get("failed"), output[-3000:]
