"""FOR TESTS ONLY: a Hugging Face Hub kept in a local folder, selected with ``TRACKIOD_HUB=folder:<path>``.

The Hub cannot be reached from the test machines, so the tests, and the daemons and CLI commands they start
with that setting, use :class:`FolderHub` instead of the network. It applies the same huggingface_hub
``CommitOperationAdd`` / ``CommitOperationDelete`` objects the real Hub gets, to ``root/<repo_type>s/<repo_id>/``,
and can be told to fail (see :meth:`FolderHub.inject`). trackiod.sync.hub.make_hub imports it by name.

Like the Hub, a commit is atomic: each commit builds a new revision folder (the previous one's files
hard-linked, then the operations applied) and swaps ``root/<repo_type>s/<repo_id>``, a symbolic link, to it
in one rename. A reader that resolves that link once (:meth:`FolderHub.revision_dir`) reads one revision
whatever commits follow, as a reader of the Hub pinned to a commit does.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trackio_shim.errors import HubAuthError, HubTransientError
from trackiod.sync.hub import Operation


class FolderHub:
    """A Hub kept in a local folder, for tests (the real Hub cannot be reached from here).

    ``root/<repo_type>s/<repo_id>/`` holds each repository's files; ``root/commits.jsonl`` records each commit
    (repo, message, paths) so tests can count them. Failures are injected through ``root/faults.json``, a
    JSON list consumed one entry per call (so a daemon in another process can be told to fail, too):
    ``"transient"`` (fail before applying), ``"in_doubt"`` (apply, then fail as a lost response would),
    ``"401"``, ``"403"``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()

    def repo_dir(self, repo_id: str, repo_type: str = "dataset") -> Path:
        """The repository's current revision (a symbolic link swapped by each commit)."""
        return self.root / f"{repo_type}s" / repo_id

    def revision_dir(self, repo_id: str, repo_type: str = "dataset") -> Path:
        """The folder of the current revision: never changed by later commits (a pinned reader's view)."""
        return self.repo_dir(repo_id, repo_type).resolve()

    def _new_revision(self, repo_id: str, repo_type: str) -> Path:
        """A new revision folder holding the current revision's files (hard links: never written in place)."""
        history = self.root / "revisions" / f"{repo_type}s" / repo_id
        history.mkdir(parents=True, exist_ok=True)
        target = history / f"{len(list(history.iterdir())):06d}-{os.urandom(4).hex()}"
        current = self.repo_dir(repo_id, repo_type)
        if current.is_dir():
            shutil.copytree(current.resolve(), target, copy_function=os.link)
        else:
            target.mkdir()
        return target

    def _publish(self, repo_id: str, repo_type: str, revision: Path) -> None:
        """Make ``revision`` the current one in one rename of the link."""
        link = self.repo_dir(repo_id, repo_type)
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(revision, target_is_directory=True)
        os.replace(tmp, link)

    def inject(self, *faults: str) -> None:
        """Queue failures for the next calls (see the class docstring)."""
        path = self.root / "faults.json"
        self.root.mkdir(parents=True, exist_ok=True)
        queued = json.loads(path.read_text()) if path.exists() else []
        _write_atomic(path, json.dumps([*queued, *faults]).encode())

    def commits(self, repo_id: str | None = None) -> list[dict[str, Any]]:
        path = self.root / "commits.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [r for r in rows if repo_id is None or r["repo"] == repo_id]

    def _next_fault(self, what: str) -> str | None:
        path = self.root / "faults.json"
        if not path.exists():
            return None
        queued = json.loads(path.read_text() or "[]")
        if not queued:
            return None
        fault = str(queued.pop(0))
        _write_atomic(path, json.dumps(queued).encode())
        if fault in ("401", "403"):
            raise HubAuthError(
                f"{what}: the Hub refused the token ({fault}: injected by the test); set HF_TOKEN or run "
                "`hf auth login` with a token that can write there, then `trackiod sync --now`"
            )
        if fault == "transient":
            raise HubTransientError(f"{what}: ConnectError: injected by the test")
        return fault

    def ensure_repo(self, repo_id: str, repo_type: str, private: bool, space_sdk: str | None = None) -> None:
        with self._lock:
            if not self.repo_dir(repo_id, repo_type).is_dir():
                self._publish(repo_id, repo_type, self._new_revision(repo_id, repo_type))

    def commit(self, repo_id: str, repo_type: str, operations: Sequence[Operation], message: str) -> str:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        with self._lock:
            fault = self._next_fault(f"committing to {repo_type} {repo_id}")
            if not self.repo_dir(repo_id, repo_type).is_dir():
                raise HubAuthError(f"committing to {repo_type} {repo_id}: repository not found (404)")
            base = self._new_revision(repo_id, repo_type)
            paths = []
            for op in operations:
                target = _inside(base, op.path_in_repo)
                if isinstance(op, CommitOperationAdd):
                    source = op.path_or_fileobj
                    if isinstance(source, (str, Path)):
                        data = Path(source).read_bytes()
                    elif isinstance(source, bytes):
                        data = source
                    else:
                        source.seek(0)
                        data = source.read()
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _write_atomic(target, data)
                elif isinstance(op, CommitOperationDelete):
                    if target.is_dir():
                        shutil.rmtree(target)
                    else:
                        target.unlink(missing_ok=True)
                else:
                    raise TypeError(f"not a commit operation: {op!r}")
                paths.append(op.path_in_repo)
            self._publish(repo_id, repo_type, base)
            oid = os.urandom(20).hex()
            with open(self.root / "commits.jsonl", "a") as f:
                record = {"repo": repo_id, "type": repo_type, "oid": oid, "message": message, "paths": paths}
                f.write(json.dumps(record) + "\n")
            if fault == "in_doubt":
                raise HubTransientError(f"committing to {repo_type} {repo_id}: ReadTimeout: injected after applying")
            return oid

    def download(self, repo_id: str, repo_type: str, local_dir: Path) -> Path:
        with self._lock:
            self._next_fault(f"downloading {repo_type} {repo_id}")
            base = self.repo_dir(repo_id, repo_type)
            if not base.is_dir():
                raise HubAuthError(f"downloading {repo_type} {repo_id}: repository not found (404)")
            shutil.copytree(base.resolve(), local_dir, dirs_exist_ok=True)
            return Path(local_dir)

    def list_files(self, repo_id: str, repo_type: str, folder: str) -> dict[str, int]:
        base = self.revision_dir(repo_id, repo_type)
        start = _inside(base, folder) if folder else base
        if not start.is_dir():
            return {}
        return {str(f.relative_to(base)): f.stat().st_size for f in start.rglob("*") if f.is_file()}

    def download_files(self, repo_id: str, repo_type: str, paths: Sequence[str], local_dir: Path) -> Path:
        with self._lock:
            self._next_fault(f"downloading {len(paths)} file(s) of {repo_type} {repo_id}")
            base = self.revision_dir(repo_id, repo_type)
            for path in paths:
                target = Path(local_dir) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(_inside(base, path), target)
            return Path(local_dir)


def _inside(base: Path, path_in_repo: str) -> Path:
    target = (base / path_in_repo).resolve()
    if not str(target).startswith(str(base.resolve()) + os.sep):
        raise ValueError(f"path {path_in_repo!r} leaves the repository")
    return target


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
