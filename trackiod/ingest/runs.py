"""Run lifecycle in the daemon: start and resume, config, summaries, finish, crash detection.

Every method runs inside the ingest thread's open transaction; nothing here commits.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import psutil

from trackio_shim import protocol as P
from trackio_shim.errors import FrameRejected
from trackio_shim.rules import MAX_NAME_CHARS, new_run_id
from trackiod.ingest import ranks as R
from trackiod.ingest.batch import Columns
from trackiod.ingest.summary import RunSummary
from trackiod.store.writer import Store

log = logging.getLogger("trackiod.runs")

#: The attributes of a RunBook that one frame may change before its transaction commits (RunBook.mark).
_FRAME_STATE = ("handles", "rejected", "run_sids", "ranks", "dirty", "last_steps", "_finished", "summaries")


def _text(value: Any, field: str, default: str | None = None) -> str | None:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS or ("/" in value and field != "name"):
        raise FrameRejected(f"{field} must be a string of at most {MAX_NAME_CHARS} characters without '/'")
    if field != "name" and (value in (".", "..") or "\x00" in value):
        # Project names and run ids are folder names under files/ and runs/: '..' would lead out of them.
        raise FrameRejected(f"{field} {value!r} cannot be '.', '..' or contain NUL characters")
    return value


class RunBook:
    """Which run each (session, handle) logs to, and each run's summary; see the module docstring."""

    def __init__(
        self, store: Store, handles: dict[tuple[bytes, int], int], notice: Callable[[bytes | None, str], None]
    ) -> None:
        self.store = store
        self.handles = handles
        self.notice = notice
        self.rejected: dict[tuple[bytes, int], dict[str, Any]] = {}
        self.summaries: dict[int, RunSummary] = {}
        self.dirty: set[int] = set()
        self.last_steps: dict[int, int] = {}
        self.run_sids: dict[int, bytes] = {}
        #: The rank of each (session, handle) that logs as rank > 0 of a distributed run (rank 0 is absent).
        self.ranks: dict[tuple[bytes, int], int] = store.ranks.load()
        self._finished: set[int] = set()
        #: Explicit summary values set while this batch is open: (run, key) -> (the batch's arrival number then,
        #: value). Points are folded into summaries at the commit, after every SUMMARY frame of the batch, so
        #: a value set after the key's last point of the batch is set again then (explicit wins until the key
        #: is logged again, as in wandb).
        self._explicit_in_batch: dict[tuple[int, str], tuple[int, Any]] = {}
        self._told: set[tuple[int, str, str]] = set()
        self._unknown: set[tuple[bytes, Any]] = set()
        #: Set by the ingest: when a session was last heard from, and how long until a remote one counts as gone.
        self.last_seen: dict[bytes, float] = {}
        self.heartbeat_timeout_s = 120.0
        #: Lifecycle events of the open transaction, handed to the mirrors after it commits.
        self.events: list[tuple[str, int, Any]] = []

    def forget_sessions(self, sids: set[bytes]) -> None:
        """Drop what is kept in memory for sessions pruned as idle (none of their runs is running)."""
        self.handles = {key: run for key, run in self.handles.items() if key[0] not in sids}
        self.ranks = {key: rank for key, rank in self.ranks.items() if key[0] not in sids}
        self.rejected = {key: params for key, params in self.rejected.items() if key[0] not in sids}
        self._unknown = {key for key in self._unknown if key[0] not in sids}

    def recall_session(self, sid: bytes) -> None:
        """Bring back the handles and ranks of a session forgotten by :meth:`forget_sessions`: a forwarded rank
        whose run a head marked crashed while its node was away logs again when the node's backlog arrives."""
        self.handles.update(self.store.session_handles(sid))
        self.ranks.update(self.store.ranks.load(sid))

    # ------------------------------------------------------------------ lookups
    def run_for(self, sid: bytes, handle: Any) -> int | None:
        """The run a session's handle logs to; a rejected init whose caller logged anyway gets a new run."""
        try:
            run_id = self.handles.get((sid, handle))
        except TypeError:  # an unhashable handle (a list, a map): the frame is malformed
            raise FrameRejected(f"a run handle must be an int, not {type(handle).__name__}") from None
        if run_id is None:
            params = self.rejected.pop((sid, handle), None)
            if params is not None:
                params["resume"] = "allow"
                params["id"] = f"{params.get('id') or new_run_id()}-{new_run_id()[:4]}"
                self.start(sid, handle, params)
                self.notice(
                    sid,
                    f"init() was refused but the run logged anyway; its data went to new run "
                    f"{params.get('project')}/{params['id']}",
                )
                run_id = self.handles.get((sid, handle))
            else:
                if (sid, handle) not in self._unknown and len(self._unknown) < 10_000:
                    self._unknown.add((sid, handle))
                    self.notice(sid, f"data for unknown run handle {handle!r} was dropped (no init() was received)")
                return None
        if run_id is not None:
            self.run_sids[run_id] = sid
        return run_id

    def _summary(self, run_id: int) -> RunSummary:
        summary = self.summaries.get(run_id)
        if summary is None:
            row = self.store.run(run_id)
            state = json.loads(row["summary_state"]) if row else {}
            defs = json.loads(row["metric_defs"]) if row else []
            summary = self.summaries[run_id] = RunSummary.from_state(state, defs)
        return summary

    def summary_view(self, sid: bytes, handle: Any) -> dict[str, Any] | None:
        run_id = self.handles.get((sid, handle))
        return None if run_id is None else self._summary(run_id).view()

    # ------------------------------------------------------------------ lifecycle
    def start(self, sid: bytes, handle: int, params: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Create or resume the run ``params`` describe and attach the handle to it."""
        project = _text(params.get("project"), "project", "uncategorized")
        assert project is not None
        run_key = _text(params.get("id"), "id")
        name = _text(params.get("name"), "name")
        policy = params.get("resume") or "never"
        distributed = R.rank_params(params)
        pid, host = self.store.session_process(sid)
        if distributed is not None:
            rank, world, job = distributed
            started = R.start_time(params, time.time())
            joinable = R.find_joinable(self.store, project, run_key, name, job, rank, world, started)
            if joinable is not None:
                return True, self._join(sid, handle, project, params, joinable, rank, world, pid, host)
        existing = self.store.find_run(project, run_key, None if run_key or policy == "never" else name)
        if existing is not None and policy == "never":
            self.rejected[(sid, handle)] = params
            return False, {
                "error": P.ERROR_EXISTS,
                "message": f"run {project}/{run_key} already exists; pass "
                "resume='allow' (or 'must') to resume it, or use another id",
            }
        if existing is None and policy == "must":
            self.rejected[(sid, handle)] = params
            return False, {
                "error": P.ERROR_NOT_FOUND,
                "message": f"resume='must' but project {project!r} has no "
                f"run {'id ' + repr(run_key) if run_key else 'named ' + repr(name)}",
            }
        config: dict[str, Any] = params["config"] if isinstance(params.get("config"), dict) else {}
        if existing is not None:
            run_id = existing["id"]
            merged = {**json.loads(existing["config"]), **config}
            self.store.reopen_run(run_id, params, merged, pid)
            self.summaries.pop(run_id, None)
            step = existing["last_step"] + 1 if existing["last_step"] is not None else 0
            body = {
                "id": existing["run_key"],
                "name": existing["name"],
                "resumed": True,
                "step": step,
                "config": merged,
            }
        else:
            run_key = run_key or _text(params.get("default_id"), "id") or new_run_id()
            name = name or _text(params.get("default_name"), "name") or run_key
            row = self.store.create_run(project, run_key, name, params, config, host, pid)
            run_id = row["id"]
            body = {"id": run_key, "name": name, "resumed": False, "step": 0, "config": config}
        self.store.attach(sid, handle, run_id)
        self.handles[(sid, handle)] = run_id
        if distributed is not None:
            rank, world, job = distributed
            self.store.ranks.forget_job(run_id)  # a new job's ranks
            self.store.update_run(run_id, job_key=job, world_size=world)
            self.add_rank(sid, handle, run_id, rank, pid, host, params, config)
            body["rank"] = rank
            if job is None and not params.get("id"):
                self.notice(
                    sid,
                    f"rank {rank} of {world} has no job key and no run id, so it cannot join the other ranks' run; "
                    "pass the same init(id=...) on every rank or set TRACKIOD_JOB_ID (docs/ranks.md)",
                )
        self.events.append(
            (
                "start",
                run_id,
                {
                    "project": project,
                    "run_key": body["id"],
                    "name": body["name"],
                    "config": body["config"],
                    "mirrors": self.store.run_mirrors(run_id),
                },
            )
        )
        log.info("run %s/%s started (resumed=%s)", project, body["id"], body["resumed"])
        return True, body

    def _join(
        self,
        sid: bytes,
        handle: int,
        project: str,
        params: dict[str, Any],
        row: dict[str, Any],
        rank: int,
        world: int,
        pid: int | None,
        host: str | None,
    ) -> dict[str, Any]:
        """Attach a rank of a distributed job to the job's run (trackiod.ingest.ranks.join_run)."""
        joined = R.join_run(self.store, project, params, row, rank, world, pid)
        for other_sid, text in joined.notices:
            self.notice(other_sid, text)
        if joined.added_config:
            self.events.append(("config", joined.run_id, joined.added_config))
        self.store.attach(sid, handle, joined.run_id)
        self.handles[(sid, handle)] = joined.run_id
        self.add_rank(sid, handle, joined.run_id, rank, pid, host, params, joined.config)
        return joined.body

    def add_rank(
        self,
        sid: bytes,
        handle: int,
        run_id: int,
        rank: int,
        pid: int | None,
        host: str | None,
        params: dict[str, Any],
        config: dict[str, Any],
    ) -> None:
        """Record ``sid`` as rank ``rank`` of ``run_id``; ranks > 0 log into series of their own."""
        self.store.ranks.join(run_id, rank, sid, host, pid, params.get("local_rank"), config)
        if rank > 0:
            self.ranks[(sid, handle)] = rank

    def config(self, sid: bytes, handle: Any, items: dict[str, Any]) -> None:
        run_id = self.run_for(sid, handle)
        row = self.store.run(run_id) if run_id is not None else None
        if run_id is not None and row is not None:
            rank = self.ranks.get((sid, handle))
            stored = json.loads(row["config"])
            merged, conflicts = R.merge_config(stored, items, may_change=rank is None)
            if conflicts and rank is not None:
                self.notice(sid, R.conflict_text(conflicts, rank, stored, items))
            self.store.update_run(run_id, config=json.dumps(merged, default=str), updated_at=time.time())
            self.events.append(("config", run_id, items))

    def summary(self, sid: bytes, handle: Any, items: dict[str, Any], arrival: int) -> None:
        """``run.summary[...] = ...``: ``arrival`` is the batch's last arrival number when the frame came."""
        run_id = self.run_for(sid, handle)
        if run_id is not None:
            self._summary(run_id).set_explicit(items)
            self.dirty.add(run_id)
            for key, value in items.items():
                self._explicit_in_batch[(run_id, key)] = (arrival, value)

    def set_system_summary(self, run_id: int, items: dict[str, Any]) -> None:
        """Summary values the daemon computes itself (energy/*), written with the next commit."""
        self._summary(run_id).set_explicit(items)
        self.dirty.add(run_id)

    def define_metric(self, sid: bytes, handle: Any, spec: dict[str, Any]) -> None:
        run_id = self.run_for(sid, handle)
        if run_id is None or not isinstance(spec.get("name"), str):
            return
        summary = self._summary(run_id)
        summary.define(spec)
        self.store.update_run(run_id, metric_defs=json.dumps(summary.defs, default=str))
        self.dirty.add(run_id)

    def finish(self, sid: bytes, handle: Any, exit_code: int, ended_at: float) -> None:
        run_id = self.run_for(sid, handle)
        if run_id is None:
            return
        self.store.detach(sid, handle)
        self.store.ranks.finish(run_id, sid, exit_code, ended_at)
        self.ranks.pop((sid, handle), None)
        host, now = os.uname().nodename, time.time()
        others = [
            s
            for s in self.store.run_sessions(run_id)
            if s[0] != sid and not s[1] and _alive(s, host, now, self.heartbeat_timeout_s, self.last_seen)
        ]
        if others:
            return  # other live processes still log to this run (a dead one, e.g. before a restore, does not)
        state, exit_code = R.final_state(self.store, run_id, exit_code)
        self.store.update_run(run_id, state=state, exit_code=exit_code, ended_at=ended_at, updated_at=time.time())
        self._finished.add(run_id)
        self.events.append(("finish", run_id, state))
        log.info("run %d %s (exit code %d)", run_id, state, exit_code)

    def find_crashed(
        self,
        now: float,
        heartbeat_timeout: float,
        last_seen: dict[bytes, float],
        spooled: Callable[[bytes], bool] = lambda sid: False,
    ) -> list[int]:
        """Running runs none of whose processes is alive (read-only; see :meth:`mark_crashed`).

        A session whose spool files are not read yet still speaks: its run may end in a RUN_FINISH there, and
        showing it `crashed` until the file is read would be wrong (issue 18, finding 14).
        """
        host = os.uname().nodename
        crashed = []
        for row in self.store.active_runs():
            sessions = [s for s in self.store.run_sessions(row["id"]) if not s[1]]
            if not any(_alive(s, host, now, heartbeat_timeout, last_seen) or spooled(s[0]) for s in sessions):
                crashed.append(row["id"])
        return crashed

    def mark_crashed(self, run_ids: list[int], now: float) -> None:
        """End runs none of whose processes is alive: ``failed`` with its exit code if a rank reported one.

        A launcher (torchrun) kills the other ranks when one raises; they never finish, but the run failed,
        and the failing rank said how.
        """
        for run_id in run_ids:
            code = next((c for c in self.store.ranks.exit_codes(run_id) if c), None)
            if code is None:
                self.store.update_run(run_id, state="crashed", ended_at=now, updated_at=now)
                self.events.append(("finish", run_id, "crashed"))
                log.warning("run %d marked crashed: none of its processes is alive", run_id)
            else:
                self.store.update_run(run_id, state="failed", exit_code=code, ended_at=now, updated_at=now)
                self.events.append(("finish", run_id, "failed"))
                log.warning("run %d failed: a rank exited with code %d and the others are gone", run_id, code)

    # ------------------------------------------------------------------ points and summaries
    def write_points(self, columns: Columns) -> None:
        """Write a batch's series and texts, and feed the run summaries.

        Only the run's own series feed its summary: a series with a context has none (the key's summary is
        context-free), and ranks > 0 have none (the run's summary is rank 0's, as wandb's).
        """
        counts: dict[tuple[int, int], tuple[str, int, int]] = {}
        for key, parts in columns.series.items():
            run_id = key.run_id
            steps, times, vals = parts.merged()
            key_id = self.store.series_id(key)
            self.store.write_series(run_id, key_id, steps, times, vals)
            if key.context_id is None and key.rank is None:
                self._summary(run_id).add_numeric(key.name, vals)
                self._explicit_again(run_id, key.name, parts.last_arrival())
            counts[(run_id, key_id)] = ("scalar", int(steps.size), int(steps[-1]))
            self._saw_step(run_id, int(steps.max()))
        rows = []
        for key, step, ts, value in columns.texts:
            run_id = key.run_id
            key_id = self.store.series_id(key)
            rows.append((run_id, key_id, step, ts, value))
            if key.context_id is None and key.rank is None:
                self._summary(run_id).add_text(key.name, value)
                self._explicit_again(run_id, key.name, columns.text_arrivals.get(key, 0))
            _, n, _ = counts.get((run_id, key_id), ("text", 0, step))
            counts[(run_id, key_id)] = ("text", n + 1, step)  # "text": has text values (maybe numbers too)
            self._saw_step(run_id, step)
        self._explicit_in_batch.clear()
        if rows:
            self.store.write_texts(rows)
        if counts:
            self.store.count_keys(counts)
        for run_id, key_name, reason in columns.rejects:
            if (run_id, key_name, reason) not in self._told and len(self._told) < 100_000:
                self._told.add((run_id, key_name, reason))
                self.notice(self.run_sids.get(run_id), f"key {key_name!r}: {reason}; the rest of the call was kept")

    def _explicit_again(self, run_id: int, name: str, last_arrival: int) -> None:
        """Set ``name``'s explicit summary value again if it was set after the key's last point of the batch."""
        told = self._explicit_in_batch.get((run_id, name))
        if told is not None and told[0] >= last_arrival:
            self._summary(run_id).set_explicit({name: told[1]})

    def saw_step(self, run_id: int, step: int) -> None:
        """Note that ``run_id`` has data at ``step`` (its last_step is saved at the next commit)."""
        self._saw_step(run_id, step)

    def _saw_step(self, run_id: int, step: int) -> None:
        previous = self.last_steps.get(run_id)
        self.last_steps[run_id] = step if previous is None else max(previous, step)
        self.dirty.add(run_id)

    def save_dirty(self) -> None:
        now = time.time()
        for run_id in self.dirty:
            summary = self._summary(run_id)
            columns: dict[str, Any] = {
                "summary": json.dumps(summary.view(), default=str),
                "summary_state": json.dumps(summary.state(), default=str),
                "updated_at": now,
            }
            if run_id in self.last_steps:
                row = self.store.run(run_id)
                previous = row["last_step"] if row and row["last_step"] is not None else -1
                columns["last_step"] = max(previous, int(self.last_steps[run_id]))
            self.store.update_run(run_id, **columns)
            self.store.revive_run(run_id)
        self.dirty.clear()
        self.last_steps.clear()
        for run_id in self._finished:
            self.store.forget_tails(run_id)
            self.summaries.pop(run_id, None)
        self._finished.clear()

    @property
    def finishing(self) -> bool:
        """Whether the open transaction finishes a run (sync then pushes it soon after the commit)."""
        return bool(self._finished)

    def mark(self) -> object:
        """The book's state before one frame (see trackiod.ingest.guard), as shallow copies.

        Shallow is enough: these hold ids and small records, and a RunSummary changes only by replacement or
        by one dict.update of an already checked dict, which cannot fail halfway.
        """
        state = {name: copy.copy(getattr(self, name)) for name in _FRAME_STATE}
        return state, len(self.events)

    def undo_to(self, mark: object) -> None:
        assert isinstance(mark, tuple)
        state, events = mark
        for name, value in state.items():
            setattr(self, name, value)
        del self.events[events:]

    def reset(self) -> None:
        """Forget uncommitted state after a rollback; everything is re-read from the database."""
        _, self.handles = self.store.load_sessions()
        self.ranks = self.store.ranks.load()
        self.store.forget_tails()
        self.store.forget_names()
        self.summaries.clear()
        self._explicit_in_batch.clear()
        self.dirty.clear()
        self.last_steps.clear()
        self._finished.clear()
        self.events.clear()


def _alive(
    session: tuple[bytes, int, int, str | None, float | None, float],
    host: str,
    now: float,
    heartbeat_timeout: float,
    last_seen: dict[bytes, float],
) -> bool:
    sid, _, pid, session_host, proc_started, stored_seen = session
    if session_host == host and pid:
        if proc_started is None:
            return False
        try:
            proc = psutil.Process(pid)
            return bool(abs(proc.create_time() - proc_started) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False
    return now - max(last_seen.get(sid, 0.0), stored_seen or 0.0) < heartbeat_timeout
