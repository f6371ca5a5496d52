"""The single writer of the SQLite database (apsw, WAL).

Only the daemon's ingest thread holds a :class:`Store`; everyone else reads through read-only connections
(trackiod.read.connection), so "database is locked" cannot happen. Series are stored as chunks of packed arrays; the
open tail of each series is written as small chunks and folded into sealed 1,024-point chunks as it grows
(docs/storage.md explains the layout and why).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import numpy as np

from trackiod.store.codec import (
    CHUNK_POINTS,
    decode_floats,
    decode_steps,
    encode_floats,
    encode_steps,
    evenly_spaced,
)
from trackiod.store.ranks import RankTable
from trackiod.store.schema import RANK_KEY_OFFSET, RunRow, configure, dict_rows, migrate
from trackiod.store.series_key import SeriesKey

log = logging.getLogger("trackiod.store")


@dataclass
class Tail:
    """The unsealed end of one series: its small chunks' ids and their points, kept in memory."""

    ids: list[int] = field(default_factory=list)
    steps: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    times: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    vals: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))


#: WAL pages after which a commit copies the WAL into the database (the daemon passes ``checkpoint_pages``).
CHECKPOINT_PAGES = 16384


def open_writer(path: Path, checkpoint_pages: int = CHECKPOINT_PAGES) -> apsw.Connection:
    """Open (creating and migrating) the database for writing.

    A commit that leaves the WAL at ``checkpoint_pages`` or more copies it into the database (SQLite's PASSIVE
    automatic checkpoint) before it returns; the daemon also checkpoints once per maintenance tick. The copy's
    size is the pause the writer takes (about 10 ms per 1,000 pages, quiet), but each copy also costs two
    fsyncs (synchronous=NORMAL) and copies again the pages later commits rewrite: with 1,024 or 4,096 pages
    the daemon fell behind at 1M points/s on the shared 2-core machine where with 16,384 it kept up
    (docs/benchmarks.md, "round 5: ingest and ACK"), so the default stays at 16,384, with the setting to
    trade fewer long pauses for more short ones.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data directory: private (docs/security.md)
    conn = apsw.Connection(str(path))
    configure(conn)
    conn.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint_pages)}")
    migrate(conn)
    return conn


class Store:
    """All writes to the database, between :meth:`begin` and :meth:`commit` (or :meth:`rollback`)."""

    def __init__(self, path: Path, checkpoint_pages: int = CHECKPOINT_PAGES) -> None:
        self.path = path
        self.conn = open_writer(path, checkpoint_pages)
        self.ranks = RankTable(self.conn, self.project_id)
        self._projects: dict[str, int] = {}
        self._keys: dict[str, int] = {}
        self._context_keys: dict[tuple[str, int], int] = {}
        self._contexts: dict[str, int] = {}
        self._rank_keys: dict[tuple[int, int], int] = {}
        self._tails: dict[tuple[int, int], Tail] = {}
        self._run_columns: frozenset[str] | None = None
        row = self.conn.execute("SELECT MAX(rev) FROM texts").fetchone()
        self._text_rev = int(row[0] or 0) if row else 0

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except apsw.Error:
            pass  # a reader still holds a snapshot; SQLite finishes the checkpoint later
        self.conn.close()

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the database without waiting on readers (PASSIVE)."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (apsw.FullError, apsw.IOError) as exc:  # the WAL keeps them; commits report a full disk
            log.debug("checkpoint deferred: %s", exc)

    # ----------------------------------------------------------------- transactions
    def begin(self) -> None:
        """Open the writer's transaction (the ingest batches frames into it)."""
        self.conn.execute("BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (a failed COMMIT may have)."""
        try:
            self.conn.execute("ROLLBACK")
        except apsw.Error:
            pass

    def mark(self) -> object:
        """Open the savepoint of one frame inside the open transaction (frames do not nest savepoints)."""
        self.conn.execute("SAVEPOINT frame")
        return None

    def release(self, mark: object) -> None:
        """Keep what was written since :meth:`mark` (the savepoint merges into the transaction)."""
        self.conn.execute("RELEASE frame")

    def undo_to(self, mark: object) -> None:
        """Drop what was written since :meth:`mark`, and the cached ids of names it may have created."""
        self.conn.execute("ROLLBACK TO frame")
        self.conn.execute("RELEASE frame")
        self.forget_names()

    def journal(self, frames: list[bytes]) -> None:
        """Keep frames for a head daemon (``forward_journal``), in the transaction that stores them here."""
        self.conn.executemany("INSERT INTO forward_journal(frame) VALUES (?)", [(f,) for f in frames])

    # ----------------------------------------------------------------- sessions and dedupe watermarks
    def load_sessions(self) -> tuple[dict[bytes, int], dict[tuple[bytes, int], int]]:
        """Committed watermarks per session, and the run each (session, handle) logs to."""
        marks = {bytes(sid): seq for sid, seq in self.conn.execute("SELECT sid, last_seq FROM sessions")}
        handles = {
            (bytes(sid), handle): run_id
            for sid, handle, run_id in self.conn.execute("SELECT sid, handle, run_id FROM session_runs")
        }
        return marks, handles

    def session_handles(self, sid: bytes) -> dict[tuple[bytes, int], int]:
        """The run each handle of one session logs to (for a session pruned from memory, as load_sessions)."""
        return {
            (sid, handle): run_id
            for handle, run_id in self.conn.execute("SELECT handle, run_id FROM session_runs WHERE sid=?", (sid,))
        }

    def watermark(self, sid: bytes) -> int | None:
        """The committed watermark of one session (None if it never committed): for sessions pruned from memory."""
        row = self.conn.execute("SELECT last_seq FROM sessions WHERE sid=?", (sid,)).fetchone()
        return None if row is None else int(row[0])

    def save_session(self, sid: bytes, info: dict[str, Any], proc_started: float | None) -> None:
        now = time.time()
        self.conn.execute(
            "INSERT INTO sessions(sid, last_seq, pid, host, proc_started, info, first_seen, last_seen) "
            "VALUES (?, 0, ?, ?, ?, ?, ?, ?) ON CONFLICT(sid) DO UPDATE SET pid=excluded.pid, "
            "host=excluded.host, proc_started=excluded.proc_started, info=excluded.info",
            (sid, info.get("pid"), info.get("host"), proc_started, json.dumps(info, default=str), now, now),
        )

    def save_watermarks(self, marks: Iterable[tuple[bytes, int]]) -> None:
        """Record the highest stored seq per session: same transaction as the data it covers."""
        now = time.time()
        self.conn.executemany(
            "INSERT INTO sessions(sid, last_seq, info, first_seen, last_seen) VALUES (?, ?, '{}', ?, ?) "
            "ON CONFLICT(sid) DO UPDATE SET last_seq=excluded.last_seq, last_seen=excluded.last_seen",
            [(sid, seq, now, now) for sid, seq in marks],
        )

    def session_process(self, sid: bytes) -> tuple[int | None, str | None]:
        """(pid, host) a session announced in its SESSION message; (None, None) if it sent none."""
        row = self.conn.execute("SELECT pid, host FROM sessions WHERE sid=?", (sid,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def attach(self, sid: bytes, handle: int, run_id: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO session_runs(sid, handle, run_id, finished) VALUES (?, ?, ?, 0)",
            (sid, handle, run_id),
        )

    def detach(self, sid: bytes, handle: int) -> None:
        self.conn.execute("UPDATE session_runs SET finished=1 WHERE sid=? AND handle=?", (sid, handle))

    # ----------------------------------------------------------------- names
    def _scalar(self, sql: str, *args: Any) -> int:
        row = self.conn.execute(sql, args).fetchone()
        assert row is not None
        return int(row[0])

    def project_id(self, name: str) -> int:
        pid = self._projects.get(name)
        if pid is None:
            self.conn.execute("INSERT OR IGNORE INTO projects(name, created_at) VALUES (?, ?)", (name, time.time()))
            pid = self._scalar("SELECT id FROM projects WHERE name=?", name)
            self._projects[name] = pid
        return pid

    def key_id(self, name: str, context_id: int | None = None) -> int:
        """The key id of a name; with a context, the negative id of its (name, context) row (key_contexts)."""
        if context_id is not None:
            return self._context_key_id(name, context_id)
        kid = self._keys.get(name)
        if kid is None:
            self.conn.execute("INSERT OR IGNORE INTO keys(name) VALUES (?)", (name,))
            kid = self._keys[name] = self._scalar("SELECT id FROM keys WHERE name=?", name)
        return kid

    def _context_key_id(self, name: str, context_id: int) -> int:
        kid = self._context_keys.get((name, context_id))
        if kid is None:
            self.conn.execute(
                "INSERT OR IGNORE INTO key_contexts(base_name, context_id) VALUES (?, ?)", (name, context_id)
            )
            kid = -self._scalar("SELECT id FROM key_contexts WHERE base_name=? AND context_id=?", name, context_id)
            self._context_keys[(name, context_id)] = kid
        return kid

    def series_id(self, key: SeriesKey) -> int:
        """The ``chunks``/``texts``/``run_keys`` key id of one series: its name, context and rank together."""
        kid = self.key_id(key.name, key.context_id)
        return kid if key.rank is None else self.rank_key_id(kid, key.rank)

    def rank_key_id(self, key_id: int, rank: int) -> int:
        """The series key id of rank ``rank`` > 0's series of ``key_id`` (docs/ranks.md, "Storage")."""
        kid = self._rank_keys.get((key_id, rank))
        if kid is None:
            self.conn.execute("INSERT OR IGNORE INTO rank_keys(key_id, rank) VALUES (?, ?)", (key_id, rank))
            kid = RANK_KEY_OFFSET + self._scalar("SELECT id FROM rank_keys WHERE key_id=? AND rank=?", key_id, rank)
            self._rank_keys[(key_id, rank)] = kid
        return kid

    def context_id(self, body: str) -> int:
        """The id of a context given as canonical JSON (sorted keys, no spaces)."""
        cid = self._contexts.get(body)
        if cid is None:
            self.conn.execute("INSERT OR IGNORE INTO contexts(body) VALUES (?)", (body,))
            cid = self._scalar("SELECT id FROM contexts WHERE body=?", body)
            self._contexts[body] = cid
        return cid

    def forget_names(self) -> None:
        """Drop cached name ids after a rollback: ids created in the rolled-back transaction are gone."""
        self._projects.clear()
        self._keys.clear()
        self._context_keys.clear()
        self._contexts.clear()
        self._rank_keys.clear()

    # ----------------------------------------------------------------- runs
    def find_run(self, project: str, run_key: str | None, name: str | None) -> RunRow | None:
        """The run with this id in ``project``, else (when only a name is given) the newest with that name."""
        pid = self.project_id(project)
        if run_key:
            rows = dict_rows(self.conn, "SELECT * FROM runs WHERE project_id=? AND run_key=?", (pid, run_key))
        elif name:
            rows = dict_rows(
                self.conn,
                "SELECT * FROM runs WHERE project_id=? AND name=? ORDER BY id DESC LIMIT 1",
                (pid, name),
            )
        else:
            return None
        return rows[0] if rows else None

    def run(self, run_id: int) -> RunRow | None:
        rows = dict_rows(self.conn, "SELECT * FROM runs WHERE id=?", (run_id,))
        return rows[0] if rows else None

    def create_run(
        self,
        project: str,
        run_key: str,
        name: str,
        params: dict[str, Any],
        config: dict[str, Any],
        host: str | None,
        pid: int | None,
    ) -> RunRow:
        now = time.time()
        started = params.get("started")
        # The client's clock at init(), so a run ingested later from a spool keeps its real start time.
        created = float(started) if isinstance(started, (int, float)) and 0 < started <= now + 60 else now
        self.conn.execute(
            "INSERT INTO runs(project_id, run_key, name, state, created_at, updated_at, host, pids, config, "
            "tags, notes, group_name, job_type, mode, space_id, dataset_id, mirrors) "
            "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.project_id(project),
                run_key,
                name,
                created,
                now,
                host,
                json.dumps([pid] if pid else []),
                json.dumps(config),
                json.dumps(list(params.get("tags") or [])),
                params.get("notes"),
                params.get("group"),
                params.get("job_type"),
                params.get("mode") or "online",
                params.get("space_id"),
                params.get("dataset_id"),
                json.dumps(_mirrors(params)),
            ),
        )
        row = self.run(self.conn.last_insert_rowid())
        assert row is not None
        return row

    def reopen_run(self, run_id: int, params: dict[str, Any], config: dict[str, Any], pid: int | None) -> None:
        """Mark a resumed run running again, merging its config and adding the new process."""
        row = self.run(run_id)
        assert row is not None
        pids = json.loads(row["pids"])
        if pid and pid not in pids:
            pids.append(pid)
        sets = {
            "state": "running",
            "exit_code": None,
            "ended_at": None,
            "updated_at": time.time(),
            "pids": json.dumps(pids),
            "config": json.dumps(config),
        }
        for column, key in (("notes", "notes"), ("group_name", "group"), ("job_type", "job_type")):
            if params.get(key):
                sets[column] = params[key]
        if params.get("tags"):
            sets["tags"] = json.dumps(list(params["tags"]))
        if _mirrors(params):
            sets["mirrors"] = json.dumps(_mirrors(params))
        self.update_run(run_id, **sets)

    def run_mirrors(self, run_id: int) -> list[str]:
        """The mirror specs a run asked for (``runs.mirrors``)."""
        row = self.conn.execute("SELECT mirrors FROM runs WHERE id=?", (run_id,)).fetchone()
        return list(json.loads(row[0])) if row else []

    def update_run(self, run_id: int, **columns: Any) -> None:
        """Set columns of one run; the column names must be the runs table's own (they go into the SQL text)."""
        if self._run_columns is None:
            self._run_columns = frozenset(row[1] for row in self.conn.execute("PRAGMA table_info(runs)"))
        unknown = set(columns) - self._run_columns
        if unknown:
            raise ValueError(f"update_run: {', '.join(sorted(unknown))} is not a column of runs")
        assignments = ", ".join(f"{name}=?" for name in columns)
        self.conn.execute(f"UPDATE runs SET {assignments} WHERE id=?", (*columns.values(), run_id))

    def revive_run(self, run_id: int) -> None:
        """A run marked crashed that receives data again is running again."""
        self.conn.execute("UPDATE runs SET state='running', ended_at=NULL WHERE id=? AND state='crashed'", (run_id,))

    def active_runs(self) -> list[RunRow]:
        return dict_rows(self.conn, "SELECT * FROM runs WHERE state='running'")

    def run_points(self, run_id: int) -> int:
        """How many points the run has stored, over all its series (what finish() prints)."""
        return self._scalar("SELECT COALESCE(SUM(points), 0) FROM run_keys WHERE run_id=?", run_id)

    def run_sessions(self, run_id: int) -> list[tuple[bytes, int, int, str | None, float | None, float]]:
        """(sid, finished, pid, host, proc_started, last_seen) of each session attached to ``run_id``."""
        return [
            (bytes(r[0]), r[1], r[2], r[3], r[4], r[5])
            for r in self.conn.execute(
                "SELECT s.sid, sr.finished, s.pid, s.host, s.proc_started, s.last_seen FROM session_runs sr "
                "JOIN sessions s ON s.sid = sr.sid WHERE sr.run_id=?",
                (run_id,),
            )
        ]

    # ----------------------------------------------------------------- points
    def write_series(self, run_id: int, key_id: int, steps: np.ndarray, times: np.ndarray, vals: np.ndarray) -> None:
        """Append points to one series: full chunks are sealed, the rest extends the series' tail."""
        tail = self._tail(run_id, key_id)
        if tail.steps.size + steps.size < CHUNK_POINTS:
            tail.ids.append(self._insert_chunk(run_id, key_id, steps, times, vals))
            tail.steps = np.concatenate((tail.steps, steps))
            tail.times = np.concatenate((tail.times, times))
            tail.vals = np.concatenate((tail.vals, vals))
            return
        all_steps = np.concatenate((tail.steps, steps))
        all_times = np.concatenate((tail.times, times))
        all_vals = np.concatenate((tail.vals, vals))
        if tail.ids:
            self.conn.executemany("DELETE FROM chunks WHERE id=?", [(i,) for i in tail.ids])
        sealed = (all_steps.size // CHUNK_POINTS) * CHUNK_POINTS
        for start in range(0, sealed, CHUNK_POINTS):
            end = start + CHUNK_POINTS
            self._insert_chunk(run_id, key_id, all_steps[start:end], all_times[start:end], all_vals[start:end])
        rest = Tail()
        if sealed < all_steps.size:
            rest.steps, rest.times, rest.vals = all_steps[sealed:], all_times[sealed:], all_vals[sealed:]
            rest.ids.append(self._insert_chunk(run_id, key_id, rest.steps, rest.times, rest.vals))
        self._tails[(run_id, key_id)] = rest

    def _insert_chunk(self, run_id: int, key_id: int, steps: np.ndarray, times: np.ndarray, vals: np.ndarray) -> int:
        self.conn.execute(
            "INSERT INTO chunks(run_id, key_id, n, step_min, step_max, even, steps, times, vals) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                key_id,
                int(steps.size),
                int(steps.min()),
                int(steps.max()),
                int(evenly_spaced(steps)),
                encode_steps(steps),
                encode_floats(times),
                encode_floats(vals),
            ),
        )
        return int(self.conn.last_insert_rowid())

    def _tail(self, run_id: int, key_id: int) -> Tail:
        tail = self._tails.get((run_id, key_id))
        if tail is not None:
            return tail
        # After a restart the tail is read back: the trailing chunks smaller than a sealed one.
        tail = Tail()
        parts = []
        for chunk_id, n, steps, times, vals in self.conn.execute(
            "SELECT id, n, steps, times, vals FROM chunks WHERE run_id=? AND key_id=? ORDER BY id DESC",
            (run_id, key_id),
        ):
            if n >= CHUNK_POINTS:
                break
            parts.append((chunk_id, steps, times, vals))
        for chunk_id, steps, times, vals in reversed(parts):
            tail.ids.append(chunk_id)
            tail.steps = np.concatenate((tail.steps, decode_steps(steps)))
            tail.times = np.concatenate((tail.times, decode_floats(times)))
            tail.vals = np.concatenate((tail.vals, decode_floats(vals)))
        self._tails[(run_id, key_id)] = tail
        return tail

    def forget_tails(self, run_id: int | None = None) -> None:
        """Drop a finished run's tails from memory, or (None) every run's after a rollback; they are re-read."""
        if run_id is None:
            self._tails.clear()
            return
        for key in [k for k in self._tails if k[0] == run_id]:
            del self._tails[key]

    def write_texts(self, rows: list[tuple[int, int, int, float, str]]) -> None:
        """(run_id, key_id, step, ts, value) rows; a later value at the same step replaces the earlier.

        Each row gets the next revision (``texts.rev``), the order in which sync exports text values.
        """
        first = self._text_rev + 1
        self._text_rev += len(rows)
        self.conn.executemany(
            "INSERT OR REPLACE INTO texts(run_id, key_id, step, ts, value, rev) VALUES (?, ?, ?, ?, ?, ?)",
            [(*row, first + i) for i, row in enumerate(rows)],
        )

    def count_keys(self, counts: dict[tuple[int, int], tuple[str, int, int]]) -> None:
        """Add (kind, points, last_step) per (run_id, key_id) to the run's key index.

        A key's kind becomes "text" once it has any text value (readers then look at texts and numbers) and
        stays so: a key may hold numbers at some steps and text at others.
        """
        self.conn.executemany(
            "INSERT INTO run_keys(run_id, key_id, kind, points, last_step) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(run_id, key_id) DO UPDATE SET points=points+excluded.points, "
            "last_step=MAX(COALESCE(last_step, excluded.last_step), excluded.last_step), "
            "kind=CASE WHEN excluded.kind='text' THEN 'text' ELSE kind END",
            [(run_id, key_id, kind, n, last) for (run_id, key_id), (kind, n, last) in counts.items()],
        )


def _mirrors(params: dict[str, Any]) -> list[str]:
    """The run's mirror specs (strings the shim checked), as stored in ``runs.mirrors``."""
    raw = params.get("mirror")
    return [str(m) for m in raw if isinstance(m, str)] if isinstance(raw, list) else []
