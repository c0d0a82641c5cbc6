"""Fixtures for tests that need Podman (its API service and the local images), and `engine`: the same test
body on Docker and on Podman.

Without an answering Podman API service the tests are skipped, except under CI (`CI=true`), where they fail.
As root the images are copied from Docker (.ci/install-podman.sh --images); a rootless user's store must
hold them already (.ci/install-podman.sh --rootless USER). conftest.py registers these fixtures.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import docker.errors
import pytest
from docker_fixtures import BASE_IMAGE, PRIMES_IMAGE, REPO

from scalebox_stream.executors.podman import podman_client as make_podman_client
from scalebox_stream.executors.podman import podman_problem

__all__ = ["Engine", "engine", "podman_available", "podman_client", "podman_images"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Podman is required under CI: {reason}")
    pytest.skip(f"Podman not available: {reason}")


@pytest.fixture(scope="session")
def podman_available() -> None:
    """Skips (or fails under CI=true) when no Podman API service answers at the executor's socket."""
    problem = podman_problem()
    if problem is not None:
        _unavailable(problem)


@pytest.fixture(scope="session")
def podman_client(podman_available: None) -> Iterator[docker.DockerClient]:
    """A Docker SDK client of the Podman API service the podman executor uses."""
    client = make_podman_client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def podman_images(request: pytest.FixtureRequest, podman_client: docker.DockerClient) -> list[str]:
    """The base and example images in Podman's store: as root copied from Docker when they changed."""
    images = [BASE_IMAGE, PRIMES_IMAGE]
    if os.geteuid() == 0:
        request.getfixturevalue("example_images")  # built by Docker first
        proc = subprocess.run(["bash", str(REPO / ".ci" / "install-podman.sh"), "--images"], capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f".ci/install-podman.sh --images failed:\n{proc.stdout}\n{proc.stderr}")
    for image in images:
        try:
            podman_client.images.get(image)
        except docker.errors.ImageNotFound:
            _unavailable(f"image {image} is not in Podman's store (.ci/install-podman.sh --images)")
    return images


@dataclass(frozen=True)
class Engine:
    """A container engine under test: its executor name, a client of it, and its images."""

    name: str
    client: docker.DockerClient
    busybox_image: str = BASE_IMAGE
    primes_image: str = PRIMES_IMAGE


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Docker, then Podman: each test body that takes this fixture runs on both engines."""
    if request.param == "docker":
        request.getfixturevalue("example_images")
        return Engine("docker", request.getfixturevalue("docker_client"))
    request.getfixturevalue("podman_images")
    return Engine("podman", request.getfixturevalue("podman_client"))
