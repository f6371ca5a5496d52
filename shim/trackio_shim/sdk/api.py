"""A read API shaped like wandb's public API: ``Api().runs("project")``, ``Api().run("project/id")``.

It reads the daemon's SQLite file directly (query-only), so it works with the daemon stopped. The store
reader (trackiod.read.series, with apsw and numpy, reached through trackio_shim._local) is imported on first use,
never at ``import trackio_shim``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from itertools import chain, groupby
from pathlib import Path
from typing import Any

from trackio_shim._warn import warn_once
from trackio_shim.errors import RunNotFoundError, UsageError
from trackio_shim.settings import TrackiodSettings


class ApiRun:
    """One stored run: metadata plus ``history()`` and ``scan_history()``."""

    def __init__(self, api: Api, row: dict[str, Any]) -> None:
        self._api = api
        self._row = row
        self.id: str = row["run_key"]
        self.name: str = row["name"]
        self.project: str = row["project"]
        self.state: str = row["state"]
        self.exit_code: int | None = row["exit_code"]
        self.config: dict[str, Any] = row["config"]
        self.summary: dict[str, Any] = row["summary"]
        self.tags: list[str] = row["tags"]
        self.notes: str | None = row["notes"]
        self.group: str | None = row["group_name"]
        self.job_type: str | None = row["job_type"]
        self.mode: str = row["mode"]
        self.host: str | None = row["host"]
        self.metric_definitions: list[dict[str, Any]] = row["metric_defs"]
        from datetime import datetime, timezone

        self.created_at = datetime.fromtimestamp(row["created_at"], timezone.utc).isoformat()
        self.ended_at = datetime.fromtimestamp(row["ended_at"], timezone.utc).isoformat() if row["ended_at"] else None
        self.last_step: int | None = row["last_step"]

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    def scan_history(
        self,
        keys: list[str] | None = None,
        page_size: int = 1000,
        min_step: int | None = None,
        max_step: int | None = None,
        context: dict[str, Any] | None = None,
        ranks: Any = None,
    ) -> Iterator[dict[str, Any]]:
        """Every history row as a dict (``_step``, ``_timestamp``, ``_runtime`` and the keys), in step order.

        With ``keys``, only rows that have all of those keys, as in wandb. As in wandb, ``min_step`` is
        inclusive and ``max_step`` exclusive (``max_step=run.last_step + 1`` reads to the end). With
        ``context``, the rows of the series logged with exactly that context instead of the context-free ones.
        With ``ranks`` (``"all"``, a rank or a list) of a distributed run, every row of those ranks with a
        ``_rank`` column, by rank then step (docs/ranks.md).
        """
        # Rows are read and made a page at a time; chaining the pages keeps a generator step off each row.
        return chain.from_iterable(self._history_pages(keys, min_step, max_step, context, ranks))

    def _history_pages(
        self,
        keys: list[str] | None,
        min_step: int | None,
        max_step: int | None,
        context: dict[str, Any] | None,
        ranks: Any,
    ) -> Iterator[list[dict[str, Any]]]:
        from trackio_shim import _local

        if ranks is not None:
            wanted = None if ranks == "all" else _rank_list(ranks)
            last = None if max_step is None else max_step - 1
            with self._api._reader() as conn:
                rank_rows = list(_local.ranks.rank_history(conn, self._row, keys, wanted, min_step, last))
            yield [row for row in rank_rows if not keys or all(key in row for key in keys)]
            return
        if context:
            yield list(self._context_rows(context, keys, min_step, max_step))
            return

        from trackio_shim.media.refs import wrap_row

        last = None if max_step is None else max_step - 1
        media_dir = self._api.settings.media_dir
        with self._api._reader() as conn:
            pages = _local.runs.history_pages(conn, self._row, keys, min_step, last)
            if not _local.media.media_keys(conn, self._row["id"]):  # no rich values: nothing to wrap
                yield from pages
                return
            for page in pages:
                yield [wrap_row(row, media_dir) for row in page]

    def media(self, key: str, min_step: int | None = None, max_step: int | None = None) -> list[Any]:
        """Every stored rich value of ``key`` (histograms, arrays, images, tables, HTML), by step, as
        :class:`~trackio_shim.media.refs.MediaRef`; ``min_step`` inclusive, ``max_step`` exclusive."""
        from trackio_shim import _local
        from trackio_shim.media.refs import MediaRef

        last = None if max_step is None else max_step - 1
        with self._api._reader() as conn:
            entry = _local.media.media_keys(conn, self._row["id"]).get(key)
            if entry is None:
                return []
            _, _, values = _local.media.read_media(conn, self._row["id"], entry[0], min_step, last)
        return [MediaRef(v, self._api.settings.media_dir) for v in values]

    def history(
        self,
        samples: int = 500,
        keys: list[str] | None = None,
        x_axis: str = "_step",
        pandas: bool = True,
        stream: str = "default",
        context: dict[str, Any] | None = None,
        ranks: Any = None,
    ) -> Any:
        """At most ``samples`` rows spread over the run; a pandas DataFrame when pandas is installed.

        With ``context``, the series logged with exactly that context (see :meth:`contexts`). With ``ranks``
        (``"all"`` or a list of ranks) of a distributed run, one row per rank and step with a ``_rank`` column,
        at most ``samples`` rows per rank (docs/ranks.md); without it, rank 0's series, as one process's run reads.
        """
        from trackio_shim import _local
        from trackio_shim.media.refs import wrap_row

        if ranks is not None:
            wanted = None if ranks == "all" else _rank_list(ranks)
            with self._api._reader() as conn:
                every = list(_local.ranks.rank_history(conn, self._row, keys, wanted))
            rows = []  # ``samples`` rows for each rank, not across them (a rank's rows are consecutive)
            for _, of_rank in groupby(every, key=lambda row: row["_rank"]):
                rows += _spread(list(of_rank), samples)
        elif context:
            rows = list(self._context_rows(context, keys, None, None))
            rows = _spread(rows, samples)
        else:
            media_dir = self._api.settings.media_dir
            with self._api._reader() as conn:
                rows = [
                    wrap_row(r, media_dir) for r in _local.runs.history_rows(conn, self._row, keys, samples=samples)
                ]
        return _as_frame(rows, pandas)

    def ranks(self) -> list[dict[str, Any]]:
        """The ranks of a distributed run: ``{rank, host, pid, local_rank, joined_at, exit_code, ended_at}``."""
        from trackio_shim import _local

        with self._api._reader() as conn:
            return _local.ranks.run_ranks(conn, self._row["id"])

    def rank_aggregates(self, key: str, ranks: Any = None, pandas: bool = True) -> Any:
        """Per-step ``mean, min, max, std, count`` of ``key`` across ranks (all, or a list); docs/ranks.md."""
        from trackio_shim import _local

        with self._api._reader() as conn:
            agg = _local.ranks.rank_aggregates(
                conn, self._row["id"], key, None if ranks in (None, "all") else _rank_list(ranks)
            )
        rows = [
            {
                "_step": int(step),
                "mean": float(mean),
                "min": float(lo),
                "max": float(hi),
                "std": float(std),
                "count": int(n),
            }
            for step, mean, lo, hi, std, n in zip(
                agg["steps"], agg["mean"], agg["min"], agg["max"], agg["std"], agg["count"]
            )
        ]
        return _as_frame(rows, pandas)

    def energy(self, grid_g_per_kwh: float | None = None) -> dict[str, Any]:
        """GPU energy of this run: ``gpu_joules``, ``gpu_kwh``, ``gpu_hours``, ``co2eq_kg``, per-GPU figures.

        Live while the run runs. ``grid_g_per_kwh`` recomputes the emissions at another grid intensity
        (gCO2eq/kWh) than the daemon's; docs/api.md lists every field.
        """
        from trackio_shim import _local

        with self._api._reader() as conn:
            return _local.energy.run_energy(conn, self._row, grid_g_per_kwh)

    def _context_rows(
        self, context: dict[str, Any], keys: list[str] | None, min_step: int | None, max_step: int | None
    ) -> Iterator[dict[str, Any]]:
        from trackio_shim import _local

        with self._api._reader() as conn:
            rows = _local.contexts.context_history(conn, self._row["id"], context, keys)
        created = float(self._row["created_at"])
        for row in rows:
            if (min_step is None or row["_step"] >= min_step) and (max_step is None or row["_step"] < max_step):
                row["_runtime"] = max(0.0, row["_timestamp"] - created)
                yield row

    def contexts(self) -> list[dict[str, Any]]:
        """Every series logged with a context: ``{"key", "context", "points"}``."""
        from trackio_shim import _local

        with self._api._reader() as conn:
            return [
                {k: v for k, v in s.items() if k != "key_id"}
                for s in _local.contexts.run_contexts(conn, self._row["id"])
            ]

    def series(self, key: str, context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``key``'s series, one per context (context-free first): ``{"context", "steps", "values"}``.

        With ``context``, only series whose context includes all of its items.
        """
        from trackio_shim import _local

        with self._api._reader() as conn:
            found = _local.contexts.context_series(conn, self._row["id"], key, context)
        return [{"context": ctx, "steps": s.tolist(), "values": v.tolist()} for ctx, (s, _, v) in found]

    def alerts(self) -> list[dict[str, Any]]:
        """This run's alerts, newest first, with their delivery status."""
        from trackio_shim import _local

        with self._api._reader() as conn:
            return _local.alerts.list_alerts(conn, self.project, self.id)

    def files(self) -> list[dict[str, Any]]:
        """The files save() stored for this run: ``name``, ``size``, ``sha256``, ``copies``, ``path``."""
        from trackio_shim import _local

        with self._api._reader() as conn:
            return _local.files.list_files(conn, self._api.settings.files_dir, self._row)

    def __repr__(self) -> str:
        return f"<ApiRun {self.path} ({self.state})>"


class _Reader:
    """``with api._reader() as conn``: this thread's connection of the Api, kept open between calls."""

    def __init__(self, api: Api) -> None:
        self._api = api

    def __enter__(self) -> Any:
        return self._api._readers().open()

    def __exit__(self, *exc: object) -> None:
        pass


class Api:
    """Read access to everything the local daemon stored.

    Its query-only connections (one per thread, mapping the file) stay open while the Api is in use, so that
    repeated reads (a history per run of a project) do not pay for opening, mapping and unmapping each time;
    they close when the Api is garbage-collected.
    """

    def __init__(self, overrides: dict[str, Any] | None = None, timeout: int | None = None, **kwargs: Any) -> None:
        self.settings = TrackiodSettings.load(**{k: v for k, v in (overrides or {}).items() if k == "home"})
        self._connections: Any = None

    def _readers(self) -> Any:
        """The Api's :class:`trackiod.read.connection.Readers`, made at the first read (loading trackiod)."""
        if self._connections is None:
            from trackio_shim import _local

            self._connections = _local.connection.Readers(self.settings.db_path)
            weakref.finalize(self, self._connections.close)
        return self._connections

    def _reader(self) -> _Reader:
        return _Reader(self)

    def projects(self) -> list[str]:
        """Names of every project."""
        from trackio_shim import _local

        with self._reader() as conn:
            return [p["name"] for p in _local.runs.list_projects(conn)]

    def runs(
        self,
        path: str | None = None,
        filters: dict[str, Any] | None = None,
        order: str | None = None,
        per_page: int | None = None,
    ) -> list[ApiRun]:
        """Runs of a project (``"project"`` or ``"entity/project"``), newest first; all runs with no path."""
        from trackio_shim import _local

        project = path.split("/")[-1] if path else None
        with self._reader() as conn:
            rows = _local.runs.list_runs(conn, project)
        runs = [ApiRun(self, row) for row in rows]
        for key, value in (filters or {}).items():
            runs = [r for r in runs if getattr(r, key, r.config.get(key)) == value]
        return runs

    def energy(self, project: str | None = None, grid_g_per_kwh: float | None = None) -> list[dict[str, Any]]:
        """Energy reports (as :meth:`ApiRun.energy`) of every run, or of one project's, newest first."""
        from trackio_shim import _local

        with self._reader() as conn:
            return _local.energy.energy_reports(conn, project, grid_g_per_kwh)

    def run(self, path: str) -> ApiRun:
        """One run by ``"project/run_id"`` (an ``"entity/"`` prefix is accepted and ignored).

        Raises:
            UsageError: the path is not of that form.
            RunNotFoundError: there is no such run.
        """
        from trackio_shim import _local

        parts = path.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"run path {path!r} must look like 'project/run_id'")
        project, run_id = parts[-2], parts[-1]
        with self._reader() as conn:
            row = _local.runs.get_run(conn, project, run_id)
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r} in project {project!r}")
        return ApiRun(self, row)

    def artifact(self, name: str) -> Any:
        """One artifact version, ``"project/name:alias"`` (or ``:vN``), with its files, producer and users.

        Its ``download()`` materialises the files and returns their path.

        Raises:
            ArtifactNotFoundError: no such artifact, version or alias.
        """
        from trackio_shim import _local

        project, artifact, alias = _local.artifacts.parse_ref(name, None)
        with self._reader() as conn:
            info = _local.artifacts.resolve(conn, project, artifact, alias)
        dest = self.settings.artifacts_dir / project / artifact / f"v{info['version']}"
        return _LazyArtifact(info, dest, self.settings)

    def artifacts(self, project: str | None = None) -> list[dict[str, Any]]:
        """Every artifact version (of one project), newest first, with aliases and lineage."""
        from trackio_shim import _local

        with self._reader() as conn:
            return _local.artifacts.list_artifacts(conn, project)

    def alerts(self, project: str | None = None) -> list[dict[str, Any]]:
        """Every alert (of one project), newest first."""
        from trackio_shim import _local

        with self._reader() as conn:
            return _local.alerts.list_alerts(conn, project)


class _LazyArtifact:
    """An artifact version from the read API; its files are materialised on ``download()``."""

    def __init__(self, info: dict[str, Any], dest: Path, settings: TrackiodSettings) -> None:
        self.info = info
        self._dest = dest
        self._settings = settings
        self.name: str = info["name"]
        self.type: str = info["type"]
        self.version = f"v{info['version']}"
        self.aliases: list[str] = info["aliases"]
        self.metadata: dict[str, Any] = info["metadata"]
        self.digest: str = info["digest"]
        self.producer: str | None = info["producer"]
        self.used_by: list[str] = info["used_by"]
        self.files = [e["name"] for e in info["entries"]]

    def download(self, root: Any = None) -> str:
        """Materialise the files (under TRACKIOD_HOME, or copies in ``root``) and return their path."""
        from trackio_shim import _local

        if root is not None:
            return str(
                _local.artifacts.export(
                    self.info,
                    self._settings.blobs_dir,
                    root if hasattr(root, "mkdir") else __import__("pathlib").Path(root),
                )
            )
        return str(_local.artifacts.materialise(self.info, self._settings.blobs_dir, self._dest))

    def __repr__(self) -> str:
        return f"<Artifact {self.name}:{self.version} ({self.type})>"


def _spread(rows: list[dict[str, Any]], samples: int) -> list[dict[str, Any]]:
    """At most ``samples`` of ``rows``, evenly spread, first and last kept."""
    if len(rows) > samples > 0:
        step = (len(rows) - 1) / max(samples - 1, 1)
        rows = [rows[round(i * step)] for i in range(samples)]
    return rows


def _as_frame(rows: list[dict[str, Any]], pandas: bool) -> Any:
    """``rows`` as a pandas DataFrame when asked and pandas is installed, else as they are."""
    if pandas:
        try:
            import pandas as pd
        except ImportError:
            warn_once("no-pandas", "trackio_shim: pandas is not installed; history() returns a list of dicts")
            return rows
        return pd.DataFrame(rows)
    return rows


def _rank_list(ranks: Any) -> list[int]:
    if isinstance(ranks, int) and not isinstance(ranks, bool):
        return [ranks]
    if isinstance(ranks, (list, tuple, set)) and all(type(r) is int for r in ranks):
        return sorted(ranks)
    raise UsageError(f"ranks={ranks!r}: pass 'all', a rank or a list of ranks")
