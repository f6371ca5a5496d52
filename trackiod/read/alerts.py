"""Reads of the alerts runs raised (``run.alert()``), with their delivery state.

Used by ``trackiod alerts``, the read API and the dashboard.
"""

from __future__ import annotations

from typing import Any

import apsw

from trackiod.store.schema import dict_rows


def list_alerts(
    conn: apsw.Connection,
    project: str | None = None,
    run_key: str | None = None,
    limit: int = 1000,
    levels: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Alerts, newest first, with their run and delivery state (``status``, ``attempts``, ``last_error``); with
    ``levels``, only those levels (``INFO``, ``WARN``, ``ERROR``)."""
    sql = (
        "SELECT a.id, p.name AS project, r.run_key AS run_id, r.name AS run_name, a.step, a.ts, a.title, a.text, "
        "a.level, a.wait_duration, a.status, a.attempts, a.last_error, a.delivered_at FROM alerts a "
        "JOIN runs r ON r.id = a.run_id JOIN projects p ON p.id = r.project_id"
    )
    where, args = [], []
    if project is not None:
        where.append("p.name=?")
        args.append(project)
    if run_key is not None:
        where.append("r.run_key=?")
        args.append(run_key)
    if levels:
        where.append(f"a.level IN ({','.join('?' * len(levels))})")
        args.extend(levels)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return dict_rows(conn, sql + " ORDER BY a.id DESC LIMIT ?", (*args, limit))


def alert_levels(conn: apsw.Connection, project: str, run_key: str | None = None) -> dict[str, int]:
    """``{level: alerts}`` of a project (or one of its runs): the counts the dashboard's level filters show."""
    sql = (
        "SELECT a.level, COUNT(*) FROM alerts a JOIN runs r ON r.id = a.run_id JOIN projects p ON p.id = r.project_id "
        "WHERE p.name=?"
    )
    args: list[Any] = [project]
    if run_key is not None:
        sql += " AND r.run_key=?"
        args.append(run_key)
    return {str(level): int(count) for level, count in conn.execute(sql + " GROUP BY a.level", args)}
