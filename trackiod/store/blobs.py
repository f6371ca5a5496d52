"""The content-addressed file store under ``TRACKIOD_HOME/blobs`` (docs/storage.md), and hashing while copying.

A blob is a file named by the sha256 of its content, at ``blobs/<first 2 hex digits>/<sha256>``, stored once
however many artifact versions hold it and kept read-only because materialised versions hard-link it. The
artifact worker writes blobs, ``save()``'s file keeper copies files with the same hashing copy, readers
materialise versions from blobs, and ``trackiod pull`` restores them: all through these functions, so the
naming rule is written once.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

_COPY_CHUNK = 1 << 20


def blob_path(blobs_dir: Path, sha256: str) -> Path:
    """Where the blob with this sha256 lives."""
    return blobs_dir / sha256[:2] / sha256


def copy_hashed(source: str | os.PathLike[str], dest: Path) -> tuple[str, int]:
    """Copy ``source`` to ``dest`` atomically (temp file, then rename); returns ``(sha256, size)``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(_COPY_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest(), size


def store_blob(blobs_dir: Path, source: str) -> tuple[str, int]:
    """Copy ``source`` into the blob store under its sha256 (once per content); returns ``(sha256, size)``."""
    tmp_dir = blobs_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{os.getpid()}-{time.monotonic_ns()}"
    try:
        sha, size = copy_hashed(source, tmp)
        final = blob_path(blobs_dir, sha)
        if final.exists():
            return sha, size  # deduplicated: this content is already stored
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)  # materialised versions hard-link blobs: keep them from being edited in place
        os.replace(tmp, final)
        return sha, size
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content (to check that a blob from elsewhere holds what its name says)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
