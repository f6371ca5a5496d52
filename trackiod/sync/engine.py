"""Sync to the Hugging Face Hub: which runs go where, watermarks, one commit per repository and tick, retries.

:class:`SyncEngine` does one pass: for each dataset repository it reads (through a query-only connection, in
one read transaction) what changed since that repository's watermark, writes it as Parquet files in the open
layout (docs/sync.md), with the media files and artifact blobs they name, and commits them with one Hub
commit. The watermark, kept in a small JSON file per
repository under ``TRACKIOD_HOME/sync/`` and replaced atomically, advances only after the commit succeeded.
Part files are named by the tick they belong to, so a retried tick overwrites what an in-doubt earlier attempt
may have committed instead of adding rows twice.

:class:`SyncWorker` is the daemon's thread: a pass every ``sync_interval_s``, soon after a run finishes, and on
``trackiod sync --now``; transient failures back off exponentially, auth failures pause the repository until
``trackiod sync --now`` or a restart. It never touches the writer's connection, so it cannot block ingest.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trackio_shim.errors import HubAuthError, HubTransientError
from trackio_shim.settings import TrackiodSettings
from trackiod.read.series import open_reader
from trackiod.sync import layout as px
from trackiod.sync.hub import Hub, dataset_for_space, make_hub
from trackiod.sync.layout_kinds import Collector, write_extras
from trackiod.sync.state import StateFiles, repo_slug

log = logging.getLogger("trackiod.sync")

#: Seconds between a run finishing and the pass it triggers (several runs finishing together share a commit).
FINISH_DELAY_S = 1.0
FIRST_RETRY_S = 5.0


def target_repo(run: dict[str, Any], default_dataset: str) -> str | None:
    """The dataset a run syncs to: its dataset_id, else its Space's dataset, else the default; offline: never."""
    if run.get("mode") == "offline":
        return None
    if run.get("dataset_id"):
        return str(run["dataset_id"])
    if run.get("space_id"):
        return dataset_for_space(str(run["space_id"]))
    return default_dataset or None


@dataclass
class Outcome:
    """The result of syncing one repository once."""

    repo: str
    committed: bool
    runs: int = 0
    points: int = 0
    texts: int = 0
    media: int = 0
    system_points: int = 0
    artifact_versions: int = 0
    blobs: int = 0
    commit: str | None = None

    def describe(self) -> str:
        parts = [f"{self.runs} run(s)", f"{self.points} points", f"{self.texts} texts"]
        for count, what in (
            (self.media, "media"),
            (self.system_points, "system points"),
            (self.artifact_versions, "artifact versions"),
            (self.blobs, "blobs"),
        ):
            if count:
                parts.append(f"{count} {what}")
        return ", ".join(parts)


class SyncEngine:
    """One sync pass over every repository; shared by the daemon's thread and ``trackiod sync`` offline."""

    def __init__(self, settings: TrackiodSettings, hub: Hub | None = None) -> None:
        self.settings = settings
        self.files = StateFiles(settings.sync_dir)
        self._hub = hub
        self._ensured: set[str] = set()

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            self._hub = make_hub(self.settings)
        return self._hub

    @contextlib.contextmanager
    def exclusive(self, wait: bool) -> Iterator[bool]:
        """Hold ``sync/sync.lock`` (one syncer per data directory); yields False if busy and not ``wait``."""
        self.settings.sync_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.settings.sync_dir / "sync.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def plan(self) -> dict[str, list[dict[str, Any]]]:
        """Runs per target repository (read-only; empty when nothing is configured to sync)."""
        if not self.settings.db_path.exists():
            return {}
        conn = open_reader(self.settings.db_path)
        try:
            plan: dict[str, list[dict[str, Any]]] = {}
            for run in px.runs_with_state(conn):
                repo = target_repo(run, self.settings.sync_dataset)
                if repo:
                    plan.setdefault(repo, []).append(run)
            return plan
        finally:
            conn.close()

    def sync_repo(self, repo: str) -> Outcome:
        """Commit what changed in ``repo``'s runs since its watermark; advance the watermark on success.

        Raises:
            HubAuthError: the token cannot write to ``repo``.
            HubTransientError: the Hub could not be reached or failed; nothing advanced.
        """
        state = self.files.load(repo)
        marks = copy.deepcopy(state.marks)
        staging = self.settings.sync_dir / "staging" / repo_slug(repo)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            conn = open_reader(self.settings.db_path)
            try:
                conn.execute("BEGIN")  # one snapshot for everything read below
                runs = [r for r in px.runs_with_state(conn) if target_repo(r, self.settings.sync_dataset) == repo]
                deltas = px.collect(conn, runs, marks)
                # Media and blob files are linked into staging inside the snapshot (see parquet_extras).
                extras = Collector(conn, self.settings.home, staging, marks).collect(runs, [d.run for d in deltas])
                conn.execute("COMMIT")
            finally:
                conn.close()
            if not deltas and not extras:
                if extras.system_read:  # node chunks outside every run's lifetime: never read them again
                    state.marks.system = marks.system
                    self.files.save(state)
                return Outcome(repo, committed=False)
            tick = state.tick + 1
            paths = px.write_deltas(deltas, staging, state.source, tick)
            paths += write_extras(extras, staging, state.source, tick)
            if state.layout != px.LAYOUT_VERSION:
                (staging / "trackiod.json").write_bytes(px.layout_marker())
                paths.append("trackiod.json")
            outcome = Outcome(
                repo,
                committed=True,
                runs=len(deltas),
                points=sum(d.points.num_rows for d in deltas if d.points is not None),
                texts=sum(d.texts.num_rows for d in deltas if d.texts is not None),
                media=extras.media,
                system_points=extras.system_points,
                artifact_versions=extras.artifact_versions,
                blobs=extras.blobs,
            )
            outcome.commit = self._commit(repo, staging, paths, outcome)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        state.tick, state.marks, state.layout = tick, marks, px.LAYOUT_VERSION
        state.last_success, state.last_commit = time.time(), outcome.commit
        self.files.save(state)
        log.info("synced %s: %s (commit %s)", repo, outcome.describe(), outcome.commit)
        return outcome

    def _commit(self, repo: str, staging: Path, paths: list[str], outcome: Outcome) -> str:
        from huggingface_hub import CommitOperationAdd

        if repo not in self._ensured:
            self.hub.ensure_repo(repo, "dataset", private=self.settings.sync_private)
            self._ensured.add(repo)
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(staging / p)) for p in paths]
        return self.hub.commit(repo, "dataset", operations, f"trackiod sync: {outcome.describe()}")

    def spaces_to_deploy(self) -> dict[str, str]:
        """Spaces named by runs' ``space_id`` that were not deployed yet, with the dataset each reads."""
        done = self.files.deployed()
        wanted: dict[str, str] = {}
        if not self.settings.db_path.exists():
            return wanted
        conn = open_reader(self.settings.db_path)
        try:
            for space, dataset in conn.execute(
                "SELECT DISTINCT space_id, dataset_id FROM runs WHERE space_id IS NOT NULL AND mode != 'offline'"
            ):
                if space and space not in done:
                    wanted[space] = dataset or dataset_for_space(space)
        finally:
            conn.close()
        return wanted


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
        }
