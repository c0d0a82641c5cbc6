"""Mirroring apps whose modules run on several Kafka clusters (`scalebox mirror`): plan the flows, check every
cluster has bootstrap servers, render MirrorMaker 2's configuration, run it until a signal ends it."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scalebox_stream.kafka.security import KafkaSecurityError, client_security
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.mirror.flows import Flow, clusters, merged
from scalebox_stream.mirror.properties import java_client_properties, masked, render
from scalebox_stream.spec.model import AppSpec

CLEAN_EXITS = (0, 130, 143, -signal.SIGTERM, -signal.SIGINT)
"""MirrorMaker 2's exit codes after it was asked to stop."""


@dataclass(frozen=True)
class MirrorPlan:
    """What to mirror: the home cluster, the flows between clusters, MirrorMaker 2's configuration."""

    home: str
    flows: list[Flow]
    properties: str = field(repr=False)
    """The configuration, secrets included (written with mode 600; `printable` is what may be shown)."""
    bootstraps: dict[str, str]
    """Each mirrored cluster's bootstrap servers, by cluster name."""

    @property
    def printable(self) -> str:
        """The configuration with its secrets masked."""
        return masked(self.properties)


def plan_mirror(specs: Sequence[AppSpec], bootstraps: dict[str, str], home_bootstrap: Callable[[], str],
                replication_factor: int) -> MirrorPlan:
    """The plan for `specs`, given each cluster's bootstrap servers; the home cluster's defaults to
    `home_bootstrap()` (asked only when needed). Raises OperationError (exit 2) saying what is wrong."""
    try:
        planned = merged(specs)  # first: apps with different homes cannot be mirrored together at all
    except ValueError as exc:
        raise OperationError(str(exc), code=2) from None
    home = specs[0].cluster
    if not planned:
        raise OperationError(f"every module runs on the home cluster {home!r}: nothing to mirror", code=2)
    bootstraps = dict(bootstraps)
    if home not in bootstraps:
        bootstraps[home] = home_bootstrap()
    spanned = list(dict.fromkeys(name for spec in specs for name in clusters(spec)))
    if unknown := sorted(set(bootstraps) - set(spanned)):
        raise OperationError(f"no app runs a module on cluster(s) {', '.join(unknown)} (their clusters: "
                             f"{', '.join(spanned)})", code=2)
    if missing := [name for name in spanned if name not in bootstraps]:
        raise OperationError(f"no bootstrap servers for cluster(s) {', '.join(missing)}: give --cluster "
                             "NAME=BOOTSTRAP", code=2)
    try:
        security = {name: java_client_properties(client_security(bootstrap), _read_text)
                    for name, bootstrap in bootstraps.items()}
    except (KafkaSecurityError, ValueError, OSError) as exc:
        raise OperationError(f"Kafka client security for MirrorMaker 2: {exc}", code=2) from None
    return MirrorPlan(home, planned, render(planned, bootstraps, replication_factor, security=security), bootstraps)


def _read_text(path: str) -> str:
    return Path(path).expanduser().read_text()


def probe_clusters(plan: MirrorPlan, timeout_s: float) -> None:
    """Raise ServiceDown naming the first cluster of the plan whose Kafka does not answer (MirrorMaker 2
    itself would retry it forever)."""
    from scalebox_stream.launch.services import probe_kafka

    for name, bootstrap in plan.bootstraps.items():
        probe_kafka(bootstrap, timeout_s, cluster=name)


@dataclass(frozen=True)
class MirrorRun:
    """A running MirrorMaker 2 and the directory holding its configuration and log."""

    process: subprocess.Popen
    work: Path

    def wait(self) -> int:
        """Forward SIGTERM and SIGINT to MirrorMaker 2 and wait for it; its exit code."""
        def forward(signum: int, _frame: object) -> None:
            self.process.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of MirrorMaker 2's log."""
        log = self.work / "mirror.log"
        return log.read_text()[-chars:] if log.exists() else ""


def start_mirror(plan: MirrorPlan) -> MirrorRun:
    """Write the configuration to a fresh directory and start MirrorMaker 2 on it."""
    from scalebox_stream.mirror import runner

    work = Path(tempfile.mkdtemp(prefix=f"sbx-mirror-{plan.home}-"))
    fd = os.open(work / "mm2.properties", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(plan.properties)
    return MirrorRun(runner.start(work / "mm2.properties", work / "mirror.log"), work)
