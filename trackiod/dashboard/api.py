"""The dashboard's JSON API (docs/dashboard.md documents every endpoint and its response).

Handlers are plain functions run in Starlette's thread pool; each uses its thread's query-only connection.
``/api/chart`` also answers in a compact binary form (``format=bin``) that the front end uses: a 4-byte header
length, a JSON header, then float64 arrays. JSON numbers cost more to print and parse than the chart costs to
draw.
"""

from __future__ import annotations

import contextlib
import json
import struct
import time
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from trackio_shim.errors import UsageError
from trackio_shim.settings import TrackiodSettings
from trackiod.dashboard import reads, richvalues, system
from trackiod.dashboard.columns import ProjectColumns
from trackiod.dashboard.downsample import MAX_WIDTH, SeriesReducer, json_values
from trackiod.dashboard.rankseries import MODES as RANK_MODES
from trackiod.dashboard.rankseries import rank_series
from trackiod.read.alerts import alert_levels, list_alerts
from trackiod.read.connection import Readers
from trackiod.read.contexts import run_contexts
from trackiod.read.energy import run_energy
from trackiod.read.files import list_files
from trackiod.read.gallery import gallery
from trackiod.read.ranks import rank_counts
from trackiod.read.runs import get_run, list_projects, run_keys, running_runs, runs_by_key
from trackiod.read.stepvalues import ChartChunks, Scratch, Steps, StepSpan

#: Runs one chart request may name (a page asks once per chart, for every selected run).
MAX_RUNS_PER_CHART = 500
#: Points per run a JSON chart answer may carry when asked not to reduce (``width=0``).
DEFAULT_WIDTH = 800


class BadRequest(UsageError):
    """A request parameter is missing or malformed; answered with 400 and this message."""


class NotFound(UsageError):
    """The run (or key) a request names does not exist; answered with 404 and this message."""


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

    def __init__(self, settings: TrackiodSettings, readers: Readers) -> None:
        self.settings = settings
        self.readers = readers
        self.columns = ProjectColumns()

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
            ("/api/media/values", self.media_values),
            ("/api/alerts", self.alerts),
            ("/api/artifacts", self.artifacts),
            ("/api/sweep", self.sweep),
            ("/api/gallery", self.gallery),
        ]

    def handle(self, endpoint: Any, request: Request) -> Response:
        try:
            return endpoint(request)  # type: ignore[no-any-return]
        except BadRequest as exc:
            return _json({"error": str(exc)}, 400)
        except NotFound as exc:
            return _json({"error": str(exc)}, 404)

    # ------------------------------------------------------------------ endpoints
    def info(self, request: Request) -> Response:
        from trackiod import __version__

        return _json(
            {
                "version": __version__,
                "database": str(self.settings.db_path),
                "poll_interval_s": self.settings.dashboard_poll_interval_s,
                "max_width": MAX_WIDTH,
                "features": {"system": True, "media": True, "alerts": True, "artifacts": True, "ranks": True},
            }
        )

    def projects(self, request: Request) -> Response:
        conn = self.readers.get()
        if conn is None:
            return _json({"projects": []})
        rows = list_projects(conn)
        running = running_runs(conn)
        for row in rows:
            row["running"] = running.get(row["name"], 0)
        return _json({"projects": rows})

    def runs(self, request: Request) -> Response:
        project = _need(request, "project")
        since = _float(request, "updated_after")
        now = time.time()
        conn = self.readers.get()
        if conn is None:
            return _json({"columns": list(reads.RUN_COLUMNS), "rows": [], "now": now})
        fmt = request.query_params.get("format") or "rows"
        if fmt not in ("rows", "columns"):
            raise BadRequest(f"format must be 'rows' or 'columns', got {fmt!r}")
        if fmt == "columns" and since is None:
            body = self.columns.runs_json(conn, project)
        else:
            body = reads.runs_json(conn, project, since)
        return _raw_json(f'{body[:-1]},"now":{json.dumps(now)}}}')

    def run(self, request: Request) -> Response:
        project, run_key = _need(request, "project"), _need(request, "run")
        conn = self.readers.get()
        run = get_run(conn, project, run_key) if conn is not None else None
        if run is None or conn is None:
            return _json({"error": f"no run {run_key!r} in project {project!r}"}, 404)
        run_id = run["id"]
        keys = run_keys(conn, run_id)
        run["keys"] = [{"key": k, "kind": kind, "points": n} for k, (_, kind, n) in keys.items()]
        run["id"] = run.pop("run_key")
        run["group"] = run.pop("group_name")
        run.pop("project_id", None)
        report = run_energy(conn, {**run, "id": run_id, "project": project, "run_key": run["id"]})
        run["energy"] = report if report["recorded"] else None
        run["contexts"] = [
            {"key": c["key"], "context": c["context"], "points": c["points"]} for c in run_contexts(conn, run_id)
        ]
        run["files"] = [
            {k: f[k] for k in ("name", "size", "sha256", "policy", "updated_at")}
            for f in list_files(conn, self.settings.files_dir, {"id": run_id, "project": project, "run_key": run["id"]})
        ]
        return Response(json.dumps(run, default=str, allow_nan=False), media_type="application/json")

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
        counts = rank_counts(conn, [info["id"] for info in found.values()])
        ranks = {info["run"]: counts[info["id"]] for info in found.values() if counts.get(info["id"], 0) > 1}
        return _json({"keys": keys, "step_metrics": step_metrics, "ranks": ranks})

    def chart(self, request: Request) -> Response:
        """One metric for many runs, reduced to the chart's width and aligned on one x array."""
        project, key = _need(request, "project"), _need(request, "key")
        wanted = _list(request, "runs")
        if len(wanted) > MAX_RUNS_PER_CHART:
            raise BadRequest(f"at most {MAX_RUNS_PER_CHART} runs per chart request, got {len(wanted)}")
        xaxis = request.query_params.get("xaxis") or "step"
        width = self._width(request)
        xmin, xmax = _float(request, "xmin"), _float(request, "xmax")
        after = self._after(request)
        fmt = request.query_params.get("format") or "json"
        if fmt not in ("json", "bin"):
            raise BadRequest(f"format must be 'json' or 'bin', got {fmt!r}")
        ranks = request.query_params.get("ranks") or "0"
        if ranks not in RANK_MODES:
            raise BadRequest(f"ranks must be one of {', '.join(RANK_MODES)}, got {ranks!r}")
        conn = self.readers.get()
        found = reads.run_ids(conn, project, wanted) if conn is not None else {}
        kid = reads.key_id(conn, key) if conn is not None else None
        contexts = reads.contexts_of(conn, [info["id"] for info in found.values()], key) if conn is not None else {}
        zoom = (xmin, xmax) if xmin is not None and xmax is not None else None
        known = zoom or self._step_range(conn, found, kid, contexts, xaxis, after, ranks, xmin, xmax)
        reducer = SeriesReducer(width, known, zoom)
        # Whole series on a grid known beforehand are read value by value into one reused buffer and reduced at
        # once (trackiod.read.stepvalues): their steps come from the chunk rows.
        scratch = Scratch() if reducer.x_range is not None and zoom is None else None
        meta: list[dict[str, Any]] = []

        def add(run: str, extras: dict[str, Any], steps: Steps, x: Steps, y: np.ndarray, since: int | None) -> None:
            """One series into the chart: cut to the zoom, in x order, its header entry noted. A series read into
            ``scratch`` is reduced (or copied) here, before the next read overwrites it."""
            if "context" in extras and not y.size:
                return
            if isinstance(steps, StepSpan) or isinstance(x, StepSpan):  # whole, in step order by construction
                meta.append({"run": run, "points": int(y.size), "last_step": int(x.max()), **extras})
                reducer.add(x, y, borrowed=True)
                return
            if xmin is not None or xmax is not None:
                lo = np.searchsorted(x, xmin, "left") if xmin is not None else 0
                hi = np.searchsorted(x, xmax, "right") if xmax is not None else x.size
                steps, x, y = steps[lo:hi], x[lo:hi], y[lo:hi]
            if not _ascending(x):
                order = np.argsort(x, kind="stable")
                steps, x, y = steps[order], x[order], y[order]
            entry: dict[str, Any] = {
                "run": run,
                "points": int(y.size),
                "last_step": int(steps.max()) if steps.size else since,
            }
            entry.update(extras)
            meta.append(entry)
            reducer.add(x, y, borrowed=scratch is not None)

        # One read snapshot for the whole chart: its chunk rows are read once, then each series' values.
        with conn if conn is not None else contextlib.nullcontext():
            chunks = None
            if scratch is not None and conn is not None and kid is not None:
                every = [(info["id"], kid) for info in found.values()]
                every += [(info["id"], c) for info in found.values() for c, _ in contexts.get(info["id"], [])]
                chunks = ChartChunks(conn, every)
            for name in wanted:
                info = found.get(name)
                if info is None or conn is None:
                    continue
                # The plain series (or, in a rank view, the run's ranks), then one per context it was also logged with
                # (drawn as extra lines).
                since = after.get(info["run"])
                ranked = rank_series(conn, info, key, xaxis, since, ranks)
                for extras, steps, x, y in ranked or []:
                    add(info["run"], extras, steps, x, y, since)
                sources: list[tuple[dict[str, Any], int | None]] = [] if ranked else [({}, kid)]
                sources += [({"context": ctx}, ctx_kid) for ctx_kid, ctx in contexts.get(info["id"], [])]
                for extras, series_id in sources:
                    if chunks is not None and scratch is not None and series_id is not None:  # whole, step axis
                        read_steps, values = chunks.read(info["id"], series_id, scratch)
                        add(info["run"], extras, read_steps, read_steps, values, since)
                    else:
                        add(info["run"], extras, *reads.series_xy(conn, info, key, xaxis, since, series_id), since)
        grid, columns, reduced = reducer.result()
        header = {"key": key, "xaxis": xaxis, "width": width, "reduced": reduced, "series": meta}
        if fmt == "bin":
            return _binary(header, grid, columns)
        header["x"] = json_values(grid)
        for entry, column in zip(meta, columns):
            entry["y"] = json_values(column)
        return Response(json.dumps(header, allow_nan=False), media_type="application/json")

    @staticmethod
    def _step_range(
        conn: Any,
        found: dict[str, dict[str, Any]],
        kid: int | None,
        contexts: dict[int, list[tuple[int, dict[str, Any]]]],
        xaxis: str,
        after: dict[str, int],
        ranks: str,
        xmin: float | None,
        xmax: float | None,
    ) -> tuple[float, float] | None:
        """The chart's x range before reading any point, when it is the steps stored (a step x-axis over whole
        series, plain and context ones: no zoom, no live update, no rank view); else None."""
        if conn is None or xaxis != "step" or after or ranks != "0" or xmin is not None or xmax is not None:
            return None
        if kid is None:
            return None
        series = []
        for info in found.values():
            series.append((info["id"], kid))
            series.extend((info["id"], ctx_kid) for ctx_kid, _ in contexts.get(info["id"], []))
        return reads.step_range(conn, series)

    def system(self, request: Request) -> Response:
        """The selected runs' host series over each run's time, reduced per pixel, and their energy."""
        project = _need(request, "project")
        wanted = _list(request, "runs")
        if len(wanted) > MAX_RUNS_PER_CHART:
            raise BadRequest(f"at most {MAX_RUNS_PER_CHART} runs per system request, got {len(wanted)}")
        width = self._width(request)
        conn = self.readers.get()
        if conn is None:
            return _json({"available": False, "width": width, "charts": [], "energy": {}})
        runs = runs_by_key(conn, project, wanted)
        return _json(system.system_panel(conn, runs, width))

    def media(self, request: Request) -> Response:
        """A run's rich-value keys: kind, count and steps of each."""
        conn, run = self._run(request)
        return _json({"available": True, "keys": richvalues.media_index(conn, run["id"])})

    def media_values(self, request: Request) -> Response:
        """One rich-value key's values, shaped for its kind (a page of rows for tables)."""
        conn, run = self._run(request)
        key = _need(request, "key")
        offset = _int(request, "offset", 0)
        limit = _int(request, "limit", 50)
        if offset is None or limit is None or offset < 0 or not 1 <= limit <= richvalues.MAX_TABLE_PAGE:
            raise BadRequest(f"offset must be >= 0 and limit between 1 and {richvalues.MAX_TABLE_PAGE}")
        body = richvalues.media_values(
            conn, self.settings.media_dir, run["id"], key, _int(request, "step", None), offset, limit
        )
        if body is None:
            return _json({"error": f"run {run['run_key']!r} logged no rich values under key {key!r}"}, 404)
        return Response(json.dumps(body, allow_nan=False), media_type="application/json")

    def alerts(self, request: Request) -> Response:
        """Alerts of a project (or of one of its runs), newest first; ``level=WARN,ERROR`` keeps those levels, and
        ``levels`` counts every level (for the filters)."""
        project = _need(request, "project")
        limit = _int(request, "limit", 200) or 200
        if not 1 <= limit <= 1000:
            raise BadRequest(f"limit must be between 1 and 1000, got {limit}")
        conn = self.readers.get()
        if conn is None:
            return _json({"alerts": []})
        run = request.query_params.get("run") or None
        levels = [level.upper() for level in _list(request, "level")]
        return _json(
            {"alerts": list_alerts(conn, project, run, limit, levels), "levels": alert_levels(conn, project, run)}
        )

    def artifacts(self, request: Request) -> Response:
        """Artifact versions a run produced and used."""
        conn, run = self._run(request)
        return _json(richvalues.run_artifacts(conn, run["id"]))

    def sweep(self, request: Request) -> Response:
        """Every run's config and numeric summary as columns (binary, see trackiod.dashboard.columns)."""
        project = _need(request, "project")
        return Response(self.columns.sweep(self.readers.get(), project), media_type="application/octet-stream")

    def gallery(self, request: Request) -> Response:
        """Images (video, audio) across a project's runs, filtered by run, key and step, a page at a time."""
        project = _need(request, "project")
        offset = _int(request, "offset", 0)
        limit = _int(request, "limit", 60)
        if offset is None or limit is None or offset < 0 or not 1 <= limit <= 500:
            raise BadRequest("offset must be >= 0 and limit between 1 and 500")
        conn = self.readers.get()
        if conn is None:
            return _json({"total": 0, "offset": 0, "limit": limit, "items": [], "keys": [], "steps": [None, None]})
        body = gallery(
            conn,
            project,
            _list(request, "runs") or None,
            _list(request, "keys") or None,
            _int(request, "step_min", None),
            _int(request, "step_max", None),
            offset,
            limit,
        )
        return _json(body)

    # ------------------------------------------------------------------ helpers
    def _width(self, request: Request) -> int:
        width = _int(request, "width", DEFAULT_WIDTH) or DEFAULT_WIDTH
        if not 1 <= width <= MAX_WIDTH:
            raise BadRequest(f"width must be between 1 and {MAX_WIDTH} pixels, got {width}")
        return width

    def _run(self, request: Request) -> tuple[Any, dict[str, Any]]:
        """The connection and the run named by ``project`` and ``run``; NotFound if there is none."""
        project, run_key = _need(request, "project"), _need(request, "run")
        conn = self.readers.get()
        run = get_run(conn, project, run_key) if conn is not None else None
        if run is None:
            raise NotFound(f"no run {run_key!r} in project {project!r}")
        return conn, run

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


def _binary(header: dict[str, Any], grid: np.ndarray, columns: list[np.ndarray]) -> Response:
    """``uint32 header length | JSON header (padded to 8 bytes) | x | y per series`` (float64 LE, NaN = gap)."""
    header["n"] = int(grid.size)
    head = json.dumps(header, allow_nan=False).encode()
    head += b" " * (-(4 + len(head)) % 8)
    parts = [struct.pack("<I", len(head)), head, grid.astype("<f8").tobytes()]
    parts.extend(c.astype("<f8").tobytes() for c in columns)
    return Response(b"".join(parts), media_type="application/octet-stream")
