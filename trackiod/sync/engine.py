"""One sync pass to the Hugging Face Hub: which runs go where, watermarks, one commit per repository and tick.

:class:`SyncEngine` does one pass: for each dataset repository it reads (through a query-only connection, in
one read transaction) what changed since that repository's watermark, writes it as Parquet files in the open
layout (docs/sync.md), with the media files and artifact blobs they name, and commits them with one Hub
commit. The watermark, kept in a small JSON file per repository under ``TRACKIOD_HOME/sync/`` and replaced
atomically, advances only after the commit succeeded. Part files are named by the tick they belong to, so a
retried tick overwrites what an in-doubt earlier attempt may have committed instead of adding rows twice.
The engine is shared by the daemon's thread (:mod:`trackiod.sync.worker`: timing, retries, pauses) and
``trackiod sync`` run offline.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trackio_shim.errors import HubTransientError
from trackio_shim.settings import TrackiodSettings
from trackiod.read.connection import open_reader
from trackiod.sync.compaction import COMPACT_AT, ENDED_STATES, FOLDERS_PER_COMPACTION, compact
from trackiod.sync.hub import Hub, dataset_for_space, make_hub
from trackiod.sync.layout import (
    LAYOUT_VERSION,
    Marks,
    collect,
    layout_marker,
    part_name,
    run_folder,
    runs_with_state,
    write_deltas,
)
from trackiod.sync.layout_kinds import Collector, write_extras
from trackiod.sync.migration import old_files_replaced
from trackiod.sync.state import RepoState, StateFiles, repo_slug

log = logging.getLogger("trackiod.sync")


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

    def __init__(
        self,
        settings: TrackiodSettings,
        hub: Hub | None = None,
        compact_at: int = COMPACT_AT,
        folders_per_compaction: int = FOLDERS_PER_COMPACTION,
    ) -> None:
        self.settings = settings
        self.compact_at = compact_at
        self.folders_per_compaction = folders_per_compaction
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

    @property
    def left_to_head(self) -> str | None:
        """The head this node forwards to, which syncs every forwarded run; None when this node syncs its own.

        One writer per run (docs/sync.md, "Who syncs"): a forwarding node's runs are all on the head, so if
        both synced, every row would be in the dataset twice, under two sources.
        """
        return self.settings.forward or None

    def plan(self) -> dict[str, list[dict[str, Any]]]:
        """Runs per target repository (read-only; empty when nothing is configured to sync, or the head syncs)."""
        if not self.settings.db_path.exists() or self.left_to_head:
            return {}
        conn = open_reader(self.settings.db_path)
        try:
            plan: dict[str, list[dict[str, Any]]] = {}
            for run in runs_with_state(conn):
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
        # A repository this node synced in an older layout: export everything again, into the new folders, and
        # delete the old files this replaces in the same commit (trackiod.sync.migration).
        migrating = state.tick > 0 and 0 < state.layout < LAYOUT_VERSION
        marks = Marks() if migrating else copy.deepcopy(state.marks)
        staging = self.settings.sync_dir / "staging" / repo_slug(repo)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            conn = open_reader(self.settings.db_path)
            try:
                conn.execute("BEGIN")  # one snapshot for everything read below
                runs = [r for r in runs_with_state(conn) if target_repo(r, self.settings.sync_dataset) == repo]
                deltas = collect(conn, runs, marks)
                # Media and blob files are linked into staging inside the snapshot (see trackiod.sync.layout_kinds).
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
            paths = write_deltas(deltas, staging, state.source, tick)
            paths += write_extras(extras, staging, state.source, tick)
            if state.layout != LAYOUT_VERSION:
                (staging / "trackiod.json").write_bytes(layout_marker())
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
            deletes = []
            if migrating:
                listing = list(self.hub.list_files(repo, "dataset", ""))
                deletes = old_files_replaced(listing, state.source, runs)
                log.info("moving %s to layout %d: %d old file(s) replaced", repo, LAYOUT_VERSION, len(deletes))
            outcome.commit = self._commit(repo, staging, paths, outcome, deletes)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        state.tick, state.marks, state.layout = tick, marks, LAYOUT_VERSION
        state.last_success, state.last_commit = time.time(), outcome.commit
        for path in paths:
            folder, _, name = path.rpartition("/")
            if name == part_name(state.source, tick):
                state.parts[folder] = state.parts.get(folder, 0) + 1
        self.files.save(state)
        log.info("synced %s: %s (commit %s)", repo, outcome.describe(), outcome.commit)
        try:
            self.compact(repo, state, runs)
        except HubTransientError as exc:  # the tick is committed; the folders are compacted after a later one
            log.warning("compacting %s failed, will retry after the next commit: %s", repo, exc)
        return outcome

    def compact(self, repo: str, state: RepoState, runs: list[dict[str, Any]]) -> int:
        """Merge the part files of every folder past ``compact_at``, and of every folder of an ended run (of
        ``runs``) that holds more than one, in one commit (trackiod.sync.compaction), at most
        ``folders_per_compaction`` of them (the rest stay due for the next commit); returns the number of folders
        compacted. Runs after a tick was committed and its watermark saved."""
        ended_runs = {
            run_folder("", run["project"], run["run_key"]) for run in runs if run["state"] in ENDED_STATES
        }  # "/project=…/run_id=…": the same under every kind
        ended = frozenset(folder for folder in state.parts if folder[folder.find("/") :] in ended_runs)
        waiting = [
            (-count, folder)
            for folder, count in state.parts.items()
            if count > self.compact_at or (folder in ended and count > 1)
        ]
        due = sorted(folder for _, folder in sorted(waiting)[: self.folders_per_compaction])  # most files first
        if not due:
            return 0
        staging = self.settings.sync_dir / "staging" / f"{repo_slug(repo)}.compact"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            merges, counts = compact(self.hub, repo, state.source, due, staging, self.compact_at, ended)
            if merges:
                from huggingface_hub import CommitOperationAdd, CommitOperationDelete

                operations: list[Any] = []
                for merge in merges:
                    operations.append(CommitOperationAdd(merge.output, str(staging / merge.output)))
                    operations += [CommitOperationDelete(p) for p in merge.inputs if p != merge.output]
                files = sum(len(m.inputs) for m in merges)
                message = f"trackiod compaction: {files} files into {len(merges)}"
                commit = self.hub.commit(repo, "dataset", operations, message)
                log.info("compacted %s: %s (commit %s)", repo, message, commit)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        state.parts.update(counts)
        self.files.save(state)
        return len(merges)

    def _commit(self, repo: str, staging: Path, paths: list[str], outcome: Outcome, deletes: list[str]) -> str:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        if repo not in self._ensured:
            self.hub.ensure_repo(repo, "dataset", private=self.settings.sync_private)
            self._ensured.add(repo)
        operations: list[Any] = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(staging / p)) for p in paths]
        operations += [CommitOperationDelete(path_in_repo=p) for p in deletes if p not in paths]
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
