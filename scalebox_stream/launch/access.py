"""`scalebox access`: SCRAM users and the ACLs of Scalebox's roles, set by an operator with admin rights."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from scalebox_stream.kafka.acls import Grant, Role, create_acls, grants, upsert_scram_user
from scalebox_stream.kafka.config import admin_config
from scalebox_stream.kafka.errors import security_problem
from scalebox_stream.kafka.security import client_security, username
from scalebox_stream.kafka.topics import ensure_shared_topics
from scalebox_stream.launch.errors import OperationError


def read_password(path: Path) -> str:
    """The password in `path` (its first line); the file must not be readable by others."""
    try:
        if path.stat().st_mode & 0o077:
            raise OperationError(f"{path} is readable by other users: chmod 600 {path}", code=2)
        password = path.read_text().splitlines()[0].strip() if path.read_text().strip() else ""
    except OSError as exc:
        raise OperationError(f"cannot read the password file {path}: {exc.strerror or exc}", code=2) from None
    if not password:
        raise OperationError(f"{path} holds no password", code=2)
    return password


def _refused(exc: KafkaException, kafka: str) -> OperationError:
    problem = security_problem(exc.args[0], username(client_security(kafka))) if exc.args else None
    return OperationError(problem or str(exc), code=1)


def add_user(kafka: str, user: str, password_file: Path) -> None:
    """Create (or re-key) the SCRAM-SHA-512 user `user` with the password in `password_file`."""
    password = read_password(password_file)
    try:
        upsert_scram_user(AdminClient(admin_config(kafka)), user, password)
    except KafkaException as exc:
        raise _refused(exc, kafka) from None


def grant(kafka: str, role: Role, user: str, app: str | None, apply: bool = True) -> list[Grant]:
    """The ACL entries of `role` for `user` (created on the cluster if `apply`; the shared topics first, as
    only an operator may create them)."""
    try:
        entries = grants(role, user, app)
    except ValueError as exc:
        raise OperationError(str(exc), code=2) from None
    if apply:
        admin = AdminClient(admin_config(kafka))
        try:
            ensure_shared_topics(admin)
            create_acls(admin, entries)
        except KafkaException as exc:
            raise _refused(exc, kafka) from None
    return entries
