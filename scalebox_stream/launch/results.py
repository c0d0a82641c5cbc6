"""An app's result text (`scalebox app set-finished TEXT`) and state, read from the projection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

RESULT_SQL = """SELECT value, changed_at FROM state_values
                WHERE kind = 'app' AND app = %(app)s AND name = 'result' AND changed_at >= %(since)s"""

APPS_SQL = """SELECT a.app, a.deployed_at, a.finished_at, a.result, r.changed_at AS result_at
              FROM apps a LEFT JOIN state_values r ON r.kind = 'app' AND r.app = a.app AND r.name = 'result'"""


def result_since(pg: str, app: str, since_s: float) -> str | None:
    """The result text `app` was finished with at or after `since_s` (epoch seconds), or None."""
    since = datetime.fromtimestamp(since_s, UTC)
    with psycopg.connect(pg) as conn:
        row = conn.execute(RESULT_SQL, {"app": app, "since": since}).fetchone()
    return None if row is None else str(row[0])


def app_state(deployed_at: datetime | None, result_at: datetime | None, finished_at: datetime | None) -> str:
    """Scalebox's app state: FINISHED once a result was set (or a run ended) after the latest deployment,
    else RUNNING."""
    ended = max((t for t in (result_at, finished_at) if t is not None), default=None)
    if ended is not None and (deployed_at is None or ended >= deployed_at):
        return "FINISHED"
    return "RUNNING"


def app_states(pg: str) -> dict[str, dict[str, Any]]:
    """Per app: its state and its result text (None if it has none)."""
    with psycopg.connect(pg) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(APPS_SQL).fetchall()
    return {r["app"]: {"state": app_state(r["deployed_at"], r["result_at"], r["finished_at"]),
                       "result": r["result"]} for r in rows}
