"""Proving replays: digests of the projected tables, and scratch databases to project into."""

from __future__ import annotations

import psycopg

# table -> (primary key, columns left out because they hold the projector's own wall clock, not event times)
DIGESTED = {
    "apps": ("app", ()),
    "tasks": ("task_id", ()),
    "task_runs": ("task_id, attempt", ()),
    "task_edges": ("parent_task_id, child_task_id", ()),
    "agents": ("agent", ()),
    "applied_events": ("event_id", ()),
    "dead_letters": ('topic, partition, "offset"', ("recorded_at",)),
    "projector_offsets": ("topic, partition", ()),
}


def _columns(conn: psycopg.Connection, table: str, skip: tuple[str, ...]) -> list[str]:
    rows = conn.execute("""SELECT column_name FROM information_schema.columns
                           WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position""",
                        (table,)).fetchall()
    return [f'"{name}"' for (name,) in rows if name not in skip]


def table_digests(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """(row count, md5 of every row in primary-key order) per projected table."""
    out = {}
    with conn.transaction():
        conn.execute("SET LOCAL timezone = 'UTC'")
        for table, (key, skip) in DIGESTED.items():
            cols = ", ".join(_columns(conn, table, skip))
            row = conn.execute(f"SELECT count(*), coalesce(md5(string_agg(r::text, E'\\n' ORDER BY {key})), '') "
                               f"FROM (SELECT {cols} FROM {table}) r").fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
    return out


def database_dsn(dsn: str, database: str) -> str:
    """`dsn` pointing at another database of the same server."""
    return psycopg.conninfo.make_conninfo(dsn, dbname=database)


def create_database(dsn: str, database: str) -> str:
    """Create an empty database next to `dsn`'s (dropping an old one of that name); returns its DSN."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    return database_dsn(dsn, database)


def drop_database(dsn: str, database: str) -> None:
    """Drop a database made by `create_database`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
