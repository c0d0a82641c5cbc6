"""The secure local pair (`scalebox local up`, the default): credentials made once, mode 600, under the Scalebox home.

Kafka: clients log in with SCRAM-SHA-512 on loopback as the user `scalebox` (a super user: the local pair
belongs to whoever owns the home); the broker's internal and controller listeners take only certificates of
a CA made here. `kafka-client.properties` tells every client of this home to log in that way (for the local
broker's address only; `kafka.security`). PostgreSQL: initialised with `scram-sha-256` passwords (its bundled
build has no TLS; it listens on loopback only); its DSN names a libpq password file, so the DSN itself holds
no secret and can be shown.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from scalebox_stream.kafka.security import LOCAL_BOOTSTRAP_KEY, LOCAL_FILE
from scalebox_stream.local import home, tls

KAFKA_USER = "scalebox"
BROKER_CN = "scalebox-broker"
ADMIN_CN = "scalebox-admin"


def credentials_dir() -> Path:
    """``$SCALEBOX_HOME/credentials`` (mode 700)."""
    return tls.private_dir(home.scalebox_home() / "credentials")


def tls_dir() -> Path:
    """``$SCALEBOX_HOME/tls``: the local CA and its certificates (mode 700)."""
    return tls.private_dir(home.scalebox_home() / "tls")


def secret_file(name: str) -> Path:
    """A random secret in ``credentials/<name>`` (mode 600), made on first use and kept after."""
    path = credentials_dir() / name
    if not path.is_file() or not path.read_text().strip():
        tls.write_private(path, secrets.token_urlsafe(24) + "\n")
    return path


def ca() -> tls.Certificate:
    """The local CA (made once)."""
    return tls.make_ca(tls_dir())


def certificate(common_name: str) -> tls.Certificate:
    """The certificate of `common_name`, made once and signed by the local CA."""
    directory = tls_dir()
    existing = tls.Certificate(directory / f"{common_name}.pem", directory / f"{common_name}.key",
                               directory / f"{common_name}.keystore.pem")
    if all(p.is_file() for p in (existing.cert, existing.key, existing.keystore)):
        return existing
    return tls.make_certificate(directory, ca(), common_name)


def admin_config(internal: str) -> dict[str, str]:
    """The local super user by certificate: mutual TLS on the broker's internal listener `internal`."""
    admin = certificate(ADMIN_CN)
    return {"bootstrap.servers": internal, "security.protocol": "SSL", "ssl.ca.location": str(ca().cert),
            "ssl.certificate.location": str(admin.cert), "ssl.key.location": str(admin.key)}


def admin_tool_properties() -> Path:
    """``credentials/admin-tool.properties`` (mode 600): Kafka's Java admin tools (kafka-transactions) log in
    as the local admin by certificate on the internal listener (`--command-config`); no secret in it but the
    path of the admin's key."""
    admin = certificate(ADMIN_CN)
    lines = ["# Written by `scalebox local up`: Kafka's admin tools reach the local broker as its admin.",
             "security.protocol=SSL", "ssl.truststore.type=PEM", f"ssl.truststore.location={ca().cert}",
             "ssl.keystore.type=PEM", f"ssl.keystore.location={admin.keystore}"]
    return tls.write_private(credentials_dir() / "admin-tool.properties", "\n".join(lines) + "\n")


def write_client_properties(bootstrap: str) -> Path:
    """``$SCALEBOX_HOME/kafka-client.properties``: how this home's clients log in to the local broker."""
    lines = ["# Written by `scalebox local up`: the local broker's clients log in with SCRAM.",
             f"{LOCAL_BOOTSTRAP_KEY}={bootstrap}", "security.protocol=SASL_PLAINTEXT",
             "sasl.mechanism=SCRAM-SHA-512", f"sasl.username={KAFKA_USER}",
             f"sasl.password.file={secret_file('kafka.password')}"]
    return tls.write_private(home.scalebox_home() / LOCAL_FILE, "\n".join(lines) + "\n")


def ensure_kafka_user(internal: str, bootstrap: str) -> None:
    """Set the SCRAM credential of `scalebox` (as the admin, by certificate) and write the client properties."""
    from confluent_kafka.admin import AdminClient

    from scalebox_stream.kafka.acls import upsert_scram_user

    password = secret_file("kafka.password").read_text().strip()
    upsert_scram_user(AdminClient({**admin_config(internal), "log_level": 0}), KAFKA_USER, password)
    write_client_properties(bootstrap)


def pg_password_file() -> Path:
    """The PostgreSQL superuser's password (credentials/postgres.password)."""
    return secret_file("postgres.password")


def pgpass(port: int, user: str) -> Path:
    """A libpq password file (credentials/pgpass, mode 600) for `user` on the local server's `port`."""
    password = pg_password_file().read_text().strip().replace("\\", "\\\\").replace(":", "\\:")
    return tls.write_private(credentials_dir() / "pgpass", f"127.0.0.1:{port}:*:{user}:{password}\n")


def pg_dsn(port: int, user: str, database: str) -> str:
    """The local DSN: scram-sha-256 with the password from `pgpass` (the DSN names the file, not the secret)."""
    return f"postgresql://{user}@127.0.0.1:{port}/{database}?passfile={pgpass(port, user)}"


def handed_to(path: Path, uid: int | None, gid: int | None) -> Path:
    """`path` owned by `uid:gid` when given (files the server, run as another user, must read)."""
    if uid is not None and gid is not None:
        os.chown(path, uid, gid)
    return path
