"""Artifacts: ``Artifact``, ``log_artifact()`` and ``use_artifact()``, as in wandb, stored by the daemon.

``add_file``/``add_dir`` only record paths. ``log_artifact()`` sends the manifest (names and local paths);
the daemon hashes and stores the content (trackiod/attachments/artifacts.py). ``use_artifact()`` reads the
database (query-only: trackiod.read.catalog, reached through trackio_shim._local on first use) and returns the
path of a materialised copy under ``TRACKIOD_HOME/artifacts/<project>/<name>/v<N>``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from trackio_shim import protocol as P
from trackio_shim._warn import warn_once
from trackio_shim.errors import ArtifactError, ArtifactNotFoundError, UsageError
from trackio_shim.sdk.run_link import RunLink
from trackio_shim.settings import TrackiodSettings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _entry_name(name: str, what: str) -> str:
    clean = name.replace(os.sep, "/").strip("/")
    if not clean or any(part in ("", ".", "..") for part in clean.split("/")):
        raise UsageError(f"{what}: name {name!r} must be a relative path without '..'")
    return clean


class Artifact:
    """A set of files with a name and a type; versioned by the daemon when logged (as ``wandb.Artifact``)."""

    def __init__(
        self,
        name: str,
        type: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise UsageError(
                f"Artifact name {name!r}: use 1-128 letters, digits, '.', '_' or '-' (starting with a letter or digit)"
            )
        if not isinstance(type, str) or not type:
            raise UsageError(f"Artifact {name!r}: type must be a non-empty string such as 'dataset' or 'model'")
        if metadata is not None and not isinstance(metadata, dict):
            raise UsageError(f"Artifact {name!r}: metadata must be a dict")
        self.name = name
        self.type = type
        self.description = description
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._entries: dict[str, str] = {}
        self._log_id: str | None = None
        self._settings: TrackiodSettings | None = None
        self._link: RunLink | None = None
        self._seq = 0
        self.version: str | None = None
        self.aliases: list[str] = []
        self.digest: str | None = None

    def add_file(self, local_path: str | os.PathLike[str], name: str | None = None, **kwargs: Any) -> str:
        """Add one file (``name``: its path inside the artifact, default its base name); returns that name.

        Raises:
            UsageError: the file does not exist, or another file was already added under that name.
        """
        path = os.path.abspath(os.fspath(local_path))
        if not os.path.isfile(path):
            raise UsageError(f"Artifact {self.name!r}: add_file({os.fspath(local_path)!r}): no such file")
        entry = _entry_name(name or os.path.basename(path), f"Artifact {self.name!r}")
        if self._entries.get(entry, path) != path and not kwargs.get("overwrite"):
            raise UsageError(f"Artifact {self.name!r}: {entry!r} was already added from {self._entries[entry]}")
        self._entries[entry] = path
        return entry

    def add_dir(self, local_path: str | os.PathLike[str], name: str | None = None, **kwargs: Any) -> None:
        """Add every file under a directory (``name``: a folder inside the artifact to put them in).

        Raises:
            UsageError: the directory does not exist.
        """
        root = os.path.abspath(os.fspath(local_path))
        if not os.path.isdir(root):
            raise UsageError(f"Artifact {self.name!r}: add_dir({os.fspath(local_path)!r}): no such directory")
        prefix = _entry_name(name, f"Artifact {self.name!r}") + "/" if name else ""
        found = False
        for folder, _, files in os.walk(root):
            for file_name in sorted(files):
                full = os.path.join(folder, file_name)
                self.add_file(full, prefix + os.path.relpath(full, root).replace(os.sep, "/"), **kwargs)
                found = True
        if not found:
            warn_once(("empty-dir", root), f"trackio_shim: Artifact {self.name!r}: add_dir({root!r}) found no files")

    @property
    def files(self) -> list[str]:
        """Names of the files added so far."""
        return sorted(self._entries)

    def wait(self, timeout: float | None = None) -> Artifact:
        """Wait until the daemon has stored this logged artifact; sets ``version``, ``aliases``, ``digest``.

        Raises:
            UsageError: the artifact was never logged.
            ArtifactError: the daemon could not store it (the message says why), or not within ``timeout``.
        """
        if self._log_id is None or self._settings is None:
            raise UsageError(f"Artifact {self.name!r} was not logged; call log_artifact() first")
        from trackio_shim import _local

        settings = self._settings
        link = self._link
        if link is not None and link.client is not None:
            link.client.wait_acked(self._seq, 2.0)
        deadline = time.monotonic() + (settings.artifact_wait_s if timeout is None else timeout)
        with _reader(settings) as conn:
            while True:
                state = _local.artifacts.job_state(conn, self._log_id)
                if state is not None and state[0] == "failed":
                    raise ArtifactError(str(state[1]))
                if state is not None and state[0] == "done" and state[2] is not None:
                    info = _local.artifacts.version_by_id(conn, state[2])
                    assert info is not None
                    self.version, self.aliases, self.digest = f"v{info['version']}", info["aliases"], info["digest"]
                    return self
                if time.monotonic() >= deadline:
                    raise ArtifactError(
                        f"artifact {self.name!r} was not stored within the wait (is trackiod running? "
                        "`trackiod status`); it is stored when the daemon gets to it"
                    )
                time.sleep(0.02)

    def __repr__(self) -> str:
        return f"<Artifact {self.name}:{self.version or 'unlogged'} ({self.type}, {len(self._entries)} files)>"


class ArtifactPath(str):
    """The local path of a used artifact version (a ``str``), carrying the version's details.

    Behaves as wandb's returned artifact too: ``download()`` returns the path, and ``name``, ``type``,
    ``version``, ``aliases``, ``metadata``, ``digest``, ``files``, ``producer`` and ``used_by`` are set.
    """

    info: dict[str, Any]
    _settings: TrackiodSettings

    def __new__(cls, path: str | os.PathLike[str], info: dict[str, Any], settings: TrackiodSettings) -> ArtifactPath:
        obj = super().__new__(cls, os.fspath(path))
        obj.info = info
        obj._settings = settings
        return obj

    def __getattr__(self, name: str) -> Any:
        info = self.__dict__.get("info", {})
        if name == "version":
            return f"v{info['version']}"
        if name == "files":
            return [e["name"] for e in info["entries"]]
        if name in info:
            return info[name]
        raise AttributeError(name)

    def download(self, root: str | os.PathLike[str] | None = None) -> str:
        """The path of the files: this one, or copies written into ``root``."""
        if root is None:
            return str(self)
        from trackio_shim import _local

        return str(_local.artifacts.export(self.info, self._settings.blobs_dir, Path(root)))


class _reader:
    def __init__(self, settings: TrackiodSettings) -> None:
        self.settings = settings

    def __enter__(self) -> Any:
        from trackio_shim import _local

        try:
            self.conn = _local.connection.open_reader(self.settings.db_path)
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(str(exc)) from None
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def log_artifact(
    link: RunLink, artifact_or_path: Any, name: str | None = None, type: str | None = None, aliases: Any = None
) -> Artifact:
    """Log an Artifact (or a file or directory path) as a new version; see :meth:`Run.log_artifact`.

    Raises:
        UsageError: a bad name, type or alias, a path that does not exist, or an artifact with no files.
    """
    if isinstance(artifact_or_path, Artifact):
        artifact = artifact_or_path
    elif isinstance(artifact_or_path, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(artifact_or_path))
        if not os.path.exists(path):
            raise UsageError(f"log_artifact({os.fspath(artifact_or_path)!r}): no such file or directory")
        default = re.sub(r"[^A-Za-z0-9._-]", "-", os.path.basename(path.rstrip(os.sep))).lstrip("._-") or "artifact"
        artifact = Artifact(name or default, type or "unspecified")
        if os.path.isdir(path):
            artifact.add_dir(path)
        else:
            artifact.add_file(path)
    else:
        raise UsageError(f"log_artifact() takes an Artifact or a path, not {artifact_or_path.__class__.__name__}")
    alias_list = [aliases] if isinstance(aliases, str) else list(aliases or [])
    for alias in alias_list:
        if not isinstance(alias, str) or not _ALIAS.match(alias) or re.match(r"^v\d+$", alias):
            raise UsageError(
                f"log_artifact(aliases=...): {alias!r} is not a usable alias (letters, digits, '.', '_', '-'; "
                "'v<N>' names are reserved for versions)"
            )
    if not artifact._entries:
        raise UsageError(f"Artifact {artifact.name!r} has no files; add_file() or add_dir() first")
    import uuid  # here, not at import: uuid is among the slower stdlib imports

    artifact._log_id = uuid.uuid4().hex
    artifact._link = link
    artifact._settings = link.settings
    manifest = {
        "name": artifact.name,
        "type": artifact.type,
        "description": artifact.description,
        "metadata": artifact.metadata,
        "aliases": alias_list,
        "entries": [[entry, source] for entry, source in sorted(artifact._entries.items())],
        "log_id": artifact._log_id,
    }
    artifact._seq = link.send(P.ARTIFACT_LOG, manifest)
    return artifact


def use_artifact(
    link: RunLink, project: str, artifact_or_name: Any, type: str | None = None, **kwargs: Any
) -> ArtifactPath:
    """Resolve ``[project/]name[:alias|:vN]`` (``project``: the run's, by default), record the use, and return
    the local path of its files.

    Raises:
        ArtifactNotFoundError: no such artifact, version or alias (the message lists what exists).
        UsageError: ``type`` differs from the stored artifact's type.
        ArtifactError: the version is still being stored after ``TRACKIOD_ARTIFACT_WAIT_S``.
    """
    from trackio_shim import _local

    ref = artifact_or_name.name if isinstance(artifact_or_name, Artifact) else str(artifact_or_name)
    client = link.client
    settings = client.settings if client is not None else TrackiodSettings.load()
    project, name, alias = _local.artifacts.parse_ref(ref, project)
    if client is not None:
        client.wait_acked(client.seq, 2.0)  # this process's own log_artifact() calls reach the daemon first
    deadline = time.monotonic() + settings.artifact_wait_s
    with _reader(settings) as conn:
        while _local.artifacts.pending_jobs(conn, project, name) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _local.artifacts.pending_jobs(conn, project, name) and alias == "latest":
            raise ArtifactError(f"artifact {project}/{name} is still being stored; try again shortly")
        info = _local.artifacts.resolve(conn, project, name, alias)
    if type is not None and info["type"] != type:
        raise UsageError(f"artifact {project}/{name} has type {info['type']!r}, not {type!r}")
    dest = settings.artifacts_dir / project / name / f"v{info['version']}"
    path = _local.artifacts.materialise(info, settings.blobs_dir, dest)
    link.send(P.ARTIFACT_USE, {"version_id": info["version_id"], "project": project, "name": name})
    return ArtifactPath(path, info, settings)
