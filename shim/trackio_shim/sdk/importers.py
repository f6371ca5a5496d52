"""Importing CSV files and TensorBoard event files as runs, trackio-compatible (docs/api.md, "Import").

An import is a real run logged through the shim and the daemon, like any training script's: the daemon stays
the only writer, and imported runs sync, export and show like the others. Each row keeps its step and, when
the file has one, its timestamp; the run starts at the first timestamp and ends at the last. TensorBoard files
are decoded by :mod:`trackio_shim.event_files`, as the daemon decodes them for ``sync_tensorboard``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from trackio_shim import event_files
from trackio_shim import protocol as P
from trackio_shim._warn import warn_once
from trackio_shim.errors import ProjectExistsError, UsageError
from trackio_shim.sdk.run_start import run_params, start_run
from trackio_shim.sdk.wandb_run import Run
from trackio_shim.settings import TrackiodSettings

#: How long an import waits for the daemon to acknowledge its rows before finishing the run (then: the spool).
ACK_TIMEOUT_S = 120.0

#: ``(step, timestamp, values)``: one LOG; a MediaRow is one MEDIA (values are rich values in their wire shape).
Row = tuple[int, float, dict[str, Any]]
MediaRow = tuple[int, float, dict[str, dict[str, Any]]]


def check_project(settings: TrackiodSettings, project: str, force: bool) -> None:
    """Refuse to import into a project that already has runs, unless ``force``.

    Raises:
        ProjectExistsError: the project exists and ``force`` is False.
    """
    if force:
        return
    from trackio_shim import _local

    try:
        conn = _local.connection.open_reader(settings.db_path)
    except FileNotFoundError:
        return
    try:
        count = len(_local.runs.list_runs(conn, project))
    finally:
        conn.close()
    if count:
        raise ProjectExistsError(
            f"project {project!r} already has {count} run(s); pass force=True (--force) to import into it anyway, "
            "or choose another project name"
        )


def log_run(
    settings: TrackiodSettings,
    rows: Iterable[Row],
    project: str,
    name: str | None,
    space_id: str | None,
    dataset_id: str | None,
    config: dict[str, Any],
    started: float | None,
    media: Iterable[MediaRow] = (),
) -> Run:
    """Start a run, log ``(step, timestamp, values)`` rows (and ``media`` rows of rich values) to it with their
    own timestamps, and finish it at the last of them: the run lasts as long as the data says, not until now."""
    params = run_params(project, name=name, tags=["imported"], space_id=space_id, dataset_id=dataset_id)
    run, link = start_run(settings, params, config, None, False, started=started)
    last_seq, ended = 0, None
    for kind, batch in ((P.LOG, rows), (P.MEDIA, media)):
        for step, ts, values in batch:
            if values:
                last_seq = link.send(kind, step, ts, values) or last_seq
                ended = ts if ended is None else max(ended, ts)
    client = link.client
    assert client is not None
    if ended is not None:
        last_seq = link.send(P.RUN_FINISH, 0, ended) or last_seq
    # Finishing only waits finish_timeout_s; an import is worth waiting for (what is left goes to the spool).
    client.wait_acked(last_seq, ACK_TIMEOUT_S)
    if ended is None:
        run.finish()
    else:
        link.finished = True  # finished above, at the data's own end
    return run


# ---------------------------------------------------------------------------------------------- CSV
def _parse_step(raw: str, where: str) -> int:
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{where}: step {raw!r} is not a number") from None
    if not value.is_integer():
        raise UsageError(f"{where}: step {raw!r} is not a whole number")
    return int(value)


def _parse_time(raw: str, where: str) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{where}: timestamp {raw!r} is neither seconds since the epoch nor ISO 8601") from None
    return stamp.timestamp()


def _cell(raw: str) -> Any:
    """A CSV cell as a number when it reads as one (ints stay ints), else as text."""
    try:
        number = float(raw)
    except ValueError:
        return raw
    if math.isfinite(number) and number.is_integer() and "." not in raw and "e" not in raw.lower():
        return int(number)
    return number


def read_csv(path: Path) -> list[Row]:
    """Rows of a metrics CSV: a ``step`` column, optionally ``timestamp``, every other column a metric.

    Raises:
        UsageError: no ``step`` column, or a step or timestamp that cannot be read (the line is named).
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "step" not in columns:
            raise UsageError(f"{path}: a CSV to import needs a 'step' column; its columns are {', '.join(columns)}")
        now = os.stat(path).st_mtime
        rows = []
        for line, record in enumerate(reader, start=2):
            where = f"{path}, line {line}"
            step = _parse_step(record["step"] or "", where)
            stamp = record.get("timestamp")
            ts = _parse_time(stamp, where) if stamp else now
            values = {
                k: _cell(v) for k, v in record.items() if k not in ("step", "timestamp") and k and v not in (None, "")
            }
            rows.append((step, ts, values))
    return rows


def import_csv(
    csv_path: str | os.PathLike[str],
    project: str,
    name: str | None = None,
    space_id: str | None = None,
    dataset_id: str | None = None,
    force: bool = False,
    settings: TrackiodSettings | None = None,
) -> Run:
    """See :func:`trackio_shim.import_csv`; ``settings`` name the data directory (default: the environment's)."""
    settings = settings or TrackiodSettings.load()
    path = Path(csv_path)
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    rows = read_csv(path)
    check_project(settings, project, force)
    started = min((r[1] for r in rows), default=None)
    config = {"imported_from": str(path.resolve())}
    return log_run(settings, rows, project, name or path.stem, space_id, dataset_id, config, started)


# ---------------------------------------------------------------------------------------------- TensorBoard
def event_dirs(log_dir: Path) -> list[Path]:
    """Directories under ``log_dir`` (itself included) that hold TensorBoard event files, sorted."""
    found = []
    for directory, _, files in os.walk(log_dir):
        if any(event_files.is_event_file(f) for f in files):
            found.append(Path(directory))
    return sorted(found)


@dataclass
class EventLog:
    """What the event files of one directory hold, as rows for :func:`log_run`."""

    rows: list[Row] = field(default_factory=list)
    media: list[MediaRow] = field(default_factory=list)
    hparams: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def read_events(directory: Path) -> EventLog:
    """The values of the event files in ``directory``, each at its step and wall time (trackio_shim.event_files).

    Raises:
        UsageError: the tensorboard package is missing, or a file is damaged (the file and byte are named).
    """
    out = EventLog()
    skipped: dict[str, dict[str, int]] = {}
    for path in event_files.event_files(directory):
        decoder = event_files.EventDecoder()
        for event in event_files.decode_file(path, decoder):
            if event.scalars:
                out.rows.append((event.step, event.wall_time, event.scalars))
            if event.media:
                out.media.append((event.step, event.wall_time, event.media))
        out.hparams.update(decoder.hparams)
        for reason, tags in decoder.skipped.items():
            counts = skipped.setdefault(reason, {})
            for tag, count in tags.items():
                counts[tag] = counts.get(tag, 0) + count
    out.skipped = event_files.describe_skipped(skipped)
    return out


def import_tf_events(
    log_dir: str | os.PathLike[str],
    project: str,
    name: str | None = None,
    space_id: str | None = None,
    dataset_id: str | None = None,
    force: bool = False,
    settings: TrackiodSettings | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> list[Run]:
    """See :func:`trackio_shim.import_tf_events`; ``settings`` name the data directory (default: the environment's).

    ``on_skip(run_name, line)`` hears what was not imported and why (default: a warning per line).
    """
    settings = settings or TrackiodSettings.load()
    root = Path(log_dir)
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    dirs = event_dirs(root)
    if not dirs:
        raise UsageError(f"no TensorBoard event files (events.out.tfevents.*) under {root}")
    check_project(settings, project, force)
    runs = []
    for directory in dirs:
        relative = directory.relative_to(root).as_posix()
        run_name = f"{name}/{relative}" if name else relative
        if relative == ".":
            run_name = name or root.resolve().name
        log = read_events(directory)
        for line in log.skipped:
            if on_skip is None:
                warn_once(("import-skipped", run_name, line), f"trackio_shim: import of {run_name}: {line}")
            else:
                on_skip(run_name, line)
        started = min((r[1] for r in (*log.rows, *log.media)), default=None)
        config = {**log.hparams, "imported_from": str(directory.resolve())}
        runs.append(log_run(settings, log.rows, project, run_name, space_id, dataset_id, config, started, log.media))
    return runs
