"""The writer's rows for distributed runs: which session is which rank of a run (``run_ranks``), and finding
the running run a rank of a job joins (docs/ranks.md). The :class:`~trackiod.store.writer.Store` holds one
as ``store.ranks``, on its own connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import apsw

from trackiod.store.schema import RunRow, dict_rows


class RankTable:
    """Writes and reads of ``run_ranks`` on the writer's connection."""

    def __init__(self, conn: apsw.Connection, project_id: Callable[[str], int]) -> None:
        self.conn = conn
        #: The store's project id lookup (it caches ids and creates missing projects).
        self._project_id = project_id

    def load(self, sid: bytes | None = None) -> dict[tuple[bytes, int], int]:
        """The rank (> 0 only) each attached (session, handle) logs as, from ``run_ranks`` (of one session)."""
        sql = (
            "SELECT sr.sid, sr.handle, rr.rank FROM session_runs sr "
            "JOIN run_ranks rr ON rr.run_id = sr.run_id AND rr.sid = sr.sid WHERE rr.rank > 0"
        )
        rows = self.conn.execute(sql) if sid is None else self.conn.execute(sql + " AND sr.sid=?", (sid,))
        return {(bytes(row_sid), handle): rank for row_sid, handle, rank in rows}

    def join(
        self, run_id: int, rank: int, sid: bytes, host: str | None, pid: int | None, local: Any, config: dict[str, Any]
    ) -> None:
        """Record that ``sid`` is rank ``rank`` of ``run_id`` (a restarted rank replaces its predecessor)."""
        self.conn.execute(
            "INSERT OR REPLACE INTO run_ranks(run_id, rank, sid, host, pid, local_rank, config, joined_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                rank,
                sid,
                host,
                pid,
                local if type(local) is int else None,
                json.dumps(config, default=str),
                time.time(),
            ),
        )

    def forget_job(self, run_id: int) -> None:
        """Drop a run's ranks before a new job starts in it (a resumed distributed run)."""
        self.conn.execute("DELETE FROM run_ranks WHERE run_id=?", (run_id,))

    def configs(self, run_id: int) -> list[tuple[int, bytes, dict[str, Any]]]:
        """(rank, session, config passed at init) of each rank of a distributed run."""
        return [
            (rank, bytes(sid), json.loads(config))
            for rank, sid, config in self.conn.execute(
                "SELECT rank, sid, config FROM run_ranks WHERE run_id=? ORDER BY rank", (run_id,)
            )
        ]

    def finish(self, run_id: int, sid: bytes, exit_code: int, ended_at: float) -> None:
        self.conn.execute(
            "UPDATE run_ranks SET exit_code=?, ended_at=? WHERE run_id=? AND sid=?", (exit_code, ended_at, run_id, sid)
        )

    def exit_codes(self, run_id: int) -> list[int | None]:
        """Each rank's exit code (None: it never finished) of a distributed run; empty for other runs."""
        return [r[0] for r in self.conn.execute("SELECT exit_code FROM run_ranks WHERE run_id=?", (run_id,))]

    def job_runs(self, project: str, job_key: str, name: str | None, since: float) -> list[tuple[RunRow, set[int]]]:
        """The runs of job ``job_key`` in ``project`` (with that name, if given) created after ``since``, each
        with the ranks that joined it: what a rank of that job may join (trackiod.ingest.ranks.find_joinable)."""
        sql = "SELECT * FROM runs WHERE project_id=? AND job_key=? AND created_at>=?"
        args: tuple[Any, ...] = (self._project_id(project), job_key, since)
        if name:
            sql, args = sql + " AND name=?", (*args, name)
        rows = dict_rows(self.conn, sql + " ORDER BY id DESC LIMIT 50", args)
        return [
            (row, {r[0] for r in self.conn.execute("SELECT rank FROM run_ranks WHERE run_id=?", (row["id"],))})
            for row in rows
        ]

    def rename_run(self, run_id: int, run_key: str, name: str | None) -> None:
        """Give a job's run rank 0's id (and name): the id rank 0 prints is the run's on every daemon."""
        self.conn.execute("UPDATE runs SET run_key=? WHERE id=?", (run_key, run_id))
        if name is not None:
            self.conn.execute("UPDATE runs SET name=? WHERE id=?", (name, run_id))
