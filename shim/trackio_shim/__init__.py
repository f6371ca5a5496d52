"""trackio_shim: a wandb-compatible client for trackiod. ``import trackio_shim as wandb``.

At import this module loads only the standard library, zmq and msgpack. Each ``log()`` packs one msgpack
frame and hands it to ZeroMQ; the trackiod daemon does everything slow. See README.md and docs/api.md.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from trackio_shim._warn import warn_once
from trackio_shim.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    CommError,
    ConfigError,
    ProtocolVersionError,
    RunExistsError,
    RunNotFoundError,
    TrackiodError,
    UsageError,
)
from trackio_shim.rules import COPY_MODES, new_run_id
from trackio_shim.sdk import active
from trackio_shim.sdk.run_config import Config, Summary
from trackio_shim.sdk.wandb_run import DisabledRun, Run
from trackio_shim.session.encoding import json_friendly
from trackio_shim.settings import TrackiodSettings

__version__ = "0.1.0"
__all__ = [
    "AlertLevel",
    "Api",
    "Array",
    "Artifact",
    "ArtifactError",
    "ArtifactNotFoundError",
    "Config",
    "ConfigError",
    "Error",
    "Histogram",
    "Html",
    "Image",
    "Run",
    "Settings",
    "Summary",
    "Table",
    "TrackiodError",
    "UsageError",
    "alert",
    "config",
    "define_metric",
    "finish",
    "flush",
    "init",
    "log",
    "log_artifact",
    "login",
    "run",
    "save",
    "show",
    "summary",
    "teardown",
    "unwatch",
    "use_artifact",
    "watch",
]

Error = TrackiodError


#: Public names whose modules load on first use (PEP 562), so that `import trackio_shim` stays light
#: (tests/test_import_light.py, benchmarks/test_startup.py): name -> the submodule defining it.
_LAZY = {
    "Api": "sdk.api",
    "Array": "media",
    "Histogram": "media",
    "Html": "media",
    "Image": "media",
    "Table": "media.table",
    "Artifact": "sdk.artifacts",
    "AlertLevel": "sdk.alerts",
    # The switch (`import wandb` meaning trackio_shim; typed Any here: the switch sits above integrations, which
    # import this package) and wandb's terminal helpers (issue 14).
    "install": "switch",
    "uninstall": "switch",
    "termlog": "sdk.terminal",
    "termwarn": "sdk.terminal",
    "termerror": "sdk.terminal",
}


# Rich values beyond wandb's first few (issue 14): video, audio, 3-D objects, plotly figures and wandb.plot's
# charts; `trackio_shim.plot` is the module itself (wandb.plot).
_LAZY.update(
    {
        "Audio": "media.audio",
        "Object3D": "media.object3d",
        "Plotly": "media.plotly_figure",
        "Video": "media.video",
        "plot": "plot",
        "plot_table": "media.plot",
    }
)
__all__ += ["Audio", "Object3D", "Plotly", "Video", "plot", "plot_table"]
if TYPE_CHECKING:
    from trackio_shim import plot
    from trackio_shim.media.audio import Audio
    from trackio_shim.media.object3d import Object3D
    from trackio_shim.media.plot import plot_table
    from trackio_shim.media.plotly_figure import Plotly
    from trackio_shim.media.video import Video


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trackio_shim' has no attribute {name!r}")
    import importlib

    imported = importlib.import_module(f".{module}", __name__)
    value = imported if module == name else getattr(imported, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
    from trackio_shim.media import Array, Histogram, Html, Image
    from trackio_shim.media.table import Table
    from trackio_shim.sdk.alerts import AlertLevel
    from trackio_shim.sdk.api import Api
    from trackio_shim.sdk.artifacts import Artifact
    from trackio_shim.sdk.terminal import termerror, termlog, termwarn


#: The most recent active run (wandb.run), or None.
run: Run | None = None
#: The config of :data:`run` (wandb.config); a detached, empty Config before init().
config: Config = Config()
#: The summary of :data:`run` (wandb.summary).
summary: Summary = Summary()


def _bind(current: Run | None) -> None:
    """Show ``current`` as wandb.run, wandb.config and wandb.summary (called by sdk.active on every change)."""
    global run, config, summary
    run = current
    config = current.config if current is not None else Config()
    summary = current.summary if current is not None else Summary()


active.follow(_bind)


class Settings:
    """Accepted for compatibility with ``wandb.Settings(...)``; trackiod reads TRACKIOD_* variables instead."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


def login(*args: Any, **kwargs: Any) -> bool:
    """Accepted for compatibility with ``wandb.login()``: trackiod is local and needs no account."""
    return True


def init(
    project: str | None = None,
    name: str | None = None,
    id: str | None = None,
    config: Any = None,
    resume: str | bool | None = None,
    dir: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    tags: Any = None,
    notes: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    reinit: bool | str | None = None,
    settings: Any = None,
    space_id: str | None = None,
    dataset_id: str | None = None,
    mirror: Any = None,
    **kwargs: Any,
) -> Run:
    """Start (or resume) a run and return it, as ``wandb.init`` does. Arguments win over environment.

    ``mirror``: trackers the daemon copies this run to, e.g. ``["tensorboard:/path", "wandb", "mlflow:file:/path",
    "csv:/path"]`` (docs/mirrors.md); the SDK calls happen in the daemon, never in this process.

    Environment: TRACKIOD_* or WANDB_* PROJECT, NAME, RUN_ID, RESUME, MODE, RUN_GROUP, JOB_TYPE, TAGS, NOTES, DIR.

    Raises:
        UsageError: an argument has a value that cannot be used (an unknown mode, resume policy or mirror).
        RunNotFoundError: ``resume="must"`` and the daemon has no such run.
        RunExistsError: ``resume="never"`` and the daemon already has a run with this ``id``.
        ProtocolVersionError: the daemon cannot serve this shim's protocol version.
    """
    from trackio_shim.sdk import run_start  # on first use: import trackio_shim stays light

    unknown = sorted(set(kwargs) - run_start.INIT_KEYWORDS)
    if unknown:
        warn_once(("init-kwargs", tuple(unknown)), f"trackio_shim.init(): ignoring unsupported {', '.join(unknown)}")
    with active.lock:
        reinit_mode = run_start.reinit_mode(reinit)
        previous_runs = active.runs()
        if previous_runs and reinit_mode == "return_previous":
            return previous_runs[-1]
        if previous_runs and reinit_mode == "finish_previous":
            for previous in previous_runs:
                previous.finish()
        params, cfg = run_start.resolve(
            project, name, id, config, resume, mode, tags, notes, group, job_type, space_id, dataset_id, mirror, kwargs
        )
        new_run: Run
        if params["mode"] == "disabled":
            params["id"] = params["id"] or new_run_id()
            params["name"] = params["name"] or params["id"]
            new_run = DisabledRun(params, json_friendly(cfg))
        else:
            run_dir = dir or run_start.env("TRACKIOD_DIR", "WANDB_DIR")
            allow_val_change = bool(kwargs.get("allow_val_change"))
            new_run, _ = run_start.start_run(TrackiodSettings.load(), params, cfg, run_dir, allow_val_change)
        tensor_copy = kwargs.get("tensor_copy")
        if tensor_copy is not None:
            if tensor_copy not in COPY_MODES:
                raise UsageError(f"init(tensor_copy={tensor_copy!r}): use 'deferred' or 'sync'")
            new_run.tensor_copy = tensor_copy
        active.add(new_run)
        return new_run


def _require_run() -> Run:
    if run is None:
        raise UsageError("You must call trackio_shim.init() before this call")
    return run


def log(
    data: dict[str, Any],
    step: int | None = None,
    commit: bool | None = None,
    copy: str | None = None,
    context: dict[str, Any] | None = None,
) -> None:
    """Log to the current run (wandb.log). See :meth:`Run.log`.

    Raises:
        UsageError: no run is active (call init() first), as wandb does.
    """
    current = run
    if current is None:
        _require_run()
        return
    current.log(data, step, commit, copy, context)


def flush() -> None:
    """Wait for every deferred tensor copy of this process and hand the values over (a device sync)."""
    from trackio_shim.session.client import current_client

    client = current_client()
    if client is not None:
        client.drain_deferred()


def watch(
    models: Any, criterion: Any = None, log: str | None = "gradients", log_freq: int = 1000, **kwargs: Any
) -> None:
    """Log gradient and/or parameter histograms of ``models`` every ``log_freq`` steps. See :meth:`Run.watch`."""
    _require_run().watch(models, criterion, log=log, log_freq=log_freq)


def unwatch(models: Any = None) -> None:
    """Remove the hooks :func:`watch` added to ``models`` (all watched models by default)."""
    if run is not None:
        run.unwatch(models)


def alert(title: str, text: str, level: Any = "INFO", wait_duration: Any = None) -> None:
    """Raise an alert on the current run (wandb.alert). See :meth:`Run.alert`."""
    _require_run().alert(title, text, level, wait_duration)


def save(glob_str: Any = None, base_path: Any = None, policy: str = "live") -> list[str]:
    """Save files with the current run (wandb.save). See :meth:`Run.save`."""
    return _require_run().save(glob_str, base_path, policy)


def log_artifact(artifact_or_path: Any, name: str | None = None, type: str | None = None, aliases: Any = None) -> Any:
    """Log an artifact version from the current run (wandb.log_artifact). See :meth:`Run.log_artifact`."""
    return _require_run().log_artifact(artifact_or_path, name, type, aliases)


def use_artifact(artifact_or_name: Any, type: str | None = None, **kwargs: Any) -> Any:
    """Use an artifact version in the current run; returns its local path. See :meth:`Run.use_artifact`."""
    return _require_run().use_artifact(artifact_or_name, type, **kwargs)


def define_metric(name: str, **kwargs: Any) -> None:
    """Declare a metric's x-axis and summary on the current run. See :meth:`Run.define_metric`."""
    _require_run().define_metric(name, **kwargs)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run (wandb.finish); a no-op when no run is active."""
    if run is not None:
        run.finish(exit_code=exit_code)


def teardown(exit_code: int | None = None) -> None:
    """Finish every active run, close this process's session and reset wandb.run, config and summary.

    As ``wandb.teardown()``: for a process that goes on after its runs (a test suite, a notebook) and wants a
    clean start. The session waits at most ``TRACKIOD_FINISH_TIMEOUT_S`` for acknowledgements; what is left is
    spooled, as at exit. The next init() opens a new session.
    """
    from trackio_shim.session.client import close_client

    active.finish_all(exit_code or 0)
    close_client()
    active.reset()


def show(
    project: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    open_browser: bool | None = None,
) -> None:
    """Serve the dashboard (as ``trackiod show``) until interrupted, printing its URL; blocks the caller.

    ``host``, ``port`` and ``open_browser`` default to the ``TRACKIOD_DASHBOARD_*`` settings (127.0.0.1, 7860,
    open a browser where there is a display); an address other than loopback gets a token, printed in the URL.
    """
    from trackio_shim._local import serve_dashboard

    settings = TrackiodSettings.load(dashboard_host=host, dashboard_port=port)
    serve_dashboard(settings, project, open_browser)


def import_csv(
    csv_path: str | os.PathLike[str],
    project: str,
    name: str | None = None,
    space_id: str | None = None,
    dataset_id: str | None = None,
    force: bool = False,
) -> Run:
    """Import a CSV of metrics (a ``step`` column, optionally ``timestamp``) as one finished run (as trackio).

    Raises:
        UsageError: the file has no ``step`` column or a bad value (the text names the line), or ``project``
            already exists and ``force`` is False.
    """
    from trackio_shim.sdk.importers import import_csv as _import_csv

    return _import_csv(csv_path, project, name=name, space_id=space_id, dataset_id=dataset_id, force=force)


def import_tf_events(
    log_dir: str | os.PathLike[str],
    project: str,
    name: str | None = None,
    space_id: str | None = None,
    dataset_id: str | None = None,
    force: bool = False,
) -> list[Run]:
    """Import TensorBoard event files: each directory under ``log_dir`` holding event files becomes one run.

    Raises:
        UsageError: no event files, the tensorboard package is missing, or ``project`` already exists and
            ``force`` is False.
    """
    from trackio_shim.sdk.importers import import_tf_events as _import_tf_events

    return _import_tf_events(log_dir, project, name=name, space_id=space_id, dataset_id=dataset_id, force=force)


__all__ += ["import_csv", "import_tf_events"]
__all__ += ["ProtocolVersionError", "RunExistsError", "RunNotFoundError"]


# --------------------------------------------------------------------- names code written for wandb calls (issue 14)
def require(requirement: str | None = None, experiment: str | None = None) -> None:
    """Accepted as ``wandb.require("service")`` (Lightning's ddp_spawn calls it): trackio_shim works one way."""


def setup(settings: Any = None) -> None:
    """Accepted as ``wandb.setup()``: the session starts with the first init()."""


def mark_preempting() -> None:
    """``wandb.mark_preempting()``: see :meth:`Run.mark_preempting` (a no-op: the daemon sees a dead process)."""
    if run is not None:
        run.mark_preempting()


__all__ += ["install", "mark_preempting", "require", "setup", "termerror", "termlog", "termwarn", "uninstall"]
__all__ += ["CommError"]
