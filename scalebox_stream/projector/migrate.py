"""Versioned SQL migrations, applied in order at start, once each."""

from __future__ import annotations

from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PROJECTION_TABLES = ("apps", "tasks", "task_runs", "task_edges", "agents", "applied_events",
                     "projector_offsets", "dead_letters", "module_states", "state_values",
                     "state_history")
_LOCK_KEY = 0x5CB0


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the migrations not applied yet; returns their names. Safe to run concurrently."""
    applied_now = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                            version integer PRIMARY KEY, name text NOT NULL,
                            applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            version = int(path.name.split("_", 1)[0])
            if version in done:
                continue
            conn.execute(path.read_text())
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, path.name))
            applied_now.append(path.name)
    return applied_now


def drop_projection(conn: psycopg.Connection) -> None:
    """Drop every projected table (the log stays the truth); `migrate` recreates them."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for table in PROJECTION_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        conn.execute("DROP TABLE IF EXISTS schema_migrations")
