"""A single-node Apache Kafka 4.x (KRaft, combined broker+controller) run from Maven-fetched jars."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scalebox_stream.config import CliSettings
from scalebox_stream.local import home, startup

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_INTERNAL_PORT = 19094
"""The secured broker's mutual-TLS listener for itself and the local admin (a secure `scalebox local up`)."""
MIN_JAVA = 17
HEAP = "-Xmx768m"
MAIN_CLASS = "kafka.Kafka"
POM = Path(__file__).with_name("maven") / "pom.xml"
TOOLS_POM = Path(__file__).with_name("maven") / "tools-pom.xml"
INSTALL_HINT = "apt-get install openjdk-17-jre-headless maven"


@dataclass(frozen=True)
class KafkaInfo:
    """Where the broker runs."""

    pid: int
    port: int
    controller_port: int
    bootstrap: str
    config: str
    data_dir: str
    log: str
    internal_port: int | None = None
    """Set when the broker is secured: clients then log in with SCRAM (`local.secure`)."""


def kafka_dir() -> Path:
    """``$SCALEBOX_HOME/kafka``."""
    path = home.scalebox_home() / "kafka"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- prerequisites -------------------------------------------------------------------------------


def find_java() -> str | None:
    """The ``java`` to use: ``$JAVA_HOME/bin/java`` if set, else the one on PATH."""
    java_home = CliSettings.load().java_home
    if java_home and os.access(Path(java_home, "bin", "java"), os.X_OK):
        return str(Path(java_home, "bin", "java"))
    return shutil.which("java")


def parse_java_major(version_output: str) -> int | None:
    """Major version from ``java -version`` output (``"1.8.0_392"`` -> 8, ``"17.0.15"`` -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def java_major(java: str) -> int | None:
    """Run ``java -version`` and return its major version (None if it cannot be run)."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_java_major(out.stderr + out.stdout)


def check_prerequisites(need_mvn: bool) -> str:
    """Return the java executable, or raise MissingPrerequisite naming what to install."""
    problems: list[str] = []
    java = find_java()
    if java is None:
        problems.append(f"java (>= {MIN_JAVA}) not found on PATH")
    else:
        major = java_major(java)
        if major is None or major < MIN_JAVA:
            found = f"Java {major}" if major else "Java of unknown version"
            problems.append(f"{java} is {found}, Kafka 4 needs Java >= {MIN_JAVA}")
    if need_mvn and shutil.which("mvn") is None:
        problems.append("mvn (Apache Maven, fetches the Kafka jars) not found on PATH")
    if problems:
        raise home.MissingPrerequisite(
            "Cannot start the local Kafka: " + "; ".join(problems) + f".\nInstall with: {INSTALL_HINT}"
        )
    assert java is not None
    return java


# --- jars ----------------------------------------------------------------------------------------


def lib_dir() -> Path:
    """``$SCALEBOX_HOME/kafka/lib``."""
    return kafka_dir() / "lib"


def tools_dir() -> Path:
    """``$SCALEBOX_HOME/kafka/tools``: Kafka's admin tools (kafka-transactions), apart from the broker's jars."""
    return kafka_dir() / "tools"


def _pom_digest(pom: Path = POM) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def jars_complete(lib: Path | None = None, pom: Path = POM) -> bool:
    """True if ``lib`` (default: the broker's) holds a finished fetch of the current pom."""
    marker = (lib or lib_dir()) / ".complete"
    return marker.is_file() and marker.read_text().strip() == _pom_digest(pom)


def ensure_jars(lib: Path | None = None, pom: Path = POM, expect: str = "kafka_2.13-*.jar") -> Path:
    """Fetch a pom's jars with Maven into ``lib`` (default: the broker's) unless a complete fetch is there."""
    lib = lib or lib_dir()
    if jars_complete(lib, pom):
        return lib
    if shutil.which("mvn") is None:
        raise home.MissingPrerequisite(f"mvn not found on PATH.\nInstall with: {INSTALL_HINT}")
    tmp = lib.with_name(lib.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not any(tmp.glob(expect)):
        raise home.LocalServiceError(
            f"Fetching Kafka jars failed ({' '.join(cmd)}):\n{(proc.stdout + proc.stderr)[-4000:]}"
        )
    (tmp / ".complete").write_text(_pom_digest(pom) + "\n")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    return lib


def ensure_tools() -> Path:
    """Fetch Kafka's admin tools (``tools-pom.xml``) into ``tools/``."""
    return ensure_jars(tools_dir(), TOOLS_POM, "kafka-tools-*.jar")


# --- config --------------------------------------------------------------------------------------

LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.filePattern = {logs}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
"""


def secured_settings(port: int, controller_port: int, internal_port: int, ca: Path, broker_keystore: Path,
                     client_tls: bool, super_users: tuple[str, ...] = ()) -> dict[str, Any]:
    """The listener and authorizer settings of a secured broker: clients log in with SCRAM-SHA-512 on
    `port` (over TLS if `client_tls`); the broker talks to itself and its controller over mutual TLS on
    `internal_port` and `controller_port` (its own certificate, the `broker_keystore`, is a super user's, as
    are `super_users`); every other principal may do only what an ACL allows."""
    client = "SASL_SSL" if client_tls else "SASL_PLAINTEXT"
    return {
        "listeners": f"CLIENT://{HOST}:{port},INTERNAL://{HOST}:{internal_port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"CLIENT://{HOST}:{port},INTERNAL://{HOST}:{internal_port},"
                                f"CONTROLLER://{HOST}:{controller_port}",
        "inter.broker.listener.name": "INTERNAL",
        "listener.security.protocol.map": f"CLIENT:{client},INTERNAL:SSL,CONTROLLER:SSL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca),
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": ";".join(["User:CN=scalebox-broker", *super_users]),
    }


def render_properties(port: int, controller_port: int, data_dir: Path,
                      overrides: dict[str, Any] | None = None) -> str:
    """``server.properties`` for one combined broker+controller node with single-node-safe settings
    (`overrides`, e.g. `secured_settings`, replace or add settings)."""
    settings: dict[str, Any] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": 1,
        "auto.create.topics.enable": "false",
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 8,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 8,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "share.coordinator.state.topic.num.partitions": 4,
        "group.initial.rebalance.delay.ms": 0,
        # Task topics and the broker's other topics keep a week; the events topic keeps everything (its own
        # retention.ms=-1, see kafka.topics.KEEP_FOREVER): the projection is rebuilt from it.
        "log.retention.hours": 168,
        # Apply a retention within 10 s of its passing (default: 5 minutes). The check walks each partition's
        # segment list in memory; a topic given a short retention (presence, an operator's) sheds it promptly.
        "log.retention.check.interval.ms": 10_000,
        "num.network.threads": 2,
        "num.io.threads": 4,
        # An unclean stop makes the broker recover every partition directory before it answers; more threads
        # than the default two shorten that (it mostly waits on the disk).
        "num.recovery.threads.per.data.dir": 8,
        # A start replays the metadata log from the latest snapshot: every topic ever created and deleted since.
        # Snapshot every 5 minutes (default: an hour) so that apps created and cleaned up are not replayed.
        "metadata.log.max.snapshot.interval.ms": 300_000,
        # Committed offsets and transaction states are compacted only in closed segments: with the default 100 MB
        # segments they never are here, and a start loads every commit ever made (200k records per partition).
        "offsets.topic.segment.bytes": 10 * 2**20,
        "transaction.state.log.segment.bytes": 10 * 2**20,
        # Kafka 4 has each partition leader ask the transaction coordinator whether a partition written in a
        # transaction was added to it (KIP-890's verification; an internal request per new partition, for the
        # produce and the offsets commit alike): a large share of an agent transaction's time (performance.md,
        # "Where the time goes"). It guards against a produce request delayed past its transaction's end, which
        # would leave the partition with a hanging transaction; on this one-node, loopback broker no request is
        # delayed that long, and `scalebox local repair` clears one if a killed broker leaves it.
        "transaction.partition.verification.enable": "false",
    }
    settings.update(overrides or {})
    body = "\n".join(f"{k}={v}" for k, v in settings.items())
    return f"# Written by `scalebox local up`; regenerated on every start.\n{body}\n"


def write_config(port: int, controller_port: int, overrides: dict[str, Any] | None = None) -> Path:
    """Write ``server.properties`` and ``log4j2.properties`` under ``$SCALEBOX_HOME/kafka``."""
    base = kafka_dir()
    (base / "logs").mkdir(exist_ok=True)
    (base / "log4j2.properties").write_text(LOG4J2.format(logs=base / "logs"))
    config = base / "server.properties"
    config.write_text(render_properties(port, controller_port, base / "data", overrides))
    config.chmod(0o600)
    return config


def _random_cluster_id() -> str:
    """A Kafka-style base64url UUID (22 chars, not starting with '-')."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _jvm(java: str, heap: str, main: str) -> list[str]:
    base = kafka_dir()
    return [
        java,
        heap,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-Dlog4j2.shutdownHookEnabled=false",  # keep logging through Kafka's own shutdown hook
        f"-Dlog4j2.configurationFile={base / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={base / 'logs'}",
        "-cp",
        str(lib_dir() / "*"),
        main,
    ]


def ensure_formatted(java: str, config: Path) -> None:
    """Format the KRaft storage (standalone dynamic quorum) once, on first start."""
    data = kafka_dir() / "data"
    if (data / "meta.properties").exists():
        return
    cmd = _jvm(java, "-Xmx256m", "kafka.tools.StorageTool")
    cmd += ["format", "--standalone", "--ignore-formatted", "-t", _random_cluster_id(), "-c", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=kafka_dir())
    if proc.returncode != 0:
        raise home.LocalServiceError(f"Formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")


# --- lifecycle -----------------------------------------------------------------------------------


_LAUNCHER = """
import subprocess, sys
with open(sys.argv[1], "ab") as log:
    proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True)
print(proc.pid)
"""


def spawn_daemon(cmd: list[str], log: Path, cwd: Path) -> int:
    """Start ``cmd`` detached (new session, reparented to init via a short-lived launcher); return its pid."""
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log), *cmd], cwd=cwd, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def _marker() -> str:
    """Command-line fragment identifying our broker process."""
    return str(kafka_dir() / "server.properties")


def running() -> KafkaInfo | None:
    """The broker recorded in the state file if its process is alive; clears a stale record."""
    rec = home.load_state().get("kafka")
    if not rec:
        return None
    if home.pid_alive(rec.get("pid"), _marker()):
        return KafkaInfo(**rec)
    home.update_state("kafka", None)
    return None


def _broker_answers(info: KafkaInfo, timeout: float) -> bool:
    from confluent_kafka.admin import AdminClient

    from scalebox_stream.kafka.config import admin_config
    from scalebox_stream.local import secure

    if info.internal_port is not None:  # secured: ask as the admin, whose credentials need no broker
        config: dict[str, Any] = {**secure.admin_config(f"{HOST}:{info.internal_port}"), "log_level": 0}
    else:
        config = admin_config(info.bootstrap, log_level=0)
    admin = AdminClient(config)
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return False


def _failure(msg: str) -> home.LocalServiceError:
    logs = kafka_dir() / "logs"
    return home.LocalServiceError(
        f"{msg}\n--- {logs / 'kafka.out'} ---\n{home.tail(logs / 'kafka.out', 20)}"
        f"\n--- {logs / 'server.log'} ---\n{home.tail(logs / 'server.log', 40)}"
    )


def _log_touched(logs: Path) -> float | None:
    """When the broker last wrote to any of its log files (wall clock), or None if it wrote none yet."""
    try:
        return max((entry.stat().st_mtime for entry in os.scandir(logs) if entry.is_file()), default=None)
    except FileNotFoundError:
        return None


def wait_ready(info: KafkaInfo, stall_s: float) -> None:
    """Block until the broker answers a metadata request, as long as its log keeps advancing (a broker that
    recovers thousands of partitions after an unclean stop takes minutes); raise with the log tail if it dies,
    goes silent for `stall_s` seconds or exceeds the start-up ceiling."""
    logs = kafka_dir() / "logs"
    began, waiting_since = time.monotonic(), time.time()
    noticed = False
    while True:
        if not home.pid_alive(info.pid):
            raise _failure(f"Kafka (pid {info.pid}) exited during startup.")
        if home.port_in_use(info.port) and _broker_answers(info, timeout=3):
            return
        waited = time.monotonic() - began
        silent = startup.silent_for(time.time(), waiting_since, _log_touched(logs))
        reason = startup.give_up_reason(waited, silent, stall_s)
        if reason is not None:
            raise _failure(f"Kafka (pid {info.pid}) did not answer on {info.bootstrap}: {reason}.")
        if not noticed and waited >= startup.SLOW_NOTICE_S:
            log.warning("Kafka is still starting (it loads every partition directory first; after an unclean "
                        "stop that takes minutes); waiting while its log advances: %s", logs / "server.log")
            noticed = True
        time.sleep(0.3)


def start(port: int = DEFAULT_PORT, controller_port: int = DEFAULT_CONTROLLER_PORT, stall_s: float = 90.0,
          internal_port: int | None = None) -> KafkaInfo:
    """Start the broker as a detached daemon (idempotent) and wait until it answers (see `wait_ready`).
    With `internal_port` it is secured (`secured_settings`, `local.secure`): SCRAM for clients on loopback."""
    current = running()
    if current is not None:
        wait_ready(current, stall_s)
        return current
    java = check_prerequisites(need_mvn=not jars_complete())
    for p in (port, controller_port, *([internal_port] if internal_port else [])):
        if home.port_in_use(p):
            raise home.LocalServiceError(f"Port {HOST}:{p} is already in use by another program.")
    ensure_jars()
    overrides = None
    if internal_port is None:  # no SCRAM: this home's clients must not try to log in (`kafka.security`)
        from scalebox_stream.kafka.security import LOCAL_FILE

        (home.scalebox_home() / LOCAL_FILE).unlink(missing_ok=True)
    else:
        from scalebox_stream.local import secure

        overrides = secured_settings(port, controller_port, internal_port, secure.ca().cert,
                                     secure.certificate(secure.BROKER_CN).keystore, client_tls=False,
                                     super_users=(f"User:CN={secure.ADMIN_CN}", f"User:{secure.KAFKA_USER}"))
    config = write_config(port, controller_port, overrides)
    ensure_formatted(java, config)
    base = kafka_dir()
    pid = spawn_daemon([*_jvm(java, HEAP, MAIN_CLASS), str(config)], base / "logs" / "kafka.out", cwd=base)
    info = KafkaInfo(
        pid=pid,
        port=port,
        controller_port=controller_port,
        bootstrap=f"{HOST}:{port}",
        config=str(config),
        data_dir=str(base / "data"),
        log=str(base / "logs" / "server.log"),
        internal_port=internal_port,
    )
    home.update_state("kafka", asdict(info))
    try:
        wait_ready(info, stall_s)
        if internal_port is not None:
            from scalebox_stream.local import secure

            secure.ensure_kafka_user(f"{HOST}:{internal_port}", info.bootstrap)
    except Exception:
        stop(grace=10)
        raise
    return info


def stop(grace: float = 60.0) -> bool:
    """SIGTERM the broker (controlled shutdown), SIGKILL after ``grace`` seconds. True if one was running."""
    info = running()
    if info is None:
        return False
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and home.pid_alive(info.pid):
        time.sleep(0.2)
    if home.pid_alive(info.pid):
        os.kill(info.pid, signal.SIGKILL)
        while home.pid_alive(info.pid):
            time.sleep(0.1)
    home.update_state("kafka", None)
    return True


def delete_data() -> None:
    """Delete the broker's data and logs (every topic, offset and transaction); its jars stay. Stop it first."""
    for name in ("data", "logs"):
        shutil.rmtree(kafka_dir() / name, ignore_errors=True)


def status() -> dict[str, Any]:
    """What runs where: pid, bootstrap address, data dir, log, RSS."""
    info = running()
    if info is None:
        return {"running": False, "data_dir": str(kafka_dir() / "data")}
    return {"running": True, **asdict(info), "rss_bytes": home.rss_bytes(info.pid)}
