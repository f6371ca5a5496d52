"""The daemon's background parts behind one start/stop protocol, stopped in reverse order on every exit path.

Each part (the attachments' threads, the mirrors, the forwarding sockets, the sampler, the dashboard, sync) is
a :class:`Service`: a name, ``start()``, ``stop(timeout) -> bool`` (False: it did not stop in time) and
``status()`` (its entries of ``trackiod status``). :class:`Services` starts them in the order given and stops
the started ones in reverse, whether the writer loop returned or raised, each within its own time limit, so the
stop order is written once (the list) and a part that hangs is logged instead of holding the process.

The adapters here own the glue between a part and the writer: what the sampler hands to the energy book, what
the attachments' threads finished while they were stopping. A part that is switched off by its settings is
still a service, one that does nothing, so that status has the same entries whatever is on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import zmq

from trackio_shim.settings import TrackiodSettings
from trackiod.attachments.dispatch import Attachments
from trackiod.ingest.ingest import Ingest
from trackiod.mirrors.fanout import MirrorHub
from trackiod.sampling.energy import EnergyBook
from trackiod.sampling.providers import make_provider
from trackiod.sampling.sampler import Sampler
from trackiod.store.writer import Store
from trackiod.sync.worker import SyncWorker

if TYPE_CHECKING:
    from trackiod.daemon.forward import Forwarder, Listener
    from trackiod.daemon.integrity import BackgroundCheck

log = logging.getLogger("trackiod")


class Service(Protocol):
    """One background part of the daemon."""

    #: Shown in the log when it fails to start or stop.
    name: str
    #: How long :meth:`Services.stop` waits for it.
    stop_timeout_s: float

    def start(self) -> None: ...

    def stop(self, timeout: float) -> bool: ...

    def status(self) -> dict[str, Any]: ...


class Services:
    """Start in order, stop in reverse: see the module docstring."""

    def __init__(self, services: Sequence[Service]) -> None:
        self.services = tuple(services)
        self._started: list[Service] = []

    def start(self) -> None:
        """Start each service in order; if one fails, the ones already started are stopped and the error raised."""
        for service in self.services:
            try:
                service.start()
            except BaseException:
                self.stop()
                raise
            self._started.append(service)

    def stop(self) -> None:
        """Stop the started services in reverse order; safe to call twice (the second call does nothing)."""
        while self._started:
            service = self._started.pop()
            try:
                stopped = service.stop(service.stop_timeout_s)
            except Exception:
                log.exception("%s failed to stop", service.name)
                continue
            if not stopped:
                log.warning(
                    "%s did not stop within %.0f s; leaving it to process exit", service.name, service.stop_timeout_s
                )

    def status(self) -> dict[str, Any]:
        """Every service's entries of ``trackiod status``, in the services' order."""
        merged: dict[str, Any] = {}
        for service in self.services:
            merged.update(service.status())
        return merged


class AttachmentsService:
    """The alert and file threads; they resume a previous daemon's work and hand their last results to ingest."""

    name = "attachments"

    def __init__(self, attachments: Attachments, ingest: Ingest, stop_timeout_s: float) -> None:
        self.attachments = attachments
        self.ingest = ingest
        self.stop_timeout_s = stop_timeout_s

    def start(self) -> None:
        self.attachments.resume(self.ingest.store)

    def stop(self, timeout: float) -> bool:
        stopped = self.attachments.stop(timeout)
        try:
            self.attachments.drain(self.ingest)  # results that arrived while stopping
        except Exception:
            log.exception("could not write the last background results")
        return stopped

    def status(self) -> dict[str, Any]:
        return self.attachments.status()


class MirrorsService:
    """The mirror fan-out thread; it resumes the mirrors of runs still active."""

    name = "mirrors"

    def __init__(self, mirrors: MirrorHub, store: Store, stop_timeout_s: float) -> None:
        self.mirrors = mirrors
        self.store = store
        self.stop_timeout_s = stop_timeout_s

    def start(self) -> None:
        self.mirrors.start([r["id"] for r in self.store.active_runs() if json.loads(r["mirrors"])])

    def stop(self, timeout: float) -> bool:
        return self.mirrors.close(timeout)

    def status(self) -> dict[str, Any]:
        return {"mirrors": self.mirrors.status()}


def _keep_role(settings: TrackiodSettings, name: str) -> None:
    """Store a role this daemon took up (from a flag or a ``TRACKIOD_*`` variable, a systemd unit's say) in
    ``node.json``, so the daemon that replaces it (an autostart knows no variables) takes it up too."""
    from trackio_shim.settings import read_node_file
    from trackiod.daemon.node_role import remember_role

    value = getattr(settings, name)
    if read_node_file(settings.home).get(name) != value:
        remember_role(settings.home, **{name: value})
        log.info("kept this node's role in %s: %s %s", settings.node_path, name, value)


class ListenerService:
    """The head's CURVE listener for forwarding daemons (docs/forwarding.md); it refuses to start without keys."""

    name = "listener"
    stop_timeout_s = 0.0  # closing a socket does not wait

    def __init__(self, settings: TrackiodSettings, ctx: zmq.Context[Any]) -> None:
        self.settings = settings
        self.ctx = ctx
        self.listener: Listener | None = None

    def start(self) -> None:
        if self.settings.listen:
            from trackiod.daemon.forward import Listener  # CURVE and its authenticator only when used

            self.listener = Listener(self.settings, self.ctx)
            _keep_role(self.settings, "listen")

    def stop(self, timeout: float) -> bool:
        if self.listener is not None:
            self.listener.close()
        return True

    def status(self) -> dict[str, Any]:
        listener = self.listener
        return {
            "listen": self.settings.listen or None,
            "listener": None if listener is None else {"on": self.settings.listen, **listener.status()},
        }


class ForwarderService:
    """This node's forwarder to a head daemon (docs/forwarding.md); it refuses to start without keys."""

    name = "forwarder"
    stop_timeout_s = 0.0  # closing a socket does not wait

    def __init__(self, settings: TrackiodSettings, ctx: zmq.Context[Any], store: Store) -> None:
        self.settings = settings
        self.ctx = ctx
        self.store = store
        self.forwarder: Forwarder | None = None

    def start(self) -> None:
        if self.settings.forward:
            from trackiod.daemon.forward import Forwarder

            self.forwarder = Forwarder(self.settings, self.ctx, self.store)
            _keep_role(self.settings, "forward")

    def stop(self, timeout: float) -> bool:
        if self.forwarder is not None:
            self.forwarder.close()
        return True

    def status(self) -> dict[str, Any]:
        forwarder = self.forwarder
        if forwarder is None:
            return {"forward": None}
        return {"forward": forwarder.status()}


class SamplingService:
    """The sampling thread, and the writer-side hand-over of its samples to the energy book."""

    name = "sampling"

    def __init__(self, settings: TrackiodSettings, ingest: Ingest, stop_timeout_s: float) -> None:
        self.settings = settings
        self.ingest = ingest
        self.stop_timeout_s = stop_timeout_s
        self.sampler: Sampler | None = None
        self.energy: EnergyBook | None = None

    def start(self) -> None:
        settings = self.settings
        if settings.sample_interval_s <= 0:
            log.info("system and GPU sampling is off (TRACKIOD_SAMPLE_INTERVAL_S=0)")
            return
        self.sampler = Sampler(settings.sample_interval_s, make_provider(settings.nvml))
        self.energy = EnergyBook(
            self.ingest.store,
            self.ingest.runs,
            self.ingest.host,
            settings.sample_interval_s,
            settings.grid_intensity_g_per_kwh,
            settings.location,
        )
        self.sampler.start()

    def take(self) -> None:
        """Hand the sampler's queued samples to the energy book, in the writer's transaction."""
        sampler, energy = self.sampler, self.energy
        if sampler is None or energy is None:
            return
        sessions = energy.live_sessions()
        sampler.watch(frozenset(s.pid for s in sessions))
        samples = []
        while sampler.queue:
            samples.append(sampler.queue.popleft())
        if samples or energy.buffered:
            self.ingest.begin()
            energy.apply(samples, sessions)
            self.ingest.commit()

    def stop(self, timeout: float) -> bool:
        """Stop the thread, then store what it sampled last."""
        if self.sampler is None or self.energy is None:
            return True
        stopped = self.sampler.stop(timeout)
        try:
            self.take()
            self.ingest.begin()
            self.energy.flush_series(time.time(), force=True)
            self.ingest.commit()
        except Exception as exc:
            log.exception("could not store the last samples: %s", exc)
        return stopped

    def status(self) -> dict[str, Any]:
        sampler = self.sampler
        if sampler is None:
            return {"sampling": {"interval_s": 0, "nvml": "off (sampling disabled)", "gpus": [], "samples": 0}}
        per_sample = sampler.cpu_s_total / sampler.samples if sampler.samples else None
        return {
            "sampling": {
                "interval_s": sampler.interval_s,
                "nvml": sampler.nvml_status,
                "gpus": [f"{g.index}: {g.name} ({g.uuid})" for g in sampler.gpus],
                "samples": sampler.samples,
                "cpu_ms_per_sample": None if per_sample is None else round(per_sample * 1000, 3),
                "core_percent": None if per_sample is None else round(100 * per_sample / sampler.interval_s, 4),
            }
        }


class DashboardService:
    """The dashboard, served from a thread when asked for; one that cannot start is logged, never fatal."""

    name = "dashboard"

    def __init__(self, settings: TrackiodSettings, ingest: Ingest, stop_timeout_s: float) -> None:
        self.settings = settings
        self.ingest = ingest
        self.stop_timeout_s = stop_timeout_s
        self.server: Any = None
        self.url: str | None = None

    def start(self) -> None:
        if not self.settings.dashboard:
            return
        try:
            from trackiod.daemon.control import dashboard_control
            from trackiod.dashboard.app import DashboardServer

            # Edits from the page come back to this daemon as queries on its own socket (the single writer).
            self.server = DashboardServer(self.settings, control=dashboard_control(self.settings))
            self.server.start()
            self.url = self.server.url()
            log.info("dashboard at %s", self.url)
        except Exception as exc:
            log.exception("the dashboard could not start: %s", exc)
            self.ingest.counters.last_error = f"dashboard: {exc}"
            self.server = None

    def stop(self, timeout: float) -> bool:
        """Bounded: open browser connections get ``timeout`` seconds, then uvicorn is forced out."""
        server, self.server = self.server, None
        return True if server is None else bool(server.stop(timeout=timeout))

    def status(self) -> dict[str, Any]:
        return {"dashboard": self.url}


class IntegrityService:
    """The full database check of a large file after an unclean shutdown, run while serving (integrity.py)."""

    name = "integrity check"
    stop_timeout_s = 2.0

    def __init__(self, check: BackgroundCheck | None) -> None:
        self.check = check

    def start(self) -> None:
        if self.check is not None:
            self.check.start()

    def stop(self, timeout: float) -> bool:
        return True if self.check is None else self.check.stop(timeout)

    def status(self) -> dict[str, Any]:
        check = self.check
        if check is None:
            return {"integrity_check": None}
        return {"integrity_check": {"check": check.check, "state": check.state, "seconds": check.seconds}}


class SyncService:
    """The Hub sync thread."""

    name = "sync"

    def __init__(self, worker: SyncWorker, stop_timeout_s: float) -> None:
        self.worker = worker
        self.stop_timeout_s = stop_timeout_s

    def start(self) -> None:
        self.worker.start()

    def stop(self, timeout: float) -> bool:
        self.worker.stop(timeout)
        return not self.worker.is_alive()

    def status(self) -> dict[str, Any]:
        return {"sync": self.worker.status()}
