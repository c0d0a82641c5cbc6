"""A second single-node Kafka for the security tests: SCRAM-SHA-512 over TLS for clients, mutual TLS inside,
StandardAuthorizer with ACLs. Run from the jars the local broker uses, on its own ports and data directory;
its CA and certificates are made here with openssl. The admin is a super user by certificate (mutual TLS on
the internal listener); every other user logs in with SCRAM and gets the ACLs of its role."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient
from pipeline import free_port

from scalebox_stream.kafka import acls
from scalebox_stream.local import kafka, tls

ADMIN_CN = "scalebox-admin"
LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""


@dataclass
class SecureKafka:
    """The running broker, its files, and what a client of each kind needs."""

    root: Path
    bootstrap: str
    internal: str
    ca: tls.Certificate
    admin_cert: tls.Certificate
    process: subprocess.Popen | None = None
    passwords: dict[str, Path] = field(default_factory=dict)

    def admin_config(self) -> dict[str, str]:
        """The super user: mutual TLS with the admin's certificate on the internal listener."""
        return {"bootstrap.servers": self.internal, "security.protocol": "SSL", "ssl.ca.location": str(self.ca.cert),
                "ssl.certificate.location": str(self.admin_cert.cert),
                "ssl.key.location": str(self.admin_cert.key)}

    def admin(self) -> AdminClient:
        return AdminClient(self.admin_config())

    def client_env(self, user: str | None, password_file: Path | None = None,
                   ca: Path | None = None) -> dict[str, str]:
        """The environment of a `scalebox` command that logs in as `user` (None: no credentials at all)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCALEBOX_KAFKA_")}
        env["SCALEBOX_KAFKA"] = self.bootstrap
        if user is None:
            return env
        return {**env, "SCALEBOX_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "SCALEBOX_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "SCALEBOX_KAFKA_SASL_USERNAME": user,
                "SCALEBOX_KAFKA_SASL_PASSWORD_FILE": str(password_file or self.passwords[user]),
                "SCALEBOX_KAFKA_SSL_CA_LOCATION": str(ca or self.ca.cert)}

    def client_config(self, user: str, **extra: object) -> dict[str, object]:
        """A librdkafka configuration that logs in as `user`."""
        return {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
                "sasl.password": self.passwords[user].read_text().strip(), "ssl.ca.location": str(self.ca.cert),
                **extra}

    def add_user(self, user: str, role: acls.Role | None, app: str | None = None) -> Path:
        """A SCRAM user with a random password (in a mode-600 file) and the ACLs of `role`."""
        password = tls.write_private(self.root / f"{user}.password", uuid.uuid4().hex + "\n")
        acls.upsert_scram_user(self.admin(), user, password.read_text().strip())
        if role is not None:
            acls.create_acls(self.admin(), acls.grants(role, user, app))
        self.passwords[user] = password
        return password

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(root: Path, timeout_s: float = 120.0) -> SecureKafka:
    """Make the certificates, format the storage and start the broker; return once the admin is answered."""
    java = kafka.check_prerequisites(need_mvn=not kafka.jars_complete())
    lib = kafka.ensure_jars()
    certs = root / "tls"
    ca = tls.make_ca(certs, "Scalebox test CA")
    broker = tls.make_certificate(certs, ca, "scalebox-broker")
    admin_cert = tls.make_certificate(certs, ca, ADMIN_CN)
    port, controller, internal = free_port(), free_port(), free_port()
    settings = kafka.secured_settings(port, controller, internal, ca.cert, broker.keystore, client_tls=True,
                                      super_users=(f"User:CN={ADMIN_CN}",))
    config = root / "server.properties"
    config.write_text(kafka.render_properties(port, controller, root / "data", settings))
    (root / "log4j2.properties").write_text(LOG4J2.format(log=root / "server.log"))
    jvm = [java, "-Xmx384m", "-XX:+UseSerialGC", f"-Dlog4j2.configurationFile={root / 'log4j2.properties'}",
           "-cp", str(lib / "*")]
    cluster_id = base64.urlsafe_b64encode(uuid.UUID(int=uuid.uuid4().int & ~(1 << 127)).bytes).decode().rstrip("=")
    fmt = subprocess.run([*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                          "-c", str(config)], capture_output=True, text=True, cwd=root)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    out = (root / "kafka.out").open("ab")
    process = subprocess.Popen([*jvm, "kafka.Kafka", str(config)], stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    cluster = SecureKafka(root, f"127.0.0.1:{port}", f"127.0.0.1:{internal}", ca, admin_cert, process)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the secured broker exited:\n{_tail(root)}")
        try:
            if AdminClient({**cluster.admin_config(), "log_level": 0}).list_topics(timeout=2).brokers:
                return cluster
        except Exception:
            pass
        if time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError(f"the secured broker did not answer within {timeout_s:g}s:\n{_tail(root)}")
        time.sleep(0.5)


def _tail(root: Path) -> str:
    text = ""
    for name in ("kafka.out", "server.log"):
        path = root / name
        if path.exists():
            text += f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]) + "\n"
    return text


def remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
