"""Second Scalebox homes for tests and benchmarks that run a local pair (or a broker) of their own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def share_kafka_jars(home: Path) -> Path:
    """`home`, with this process's home's Kafka jars and admin tools linked into it where they are complete: a
    fresh home's first `scalebox local up` would otherwise fetch both again with Maven (two JVM runs of seconds
    each). Linked, not copied: nothing writes there once a fetch is complete, and `local reset` keeps them."""
    from scalebox_stream.local import kafka

    (home / "kafka").mkdir(parents=True, exist_ok=True)
    for shared, pom in ((kafka.lib_dir(), kafka.POM), (kafka.tools_dir(), kafka.TOOLS_POM)):
        mine = home / "kafka" / shared.name
        if kafka.jars_complete(shared, pom) and not mine.exists():
            mine.symlink_to(shared)
    return home


def broker_settings_on_top(extra: dict[str, int]) -> Callable[..., str]:
    """`local.kafka.render_properties` with `extra` laid over the product's settings (and any caller's), to put
    in its place for the brokers a test or benchmark starts in a home of its own."""
    from scalebox_stream.local import kafka

    render = kafka.render_properties
    return lambda port, controller_port, data_dir, overrides=None: render(
        port, controller_port, data_dir, {**(overrides or {}), **extra})
