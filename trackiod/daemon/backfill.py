"""Runs a node stored before it first forwarded, written into the forwarding journal once (docs/forwarding.md).

The journal holds the frames a forwarding node accepted; a node that stored runs before it was ever given a
role has no frames for them. So the first daemon of a data directory that journals re-encodes every run
already stored as the frames that would have made it (``SESSION``, ``RUN_START``, ``DEFINE_METRIC``, ``LOG``
and ``LOG_CONTEXT`` per rank, ``SUMMARY``, ``RUN_FINISH``) and journals them, in **one transaction** together
with the marker that says it was done: a kill -9 leaves either nothing (the next daemon does it again) or all
of it. From then on the journal and its acknowledgements carry them to the head exactly once, like any frame.

Each original session of those runs is given a new session id (an alias) that the backfilled frames use, with
sequence numbers 1..K. A process that is still running after the role was set keeps sending under its own
session id and sequence; its frames are journaled under the alias, at ``seq + offset`` so that they continue
the alias's sequence on the head. The aliases (``forward_state`` row ``aliases``) are kept, so every later
daemon of the node translates alike.

What is not backfilled: rich values (media), alerts, saved files and artifacts (their records are frames the
node does not keep), and runs this node already synced to a dataset (one writer per run, docs/sync.md: their
rows are in the dataset already, under this node's source; the head would write them a second time).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from trackio_shim import protocol as P
from trackiod.store.codec import decode_floats, decode_steps
from trackiod.store.schema import RANK_KEY_OFFSET, dict_rows
from trackiod.store.writer import Store
from trackiod.sync.state import StateFiles

log = logging.getLogger("trackiod.backfill")

#: The ``forward_state`` rows: the marker (when the backfill was written) and the session aliases.
DONE_ROW = "backfilled"
ALIASES_ROW = "aliases"
#: How the session id made up for a run no session is attached to begins (it has nothing to alias).
_MADE_UP = b"\0backfill"
#: A backfilled LOG frame holds at most this many keys (one step of a very wide run takes several frames).
FRAME_KEYS = 512
#: Memory stays bounded however large the store: frames go to the journal table this many at a time, and a
#: run's points are read this many steps at a time.
FLUSH_FRAMES = 20_000
WINDOW_STEPS = 16_384

#: ``{original session id: (alias session id, offset added to its sequence numbers)}``.
Aliases = dict[bytes, tuple[bytes, int]]


def prepare_journal(store: Store, sync_dir: Path) -> Aliases:
    """Backfill the journal once (see the module docstring); returns the session aliases to journal under.

    Called by the writer before it applies any frame, on every daemon that journals.
    """
    if _state(store, DONE_ROW) is None:
        if _journaled_before(store):
            # A node that forwarded under an earlier trackiod: what it stored before its role cannot be told
            # from what its journal already carried, so nothing is re-sent (docs/forwarding.md, "Limits").
            _set_state(store, DONE_ROW, b"upgraded")
        else:
            started = time.monotonic()
            store.begin()
            try:
                count, runs, aliases = _write_backfill(store, _synced_runs(sync_dir))
                _set_state(store, ALIASES_ROW, P.pack([[sid, *alias] for sid, alias in aliases.items()]))
                _set_state(store, DONE_ROW, str(time.time()).encode())
                store.commit()
            except BaseException:
                store.rollback()
                raise
            if runs:
                log.info(
                    "journaled %d run(s) stored before this node forwarded (%d frames, %.1f s): the head gets them",
                    runs,
                    count,
                    time.monotonic() - started,
                )
    raw = _state(store, ALIASES_ROW)
    stored = P.unpack(raw) if raw else []
    return {bytes(sid): (bytes(alias), int(offset)) for sid, alias, offset in stored}


def _state(store: Store, name: str) -> bytes | None:
    row = store.conn.execute("SELECT value FROM forward_state WHERE name=?", (name,)).fetchone()
    return None if row is None else bytes(row[0])


def _set_state(store: Store, name: str, value: bytes) -> None:
    store.conn.execute("INSERT OR REPLACE INTO forward_state(name, value) VALUES (?, ?)", (name, value))


def _journaled_before(store: Store) -> bool:
    """Whether a daemon of this node ever journaled or forwarded (AUTOINCREMENT remembers deleted rows)."""
    conn = store.conn
    if conn.execute("SELECT 1 FROM forward_state WHERE name='sid'").fetchone():
        return True
    seq = conn.execute("SELECT name FROM sqlite_master WHERE name='sqlite_sequence'").fetchone()
    return bool(seq and conn.execute("SELECT 1 FROM sqlite_sequence WHERE name='forward_journal'").fetchone())


def _synced_runs(sync_dir: Path) -> set[str]:
    """``project/run_key`` of every run this node synced to any dataset (sync's per-repository state files)."""
    synced: set[str] = set()
    if not sync_dir.is_dir():
        return synced
    files = StateFiles(sync_dir)
    for path in sync_dir.glob("*.json"):
        try:
            repo = json.loads(path.read_text()).get("repo")
            if isinstance(repo, str):
                synced |= set(files.load(repo).marks.runs)
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("could not read sync state %s; its runs are backfilled to the head", path)
    return synced


class _Journal:
    """Backfilled frames in the order they are made, written to the journal every FLUSH_FRAMES (bounded memory)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.frames: list[bytes] = []
        self.written = 0

    def append(self, frame: bytes) -> None:
        self.frames.append(frame)
        if len(self.frames) >= FLUSH_FRAMES:
            self.flush()

    def flush(self) -> None:
        if self.frames:
            self.store.journal(self.frames)
            self.written += len(self.frames)
            self.frames = []


class _Session:
    """One alias session: its frames numbered 1..K as they are made."""

    def __init__(self, journal: _Journal, info: dict[str, Any]) -> None:
        self.journal = journal
        self.sid = os.urandom(P.SESSION_ID_BYTES)
        self.seq = 0
        self.add(P.SESSION, info)

    def add(self, kind: int, *fields: Any) -> None:
        self.seq += 1
        self.journal.append(P.pack([kind, self.sid, self.seq, *fields]))


def _write_backfill(store: Store, synced: set[str]) -> tuple[int, int, Aliases]:
    """Journal every stored run not synced already; returns (frames, runs, aliases). Inside the open transaction."""
    conn = store.conn
    names = _KeyNames(store)
    aliases: Aliases = {}
    journal = _Journal(store)
    originals: dict[bytes, _Session] = {}
    runs = 0
    for run in dict_rows(conn, "SELECT r.*, p.name AS project FROM runs r JOIN projects p ON p.id = r.project_id"):
        if f"{run['project']}/{run['run_key']}" in synced:
            continue
        runs += 1
        members = _members(store, run)
        for member in members:
            if member.sid not in originals:
                originals[member.sid] = _Session(journal, _session_info(store, member.sid))
            session = originals[member.sid]
            session.add(P.RUN_START, member.handle, _start_params(run, member.rank))
            if not member.rank or member.rank["rank"] == 0:
                for spec in json.loads(run["metric_defs"] or "[]"):
                    session.add(P.DEFINE_METRIC, member.handle, spec)
        data_sessions: dict[int, tuple[_Session, int]] = {}
        for member in members:
            data_sessions.setdefault(member.rank["rank"] if member.rank else 0, (originals[member.sid], member.handle))
        for rank, ctx, kind, fields in _run_frames(conn, run["id"], names):
            target = data_sessions.get(rank)
            if target is None:
                continue  # a rank no session of this run logged as: cannot happen unless the database was edited
            session, handle = target
            session.add(kind, handle, *fields, *(() if ctx is None else (ctx,)))
        # An ended run's summary as it is (its "last" values are the last logged, which the step order of the
        # points above cannot tell); a running run's explicit values only, so that its later logs still count.
        explicit = json.loads(run["summary_state"] or "{}").get("explicit") or {}
        summary = json.loads(run["summary"] or "{}") if run["state"] != "running" else explicit
        if summary and 0 in data_sessions:
            session, handle = data_sessions[0]
            session.add(P.SUMMARY, handle, summary)
        ended = float(run["ended_at"] or run["updated_at"] or time.time())
        for member in members:
            if member.finished:
                originals[member.sid].add(P.RUN_FINISH, member.handle, int(member.exit_code or 0), ended)
    journal.flush()
    for sid, session in originals.items():
        if not sid.startswith(_MADE_UP):
            watermark = store.watermark(sid) or 0
            aliases[sid] = (session.sid, session.seq - watermark)
    return journal.written, runs, aliases


class _Member(NamedTuple):
    """One process of a run: its session and handle, and its rank row (None for a single process)."""

    sid: bytes
    handle: int
    finished: bool
    exit_code: int | None
    rank: dict[str, Any] | None


def _members(store: Store, run: dict[str, Any]) -> list[_Member]:
    """The processes of a run, rank 0 (or a single process) first.

    A run that no session logged to any more (pulled or imported) gets one made-up session, finished unless
    the run is still running.
    """
    ranks = {bytes(r["sid"]): r for r in dict_rows(store.conn, "SELECT * FROM run_ranks WHERE run_id=?", (run["id"],))}
    out: list[_Member] = []
    for sid, handle, finished in store.conn.execute(
        "SELECT sr.sid, sr.handle, sr.finished FROM session_runs sr LEFT JOIN sessions s ON s.sid = sr.sid "
        "WHERE sr.run_id=? ORDER BY s.first_seen, sr.sid",
        (run["id"],),
    ):
        rank = ranks.get(bytes(sid))
        exit_code = run["exit_code"] if rank is None else rank["exit_code"]
        out.append(_Member(bytes(sid), int(handle), bool(finished), exit_code, rank))
    if not out:
        made_up = _MADE_UP + run["id"].to_bytes(P.SESSION_ID_BYTES - len(_MADE_UP), "big")
        out.append(_Member(made_up, 0, run["state"] != "running", run["exit_code"], None))
    out.sort(key=lambda member: member.rank["rank"] if member.rank else 0)
    return out


def _session_info(store: Store, sid: bytes) -> dict[str, Any]:
    row = store.conn.execute("SELECT info FROM sessions WHERE sid=?", (sid,)).fetchone()
    info = json.loads(row[0]) if row else {}
    info["version"] = P.PROTOCOL_VERSION
    info["backfill"] = True
    return dict(info)


def _start_params(run: dict[str, Any], rank: dict[str, Any] | None) -> dict[str, Any]:
    """A RUN_START that makes the run on the head as it is here.

    A single process's run by its id (resumed if the head has it already). A rank of a distributed job as the
    rank itself started it: its job key, world size and start time, the run's id as the id it drew, so the
    head groups it with the job's ranks from other nodes by the same rule as every daemon (docs/ranks.md).
    """
    params: dict[str, Any] = {
        "project": run["project"],
        "config": json.loads(run["config"] or "{}"),
        "tags": json.loads(run["tags"] or "[]"),
        "notes": run["notes"],
        "group": run["group_name"],
        "job_type": run["job_type"],
        "mode": run["mode"],
        "started": run["created_at"],
    }
    if rank is None or not run["world_size"]:
        params.update(id=run["run_key"], name=run["name"], resume="allow")
    else:
        params.update(
            rank=int(rank["rank"]),
            world_size=int(run["world_size"]),
            local_rank=rank["local_rank"],
            started=rank["joined_at"],
            default_id=run["run_key"],
            default_name=run["name"],
        )
        if run["job_key"]:
            params["job_key"] = run["job_key"]
        else:  # no job key: its ranks found each other by an explicit id
            params["id"] = run["run_key"]
    return {key: value for key, value in params.items() if value is not None}


class _KeyNames:
    """What a stored key id means: (rank or None, name, context or None)."""

    def __init__(self, store: Store) -> None:
        conn = store.conn
        self.names = {int(i): str(n) for i, n in conn.execute("SELECT id, name FROM keys")}
        contexts = {int(i): json.loads(body) for i, body in conn.execute("SELECT id, body FROM contexts")}
        self.context_keys = {
            -int(i): (str(name), contexts.get(int(cid)))
            for i, name, cid in conn.execute("SELECT id, base_name, context_id FROM key_contexts")
        }
        self.rank_keys = {
            RANK_KEY_OFFSET + int(i): (int(kid), int(rank))
            for i, kid, rank in conn.execute("SELECT id, key_id, rank FROM rank_keys")
        }

    def __call__(self, key_id: int) -> tuple[int, str, Any] | None:
        rank = 0
        if key_id >= RANK_KEY_OFFSET:
            base = self.rank_keys.get(key_id)
            if base is None:
                return None
            key_id, rank = base
        if key_id < 0:
            named = self.context_keys.get(key_id)
            return None if named is None else (rank, named[0], named[1])
        name = self.names.get(key_id)
        return None if name is None else (rank, name, None)


def _run_frames(conn: Any, run_id: int, names: _KeyNames) -> Iterator[tuple[int, Any, int, tuple[Any, ...]]]:
    """(rank, context, kind, fields after the handle) of the LOG / LOG_CONTEXT frames that stored a run's series.

    Every stored point once, in the order it was written for each series (a step logged twice stays twice, the
    later value last), one frame per rank, context, step and timestamp; read WINDOW_STEPS steps at a time.
    """
    low = _first_step(conn, run_id, -(2**63))
    while low is not None:
        last = min(low + WINDOW_STEPS - 1, 2**63 - 1)  # inclusive: the largest int64 step is a step too
        yield from _window_frames(conn, run_id, names, low, last)
        low = _first_step(conn, run_id, last + 1) if last < 2**63 - 1 else None


def _first_step(conn: Any, run_id: int, at_least: int) -> int | None:
    """The run's first stored step >= ``at_least``, or None: exact, so that sparse steps cost no empty windows.

    Chunks that begin at or after ``at_least`` are known by their bounds; the few that straddle it are decoded.
    """
    (chunk,) = conn.execute(
        "SELECT MIN(step_min) FROM chunks WHERE run_id=? AND step_min >= ?", (run_id, at_least)
    ).fetchone()
    (text,) = conn.execute("SELECT MIN(step) FROM texts WHERE run_id=? AND step >= ?", (run_id, at_least)).fetchone()
    found = [int(step) for step in (chunk, text) if step is not None]
    for (steps,) in conn.execute(
        "SELECT steps FROM chunks WHERE run_id=? AND step_min < ? AND step_max >= ?", (run_id, at_least, at_least)
    ):
        decoded = decode_steps(steps)
        later = decoded[decoded >= at_least]
        if later.size:
            found.append(int(later.min()))
    return min(found) if found else None


def _place(names: _KeyNames, key_id: Any, contexts: dict[str, Any]) -> tuple[int, str, str] | None:
    """``(rank, name, context as sorted JSON)`` of a stored series (None: not sent), noting the context."""
    named = names(int(key_id))
    if named is None:
        return None
    rank, name, ctx = named
    ctx_body = json.dumps(ctx, sort_keys=True)
    contexts[ctx_body] = ctx
    return rank, name, ctx_body


def _window_frames(
    conn: Any, run_id: int, names: _KeyNames, low: int, last: int
) -> Iterator[tuple[int, Any, int, tuple[Any, ...]]]:
    """The frames of the steps ``low <= step <= last`` (see :func:`_run_frames`)."""
    points: dict[tuple[int, str], list[tuple[np.ndarray, np.ndarray, list[Any], str]]] = defaultdict(list)
    contexts: dict[str, Any] = {}
    for key_id, steps, times, vals in conn.execute(
        "SELECT key_id, steps, times, vals FROM chunks WHERE run_id=? AND step_max >= ? AND step_min <= ? ORDER BY id",
        (run_id, low, last),
    ):
        place = _place(names, key_id, contexts)
        if place is None:
            continue
        rank, name, ctx_body = place
        step_array = decode_steps(steps)
        inside = (step_array >= low) & (step_array <= last)
        kept = (step_array[inside], decode_floats(times)[inside], decode_floats(vals)[inside].tolist(), name)
        points[(rank, ctx_body)].append(kept)
    for key_id, step, ts, value in conn.execute(
        "SELECT key_id, step, ts, value FROM texts WHERE run_id=? AND step >= ? AND step <= ? ORDER BY rev",
        (run_id, low, last),
    ):
        place = _place(names, key_id, contexts)
        if place is None:
            continue
        rank, name, ctx_body = place
        points[(rank, ctx_body)].append((np.array([step], np.int64), np.array([ts], np.float64), [value], name))
    for (rank, ctx_body), parts in sorted(points.items(), key=lambda item: item[0]):
        ctx = contexts[ctx_body]
        steps = np.concatenate([p[0] for p in parts])
        times = np.concatenate([p[1] for p in parts])
        values = [v for p in parts for v in p[2]]
        keys = [p[3] for p in parts for _ in range(len(p[0]))]
        kind = P.LOG if ctx is None else P.LOG_CONTEXT
        order = np.lexsort((times, steps))  # stable: a series' repeated steps keep their written order
        data: dict[str, Any] = {}
        at: tuple[int, float] | None = None
        for i in order.tolist():
            point = (int(steps[i]), float(times[i]))
            if data and (point != at or keys[i] in data or len(data) >= FRAME_KEYS):
                assert at is not None
                yield rank, ctx, kind, (at[0], at[1], data)
                data = {}
            at = point
            data[keys[i]] = values[i]
        if data and at is not None:
            yield rank, ctx, kind, (at[0], at[1], data)
