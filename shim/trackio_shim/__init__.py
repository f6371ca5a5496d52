"""trackio_shim: a wandb-compatible client for trackiod. ``import trackio_shim as wandb``.

At import this module loads only the standard library, zmq and msgpack. Each ``log()`` packs one msgpack
frame and hands it to ZeroMQ; the trackiod daemon does everything slow. See README.md and docs/api.md.
"""

from __future__ import annotations

import atexit
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import protocol as _P
from .api import Api
from .errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ConfigError,
    DaemonUnreachable,
    ProtocolVersionError,
    RunExistsError,
    RunNotFoundError,
    TrackiodError,
    UsageError,
)
from .media import Array, Histogram, Html, Image, Table
from .ranks import detect as _detect_ranks
from .run import Config, DisabledRun, Run, Summary, as_mapping, json_friendly
from .settings import TrackiodSettings
from .values import warn_once

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
    "unwatch",
    "use_artifact",
    "watch",
]

Error = TrackiodError


def __getattr__(name: str) -> Any:
    # Artifact and AlertLevel load on first use: `import trackio_shim` stays light (tests/test_import_light.py).
    if name == "Artifact":
        from .artifacts import Artifact

        return Artifact
    if name == "AlertLevel":
        from .alerts import AlertLevel

        return AlertLevel
    raise AttributeError(f"module 'trackio_shim' has no attribute {name!r}")


#: The most recent active run (wandb.run), or None.
run: Run | None = None
#: The config of :data:`run` (wandb.config); a detached, empty Config before init().
config: Config = Config()
#: The summary of :data:`run` (wandb.summary).
summary: Summary = Summary()

_active: list[Run] = []
_state_lock = threading.RLock()
_hooks_installed = False
_exit_code: int | None = None
_handles = iter(range(1, 1 << 62))

_INIT_KEYWORDS = {
    "project",
    "name",
    "id",
    "config",
    "resume",
    "dir",
    "mode",
    "tags",
    "notes",
    "group",
    "job_type",
    "reinit",
    "settings",
    "space_id",
    "dataset_id",
    "entity",
    "allow_val_change",
    "config_exclude_keys",
    "config_include_keys",
    "anonymous",
    "force",
    "save_code",
    "sync_tensorboard",
    "monitor_gym",
    "tensorboard",
    "resume_from",
    "fork_from",
    "magic",
    "tensor_copy",
    "rank",
    "world_size",
    "ranks",
}
_ADJECTIVES = (
    "amber",
    "brave",
    "calm",
    "dapper",
    "eager",
    "fancy",
    "gentle",
    "hardy",
    "icy",
    "jolly",
    "keen",
    "lively",
    "misty",
    "noble",
    "olive",
    "proud",
    "quiet",
    "rapid",
    "silver",
    "tidy",
    "upbeat",
    "vivid",
    "warm",
    "zesty",
)
_NOUNS = (
    "aurora",
    "breeze",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "glade",
    "harbor",
    "island",
    "jade",
    "kestrel",
    "lagoon",
    "meadow",
    "nebula",
    "orchid",
    "pine",
    "quartz",
    "river",
    "sparrow",
    "tundra",
    "valley",
    "wave",
)
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class Settings:
    """Accepted for compatibility with ``wandb.Settings(...)``; trackiod reads TRACKIOD_* variables instead."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


def login(*args: Any, **kwargs: Any) -> bool:
    """Accepted for compatibility with ``wandb.login()``: trackiod is local and needs no account."""
    return True


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _new_run_id() -> str:
    rng = random.SystemRandom()
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(8))


def _new_run_name() -> str:
    rng = random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randint(1, 9999)}"


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
    unknown = sorted(set(kwargs) - _INIT_KEYWORDS)
    if unknown:
        warn_once(("init-kwargs", tuple(unknown)), f"trackio_shim.init(): ignoring unsupported {', '.join(unknown)}")
    with _state_lock:
        reinit_mode = _reinit_mode(reinit)
        if _active and reinit_mode == "return_previous":
            return _active[-1]
        if _active and reinit_mode == "finish_previous":
            for previous in list(_active):
                previous.finish()

        mode = (mode or _env("TRACKIOD_MODE", "WANDB_MODE") or "online").lower()
        if mode in ("run", "shared"):
            mode = "online"
        if mode == "dryrun":
            mode = "offline"
        if mode not in ("online", "offline", "disabled"):
            raise UsageError(f"init(mode={mode!r}): use 'online', 'offline' or 'disabled'")
        resume_policy = _resume_policy(resume if resume is not None else _env("TRACKIOD_RESUME", "WANDB_RESUME"))
        tag_source = tags if tags is not None else _env("TRACKIOD_TAGS", "WANDB_TAGS")
        if isinstance(tag_source, str):
            tag_source = [t.strip() for t in tag_source.split(",") if t.strip()]
        params: dict[str, Any] = {
            "project": project or _env("TRACKIOD_PROJECT", "WANDB_PROJECT") or "uncategorized",
            "id": id or _env("TRACKIOD_RUN_ID", "WANDB_RUN_ID"),
            "name": name or _env("TRACKIOD_NAME", "WANDB_NAME"),
            "resume": resume_policy,
            "tags": [str(t) for t in (tag_source or [])],
            "notes": notes or _env("TRACKIOD_NOTES", "WANDB_NOTES"),
            "group": group or _env("TRACKIOD_RUN_GROUP", "WANDB_RUN_GROUP"),
            "job_type": job_type or _env("TRACKIOD_JOB_TYPE", "WANDB_JOB_TYPE"),
            "mode": mode,
            "space_id": space_id,
            "dataset_id": dataset_id,
            "mirror": _mirror_specs(mirror),
        }
        cfg = as_mapping(config, "init(config=...)")
        for key in kwargs.get("config_exclude_keys") or ():
            cfg.pop(key, None)
        if kwargs.get("config_include_keys"):
            cfg = {k: v for k, v in cfg.items() if k in kwargs["config_include_keys"]}
        allow_val_change = bool(kwargs.get("allow_val_change"))
        place = _detect_ranks(kwargs.get("rank"), kwargs.get("world_size"))
        if kwargs.get("ranks") is not None:
            _rank_policy(kwargs["ranks"])  # a bad value is an error on every rank, not only on ranks > 0
        if place.distributed:
            params.update(rank=place.rank, world_size=place.world_size, local_rank=place.local_rank)
            params["job_key"] = place.job_key
            if mode != "disabled" and place.rank > 0 and _rank_policy(kwargs.get("ranks")) == "zero":
                mode = params["mode"] = "disabled"  # the rank-0-only behaviour of other trackers
        if mode == "disabled":
            params["id"] = params["id"] or _new_run_id()
            params["name"] = params["name"] or params["id"]
            new_run: Run = DisabledRun(params)
            new_run.config._items.update(json_friendly(cfg))
        else:
            new_run = _start_run(params, cfg, dir or _env("TRACKIOD_DIR", "WANDB_DIR"), allow_val_change)
        tensor_copy = kwargs.get("tensor_copy")
        if tensor_copy is not None:
            if tensor_copy not in ("deferred", "sync"):
                raise UsageError(f"init(tensor_copy={tensor_copy!r}): use 'deferred' or 'sync'")
            new_run.tensor_copy = tensor_copy
        _active.append(new_run)
        _bind(new_run)
        _install_hooks()
        return new_run


def _rank_policy(ranks: Any) -> str:
    if ranks is None:
        return TrackiodSettings.load().ranks
    if ranks not in ("all", "zero"):
        raise UsageError(f"init(ranks={ranks!r}): use 'all' (every rank logs) or 'zero' (rank 0 only)")
    return str(ranks)


def _mirror_specs(mirror: Any) -> list[str]:
    if mirror is None:
        return []
    from .mirror_spec import parse_mirrors  # lazily: most runs name no mirror, and import time is budgeted

    return [str(spec) for spec in parse_mirrors(mirror, "init(mirror=...)")]


def _reinit_mode(reinit: bool | str | None) -> str:
    if reinit is True:
        return "finish_previous"
    if reinit in (None, False, "default", "return_previous"):
        return "return_previous"
    if reinit in ("finish_previous", "create_new"):
        return str(reinit)
    raise UsageError(f"init(reinit={reinit!r}): use 'return_previous', 'finish_previous' or 'create_new'")


def _resume_policy(resume: str | bool | None) -> str:
    if resume in (None, False, "never", "", "false"):
        return "never"
    if resume in (True, "allow", "auto", "true"):
        return "allow"
    if resume == "must":
        return "must"
    raise UsageError(f"init(resume={resume!r}): use 'never', 'allow' or 'must'")


def _start_run(
    params: dict[str, Any], cfg: dict[str, Any], dir: Any, allow_val_change: bool, started: float | None = None
) -> Run:
    from .client import get_client

    settings = TrackiodSettings.load()
    client = get_client(settings)
    reachable = client.ensure_daemon()
    if not reachable:
        warn_once(
            "daemon-unreachable",
            f"trackio_shim: no trackiod answered at {settings.endpoint}; logging continues into memory and "
            f"then {settings.spool_dir}, and is delivered when a daemon starts (`trackiod start`)",
        )
    # A rank of a job leaves the id to the daemon, which gives every rank of the job the same run.
    if params["id"] is None and params["resume"] == "never" and not params.get("job_key"):
        params["id"] = _new_run_id()
    handle = next(_handles)
    # Chosen here, so a run started while no daemon answers has the same id and name locally and when
    # the daemon finally creates it from the buffer or the spool.
    default_id, default_name = _new_run_id(), _new_run_name()
    start = dict(
        params,
        config=json_friendly(cfg),
        default_id=default_id,
        default_name=default_name,
        started=time.time() if started is None else started,
        req=None,
    )
    reply = client.request(
        (_P.RUN_START, handle, start), timeout=settings.init_timeout_s if reachable else 0.0, sequenced=True
    )
    info: dict[str, Any] = {}
    if reply.done and not reply.ok:
        body = reply.body if isinstance(reply.body, dict) else {}
        message = str(body.get("message", body))
        error = body.get("error")
        if error == "not_found":
            raise RunNotFoundError(message)
        if error == "exists":
            raise RunExistsError(message)
        if error == "refused":
            raise ProtocolVersionError(message)
        raise UsageError(message)
    if reply.done:
        info = reply.body
        if info.get("config_conflicts"):
            warn_once(("config-conflict", info["config_conflicts"]), f"trackiod: {info['config_conflicts']}")
    elif reachable:
        warn_once("init-slow", "trackio_shim: trackiod did not confirm the run in time; logging continues")
    params["id"] = info.get("id") or params["id"] or default_id
    params["name"] = info.get("name") or params["name"] or default_name
    base = Path(dir) / "trackiod" if dir else settings.home / "runs"
    new_run = Run(client, handle, params, base / params["project"] / params["id"], allow_val_change)
    new_run.resumed = bool(info.get("resumed"))
    new_run._step = int(info.get("step") or 0)
    new_run.config._items.update(info.get("config") or json_friendly(cfg))
    from .terminal import announce, dashboard_url, is_silent

    new_run._silent = is_silent(settings) or int(params.get("rank") or 0) > 0  # one line per job, from rank 0
    new_run._dashboard_url = dashboard_url(settings)
    if not new_run._silent:
        announce(new_run, new_run.url)
    return new_run


def _bind(current: Run | None) -> None:
    global run, config, summary
    run = current
    config = current.config if current is not None else Config()
    summary = current.summary if current is not None else Summary()


def _forget_run(finished: Run) -> None:
    with _state_lock:
        if finished in _active:
            _active.remove(finished)
        if run is finished:
            _bind(_active[-1] if _active else None)


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
    from .client import current_client

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


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous_hook = sys.excepthook
    previous_exit = sys.exit

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        global _exit_code
        if not issubclass(kind, KeyboardInterrupt) or _exit_code is None:
            _exit_code = 1 if not issubclass(kind, KeyboardInterrupt) else 255
        previous_hook(kind, value, tb)

    def exit_hook(code: Any = None) -> Any:
        global _exit_code
        _exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        return previous_exit(code)

    sys.excepthook = excepthook
    sys.exit = exit_hook
    atexit.register(_finish_at_exit)


def _finish_at_exit() -> None:
    for leftover in list(_active):
        try:
            leftover.finish(exit_code=_exit_code or 0)
        except Exception as exc:  # at exit, report and go on; never hang or raise
            warn_once("atexit", f"trackio_shim: could not finish run {leftover.id} at exit: {exc}")
    from .client import current_client

    client = current_client()
    if client is not None:
        client.close()


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
    # Imported here: the dashboard (Starlette, uvicorn) is never loaded by training processes that do not ask.
    from trackiod.dashboard.cli import serve

    settings = TrackiodSettings.load(dashboard_host=host, dashboard_port=port)
    serve(settings, project, open_browser)


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
    from trackiod.importers import import_csv as _import_csv

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
    from trackiod.importers import import_tf_events as _import_tf_events

    return _import_tf_events(log_dir, project, name=name, space_id=space_id, dataset_id=dataset_id, force=force)


__all__ += ["import_csv", "import_tf_events"]
__all__ += ["DaemonUnreachable", "ProtocolVersionError", "RunExistsError", "RunNotFoundError"]
