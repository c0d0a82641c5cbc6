"""Session fixtures for integration tests: a Kafka bootstrap address and a PostgreSQL DSN.

``SCALEBOX_KAFKA`` / ``SCALEBOX_PG`` point at existing services; otherwise the local services
(``scalebox local up``, default ``$SCALEBOX_HOME``) are started if needed and left running.
If they cannot be started the tests are skipped, or fail when ``CI=true``.
"""

from __future__ import annotations

import os

import pytest

from scalebox_stream.local import services


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
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """Kafka bootstrap servers: ``$SCALEBOX_KAFKA`` or the local broker."""
    return os.environ.get("SCALEBOX_KAFKA") or request.getfixturevalue("local_endpoints").kafka_bootstrap


@pytest.fixture(scope="session")
def pg_dsn(request: pytest.FixtureRequest) -> str:
    """PostgreSQL DSN: ``$SCALEBOX_PG`` or the local server."""
    return os.environ.get("SCALEBOX_PG") or request.getfixturevalue("local_endpoints").pg_dsn


from docker_fixtures import busybox_image, docker_available, docker_client, example_images  # noqa: E402,F401
