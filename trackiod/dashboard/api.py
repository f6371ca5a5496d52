"""The dashboard's JSON API (docs/dashboard.md documents every endpoint and its response).

Handlers are plain functions run in Starlette's thread pool; each uses its thread's query-only connection.
``/api/chart`` also answers in a compact binary form (``format=bin``) that the front end uses: a 4-byte header
length, a JSON header, then float64 arrays. JSON numbers cost more to print and parse than the chart costs to
draw.
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from trackio_shim.settings import TrackiodSettings

from .. import query
from . import reads
from .downsample import MAX_WIDTH, align

#: Runs one chart request may name (a page asks once per chart, for every selected run).
MAX_RUNS_PER_CHART = 500
#: Points per run a JSON chart answer may carry when asked not to reduce (``width=0``).
DEFAULT_WIDTH = 800


class BadRequest(Exception):
    """A request parameter is missing or malformed; answered with 400 and this message."""


def _json(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status)


def _raw_json(text: str) -> Response:
    return Response(text, media_type="application/json")


def _need(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise BadRequest(f"missing query parameter {name!r}")
    return value


def _int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer, got {raw!r}")


def _float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a number, got {raw!r}")


def _list(request: Request, name: str) -> list[str]:
    """A list given as ``name=a,b`` or repeated ``name=a&name=b`` (repeat it for names with commas)."""
    values = request.query_params.getlist(name)
    if len(values) == 1:
        values = values[0].split(",")
    return [v for v in values if v]


class Api:
    """The endpoints, bound to one database and one settings object."""

    def __init__(self, settings: TrackiodSettings, readers: reads.Readers) -> None:
        self.settings = settings
        self.readers = readers

    def routes(self) -> list[tuple[str, Any]]:
        return [
            ("/api/info", self.info),
            ("/api/projects", self.projects),
            ("/api/runs", self.runs),
            ("/api/run", self.run),
            ("/api/keys", self.keys),
            ("/api/chart", self.chart),
            ("/api/system", self.system),
            ("/api/media", self.media),
        ]

    def handle(self, endpoint: Any, request: Request) -> Response:
        try:
            return endpoint(request)  # type: ignore[no-any-return]
        except BadRequest as exc:
            return _json({"error": str(exc)}, 400)

    # ------------------------------------------------------------------ endpoints
    def info(self, request: Request) -> Response:
        from .. import __version__

        return _json(
            {
                "version": __version__,
                "database": str(self.settings.db_path),
                "poll_interval_s": self.settings.dashboard_poll_interval_s,
                "max_width": MAX_WIDTH,
                "features": {"system": False, "media": False, "ranks": False},
            }
        )

    def projects(self, request: Request) -> Response:
        conn = self.readers.get()
        if conn is None:
            return _json({"projects": []})
        rows = query.list_projects(conn)
        running: dict[str, int] = dict(
            conn.execute(  # type: ignore[arg-type]
                "SELECT p.name, COUNT(*) FROM runs r JOIN projects p ON p.id = r.project_id "
                "WHERE r.state='running' GROUP BY p.id"
            ).fetchall()
        )
        for row in rows:
            row["running"] = int(running.get(row["name"], 0))
        return _json({"projects": rows})

    def runs(self, request: Request) -> Response:
        project = _need(request, "project")
        since = _float(request, "updated_after")
        now = time.time()
        conn = self.readers.get()
        if conn is None:
            return _json({"columns": list(reads.RUN_COLUMNS), "rows": [], "now": now})
        body = reads.runs_json(conn, project, since)
        return _raw_json(f'{body[:-1]},"now":{json.dumps(now)}}}')

    def run(self, request: Request) -> Response:
        project, run_key = _need(request, "project"), _need(request, "run")
        conn = self.readers.get()
        run = query.get_run(conn, project, run_key) if conn is not None else None
        if run is None or conn is None:
            return _json({"error": f"no run {run_key!r} in project {project!r}"}, 404)
        keys = query.run_keys(conn, run["id"])
        run["keys"] = [{"key": k, "kind": kind, "points": n} for k, (_, kind, n) in keys.items()]
        run["id"] = run.pop("run_key")
        run["group"] = run.pop("group_name")
        run.pop("project_id", None)
        run["energy"] = None  # filled once GPU sampling (issue 4) stores energy per run
        run["media"] = []  # filled once media (issue 3) is stored
        return Response(json.dumps(run, default=str), media_type="application/json")

    def keys(self, request: Request) -> Response:
        project = _need(request, "project")
        wanted = _list(request, "runs")
        conn = self.readers.get()
        if conn is None:
            return _json({"keys": [], "step_metrics": {}})
        found = reads.run_ids(conn, project, wanted)
        keys = reads.metric_keys(conn, [r["id"] for r in found.values()])
        step_metrics: dict[str, str] = {}
        for info in found.values():
            for entry in keys:
                metric = reads.step_metric(info["metric_defs"], entry["key"])
                if metric:
                    step_metrics.setdefault(entry["key"], metric)
        return _json({"keys": keys, "step_metrics": step_metrics})

    def chart(self, request: Request) -> Response:
        """One metric for many runs, reduced to the chart's width and aligned on one x array."""
        project, key = _need(request, "project"), _need(request, "key")
        wanted = _list(request, "runs")
        if len(wanted) > MAX_RUNS_PER_CHART:
            raise BadRequest(f"at most {MAX_RUNS_PER_CHART} runs per chart request, got {len(wanted)}")
        xaxis = request.query_params.get("xaxis") or "step"
        width = _int(request, "width", DEFAULT_WIDTH) or DEFAULT_WIDTH
        if not 1 <= width <= MAX_WIDTH:
            raise BadRequest(f"width must be between 1 and {MAX_WIDTH} pixels, got {width}")
        xmin, xmax = _float(request, "xmin"), _float(request, "xmax")
        after = self._after(request)
        fmt = request.query_params.get("format") or "json"
        if fmt not in ("json", "bin"):
            raise BadRequest(f"format must be 'json' or 'bin', got {fmt!r}")
        conn = self.readers.get()
        found = reads.run_ids(conn, project, wanted) if conn is not None else {}
        meta: list[dict[str, Any]] = []
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        for name in wanted:
            info = found.get(name)
            if info is None or conn is None:
                continue
            steps, x, y = reads.series_xy(conn, info, key, xaxis, after.get(info["run"]))
            if xmin is not None or xmax is not None:
                lo = np.searchsorted(x, xmin, "left") if xmin is not None else 0
                hi = np.searchsorted(x, xmax, "right") if xmax is not None else x.size
                steps, x, y = steps[lo:hi], x[lo:hi], y[lo:hi]
            if not _ascending(x):
                order = np.argsort(x, kind="stable")
                steps, x, y = steps[order], x[order], y[order]
            meta.append(
                {
                    "run": info["run"],
                    "points": int(y.size),
                    "last_step": int(steps.max()) if steps.size else after.get(info["run"]),
                }
            )
            xs.append(x)
            ys.append(y)
        x_range = (xmin, xmax) if xmin is not None and xmax is not None else None
        grid, columns, reduced = align(xs, ys, width, x_range)
        header = {"key": key, "xaxis": xaxis, "width": width, "reduced": reduced, "series": meta}
        if fmt == "bin":
            return _binary(header, grid, columns)
        header["x"] = _nulls(grid)
        for entry, column in zip(meta, columns):
            entry["y"] = _nulls(column)
        return Response(json.dumps(header, allow_nan=False), media_type="application/json")

    def system(self, request: Request) -> Response:
        """System series (GPU power, utilisation, memory, energy, CPU, memory) for runs; empty until issue 4."""
        _need(request, "project")
        return _json({"available": False, "series": [], "energy": {}})

    def media(self, request: Request) -> Response:
        """A run's media (images, tables, histograms by step); empty until issue 3 stores media."""
        _need(request, "project")
        _need(request, "run")
        return _json({"available": False, "items": []})

    # ------------------------------------------------------------------ helpers
    def _after(self, request: Request) -> dict[str, int]:
        """``after=RUN:STEP,RUN:STEP``: only points logged at later steps, for live updates."""
        out: dict[str, int] = {}
        for item in _list(request, "after"):
            run, sep, step = item.rpartition(":")
            if not sep or not run:
                raise BadRequest(f"after must be RUN:STEP pairs, got {item!r}")
            try:
                out[run] = int(step)
            except ValueError:
                raise BadRequest(f"after must be RUN:STEP pairs with an integer step, got {item!r}")
        return out


def _ascending(x: np.ndarray) -> bool:
    return x.size < 2 or bool(np.all(x[1:] >= x[:-1]))


def _nulls(values: np.ndarray) -> list[Any]:
    out: list[Any] = values.tolist()
    nan = np.flatnonzero(np.isnan(values))
    for i in nan.tolist():
        out[i] = None
    return out


def _binary(header: dict[str, Any], grid: np.ndarray, columns: list[np.ndarray]) -> Response:
    """``uint32 header length | JSON header (padded to 8 bytes) | x | y per series`` (float64 LE, NaN = gap)."""
    header["n"] = int(grid.size)
    head = json.dumps(header, allow_nan=False).encode()
    head += b" " * (-(4 + len(head)) % 8)
    parts = [struct.pack("<I", len(head)), head, grid.astype("<f8").tobytes()]
    parts.extend(c.astype("<f8").tobytes() for c in columns)
    return Response(b"".join(parts), media_type="application/octet-stream")
