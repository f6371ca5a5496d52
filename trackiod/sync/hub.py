"""The small interface sync, pull and deploy use to talk to the Hugging Face Hub, and the real implementation.

:class:`HfHub` is a thin layer over ``huggingface_hub.HfApi`` whose token comes from huggingface_hub's usual
places (``HF_TOKEN``, a cached ``hf auth login``). Every failure is sorted into
:class:`~trackio_shim.errors.HubAuthError` (401/403: sync pauses for that repository) or
:class:`~trackio_shim.errors.HubTransientError` (anything that may pass: retried with backoff).

``TRACKIOD_HUB=folder:/path`` selects a Hub kept in a local folder instead (tests only: the Hub cannot be
reached from the test machines); :func:`make_hub` imports it by name from :data:`HUBS`, so no production
module imports the test double.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from trackio_shim.errors import HubAuthError, HubError, HubTransientError
from trackio_shim.settings import TrackiodSettings

log = logging.getLogger("trackiod.hub")

#: ``CommitOperationAdd`` or ``CommitOperationDelete`` from huggingface_hub.
Operation = Any


class Hub(Protocol):
    """What trackiod needs from the Hub; ``repo_type`` is ``"dataset"`` or ``"space"``."""

    def ensure_repo(self, repo_id: str, repo_type: str, private: bool, space_sdk: str | None = None) -> None:
        """Create the repository if it does not exist (no-op otherwise)."""

    def commit(self, repo_id: str, repo_type: str, operations: Sequence[Operation], message: str) -> str:
        """Apply ``operations`` as one commit; returns the commit id."""
        ...

    def download(self, repo_id: str, repo_type: str, local_dir: Path) -> Path:
        """Copy the repository's current files into ``local_dir``; returns it."""
        ...

    def list_files(self, repo_id: str, repo_type: str, folder: str) -> dict[str, int]:
        """``{path: size in bytes}`` of every file under ``folder`` in the repository's current revision."""
        ...

    def download_files(self, repo_id: str, repo_type: str, paths: Sequence[str], local_dir: Path) -> Path:
        """Copy the files ``paths`` of the repository's current revision into ``local_dir`` (same relative paths)."""
        ...


def dataset_for_space(space_id: str) -> str:
    """The dataset a Space's runs sync to when no ``dataset_id`` is given (trackio's convention)."""
    return f"{space_id}-dataset"


# ---------------------------------------------------------------------------------------------- the real Hub
def classify(exc: BaseException, what: str) -> HubError:
    """Turn a huggingface_hub / network exception into a HubAuthError or a HubTransientError."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    name = type(exc).__name__
    detail = str(exc).splitlines()[0][:300] if str(exc) else name
    if name == "LocalTokenNotFoundError" or status in (401, 403):
        return HubAuthError(
            f"{what}: the Hub refused the token ({status or 'no token'}: {detail}); set HF_TOKEN or run "
            "`hf auth login` with a token that can write there, then `trackiod sync --now`"
        )
    if name in ("RepositoryNotFoundError", "GatedRepoError") or status == 404:
        return HubAuthError(
            f"{what}: the repository was not found or this token cannot see it ({detail}); check the name and "
            "the token's permissions, then `trackiod sync --now`"
        )
    return HubTransientError(f"{what}: {name}: {detail}")


class HfHub:
    """The Hugging Face Hub, through ``huggingface_hub.HfApi``."""

    def __init__(self) -> None:
        from huggingface_hub import HfApi

        self.api = HfApi()

    def ensure_repo(self, repo_id: str, repo_type: str, private: bool, space_sdk: str | None = None) -> None:
        try:
            self.api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        except Exception as exc:
            raise classify(exc, f"creating {repo_type} {repo_id}") from exc

    def commit(self, repo_id: str, repo_type: str, operations: Sequence[Operation], message: str) -> str:
        try:
            info = self.api.create_commit(repo_id, list(operations), commit_message=message, repo_type=repo_type)
        except Exception as exc:
            raise classify(exc, f"committing to {repo_type} {repo_id}") from exc
        return str(getattr(info, "oid", "") or "")

    def download(self, repo_id: str, repo_type: str, local_dir: Path) -> Path:
        try:
            path = self.api.snapshot_download(repo_id, repo_type=repo_type, local_dir=local_dir)
        except Exception as exc:
            raise classify(exc, f"downloading {repo_type} {repo_id}") from exc
        return Path(str(path))

    def list_files(self, repo_id: str, repo_type: str, folder: str) -> dict[str, int]:
        try:
            entries = self.api.list_repo_tree(repo_id, path_in_repo=folder, recursive=True, repo_type=repo_type)
            return {e.path: int(e.size) for e in entries if hasattr(e, "size") and not hasattr(e, "tree_id")}
        except Exception as exc:
            if type(exc).__name__ == "EntryNotFoundError":
                return {}
            raise classify(exc, f"listing {folder} in {repo_type} {repo_id}") from exc

    def download_files(self, repo_id: str, repo_type: str, paths: Sequence[str], local_dir: Path) -> Path:
        try:
            self.api.snapshot_download(repo_id, repo_type=repo_type, local_dir=local_dir, allow_patterns=list(paths))
        except Exception as exc:
            raise classify(exc, f"downloading {len(paths)} file(s) of {repo_type} {repo_id}") from exc
        return local_dir


#: ``TRACKIOD_HUB=<name>:<path>`` -> "module:class" of a Hub kept elsewhere than huggingface.co, constructed with
#: the path; imported only when selected. Only the tests' folder Hub today.
HUBS = {"folder": "trackiod.testing.folder_hub:FolderHub"}


def make_hub(settings: TrackiodSettings) -> Hub:
    """The Hub these settings select: the real one, or one of :data:`HUBS` (``TRACKIOD_HUB=folder:/path``)."""
    name, colon, where = settings.hub.partition(":")
    if colon and name in HUBS:
        module_name, _, class_name = HUBS[name].partition(":")
        hub: Hub = getattr(importlib.import_module(module_name), class_name)(Path(where).expanduser())
        return hub
    return HfHub()
