"""Session fixtures for integration tests: a Kafka bootstrap address and a PostgreSQL DSN.

``SCALEBOX_KAFKA`` / ``SCALEBOX_PG`` point at existing services; otherwise the local services
(``scalebox local up``, default ``$SCALEBOX_HOME``) are started if needed and left running.
If they cannot be started the tests are skipped, or fail when ``CI=true``.

The topics and consumer groups the session creates (apps' task topics, the tests' own topics) are deleted when it
ends: a broker that piles up thousands of partitions from test runs starts slowly and answers metadata slowly.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient
from pipeline import scalebox

from scalebox_stream.kafka import cleanup
from scalebox_stream.kafka.config import admin_config
from scalebox_stream.local import services

SESSION_TOPIC_PREFIXES = ("sbx.tasks.", "sbx.test.", "sbx.bench.", "test-local-")
SESSION_GROUP_PREFIXES = ("sbx.agents.", "sbx.test.", "sbx.bench.")


@pytest.fixture(scope="session")
def local_endpoints() -> services.Endpoints:
    """The local Kafka + PostgreSQL, started if needed (never stopped by the tests)."""
    try:
        return services.ensure_running()
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(f"local services unavailable: {exc}")


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """Kafka bootstrap servers: ``$SCALEBOX_KAFKA`` or the local broker; what the session creates there is
    deleted at its end."""
    bootstrap = os.environ.get("SCALEBOX_KAFKA") or request.getfixturevalue("local_endpoints").kafka_bootstrap
    topics_before, groups_before = _topics_and_groups(bootstrap)
    yield bootstrap
    try:
        topics, groups = _topics_and_groups(bootstrap)
        admin = AdminClient(admin_config(bootstrap))
        idle = {g for g, state in groups.items() if state in cleanup.IDLE_GROUP_STATES}
        new_groups = idle - set(groups_before)
        cleanup.delete_groups(admin, sorted(g for g in new_groups if g.startswith(SESSION_GROUP_PREFIXES)))
        cleanup.delete_topics(admin, sorted(t for t in topics - topics_before if t.startswith(SESSION_TOPIC_PREFIXES)))
    except Exception as exc:  # hygiene only: the tests' verdicts stand
        warnings.warn(f"could not delete the test session's topics and groups: {exc}", stacklevel=1)


def _topics_and_groups(bootstrap: str) -> tuple[set[str], dict[str, ConsumerGroupState]]:
    """Every topic, and every consumer group with its state, on the broker."""
    admin = AdminClient(admin_config(bootstrap))
    listing = admin.list_consumer_groups(request_timeout=30).result()
    return set(admin.list_topics(timeout=30).topics), {g.group_id: g.state for g in listing.valid}


@pytest.fixture(scope="session")
def pg_dsn(request: pytest.FixtureRequest) -> str:
    """PostgreSQL DSN: ``$SCALEBOX_PG`` or the local server, its shared projection caught up with the event log.

    Events published outside the tests (benchmarks project into private groups) would otherwise be replayed by
    the first test's projector, late for what that test watches."""
    dsn = os.environ.get("SCALEBOX_PG") or request.getfixturevalue("local_endpoints").pg_dsn
    caught_up = scalebox(["projector", "--until-caught-up"], request.getfixturevalue("kafka_bootstrap"), dsn,
                         timeout=1800)
    assert caught_up.code == 0, f"the shared projection did not catch up:\n{caught_up.stderr}"
    return dsn


from docker_fixtures import agent_image, busybox_image, docker_available, docker_client, example_images  # noqa: E402,F401
from podman_fixtures import engine, podman_available, podman_client, podman_images  # noqa: E402,F401
