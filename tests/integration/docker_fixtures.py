"""Fixtures for tests that need a Docker engine and the locally built images.

Without a reachable dockerd the tests are skipped, except under CI (`CI=true`), where they fail.
Import the fixtures into a conftest or a test module: `from docker_fixtures import *`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "scalebox/base:busybox"
PRIMES_IMAGE = "scalebox-examples/primes-calc:latest"
AGENT_IMAGE = "scalebox-stream:latest"

__all__ = ["AGENT_IMAGE", "BASE_IMAGE", "PRIMES_IMAGE", "agent_image", "docker_available", "docker_client",
           "busybox_image", "example_images"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Docker is required under CI: {reason}")
    pytest.skip(f"Docker not available: {reason}")


@pytest.fixture(scope="session")
def docker_available() -> None:
    """Skips (or fails under CI=true) when `docker info` does not answer."""
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(str(e))
        return
    if proc.returncode != 0:
        _unavailable(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "docker info failed")


@pytest.fixture(scope="session")
def docker_client(docker_available: None) -> Iterator[docker.DockerClient]:
    """A Docker SDK client for the local engine."""
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="session")
def example_images(docker_available: None) -> list[str]:
    """Builds (when missing or stale) the base, example and scalebox-stream images with .ci/build-images.sh."""
    proc = subprocess.run(["bash", str(REPO / ".ci" / "build-images.sh")], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f".ci/build-images.sh failed:\n{proc.stdout}\n{proc.stderr}")
    return [BASE_IMAGE, PRIMES_IMAGE]


@pytest.fixture(scope="session")
def busybox_image(example_images: list[str]) -> str:
    """The local `scalebox/base:busybox` image (built on demand, never pulled)."""
    return BASE_IMAGE


@pytest.fixture(scope="session")
def agent_image(example_images: list[str]) -> str:
    """The local `scalebox-stream:latest` image of agents and projectors (agents/build-image.sh)."""
    return AGENT_IMAGE
