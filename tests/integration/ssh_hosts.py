"""Test hosts: containers on a docker network the test creates, each with its own hostname and address,
running sshd with a key the test generates; the checkout and its Python are bind-mounted read-only at the
same paths, so `scalebox` there is this checkout's. They reach the test's Kafka through relays: the broker
advertises its loopback address, so each host relays its own loopback port to the network's gateway, where
a relay in this process forwards to the broker (nothing else is reachable through it)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker_fixtures import REPO

sys.path.insert(0, str(REPO / "tests" / "hosts"))
import relay  # noqa: E402

from scalebox_stream.kafka.security import forwarded_files  # noqa: E402

IMAGE = "scalebox-test/host:latest"


@dataclass
class SshHost:
    name: str
    container: str
    address: str

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command in the host's container (as root)."""
        return subprocess.run(["docker", "exec", self.container, *argv], capture_output=True, text=True, timeout=60)

    def agent_processes(self) -> list[str]:
        """Command lines of the `scalebox agent` processes running there."""
        out = self.exec("ps", "-eo", "args").stdout.splitlines()
        return [line for line in out if " agent --app " in line]


@dataclass
class SshHosts:
    hosts: list[SshHost]
    key: Path
    network: str

    def cluster_yaml(self, name: str = "local", start: str = "ssh") -> dict:
        """A `clusters:` mapping: the head (this machine) and each test host, reached over SSH as root."""
        options = [f"IdentityFile={self.key}", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]
        hosts: dict = {"h0": {"role": "head"}}
        for h in self.hosts:
            hosts[h.name] = {"ip_addr": h.address}
        return {name: {"parameters": {"agent_start": start, "uname": "root", "ssh_options": options,
                                      "scalebox_command": str(Path(sys.prefix) / "bin" / "scalebox")},
                       "hosts": hosts}}


def _run(*argv: str, timeout: float = 120) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class HostRelay:
    """The relay on the gateway: GATEWAY:port -> the broker's loopback address, in a thread of its own."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def main() -> None:
            started = asyncio.Event()
            self.task = asyncio.ensure_future(relay.serve(listen, target, started))
            await started.wait()
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(main()),
                                                       self.loop.run_forever()), daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"relay on {listen} did not start")

    def close(self) -> None:
        async def stop() -> None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop)
        self.thread.join(5)


def _mounts(extra: list[Path]) -> list[str]:
    """Read-only bind mounts of the checkout, the venv's Python and `extra`, each at its own path."""
    paths = {REPO, Path(sys.prefix).resolve(), *extra}
    base = Path(sys.base_prefix).resolve()
    if not str(base).startswith("/usr"):
        paths.add(base)
    args: list[str] = []
    for path in sorted(paths):
        args += ["-v", f"{path}:{path}:ro"]
    return args


def build_image() -> None:
    """The test host image, built by .ci/build-test-host-image.sh when missing or stale."""
    proc = subprocess.run(["bash", str(REPO / ".ci" / "build-test-host-image.sh")], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        pytest.fail(f".ci/build-test-host-image.sh failed:\n{proc.stdout}\n{proc.stderr}")


@contextmanager
def started_hosts(names: list[str], kafka_bootstrap: str, workdir: Path, mounts: list[Path]) -> Iterator[SshHosts]:
    """Start one container per name on a new docker network, sshd answering with a new key; remove them all
    (and the network and relays) at the end. The test Kafka's client security files (`forwarded_files`) are
    mounted read-only at their own paths: agents started there find them as the head tells them to."""
    build_image()
    mounts = [*mounts, *forwarded_files(kafka_bootstrap)]
    tag = uuid.uuid4().hex[:8]
    network = f"sbx-hosts-{tag}"
    key = workdir / "id_ed25519"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    (workdir / "authorized_keys").write_text((workdir / "id_ed25519.pub").read_text())
    (workdir / "authorized_keys").chmod(0o600)
    _run("docker", "network", "create", "--label", "scalebox.test=hosts", network)
    relays: list[HostRelay] = []
    hosts: list[SshHost] = []
    try:
        info = json.loads(_run("docker", "network", "inspect", network))[0]
        gateway = info["IPAM"]["Config"][0]["Gateway"]
        wanted = []
        for server in kafka_bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            relay_port = _free_port(gateway)
            relays.append(HostRelay((gateway, relay_port), (host, int(port))))
            wanted.append(f"{host}:{port}={gateway}:{relay_port}")
        for name in names:
            container = f"sbx-{name}-{tag}"
            _run("docker", "run", "-d", "--rm", "--name", container, "--hostname", name, "--network", network,
                 "--label", "scalebox.test=hosts", "-e", f"RELAYS={' '.join(wanted)}",
                 "-v", f"{workdir / 'authorized_keys'}:/root/.ssh/authorized_keys:ro", *_mounts(mounts), IMAGE)
            address = _run("docker", "inspect", "--format",
                           "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)
            hosts.append(SshHost(name, container, address))
        deadline = time.monotonic() + 30
        for h in hosts:
            while subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                                  "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-i", str(key),
                                  f"root@{h.address}", "true"], capture_output=True, timeout=30).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {h.name} ({h.address}) did not answer")
                time.sleep(0.2)
        yield SshHosts(hosts, key, network)
    finally:
        for h in hosts:
            subprocess.run(["docker", "rm", "-f", h.container], capture_output=True, timeout=60)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, timeout=60)
        for r in relays:
            r.close()
