"""The dashboard's writes: rename a run, set its tags and notes, delete it (docs/dashboard.md, "Editing runs").

The dashboard only reads the store; a write is sent to the daemon (the single writer) as an ``edit_run`` /
``delete_run`` QUERY through the ``control`` function its owner gives it (trackiod.daemon.control.request), and the
page shows the daemon's answer, the run as stored. Refused with 403 when the dashboard is read-only (served off
loopback without a token set by the user, docs/security.md), with 415 unless the body is JSON (a cross-site form
cannot send that without the browser asking first, which this server never allows), and with 503 when no daemon
answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

#: ``control(query, args) -> (ok, body)``, or None when no daemon answered in time.
Control = Callable[[str, dict[str, Any]], "tuple[bool, Any] | None"]


class RunWrites:
    """The POST endpoints; ``control`` None or ``writable`` False makes every write a clear refusal."""

    def __init__(self, control: Control | None, writable: bool) -> None:
        self.control = control
        self.writable = writable

    def routes(self) -> list[tuple[str, Any]]:
        return [("/api/run/edit", self.edit), ("/api/run/delete", self.delete)]

    async def edit(self, request: Request) -> Response:
        return await self._write(request, "edit_run", ("name", "tags", "notes"))

    async def delete(self, request: Request) -> Response:
        return await self._write(request, "delete_run", ())

    async def _write(self, request: Request, query: str, fields: tuple[str, ...]) -> Response:
        if not self.writable:
            return _error(
                403,
                "this dashboard is read-only: it is served off loopback without a token of yours; set "
                "TRACKIOD_DASHBOARD_TOKEN to allow edits (docs/security.md)",
            )
        if self.control is None:
            return _error(503, "this dashboard has no daemon to write through; start one with `trackiod start`")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send the edit as a JSON body (Content-Type: application/json)")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object with project and run")
        args = {k: body[k] for k in ("project", "run", *fields) if k in body}
        answer = await run_in_threadpool(self.control, query, args)
        if answer is None:
            return _error(503, "no daemon answered; start one with `trackiod start` and try again")
        ok, result = answer
        if not ok:
            return _error(400, str(result))
        return JSONResponse(result)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
