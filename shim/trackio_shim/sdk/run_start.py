"""What init() does before and while it starts a run: its arguments and environment resolved into the run's
parameters, and the RUN_START exchange with the daemon.

Imported by the first init(), not by ``import trackio_shim`` (whose time is budgeted).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from trackio_shim import protocol as P
from trackio_shim._warn import warn_once
from trackio_shim.access import check_run_dir, make_own_dir
from trackio_shim.errors import ProtocolVersionError, RunExistsError, RunNotFoundError, UsageError
from trackio_shim.rules import new_run_id
from trackio_shim.sdk.ranks import detect as detect_ranks
from trackio_shim.sdk.run_config import as_mapping
from trackio_shim.sdk.run_link import RunLink
from trackio_shim.sdk.terminal import announce, dashboard_url, is_silent
from trackio_shim.sdk.wandb_run import Run
from trackio_shim.session.client import get_client
from trackio_shim.session.encoding import json_friendly
from trackio_shim.settings import TrackiodSettings

#: Every keyword init() accepts in **kwargs (wandb's and ours); others are warned about and ignored.
INIT_KEYWORDS = {
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
    "resume_by",
}
#: How init() finds the run to resume when it is given no id: "name" (the newest run of that name: trackio's
#: rule and trackio_shim's default) or "id" (wandb's rule: without an id, resume="allow" starts a new run).
RESUME_BY = ("name", "id")
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


def env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def new_run_name() -> str:
    rng = random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randint(1, 9999)}"


#: Handles name this process's runs on the wire (RUN_START and later messages); unique per process.
_handles = iter(range(1, 1 << 62))


def run_params(
    project: str,
    name: str | None = None,
    id: str | None = None,
    resume: str = "never",
    tags: list[str] | None = None,
    notes: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    mode: str = "online",
    space_id: str | None = None,
    dataset_id: str | None = None,
) -> dict[str, Any]:
    """The parameters of a RUN_START, as init() and the importers send them."""
    return {
        "project": project,
        "id": id,
        "name": name,
        "resume": resume,
        "tags": tags or [],
        "notes": notes,
        "group": group,
        "job_type": job_type,
        "mode": mode,
        "space_id": space_id,
        "dataset_id": dataset_id,
    }


def resolve(
    project: str | None,
    name: str | None,
    id: str | None,
    config: Any,
    resume: str | bool | None,
    mode: str | None,
    tags: Any,
    notes: str | None,
    group: str | None,
    job_type: str | None,
    space_id: str | None,
    dataset_id: str | None,
    mirror: Any,
    kwargs: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """init()'s arguments over the TRACKIOD_*/WANDB_* environment: the run's parameters and its config.

    Raises:
        UsageError: an unknown mode, resume policy, rank policy or mirror, or a bad rank or world size.
    """
    mode = (mode or env("TRACKIOD_MODE", "WANDB_MODE") or "online").lower()
    if mode in ("run", "shared"):
        mode = "online"
    if mode == "dryrun":
        mode = "offline"
    if mode not in ("online", "offline", "disabled"):
        raise UsageError(f"init(mode={mode!r}): use 'online', 'offline' or 'disabled'")
    resume_policy = _resume_policy(resume if resume is not None else env("TRACKIOD_RESUME", "WANDB_RESUME"))
    tag_source = tags if tags is not None else env("TRACKIOD_TAGS", "WANDB_TAGS")
    if isinstance(tag_source, str):
        tag_source = [t.strip() for t in tag_source.split(",") if t.strip()]
    params = run_params(
        project=project or env("TRACKIOD_PROJECT", "WANDB_PROJECT") or "uncategorized",
        id=id or env("TRACKIOD_RUN_ID", "WANDB_RUN_ID"),
        name=name or env("TRACKIOD_NAME", "WANDB_NAME"),
        resume=resume_policy,
        tags=[str(t) for t in (tag_source or [])],
        notes=notes or env("TRACKIOD_NOTES", "WANDB_NOTES"),
        group=group or env("TRACKIOD_RUN_GROUP", "WANDB_RUN_GROUP"),
        job_type=job_type or env("TRACKIOD_JOB_TYPE", "WANDB_JOB_TYPE"),
        mode=mode,
        space_id=space_id,
        dataset_id=dataset_id,
    )
    _apply_resume_by(params, kwargs.get("resume_by") or env("TRACKIOD_RESUME_BY") or "name")
    params["mirror"] = _mirror_specs(mirror)
    # Not a RUN_START field: start_run() hands it to sdk/tensorboard (wandb's older name for it is "tensorboard").
    params["sync_tensorboard"] = bool(kwargs.get("sync_tensorboard") or kwargs.get("tensorboard"))
    cfg = as_mapping(config, "init(config=...)")
    for key in kwargs.get("config_exclude_keys") or ():
        cfg.pop(key, None)
    if kwargs.get("config_include_keys"):
        cfg = {k: v for k, v in cfg.items() if k in kwargs["config_include_keys"]}
    place = detect_ranks(kwargs.get("rank"), kwargs.get("world_size"))
    if kwargs.get("ranks") is not None:
        _rank_policy(kwargs["ranks"])  # a bad value is an error on every rank, not only on ranks > 0
    if place.distributed:
        params.update(rank=place.rank, world_size=place.world_size, local_rank=place.local_rank)
        params["job_key"] = place.job_key
        if mode != "disabled" and place.rank > 0 and _rank_policy(kwargs.get("ranks")) == "zero":
            params["mode"] = "disabled"  # the rank-0-only behaviour of other trackers
    return params, cfg


def _apply_resume_by(params: dict[str, Any], resume_by: str) -> None:
    """Under wandb's rule (``resume_by="id"``) a run named but given no id is a new run: wandb resumes by id only.

    Raises:
        UsageError: an unknown rule, or ``resume="must"`` with no id under wandb's rule (wandb refuses it too).
    """
    if resume_by not in RESUME_BY:
        raise UsageError(f"init(resume_by={resume_by!r}): use 'name' (trackio's rule) or 'id' (wandb's rule)")
    if resume_by == "name" or params["id"] is not None or params["resume"] == "never":
        return
    if params["resume"] == "must":
        raise UsageError(
            "init(resume='must') needs id=...: under wandb's rule runs are resumed by id; pass "
            "resume_by='name' (or set TRACKIOD_RESUME_BY=name) to resume the newest run of that name"
        )
    params["resume"] = "never"  # "allow" with nothing to resume by: a new run, as wandb makes


def _rank_policy(ranks: Any) -> str:
    if ranks is None:
        return TrackiodSettings.load().ranks
    if ranks not in ("all", "zero"):
        raise UsageError(f"init(ranks={ranks!r}): use 'all' (every rank logs) or 'zero' (rank 0 only)")
    return str(ranks)


def _mirror_specs(mirror: Any) -> list[str]:
    if mirror is None:
        return []
    from trackio_shim.mirror_spec import parse_mirrors  # lazily: most runs name no mirror, and import time is budgeted

    return [str(spec) for spec in parse_mirrors(mirror, "init(mirror=...)")]


def reinit_mode(reinit: bool | str | None) -> str:
    """init(reinit=...) as one of "return_previous", "finish_previous" or "create_new"."""
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


def start_run(
    settings: TrackiodSettings,
    params: dict[str, Any],
    cfg: dict[str, Any],
    dir: Any,
    allow_val_change: bool,
    started: float | None = None,
) -> tuple[Run, RunLink]:
    """Start (or resume) a run with the daemon, or locally when none answers (delivered later).

    Returns the run and its link to the session, for callers that send frames of their own (the importers log
    rows with their own timestamps). ``settings`` say which daemon and data directory; the session of this
    process is made with them when it does not exist yet.

    Raises:
        RunNotFoundError, RunExistsError, ProtocolVersionError, UsageError: the daemon refused the run.
    """
    sync_tensorboard = bool(params.pop("sync_tensorboard", False))
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
        params["id"] = new_run_id()
    handle = next(_handles)
    # Chosen here, so a run started while no daemon answers has the same id and name locally and when
    # the daemon finally creates it from the buffer or the spool.
    default_id, default_name = new_run_id(), new_run_name()
    start = dict(
        params,
        config=json_friendly(cfg),
        default_id=default_id,
        default_name=default_name,
        started=time.time() if started is None else started,
        req=None,
    )
    reply = client.request(
        (P.RUN_START, handle, start), timeout=settings.init_timeout_s if reachable else 0.0, sequenced=True
    )
    info: dict[str, Any] = {}
    if reply.done and not reply.ok:
        body = reply.body if isinstance(reply.body, dict) else {}
        message = str(body.get("message", body))
        error = body.get("error")
        if error == P.ERROR_NOT_FOUND:
            raise RunNotFoundError(message)
        if error == P.ERROR_EXISTS:
            raise RunExistsError(message)
        if error == P.ERROR_REFUSED:
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
    if dir:  # a folder others may share (/tmp/...): say so, and keep trackiod's own folder in it private
        exposed = check_run_dir(Path(dir))
        if exposed:
            warn_once(("run-dir", str(dir)), f"trackio_shim: {exposed}")
        make_own_dir(base, "run folder", "init(dir=...)")
    silent = is_silent(settings) or int(params.get("rank") or 0) > 0  # one line per job, from rank 0
    link = RunLink(client, handle, params["id"])
    new_run = Run(
        link,
        params,
        base / params["project"] / params["id"],
        allow_val_change,
        step=int(info.get("step") or 0),
        config=info.get("config") or json_friendly(cfg),
        resumed=bool(info.get("resumed")),
        silent=silent,
        dashboard_url=dashboard_url(settings),
    )
    if sync_tensorboard or "trackio_shim.sdk.tensorboard" in sys.modules:  # imported by init() or patch() only
        from trackio_shim.sdk import tensorboard

        tensorboard.follow(new_run, link, sync_tensorboard)
    if not silent:
        announce(new_run.name, new_run.path, new_run.resumed, bool(client.last_heard), new_run.url)
    return new_run, link
