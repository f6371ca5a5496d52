"""The one error hierarchy of the shim and the daemon.

Every error trackio_shim or trackiod raises on purpose derives from :class:`TrackiodError`, so callers can
catch the whole family at once. The classes callers on both sides need are here; a module that keeps an error
to itself (the dashboard's HTTP answers, the GPU sampler's NVML failures) subclasses one of these rather than
``Exception``. Builtin exceptions that escape are bugs, never a deliberate signal: the daemon counts one
raised while applying a frame as an internal error (:class:`FrameRejected` is the deliberate one). The daemon
imports this module; it never raises these into a training loop for the daemon's own troubles (those become
warnings in the shim).
"""

from __future__ import annotations


class TrackiodError(Exception):
    """Base class of every error raised on purpose by trackio_shim and trackiod."""


class UsageError(TrackiodError):
    """The caller used the API in a way it does not support (wandb raises its own UsageError here)."""


class CommError(TrackiodError):
    """Named for ``except wandb.errors.CommError`` in code written for wandb; never raised by the shim, whose
    troubles with the daemon become warnings and a spool, never an error in the training loop."""


class ConfigError(UsageError):
    """A config key was changed without ``allow_val_change=True`` (as ``wandb.errors.ConfigError``)."""


class ArtifactNotFoundError(UsageError):
    """``use_artifact()`` or the read API named an artifact, version or alias that does not exist."""


class ArtifactError(TrackiodError):
    """An artifact version could not be stored (a source file vanished, a type clash); the text says which."""


class SettingsError(TrackiodError):
    """A setting (CLI flag or ``TRACKIOD_*`` variable) has a value that cannot be used."""


class AccessError(SettingsError):
    """A data or socket directory is open to other users or belongs to one; the text names it and the fix."""


class ProtocolError(TrackiodError):
    """A frame could not be decoded or does not follow the wire protocol."""


class FrameRejected(ProtocolError):
    """A decoded frame's content is invalid (a wrong type, an unknown value, too large): the daemon drops it,
    counts it as malformed and tells its sender; the text says which field is wrong.

    Only this (and a frame that cannot be decoded) is bad input to the daemon: any other exception while a
    frame is applied is a daemon bug, logged with its traceback and counted as ``internal_errors``.
    """


class ProtocolVersionError(ProtocolError):
    """The daemon cannot serve this shim's protocol version; upgrade one so they match."""


class RunNotFoundError(UsageError):
    """``resume="must"`` named a run that does not exist, or the read API found no such run."""


class RunExistsError(UsageError):
    """``resume="never"`` named a run id that already exists."""


class ProjectExistsError(UsageError):
    """An import named a project that already has runs; pass ``force=True`` (``--force``) to add to it."""


class DaemonError(TrackiodError):
    """The daemon could not start, or could not do what a CLI command asked."""


class DaemonAlreadyRunning(DaemonError):
    """Another daemon holds this data directory's lock (the daemon's own error; the shim never raises it)."""


class MediaError(UsageError):
    """A rich value (tensor, histogram, image, table, ...) cannot be logged as given; the text says why."""


class HubError(TrackiodError):
    """A request to the Hugging Face Hub failed (sync, pull, deploy); the text says what to do."""


class HubAuthError(HubError):
    """The Hub refused the token (401) or its permissions (403): sync pauses for that repository."""


class HubTransientError(HubError):
    """A Hub request failed in a way that may pass (network, timeout, 429, 5xx): retried with backoff."""


class GpuError(TrackiodError):
    """The GPU or its library (NVML) could not answer; raised and caught inside the daemon's sampler only."""


class MirrorError(TrackiodError):
    """A mirror cannot work at all: its SDK is not installed in the daemon's environment, or its target is unusable.

    Raised inside the daemon's mirror thread only; it marks that mirror ``failed`` in ``trackiod status`` and
    never touches the local data.
    """
