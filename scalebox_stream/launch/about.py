"""`scalebox --version`: this program's version and the Kafka and PostgreSQL it talks to, asked quickly."""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scalebox_stream import __version__
from scalebox_stream.config import CliSettings


def _local_endpoints() -> tuple[str, str, str]:
    """The local services' Kafka bootstrap, PostgreSQL DSN and Kafka version (each "" if not running); never
    starts them."""
    from scalebox_stream.local import kafka, postgres

    broker, pg = kafka.running(), postgres.running()
    return (broker.bootstrap if broker else "", pg.dsn if pg else "", local_kafka_version(kafka.lib_dir()))


def local_kafka_version(lib: Path) -> str:
    """The version of the local broker's jars (`kafka_2.13-4.1.0.jar` -> 4.1.0), "" if not fetched."""
    for jar in sorted(lib.glob("kafka_2.*-*.jar")):
        if match := re.fullmatch(r"kafka_[\d.]+-([\w.]+)\.jar", jar.name):
            return match.group(1)
    return ""


def kafka_line(bootstrap: str, timeout_s: float, version: str = "") -> str:
    """`Kafka 4.1.0 at host:port (1 broker)`, or `... not reachable (reason)`."""
    from scalebox_stream.launch.services import ServiceDown, probe_kafka

    if not bootstrap:
        return "Kafka: none given (SCALEBOX_KAFKA) and the local one is not running"
    name = f"Kafka {version}" if version else "Kafka"
    try:
        probe_kafka(bootstrap, timeout_s)
    except ServiceDown:
        return f"{name} at {bootstrap}: not reachable"
    return f"{name} at {bootstrap}: reachable"


def pg_line(dsn: str, timeout_s: float) -> str:
    """`PostgreSQL 16.4 at host:port/db`, or `... not reachable`."""
    import psycopg

    from scalebox_stream.launch.services import mask_dsn

    if not dsn:
        return "PostgreSQL: none given (SCALEBOX_PG) and the local one is not running"
    shown = mask_dsn(dsn).split("?", 1)[0]  # no parameters: a passfile's path makes the line too wide to read
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, round(timeout_s))) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    except (psycopg.Error, OSError):
        return f"PostgreSQL at {shown}: not reachable"
    return f"PostgreSQL {version} at {shown}"


def version_lines(settings: CliSettings, timeout_s: float = 2.0) -> list[str]:
    """What `scalebox --version` prints: the version, then one line each for Kafka and PostgreSQL (asked at
    the same time, each within `timeout_s`)."""
    local_kafka, local_pg, local_version = ("", "", "")
    if not (settings.kafka and settings.pg):
        with contextlib.suppress(Exception):  # an unreadable home must not break --version
            local_kafka, local_pg, local_version = _local_endpoints()
    bootstrap, dsn = settings.kafka or local_kafka, settings.pg or local_pg
    version = local_version if bootstrap and bootstrap == local_kafka else ""
    with ThreadPoolExecutor(2) as pool:
        kafka = pool.submit(kafka_line, bootstrap, timeout_s, version)
        pg = pool.submit(pg_line, dsn, timeout_s)
        return [f"scalebox-stream {__version__}", kafka.result(), pg.result()]
