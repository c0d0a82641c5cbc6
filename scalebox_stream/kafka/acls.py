"""What each Scalebox role may do on a cluster that enforces ACLs, and the admin calls that set it up.

`grants` is the pure part: a role (agent of one app, projector, state owner, operator) and a principal become
the least list of ACL entries that role needs. Only an operator may write `sbx.apps`, so an agent that looks
an app up there runs a definition an authorised principal registered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from scalebox_stream.kafka.topics import (
    APPS_TOPIC,
    CONTROL_TOPIC,
    DEAD_LETTER_TOPIC,
    EVENTS_TOPIC,
    PRESENCE_TOPIC,
    STATE_PREFIX,
    module_group,
    task_topic,
)

Role = Literal["agent", "projector", "state-owner", "operator"]
ROLES: tuple[Role, ...] = ("agent", "projector", "state-owner", "operator")

AGENT_TRANSACTIONS = "sbx-agent-"
"""The prefix of agents' transactional ids; an agent's id continues with its app's name and a dot."""
PROJECTOR_GROUP_PREFIX = "sbx.projector"


@dataclass(frozen=True)
class Grant:
    """One ACL entry: allow `principal` to do `operation` on a resource (by literal name or by prefix)."""

    principal: str
    resource: Literal["topic", "group", "transactional_id", "cluster"]
    name: str
    operation: Literal["read", "write", "describe", "create", "delete", "alter", "describe_configs", "all"]
    prefixed: bool = False

    def __str__(self) -> str:
        match = "prefix" if self.prefixed else "name"
        return f"{self.principal}: {self.operation} {self.resource} {match} {self.name}"


def agent_transactional_id(app: str, agent_id: str) -> str:
    """An agent's transactional id: under its app's prefix, so an agent of one app cannot fence another's."""
    return f"{AGENT_TRANSACTIONS}{app}.{agent_id}"


def principal_of(user: str) -> str:
    """Kafka's principal for a SCRAM user or a certificate's distinguished name (`User:` added if missing)."""
    return user if user.startswith("User:") else f"User:{user}"


def _topic(p: str, name: str, ops: Iterable[str], prefixed: bool = False) -> list[Grant]:
    return [Grant(p, "topic", name, op, prefixed) for op in ops]  # type: ignore[arg-type]


def _group(p: str, name: str, prefixed: bool = True) -> list[Grant]:
    return [Grant(p, "group", name, "read", prefixed), Grant(p, "group", name, "describe", prefixed)]


def _transactions(p: str, prefix: str) -> list[Grant]:
    return [Grant(p, "transactional_id", prefix, op, True) for op in ("write", "describe")]  # type: ignore[misc]


def _readers(p: str, *purposes: str) -> list[Grant]:
    """Side readers' throw-away groups (`kafka.config.reader_config`: `sbx.<purpose>.<random>`)."""
    return [g for purpose in purposes for g in _group(p, f"sbx.{purpose}.")]


def _state_client(p: str) -> list[Grant]:
    return [*_topic(p, f"{STATE_PREFIX}.commands", ("write", "describe")),
            *_topic(p, f"{STATE_PREFIX}.replies", ("read", "describe")), *_group(p, f"{STATE_PREFIX}.client.")]


def grants(role: Role, user: str, app: str | None = None) -> list[Grant]:
    """The ACL entries `role` needs, for the principal of `user` (an agent's: for the one `app`)."""
    p = principal_of(user)
    if role == "agent":
        if not app:
            raise ValueError("an agent's grants are for one app: give its name")
        tasks = task_topic(app, "")  # sbx.tasks.<app>. : every module's topic and host topic of the app
        return [*_topic(p, tasks, ("read", "write", "describe", "create"), prefixed=True),
                *_topic(p, EVENTS_TOPIC, ("write", "describe")),
                *_topic(p, DEAD_LETTER_TOPIC, ("write", "describe")),
                *_topic(p, PRESENCE_TOPIC, ("read", "write", "describe")),
                *_topic(p, CONTROL_TOPIC, ("read", "describe")),
                *_topic(p, APPS_TOPIC, ("read", "describe")),
                *_group(p, module_group(app, "")),  # its module's group; backlog reads of the app's others
                *_readers(p, "control", "backlog", "presence", "lookup"),
                *_transactions(p, f"{AGENT_TRANSACTIONS}{app}."),
                *_state_client(p)]
    if role == "projector":
        return [*_topic(p, EVENTS_TOPIC, ("read", "describe")),
                *_topic(p, DEAD_LETTER_TOPIC, ("write", "describe")),
                *_topic(p, APPS_TOPIC, ("describe",)), *_topic(p, CONTROL_TOPIC, ("describe",)),
                *_topic(p, PRESENCE_TOPIC, ("describe",)),
                *_group(p, PROJECTOR_GROUP_PREFIX)]
    if role == "state-owner":
        return [*_topic(p, f"{STATE_PREFIX}.", ("read", "write", "describe", "create"), prefixed=True),
                *_topic(p, EVENTS_TOPIC, ("write", "describe")),
                *_group(p, STATE_PREFIX), *_transactions(p, STATE_PREFIX)]
    if role == "operator":
        return [*_topic(p, "sbx.", ("all",), prefixed=True), Grant(p, "group", "sbx.", "all", True),
                Grant(p, "transactional_id", "sbx", "all", True), Grant(p, "cluster", "kafka-cluster", "describe")]
    raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")


_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
              "transactional_id": ResourceType.TRANSACTIONAL_ID, "cluster": ResourceType.BROKER}


def binding(grant: Grant) -> AclBinding:
    """The admin client's ACL binding for `grant` (allowed from any host)."""
    pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
    return AclBinding(_RESOURCES[grant.resource], grant.name, pattern, grant.principal, "*",
                      AclOperation[grant.operation.upper()], AclPermissionType.ALLOW)


def create_acls(admin: AdminClient, entries: list[Grant], timeout_s: float = 30.0) -> None:
    """Create the ACL entries (existing ones stay; creating one twice is harmless)."""
    for future in admin.create_acls([binding(g) for g in entries], request_timeout=timeout_s).values():
        future.result()


def upsert_scram_user(admin: AdminClient, user: str, password: str, iterations: int = 8192) -> None:
    """Create `user` (or change its password) with a SCRAM-SHA-512 credential."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, iterations)
    for future in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(user, info,
                                                                                   password.encode())]).values():
        future.result()
