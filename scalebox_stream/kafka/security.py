"""How every Kafka client of a process authenticates: SASL/SCRAM, TLS and mutual TLS, configured once.

The settings come from a client properties file (librdkafka property names; `SCALEBOX_KAFKA_CONFIG` names
it) with `SCALEBOX_KAFKA_*` environment variables on top; without either, from the file `scalebox local up`
(secure by default) writes under the Scalebox home, for the local broker only. Secrets are read from files
(`sasl.password.file`, `ssl.key.password.file`, or the `*_FILE` variables), never from an app file or a
command line; a literal `sasl.password` is accepted only in a properties file no one else can read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

CONFIG_ENV = "SCALEBOX_KAFKA_CONFIG"
"""The environment variable naming the client properties file."""

LOCAL_FILE = "kafka-client.properties"
"""The local broker's client properties, under the Scalebox home (written by a secure `scalebox local up`)."""

LOCAL_BOOTSTRAP_KEY = "scalebox.bootstrap"
"""A key of the local properties file: the only bootstrap servers that file applies to."""

ENV_PROPERTIES: dict[str, str] = {
    "SCALEBOX_KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "SCALEBOX_KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "SCALEBOX_KAFKA_SASL_USERNAME": "sasl.username",
    "SCALEBOX_KAFKA_SASL_PASSWORD_FILE": "sasl.password.file",
    "SCALEBOX_KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "SCALEBOX_KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "SCALEBOX_KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "SCALEBOX_KAFKA_SSL_KEY_PASSWORD_FILE": "ssl.key.password.file",
    "SCALEBOX_KAFKA_SSL_ENDPOINT_IDENTIFICATION": "ssl.endpoint.identification.algorithm",
}
"""Which environment variable sets which client property (a `.file` property names a file holding a secret)."""

SECRET_FILES = {"sasl.password.file": "sasl.password", "ssl.key.password.file": "ssl.key.password"}
"""File-valued properties and the secret property each one's content becomes."""

SECRETS = frozenset({"sasl.password", "ssl.key.password", "ssl.key.pem", "sasl.oauthbearer.client.secret"})
"""Properties whose values are secrets: never shown, never passed on the command line."""

FORBIDDEN_ENV = ("SCALEBOX_KAFKA_SASL_PASSWORD", "SCALEBOX_KAFKA_SSL_KEY_PASSWORD")
"""Variables that would carry a secret in the environment itself: refused with a pointer to `*_FILE`."""


class KafkaSecurityError(ValueError):
    """The client security settings cannot be used (a missing file, a secret where it must not be)."""


def parse_properties(text: str) -> dict[str, str]:
    """`key=value` (or `key: value`) lines of a properties file; `#`/`!` comments and blank lines skipped."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep < 0:
            raise KafkaSecurityError(f"not a property line (key=value): {line[:60]!r}")
        values[line[:sep].strip()] = line[sep + 1:].strip()
    return values


def _read_secret(path: str, what: str) -> str:
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise KafkaSecurityError(f"cannot read {what} from {path}: {exc.strerror or exc}") from None


def _others_can_read(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def load_properties_file(path: Path) -> dict[str, str]:
    """A client properties file's settings; refuses one that holds a literal secret others can read."""
    try:
        values = parse_properties(path.read_text())
    except OSError as exc:
        raise KafkaSecurityError(f"cannot read the Kafka client properties {path}: {exc.strerror or exc}") from None
    literal = sorted(key for key in values if key in SECRETS)
    if literal and _others_can_read(path):
        raise KafkaSecurityError(f"{path} holds {', '.join(literal)} and other users can read it: "
                                 f"chmod 600 {path}, or name a file with sasl.password.file")
    return values


def resolve_secrets(values: Mapping[str, str]) -> dict[str, str]:
    """`values` with each `*.file` secret property replaced by the secret read from that file."""
    resolved = {k: v for k, v in values.items() if k not in SECRET_FILES and k != LOCAL_BOOTSTRAP_KEY}
    for file_key, secret_key in SECRET_FILES.items():
        if values.get(file_key):
            resolved[secret_key] = _read_secret(values[file_key], secret_key)
    return resolved


def applies_to(values: Mapping[str, str], bootstrap: str | None) -> bool:
    """Whether properties apply to `bootstrap`: always, unless they name the servers they were written for
    (`scalebox.bootstrap`, the local broker's file) and `bootstrap` names none of them."""
    written_for = values.get(LOCAL_BOOTSTRAP_KEY)
    if written_for is None:
        return True
    return bootstrap is not None and bool(_servers(written_for) & _servers(bootstrap))


def _servers(bootstrap: str) -> set[str]:
    return {server.strip() for server in bootstrap.split(",") if server.strip()}


def settings_from(environ: Mapping[str, str], home: Path | None, bootstrap: str | None) -> dict[str, str]:
    """The unresolved client security properties for `bootstrap`: the properties file (`SCALEBOX_KAFKA_CONFIG`,
    else, or when that one was written for another broker, the local one under `home` if it was written for
    `bootstrap`), then the environment on top."""
    for name in FORBIDDEN_ENV:
        if environ.get(name):
            raise KafkaSecurityError(f"{name} would put a secret in the environment; write it to a file "
                                     f"(mode 600) and set {name}_FILE to its path")
    files = [Path(environ[CONFIG_ENV]).expanduser()] if environ.get(CONFIG_ENV) else []
    if home is not None and (home / LOCAL_FILE).is_file():
        files.append(home / LOCAL_FILE)
    values: dict[str, str] = {}
    for path in files:
        found = load_properties_file(path)
        if applies_to(found, bootstrap):
            values.update(found)
            break
    values.update({prop: environ[var] for var, prop in ENV_PROPERTIES.items() if environ.get(var)})
    return values


def forwarded_env(bootstrap: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that gives a process elsewhere (another Scalebox home, an SSH host or a container that
    sees these files at the same paths) this process's client security for `bootstrap`: the properties file
    and `SCALEBOX_KAFKA_*` variables as set (paths and names; no secret), else this home's local file when it
    was written for `bootstrap`. Files only: never a secret on a command line or in the environment."""
    from scalebox_stream.config import CliSettings

    env = os.environ if environ is None else environ
    out = {var: env[var] for var in (CONFIG_ENV, *ENV_PROPERTIES) if env.get(var)}
    local = CliSettings.load(env).home / LOCAL_FILE
    if CONFIG_ENV not in out and local.is_file() and applies_to(load_properties_file(local), bootstrap):
        out[CONFIG_ENV] = str(local)
    return out


FILE_PROPERTIES = ("sasl.password.file", "ssl.key.password.file", "ssl.ca.location", "ssl.certificate.location",
                   "ssl.key.location")
"""Properties that name a file a client reads."""


def forwarded_files(bootstrap: str, environ: Mapping[str, str] | None = None) -> list[Path]:
    """The files `forwarded_env` points a process elsewhere at (to mount read-only at the same paths): the
    properties file and every file it or the variables name."""
    env = forwarded_env(bootstrap, environ)
    settings = settings_from(env, None, bootstrap)
    paths = [Path(env[CONFIG_ENV]).expanduser()] if CONFIG_ENV in env else []
    return paths + [Path(settings[key]).expanduser() for key in FILE_PROPERTIES if settings.get(key)]


def client_security(bootstrap: str | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The librdkafka security properties every client of this process adds (empty: PLAINTEXT)."""
    from scalebox_stream.config import CliSettings

    env = os.environ if environ is None else environ
    home = CliSettings.load(env).home
    return resolve_secrets(settings_from(env, home, bootstrap))


def username(config: Mapping[str, object]) -> str:
    """The SASL user a client configuration logs in as ('' if none)."""
    return str(config.get("sasl.username") or "")


def redacted(config: Mapping[str, object]) -> dict[str, object]:
    """`config` with every secret replaced by `***` (for logs and error messages)."""
    return {k: ("***" if k in SECRETS else v) for k, v in config.items()}
