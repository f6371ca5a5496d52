"""The daemon's answers to QUERY messages: ``trackiod status``, stop, flush, sync, and what finish() prints.

As circus's commands do, each query is one function in :data:`QUERIES`, and every function sees the daemon only
through :class:`Served`, the few things queries need; so this module does not know the process that answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from trackio_shim.errors import UsageError
from trackiod.ingest.edits import delete_run, edit_run
from trackiod.ingest.ingest import Ingest
from trackiod.sync.worker import SyncWorker


class Served(Protocol):
    """What queries may use of the daemon (trackiod.daemon.process.Daemon provides it)."""

    @property
    def ingest(self) -> Ingest: ...

    @property
    def sync(self) -> SyncWorker: ...

    def request_shutdown(self, reason: str) -> None: ...

    def status(self) -> dict[str, Any]: ...


#: ``query(daemon, sid, args) -> (ok, body)``: the answer to one QUERY from session ``sid``.
Query = Callable[[Served, bytes, dict[str, Any]], tuple[bool, Any]]


def _status(daemon: Served, sid: bytes, args: dict[str, Any]) -> tuple[bool, Any]:
    return True, daemon.status()


def _stop(daemon: Served, sid: bytes, args: dict[str, Any]) -> tuple[bool, Any]:
    daemon.request_shutdown("trackiod stop")
    return True, None


def _summary(daemon: Served, sid: bytes, args: dict[str, Any]) -> tuple[bool, Any]:
    daemon.ingest.commit()
    body = daemon.ingest.runs.summary_view(sid, args.get("handle"))
    return body is not None, body


def _flush(daemon: Served, sid: bytes, args: dict[str, Any]) -> tuple[bool, Any]:
    return daemon.ingest.commit(), None


def _sync(daemon: Served, sid: bytes, args: dict[str, Any]) -> tuple[bool, Any]:
    """``trackiod sync --now``: a pass now, paused repositories included."""
    daemon.ingest.commit()
    return True, {"ticket": daemon.sync.request(0.0, unpause=True)}


def _sync_status(daemon: Served, sid: bytes, args: dict[str, Any]) -> tuple[bool, Any]:
    return True, daemon.sync.status()


def _run_info(daemon: Served, sid: bytes, args: dict[str, Any]) -> tuple[bool, Any]:
    """What finish() prints: the run's stored points and state."""
    ingest = daemon.ingest
    ingest.commit()
    key: Any = (sid, args.get("handle"))  # whatever the client sent: a key no run has finds nothing
    run_id = ingest.runs.handles.get(key)
    row = ingest.store.run(run_id) if run_id is not None else None
    if run_id is None or row is None:
        return False, None
    return True, {"points": ingest.store.run_points(run_id), "state": row["state"], "last_step": row["last_step"]}


def _edit_run(daemon: Served, sid: bytes, args: dict[str, Any]) -> tuple[bool, Any]:
    """The dashboard's rename / tags / notes: applied between batches, answered with the run as stored."""
    return _edit(daemon, args, lambda store, project, run: edit_run(store, project, run, args))


def _delete_run(daemon: Served, sid: bytes, args: dict[str, Any]) -> tuple[bool, Any]:
    media = daemon.ingest.media
    return _edit(daemon, args, lambda store, project, run: delete_run(store, media, project, run))


def _edit(daemon: Served, args: dict[str, Any], apply: Callable[[Any, str, str], dict[str, Any]]) -> tuple[bool, Any]:
    project, run = args.get("project"), args.get("run")
    if not isinstance(project, str) or not isinstance(run, str):
        return False, "project and run must be given as strings"
    if not daemon.ingest.commit():
        return False, "the store is not writable right now (see trackiod status)"
    try:
        return True, apply(daemon.ingest.store, project, run)
    except UsageError as exc:
        return False, str(exc)


QUERIES: dict[str, Query] = {
    "status": _status,
    "stop": _stop,
    "summary": _summary,
    "flush": _flush,
    "sync": _sync,
    "sync_status": _sync_status,
    "run_info": _run_info,
    "edit_run": _edit_run,
    "delete_run": _delete_run,
}


def answer_query(daemon: Served, sid: bytes, what: Any, args: dict[str, Any]) -> tuple[bool, Any]:
    """The answer ``(ok, body)`` to a QUERY ``what`` from session ``sid``; an unknown one is refused."""
    query = QUERIES.get(what) if isinstance(what, str) else None
    if query is None:
        return False, f"unknown query {what!r}"
    return query(daemon, sid, args)
