"""Names that would collide as Kafka topic names.

Kafka refuses a topic whose name equals an existing one's once every `.` is read as `_` (the two share
metric names), so `sbx.tasks.col.x.m` and `sbx.tasks.col_x.m` cannot both exist. App and module names
have no `.` (see `spec.model`); what is left are `_` in names meeting the `.` separators of topic names:
a module `m_host_x` against module `m`'s tasks bound to host `x` (`sbx.tasks.<app>.m.host.x`) within one
app, and across apps e.g. app `a_b` module `c` against app `a` module `b_c`. The layout of topic names
mirrors `kafka.topics.task_topic` (not imported: the spec layer does not depend on the Kafka client).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

_HOST_PART = "_host_"


def topic_key(topic: str) -> str:
    """The name Kafka compares topics by: `.` read as `_`."""
    return topic.replace(".", "_")


def colliding_topics(new: Iterable[str], existing: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs (new topic, existing topic) that differ but that Kafka would take for the same name.

    For a caller about to create `new` topics next to the `existing` ones (e.g. `scalebox run`).
    """
    by_key: dict[str, str] = {}
    for topic in existing:
        by_key.setdefault(topic_key(topic), topic)
    out = []
    for topic in new:
        other = by_key.get(topic_key(topic))
        if other is not None and other != topic:
            out.append((topic, other))
        by_key.setdefault(topic_key(topic), topic)
    return out


def host_topic_clash(app: str, module: str, modules: Collection[str]) -> str | None:
    """Why `module`'s task topic would collide with the host topic of another module of the same app
    (`m_host_x` against `m`'s tasks bound to host `x`), naming both; None if it would not."""
    for other in modules:
        prefix = other + _HOST_PART
        if other != module and module.startswith(prefix) and len(module) > len(prefix):
            host = module[len(prefix):]
            return (f"module name {module!r} collides with module {other!r}: Kafka treats '.' and '_' in topic "
                    f"names alike, so sbx.tasks.{app}.{module} would be the topic of {other!r}'s tasks bound "
                    f"to host {host!r} (sbx.tasks.{app}.{other}.host.{host}); rename {module!r}")
    return None
