"""Importing CSV files and TensorBoard event files as runs, trackio-compatible (docs/api.md, "Import").

An import is a real run logged through the shim and the daemon, like any training script's: the daemon stays
the only writer, and imported runs sync, export and show like the others. Each row keeps its step and, when
the file has one, its timestamp.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from trackio_shim import protocol as P
from trackio_shim.errors import ProjectExistsError, UsageError
from trackio_shim.sdk.run_start import run_params, start_run
from trackio_shim.sdk.wandb_run import Run
from trackio_shim.settings import TrackiodSettings

#: How long an import waits for the daemon to acknowledge its rows before finishing the run (then: the spool).
ACK_TIMEOUT_S = 120.0

Row = tuple[int, float, dict[str, Any]]


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
) -> Run:
    """Start a run, log ``(step, timestamp, values)`` rows to it with their own timestamps, and finish it."""
    params = run_params(project, name=name, tags=["imported"], space_id=space_id, dataset_id=dataset_id)
    run, link = start_run(settings, params, config, None, False, started=started)
    last_seq = 0
    for step, ts, values in rows:
        if values:
            last_seq = link.send(P.LOG, step, ts, values) or last_seq
    # Finishing only waits finish_timeout_s; an import is worth waiting for (what is left goes to the spool).
    assert link.client is not None
    link.client.wait_acked(last_seq, ACK_TIMEOUT_S)
    run.finish()
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
        if any(f.startswith("events.out.tfevents") for f in files):
            found.append(Path(directory))
    return sorted(found)


def read_events(directory: Path) -> list[Row]:
    """One row per step of the event files in ``directory``: scalars as numbers, text summaries as text."""
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
        from tensorboard.util import tensor_util
    except ImportError:
        raise UsageError(
            "reading TensorBoard event files needs the tensorboard package: pip install 'trackiod[tensorboard]'"
        ) from None
    acc = ea.EventAccumulator(str(directory), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    by_step: dict[int, tuple[float, dict[str, Any]]] = {}

    def put(step: int, wall: float, tag: str, value: Any) -> None:
        ts, values = by_step.get(step, (wall, {}))
        values[tag] = value
        by_step[step] = (max(ts, wall), values)

    tags = acc.Tags()
    for tag in tags.get("scalars", []):
        for event in acc.Scalars(tag):
            put(int(event.step), float(event.wall_time), tag, float(event.value))
    for tag in tags.get("tensors", []):
        for event in acc.Tensors(tag):
            array = tensor_util.make_ndarray(event.tensor_proto)
            if array.size != 1:
                continue  # histograms and images are not metrics (media import is not built)
            item = array.reshape(()).item()
            if isinstance(item, bytes):
                item = item.decode("utf-8", "replace")
            if isinstance(item, (int, float, str, bool)):
                put(int(event.step), float(event.wall_time), tag.removesuffix("/text_summary"), item)
    return [(step, ts, values) for step, (ts, values) in sorted(by_step.items())]


def import_tf_events(
    log_dir: str | os.PathLike[str],
    project: str,
    name: str | None = None,
    space_id: str | None = None,
    dataset_id: str | None = None,
    force: bool = False,
    settings: TrackiodSettings | None = None,
) -> list[Run]:
    """See :func:`trackio_shim.import_tf_events`; ``settings`` name the data directory (default: the environment's)."""
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
        rows = read_events(directory)
        started = min((r[1] for r in rows), default=None)
        config = {"imported_from": str(directory.resolve())}
        runs.append(log_run(settings, rows, project, run_name, space_id, dataset_id, config, started))
    return runs
