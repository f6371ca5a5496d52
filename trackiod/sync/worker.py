"""The daemon's sync thread: when to run a pass of :class:`~trackiod.sync.engine.SyncEngine`, and what to show.

A pass every ``sync_interval_s``, soon after a run finishes, and on ``trackiod sync --now``; transient failures
back off exponentially, auth failures pause the repository until ``trackiod sync --now`` or a restart. Spaces
that runs name are deployed once. It never touches the writer's connection, so it cannot block ingest.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from trackio_shim.errors import HubAuthError, HubTransientError
from trackio_shim.settings import TrackiodSettings
from trackiod.sync.engine import SyncEngine
from trackiod.sync.hub import Hub

log = logging.getLogger("trackiod.sync")

#: Seconds between a run finishing and the pass it triggers (several runs finishing together share a commit).
FINISH_DELAY_S = 1.0
FIRST_RETRY_S = 5.0


@dataclass
class RepoStatus:
    """What ``trackiod status`` shows for one repository."""

    state: str = "pending"  # pending, ok, retrying, paused
    failures: int = 0
    retry_at: float = 0.0  # time.monotonic() of the next attempt while retrying
    message: str | None = None
    last_success: float | None = None
    last_commit: str | None = None
    commits: int = 0


class SyncWorker(threading.Thread):
    """The daemon's sync thread; see the module docstring."""

    def __init__(self, settings: TrackiodSettings, hub: Hub | None = None) -> None:
        super().__init__(name="trackiod-sync", daemon=True)
        self.settings = settings
        self.engine = SyncEngine(settings, hub)
        self.repos: dict[str, RepoStatus] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._due = time.monotonic() + min(settings.sync_interval_s, 5.0)  # a first look soon after start
        self._unpause = False
        self.requested = 0  # tickets handed out by request()
        self.completed = 0  # the highest ticket whose pass has finished

    def request(self, delay_s: float = 0.0, unpause: bool = False) -> int:
        """Ask for a pass within ``delay_s`` seconds; returns a ticket (done when ``completed`` reaches it)."""
        with self._cond:
            self.requested += 1
            self._due = min(self._due, time.monotonic() + delay_s)
            self._unpause = self._unpause or unpause
            self._cond.notify()
            return self.requested

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    wait = self._due - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(min(wait, 60.0))
                if self._stopping:
                    return
                ticket, unpause, self._unpause = self.requested, self._unpause, False
                self._due = time.monotonic() + self.settings.sync_interval_s
            try:
                self.sync_pass(unpause)
            except Exception as exc:  # a pass must never kill the thread
                log.exception("sync pass failed: %s", exc)
            with self._cond:
                self.completed = max(self.completed, ticket)
                retries = [s.retry_at for s in self.repos.values() if s.state == "retrying"]
                if retries:
                    self._due = min(self._due, *retries)

    def sync_pass(self, unpause: bool = False) -> None:
        """Sync every repository that is due (paused ones only when ``unpause``)."""
        with self.engine.exclusive(wait=False) as mine:
            if not mine:
                log.info("another trackiod sync holds %s; trying again later", self.settings.sync_dir)
                return
            plan = self.engine.plan()
            now = time.monotonic()
            for repo in plan:
                status = self.repos.setdefault(repo, RepoStatus())
                if status.state == "paused" and not unpause:
                    continue
                if status.state == "retrying" and now < status.retry_at and not unpause:
                    continue
                self._sync_one(repo, status)
            if not self._stopping:
                self._deploy_spaces()

    def _sync_one(self, repo: str, status: RepoStatus) -> None:
        try:
            outcome = self.engine.sync_repo(repo)
        except HubAuthError as exc:
            status.state, status.message = "paused", str(exc)
            log.error("sync to %s paused: %s", repo, exc)
            return
        except (HubTransientError, OSError) as exc:  # network, Hub 5xx/429, the disk: back off and retry
            self._retry_later(repo, status, exc)
            return
        except Exception as exc:  # a bug: logged with its traceback, retried the same way
            log.exception("sync to %s failed unexpectedly", repo)
            self._retry_later(repo, status, exc)
            return
        status.state, status.failures, status.message = "ok", 0, None
        if outcome.committed:
            status.commits += 1
            status.last_commit = outcome.commit
            status.last_success = time.time()

    def _retry_later(self, repo: str, status: RepoStatus, exc: Exception) -> None:
        """Back off exponentially (with jitter) before the next try of ``repo``."""
        status.failures += 1
        delay = min(self.settings.sync_retry_max_s, FIRST_RETRY_S * 2 ** (status.failures - 1))
        delay *= random.uniform(0.8, 1.2)
        status.state, status.retry_at = "retrying", time.monotonic() + delay
        status.message = f"{exc} (attempt {status.failures}; next in {delay:.0f} s)"
        log.warning("sync to %s failed, retrying in %.0f s: %s", repo, delay, exc)

    def _deploy_spaces(self) -> None:
        from trackiod.sync.deploy import deploy_space

        for space, dataset in self.engine.spaces_to_deploy().items():
            status = self.repos.setdefault(f"space:{space}", RepoStatus())
            if status.state == "paused":
                continue
            try:
                deploy_space(self.engine.hub, space, dataset, private=self.settings.sync_private)
            except HubAuthError as exc:
                status.state, status.message = "paused", str(exc)
                continue
            except Exception as exc:
                status.state, status.message = "retrying", str(exc)
                continue
            self.engine.files.mark_deployed(space, dataset)
            status.state, status.message, status.last_success = "ok", None, time.time()

    def status(self) -> dict[str, Any]:
        """Per repository: state, message, last success; plus the interval and when the next pass is due."""
        with self._cond:
            next_in = max(0.0, self._due - time.monotonic())
        repos = {}
        for repo, s in sorted(self.repos.items()):
            last = s.last_success
            if last is None and not repo.startswith("space:"):
                last = self.engine.files.load(repo).last_success
            repos[repo] = {
                "state": s.state,
                "message": s.message,
                "last_success": last,
                "commits": s.commits,
                "last_commit": s.last_commit,
            }
        return {
            "interval_s": self.settings.sync_interval_s,
            "next_pass_in_s": round(next_in, 1),
            "requested": self.requested,
            "completed": self.completed,
            "repos": repos,
            "left_to_head": self.engine.left_to_head,
        }
