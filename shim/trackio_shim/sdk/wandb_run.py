"""Run: the wandb-shaped object init() returns (its Config and Summary: run_config.py).

A Run talks to the session itself on log()'s hot path; everything else goes through its :class:`RunLink`, which
is all its helpers (config, summary, alerts, files, artifacts) get. The list of active runs is kept by
trackio_shim.sdk.active, which hears of a finished run through :meth:`Run.on_finish`.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from trackio_shim import protocol as P
from trackio_shim._warn import warn_once
from trackio_shim.errors import UsageError
from trackio_shim.rules import COPY_MODES, GOALS, SUMMARY_KINDS, canonical_context
from trackio_shim.sdk.run_config import Config, Summary
from trackio_shim.sdk.run_link import RunLink
from trackio_shim.session.client import Client
from trackio_shim.session.encoding import clean_log


class Run:
    """A run, as returned by ``init()``. Use it as a context manager to finish it on exit."""

    def __init__(
        self,
        link: RunLink,
        params: dict[str, Any],
        dir: Path | None,
        allow_val_change: bool = False,
        *,
        step: int = 0,
        config: Mapping[str, Any] | None = None,
        resumed: bool = False,
        silent: bool = False,
        dashboard_url: str | None = None,
    ) -> None:
        """``link``: the run's session and handle; ``step``: where a resumed run continues; ``config``: its config
        so far (wire-friendly, not sent again); ``silent``: no lines on stderr; ``dashboard_url``: the daemon's
        dashboard, for :attr:`url`."""
        client = link.client
        self._client = client
        self._handle = link.handle
        self._link = link
        self.id: str = params["id"]
        self.name: str = params["name"]
        self.project: str = params["project"]
        self.entity: str | None = None
        self.group: str | None = params.get("group")
        self.job_type: str | None = params.get("job_type")
        self.tags: tuple[str, ...] = tuple(params.get("tags") or ())
        self.notes: str | None = params.get("notes")
        self.mode: str = params.get("mode", "online")
        #: This process's rank in its job and the job's size (0 and 1 when not distributed; docs/ranks.md).
        self.rank: int = int(params.get("rank") or 0)
        self.world_size: int = int(params.get("world_size") or 1)
        self.resumed = resumed
        self.start_time = time.time()
        self._dir = dir
        self._step = step
        self._sink = client  # the client while the run is live, None once finished: one check in log()
        self._rejoin = False  # in a forked child, until its first log(): join the run with the child's session
        #: How tensors are copied to the host when log() gets no ``copy=``: "deferred" (default) or "sync".
        self.tensor_copy: str = client.settings.tensor_copy if client is not None else "deferred"
        self._watches: list[Any] = []
        self._context: dict[str, Any] | None = None  # set_context(); None keeps log() on its fast path
        self._alerted: dict[str, float] = {}  # alert title -> when it was last printed (wait_duration)
        self._silent = silent
        self._dashboard_url = dashboard_url
        self._finish_hooks: list[Callable[[Run], None]] = []
        self.config = Config(self._link, allow_val_change, config)
        self.summary = Summary(self._link)

    @property
    def _finished(self) -> bool:
        return self._link.finished

    # --------------------------------------------------------------- the hot path
    def log(
        self,
        data: dict[str, Any],
        step: int | None = None,
        commit: bool | None = None,
        copy: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        """Log a dict of values at the current step (wandb semantics; see docs/api.md).

        Never blocks on and never raises for the daemon. An unsupported value is dropped with a one-time
        warning naming its key; the rest of the call is kept. Tensors are copied to the host ``copy=
        "deferred"`` (no device sync; sent once the copy completes, with this call's step and time) or
        ``"sync"``; the default is :attr:`tensor_copy`. ``context`` (merged over :meth:`set_context`'s) puts
        the values in series of their own, such as ``{"subset": "val"}``.
        """
        client = self._sink
        if client is None:
            client = self._join_from_child() if self._rejoin else None
            if client is None:
                if self._finished:
                    warn_once(("log-after-finish", self.id), f"trackio_shim: run {self.id} is finished; log ignored")
                return
        if type(data) is not dict:
            if not isinstance(data, Mapping):
                warn_once(
                    ("log-type", type(data)),
                    f"trackio_shim: log() takes a dict, not {type(data).__name__}; the call was ignored",
                )
                return
            data = dict(data)
        with client.lock:
            if step is None:
                at = self._step
                if commit is not False:
                    self._step = at + 1
            else:
                at = self._explicit_step(step, commit)
            if context is None and self._context is None:
                if client.log_locked(self._handle, at, data):
                    return
                merged = None
            else:
                merged = self._merged_context(context)
        self._log_slow(client, at, data, copy, merged)

    def detach_after_fork(self) -> None:
        """In a forked child (at-fork hook): stop using the parent's session; the next log() joins with a new one.

        Nothing is sent until then, so a worker that never logs (a DataLoader worker) costs the daemon nothing.
        """
        if self._sink is not None:
            self._sink = None
            self._rejoin = True

    def _join_from_child(self) -> Client | None:
        """Join this run from a forked child: a session of its own, then RUN_START(resume="allow") for the run.

        The daemon attaches the child's session to the same run (one more process of it); the child's
        RUN_FINISH, or its exit, detaches only that session, and the run ends when its last process does.
        """
        from trackio_shim.session.client import get_client

        self._rejoin = False
        inherited = self._client
        if inherited is None:
            return None
        client = get_client(inherited.settings)
        client.ping(0.25)  # the new socket connects before its first frames (never longer than this)
        params = {
            "project": self.project,
            "id": self.id,
            "name": self.name,
            "resume": "allow",
            "config": {},
            "default_id": self.id,
            "default_name": self.name,
            "started": time.time(),
            "req": None,
        }
        client.emit((P.RUN_START, self._handle, params))
        self._client = self._sink = self._link.client = client
        return client

    def _log_slow(
        self, client: Client, at: int, data: dict[Any, Any], copy: str | None, context: dict[str, Any] | None
    ) -> None:
        """log() for tensors, rich values, contexts, values to salvage and oversized calls; outside the lock."""
        from trackio_shim.media.prepare import WireContext, prepare, split_device_scalars

        mode = copy or self.tensor_copy
        if mode not in COPY_MODES:
            warn_once(("copy-mode", mode), f"trackio_shim: log(copy={mode!r}): use 'deferred' or 'sync'; deferring")
            mode = "deferred"
        settings = client.settings
        ts = time.time()
        split = split_device_scalars(data) if mode == "deferred" else None  # numbers and device scalars only
        if split is None:
            data = clean_log(data)  # keys made str, cycles and depth cut, each with a warning: nothing below raises
            plain, rich = prepare(data, WireContext(mode, settings.max_frame_bytes, settings.max_array_bytes))
        else:
            plain, rich = split
        for key, reason in rich.problems:
            warn_once(
                ("rich", key, reason),
                f"trackio_shim: key {key!r}: {reason}; that key was dropped, the rest of this call is kept",
            )
        plain.update(rich.scalars)
        if context is not None and (rich.media or rich.staged or rich.device_scalars.keys):
            warn_once(
                "rich-context",
                "trackio_shim: log(context=...) applies to scalars and strings; tensors copied deferred and rich "
                "values (histograms, images, tables) in that call are stored without the context",
            )
        if plain:
            if context is None:
                client.emit((P.LOG, self._handle, at, ts, plain))
            else:
                client.emit((P.LOG_CONTEXT, self._handle, at, ts, plain, context))
        if rich.media:
            client.emit((P.MEDIA, self._handle, at, ts, rich.media))
        if rich.staged or rich.device_scalars.keys:
            deferred = client.deferred()
            deferred.submit(self._handle, at, ts, rich.staged, rich.device_scalars)
            deferred.poll()

    def flush(self) -> None:
        """Wait for the tensor copies still in flight, hand their values to the session (a device sync) and send
        what log() has coalesced so far."""
        if self._client is not None:
            self._client.drain_deferred()
            self._client.flush()

    def watch(
        self,
        models: Any,
        criterion: Any = None,
        log: str | None = "gradients",
        log_freq: int = 1000,
        idx: int | None = None,
        log_graph: bool = False,
    ) -> None:
        """Log histograms of gradients and/or parameters every ``log_freq`` training steps; see docs/api.md.

        Raises:
            UsageError: ``log`` is not "gradients", "parameters", "all" or None, or a model is not a Module.
        """
        from trackio_shim.sdk.watching import Watch

        for model in models if isinstance(models, (list, tuple)) else (models,):
            self._watches.append(Watch(self.log, model, log, log_freq))

    def unwatch(self, models: Any = None) -> None:
        """Remove the hooks :meth:`watch` added (for ``models``, or for every watched model)."""
        wanted = None if models is None else list(models if isinstance(models, (list, tuple)) else (models,))
        for watch in list(self._watches):
            if wanted is None or any(watch.model is m for m in wanted):
                watch.remove()
                self._watches.remove(watch)

    def set_context(self, context: dict[str, Any] | None) -> None:
        """Attach ``context`` (e.g. ``{"subset": "val"}``) to every later log() of this run; None clears it.

        Raises:
            UsageError: not a dict of non-empty str keys to str, int, float or bool values.
        """
        if context is None or context == {}:
            self._context = None
            return
        try:
            canonical_context(context)
        except ValueError as exc:
            raise UsageError(f"set_context(): {exc}") from None
        self._context = dict(context)

    def _merged_context(self, context: Any) -> dict[str, Any]:
        merged = dict(self._context or {})
        if context is not None:
            try:
                canonical_context(context)
                canonical_context({**merged, **context})  # the two together must fit the bounds too
            except ValueError as exc:
                warn_once(
                    ("bad-context", str(exc)), f"trackio_shim: log(context=...): {exc}; the call's context was ignored"
                )
            else:
                merged.update(context)
        return merged

    def _explicit_step(self, step: Any, commit: bool | None) -> int:
        try:
            at = int(step)
        except (TypeError, ValueError):
            warn_once(("bad-step", type(step)), f"trackio_shim: step={step!r} is not an int; using {self._step}")
            at = self._step
        if at < self._step:
            warn_once(
                ("step-rewind", self.id),
                f"trackio_shim: step {at} is lower than the current step {self._step}; the values are "
                "stored at that step (overwriting earlier values of the same keys) and the step counter "
                "continues from there",
            )
        self._step = at + 1 if commit else at
        return at

    # --------------------------------------------------------------- the rest
    @property
    def step(self) -> int:
        """The step the next ``log()`` without ``step=`` writes to."""
        return self._step

    @property
    def dir(self) -> str:
        """A local folder for this run's files (created on first use)."""
        if self._dir is None:
            raise UsageError("this run has no directory (mode='disabled')")
        self._dir.mkdir(parents=True, exist_ok=True)
        return str(self._dir)

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    @property
    def url(self) -> str | None:
        """This run's page on the local dashboard, when the daemon serves one (else None)."""
        if self._dashboard_url is None:
            return None
        from trackio_shim.sdk.terminal import run_url

        return run_url(self._dashboard_url, self.project, self.id)

    def alert(self, title: str, text: str, level: Any = "INFO", wait_duration: Any = None) -> None:
        """Raise an alert: printed here once, stored with the run, and delivered by the daemon to the webhook.

        ``wait_duration`` (seconds or a timedelta) throttles: an alert with the same title within that
        time of the last one is stored as throttled and neither printed nor delivered.

        Raises:
            UsageError: an empty title, an unknown level or a bad wait_duration.
        """
        from trackio_shim.sdk.alerts import send_alert

        send_alert(self._link, self._alerted, max(self._step - 1, 0), self._silent, title, text, level, wait_duration)

    def save(self, glob_str: Any = None, base_path: Any = None, policy: str = "live") -> list[str]:
        """Have the daemon copy files matching ``glob_str`` into this run's file store; returns today's matches.

        ``policy``: ``"live"`` (now and whenever a file changes), ``"now"`` (once), ``"end"`` (when the run
        ends). Names in the run are relative to ``base_path`` (default: the current directory for a
        relative glob, the glob's fixed directory for an absolute one).

        Raises:
            UsageError: an unknown policy, an empty glob, or files outside ``base_path``.
        """
        from trackio_shim.sdk.files import save

        return save(self._link, glob_str, base_path, policy)

    def log_artifact(
        self, artifact_or_path: Any, name: str | None = None, type: str | None = None, aliases: Any = None
    ) -> Any:
        """Log an Artifact (or a file or directory) as its next version; returns the Artifact (see ``wait()``)."""
        from trackio_shim.sdk.artifacts import log_artifact

        return log_artifact(self._link, artifact_or_path, name, type, aliases)

    def use_artifact(self, artifact_or_name: Any, type: str | None = None, **kwargs: Any) -> Any:
        """Mark ``[project/]name[:alias]`` as used by this run and return the local path of its files."""
        from trackio_shim.sdk.artifacts import use_artifact

        return use_artifact(self._link, self.project, artifact_or_name, type, **kwargs)

    @property
    def offline(self) -> bool:
        return self.mode == "offline"

    @property
    def disabled(self) -> bool:
        return self._client is None

    def energy(self) -> dict[str, Any]:
        """The GPU energy the daemon has attributed to this run so far (see ``Api().run(path).energy()``).

        Raises:
            UsageError: the run is disabled (it never reaches the daemon).
            RunNotFoundError: the daemon has not stored the run (yet).
        """
        client = self._client
        if client is None:
            raise UsageError("energy() needs a run the daemon records; this run is disabled")
        client.wait_acked(client.seq, 1.0)
        from trackio_shim.sdk.api import Api  # late import: the read API loads the store reader

        return Api(overrides={"home": str(client.settings.home)}).run(self.path).energy()

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        step_sync: bool | None = None,
        hidden: bool | None = None,
        summary: str | None = None,
        goal: str | None = None,
        overwrite: bool | None = None,
    ) -> None:
        """Declare a metric (glob names like ``"train/*"`` allowed): its x-axis and summary aggregate.

        Raises:
            UsageError: ``summary`` names an unknown aggregate, or ``name`` is empty.
        """
        if not isinstance(name, str) or not name:
            raise UsageError("define_metric() needs a non-empty metric name")
        kinds = [s.strip() for s in summary.split(",")] if summary else []
        bad = [k for k in kinds if k not in SUMMARY_KINDS]
        if bad:
            raise UsageError(
                f"define_metric({name!r}): unknown summary {', '.join(bad)}; "
                f"use one or more of {', '.join(sorted(SUMMARY_KINDS))}"
            )
        if goal is not None and goal not in GOALS:
            raise UsageError(f"define_metric({name!r}): goal must be 'minimize' or 'maximize'")
        spec = {
            "name": name,
            "step_metric": step_metric,
            "summary": kinds,
            "hidden": bool(hidden),
            "goal": goal,
        }
        self._link.send(P.DEFINE_METRIC, spec)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Mark the run finished (or failed for a non-zero exit code); waits briefly for acknowledgements.

        Never hangs: after ``finish_timeout_s`` whatever is unacknowledged goes to the spool, and the daemon
        ingests it when it can.
        """
        if self._finished:
            return
        if self._rejoin:  # a forked child that never logged: nothing of its own to send; the parent finishes
            self._rejoin = False
            self._link.finished = True
            self._run_finish_hooks()
            return
        code = 0 if exit_code is None else int(exit_code)
        client = self._client
        self.unwatch()
        if client is not None:
            try:
                client.drain_deferred()
            except Exception as exc:  # a failed device must not keep the run from finishing
                warn_once(("drain", self.id), f"trackio_shim: deferred tensor values could not be read: {exc!r}")
            seq = client.emit((P.RUN_FINISH, self._handle, code, time.time()))
            self._link.finished = True
            self._sink = None
            acked = client.wait_acked(seq, client.settings.finish_timeout_s)
            if not acked:
                with client.lock:
                    client.spill_locked()
            if not (quiet or self._silent):
                from trackio_shim.sdk.terminal import farewell

                info = self._link.query("run_info", {"handle": self._handle}) if acked else None
                farewell(self.name, self.path, info, client.stats(), "finished" if code == 0 else "failed")
        self._link.finished = True
        self._run_finish_hooks()

    # --------------------------------------------------------------- names integrations written for wandb use
    def _label(self, **labels: Any) -> None:
        """Accepted for integrations that tag their runs for wandb's telemetry (transformers' callback); unused."""

    @property
    def _attach_id(self) -> str:
        """What another process passes to ``wandb._attach()`` to log to this run (Lightning's ddp_spawn)."""
        return self.path

    def mark_preempting(self) -> None:
        """Accepted as ``wandb.mark_preempting()``: trackiod needs no notice, since a run whose process dies is
        marked crashed by the daemon and ``init(id=..., resume="allow")`` continues it."""

    def log_code(
        self,
        root: str | os.PathLike[str] = ".",
        name: str | None = None,
        include_fn: Callable[..., bool] | None = None,
        exclude_fn: Callable[..., bool] | None = None,
    ) -> list[str]:
        """Save the source files under ``root`` with the run (the daemon copies them once), as ``wandb.run.
        log_code``: by default ``*.py``, ``requirements*.txt`` and ``Dockerfile*``, skipping hidden folders,
        ``__pycache__`` and folders named ``wandb`` or ``trackiod``. ``include_fn(path, root)`` and
        ``exclude_fn(path, root)`` choose otherwise. Returns the paths saved; ``name`` is accepted for wandb's
        signature (the files are stored under their paths relative to ``root``)."""
        from trackio_shim.sdk.files import source_files

        return [
            saved
            for path in source_files(root, include_fn, exclude_fn)
            for saved in self.save(glob.escape(path), base_path=root, policy="now")
        ]

    def on_finish(self, hook: Callable[[Run], None]) -> None:
        """Call ``hook(run)`` once this run has finished (trackio_shim.sdk.active drops it from the active runs)."""
        self._finish_hooks.append(hook)

    def _run_finish_hooks(self) -> None:
        hooks, self._finish_hooks = self._finish_hooks, []
        for hook in hooks:
            hook(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exit_code=1 if exc_type is not None else 0)

    def __repr__(self) -> str:
        return f"<Run {self.project}/{self.id} ({self.name})>"


def _tempdir() -> str:
    import tempfile  # lazily: only disabled runs need it

    return tempfile.gettempdir()


class DisabledRun(Run):
    """mode="disabled": every call is a cheap no-op; config and summary are plain local objects."""

    def __init__(self, params: dict[str, Any], config: Mapping[str, Any] | None = None) -> None:
        # As wandb: a disabled run's dir is the system temp directory, so scripts saving files there still work.
        super().__init__(RunLink(None, 0, params["id"]), params, Path(_tempdir()), config=config)
        self.mode = "disabled"

    def log(
        self,
        data: dict[str, Any],
        step: int | None = None,
        commit: bool | None = None,
        copy: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        return None

    def watch(
        self,
        models: Any,
        criterion: Any = None,
        log: str | None = "gradients",
        log_freq: int = 1000,
        idx: int | None = None,
        log_graph: bool = False,
    ) -> None:
        return None

    def alert(self, title: str, text: str, level: Any = "INFO", wait_duration: Any = None) -> None:
        return None

    def save(self, glob_str: Any = None, base_path: Any = None, policy: str = "live") -> list[str]:
        return []

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        self._link.finished = True
        self._run_finish_hooks()
