"""What sync remembers per dataset repository: its watermarks, tick and last commit (one small JSON file per
repository under ``TRACKIOD_HOME/sync/``, replaced atomically), and which Spaces were deployed.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from trackiod.sync.layout import Marks


def repo_slug(repo: str) -> str:
    """``owner/name`` as one path component (state files, staging folders)."""
    return repo.replace("/", "--")


@dataclass
class RepoState:
    """What one repository already holds from this node: persisted after each successful commit."""

    repo: str
    source: str
    tick: int = 0
    marks: Marks = field(default_factory=Marks)
    last_success: float | None = None
    last_commit: str | None = None
    layout: int = 0  # the layout version the repository's trackiod.json says (0: not written yet)
    #: Part files this node has in each partition folder (trackiod.sync.compaction merges them past a bound).
    parts: dict[str, int] = field(default_factory=dict)


class StateFiles:
    """The per-repository watermark files, each replaced atomically (write, fsync, rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self, repo: str) -> RepoState:
        path = self.directory / f"{repo_slug(repo)}.json"
        if not path.exists():
            digest = hashlib.sha256(f"{socket.gethostname()}:{self.directory}".encode()).hexdigest()[:8]
            return RepoState(repo, source=digest)
        data = json.loads(path.read_text())
        return RepoState(
            repo,
            data["source"],
            int(data["tick"]),
            Marks.from_json(data["marks"]),
            data.get("last_success"),
            data.get("last_commit"),
            int(data.get("layout", 1 if int(data["tick"]) else 0)),
            {str(k): int(v) for k, v in data.get("parts", {}).items()},
        )

    def save(self, state: RepoState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        body = {
            "repo": state.repo,
            "source": state.source,
            "tick": state.tick,
            "marks": state.marks.to_json(),
            "last_success": state.last_success,
            "last_commit": state.last_commit,
            "layout": state.layout,
            "parts": state.parts,
        }
        path = self.directory / f"{repo_slug(state.repo)}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def deployed(self) -> dict[str, str]:
        path = self.directory / "deployed.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def mark_deployed(self, space: str, dataset: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        done = {**self.deployed(), space: dataset}
        tmp = self.directory / ".deployed.json.tmp"
        tmp.write_text(json.dumps(done))
        os.replace(tmp, self.directory / "deployed.json")
