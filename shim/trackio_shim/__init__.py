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
    ConfigError,
    DaemonUnreachable,
    ProtocolVersionError,
    RunExistsError,
    RunNotFoundError,
    TrackiodError,
    UsageError,
)
from .run import Config, DisabledRun, Run, Summary, as_mapping, json_friendly
from .settings import TrackiodSettings
from .values import warn_once

__version__ = "0.1.0"
__all__ = [
    "Api",
    "Config",
    "ConfigError",
    "Error",
    "Run",
    "Settings",
    "Summary",
    "TrackiodError",
    "UsageError",
    "config",
    "define_metric",
    "finish",
    "init",
    "log",
    "login",
    "run",
    "summary",
]

Error = TrackiodError

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
        if mode == "disabled":
            params["id"] = params["id"] or _new_run_id()
            params["name"] = params["name"] or params["id"]
            new_run: Run = DisabledRun(params)
            new_run.config._items.update(json_friendly(cfg))
        else:
            new_run = _start_run(params, cfg, dir or _env("TRACKIOD_DIR", "WANDB_DIR"), allow_val_change)
        _active.append(new_run)
        _bind(new_run)
        _install_hooks()
        return new_run


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


def _start_run(params: dict[str, Any], cfg: dict[str, Any], dir: Any, allow_val_change: bool) -> Run:
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
    if params["id"] is None and params["resume"] == "never":
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
        started=time.time(),
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
    elif reachable:
        warn_once("init-slow", "trackio_shim: trackiod did not confirm the run in time; logging continues")
    params["id"] = info.get("id") or params["id"] or default_id
    params["name"] = info.get("name") or params["name"] or default_name
    base = Path(dir) / "trackiod" if dir else settings.home / "runs"
    new_run = Run(client, handle, params, base / params["project"] / params["id"], allow_val_change)
    new_run.resumed = bool(info.get("resumed"))
    new_run._step = int(info.get("step") or 0)
    new_run.config._items.update(info.get("config") or json_friendly(cfg))
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


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log to the current run (wandb.log). See :meth:`Run.log`.

    Raises:
        UsageError: no run is active (call init() first), as wandb does.
    """
    current = run
    if current is None:
        _require_run()
        return
    current.log(data, step, commit)


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


__all__ += ["DaemonUnreachable", "ProtocolVersionError", "RunExistsError", "RunNotFoundError"]
