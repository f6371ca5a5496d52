"""The one frozen settings object, shared by the shim and the daemon.

Built once from explicit overrides (CLI flags), ``TRACKIOD_*`` environment variables
and defaults, in that order of precedence, then passed explicitly. Nothing here runs at import time.
Every field is documented in docs/settings.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trackio_shim.errors import SettingsError, UsageError
from trackio_shim.rules import COPY_MODES

# Unix domain socket paths are limited to 108 bytes on Linux (104 on macOS); keep a margin.
_MAX_SOCKET_PATH = 100


def _default_home(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "trackiod"


def _default_runtime_dir(env: Mapping[str, str], home: Path) -> Path:
    # Keyed by the data directory, so each home has its own daemon and socket; hashed to keep the path short.
    import hashlib
    import tempfile

    base = env.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return Path(base) / f"trackiod-{os.getuid()}" / digest


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in _BOOL_TRUE:
                return True
            if low in _BOOL_FALSE:
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        env = "TRACKIOD_" + name.upper()
        raise SettingsError(f"{env}={raw!r} is not a valid {kind.__name__}; fix or unset {env}") from None


#: The file in the data directory that keeps the node's role (docs/forwarding.md), and the settings it may hold.
NODE_FILE = "node.json"
NODE_SETTINGS = ("listen", "forward", "forward_window")
#: What clears a stored ``listen`` or ``forward`` (``trackiod start --forward off``).
NODE_OFF = ("off", "none")


def read_node_file(home: Path) -> dict[str, Any]:
    """The node settings ``trackiod start --listen/--forward`` stored in ``home/node.json`` ({} when none).

    Forwarding belongs to the data directory, not to one process: whatever starts a daemon for it (the CLI,
    systemd, a training process's autostart) reads this file, so every daemon of the node forwards alike.
    They rank below the flags and the environment. A file that cannot be read is an error naming it, not
    silently a node that stopped forwarding.

    Raises:
        SettingsError: the file exists but is not a JSON object of known node settings.
    """
    path = home / NODE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from None
    import json

    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or set(data) - set(NODE_SETTINGS):
        raise SettingsError(
            f"{path} is not a JSON object of {', '.join(NODE_SETTINGS)}; fix it, or delete it and run "
            "`trackiod start --forward/--listen` again"
        )
    for name, value in data.items():
        if not isinstance(value, type(_DEFAULTS[name])):
            raise SettingsError(f"{path}: {name} must be a {type(_DEFAULTS[name]).__name__}, not {value!r}")
    return data


def _check_sampling(values: dict[str, Any]) -> None:
    interval = float(values.get("sample_interval_s", 2.0))
    if interval != 0 and not 0.05 <= interval <= 3600:
        raise SettingsError(f"TRACKIOD_SAMPLE_INTERVAL_S={interval!r}: use 0 (no sampling) or 0.05 to 3600 seconds")
    intensity = float(values.get("grid_intensity_g_per_kwh", 475.0))
    if not 0 <= intensity <= 5000:
        raise SettingsError(f"TRACKIOD_GRID_INTENSITY_G_PER_KWH={intensity!r}: use grams of CO2eq per kWh, 0 to 5000")
    nvml = str(values.get("nvml", "auto"))
    if nvml not in ("auto", "off") and not (nvml.startswith("fake:") and len(nvml) > 5):
        raise SettingsError(f"TRACKIOD_NVML={nvml!r} is not one of auto, off, fake:<script.json> (tests only)")


class TrackiodSettings:
    """Every tunable of trackiod and trackio_shim. Build with :meth:`Settings.load`.

    A frozen record: immutable, compared and hashed by its fields (not ``overrides``), repr'd like a dataclass.
    Deliberately not a ``@dataclass``: generating the methods of ~50 fields and importing ``dataclasses`` (which
    pulls in ``inspect``) cost about 10 ms of ``import trackio_shim``. The fields are the annotated names below,
    in order; ``_FIELDS`` and ``_DEFAULTS`` are derived from them after the class.
    """

    home: Path
    runtime_dir: Path
    endpoint: str
    autostart: bool = True
    buffer_bytes: int = 64 * 1024 * 1024
    max_frame_bytes: int = 16 * 1024 * 1024
    init_timeout_s: float = 2.0
    autostart_timeout_s: float = 15.0
    finish_timeout_s: float = 5.0
    pump_interval_s: float = 0.02
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 120.0
    flush_interval_s: float = 0.025
    batch_max_points: int = 250_000
    maintenance_interval_s: float = 1.0
    checkpoint_pages: int = 16384
    drain_timeout_s: float = 20.0
    integrity_check: str = "quick"
    log_level: str = "INFO"
    sample_interval_s: float = 2.0
    nvml: str = "auto"
    grid_intensity_g_per_kwh: float = 475.0
    location: str = ""
    tensor_copy: str = "deferred"
    max_inflight_copies: int = 64
    max_array_bytes: int = 4 * 1024 * 1024
    sync_interval_s: float = 300.0
    sync_dataset: str = ""
    sync_private: bool = True
    sync_retry_max_s: float = 300.0
    hub: str = ""
    silent: bool = False
    webhook_url: str = ""
    webhook_format: str = "auto"
    webhook_retries: int = 5
    webhook_backoff_s: float = 1.0
    webhook_timeout_s: float = 5.0
    artifact_wait_s: float = 30.0
    dashboard: bool = False
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 7860
    dashboard_token: str = ""
    dashboard_open_browser: bool = True
    dashboard_poll_interval_s: float = 2.0
    mirrors: str = ""
    mirror_queue_points: int = 1_000_000
    ranks: str = "all"
    listen: str = ""
    forward: str = ""
    forward_window: int = 50_000
    #: The explicit overrides load() was given (for child_env); not compared, hashed or shown in repr.
    overrides: tuple[tuple[str, Any], ...] = ()

    def __init__(self, *args: Any, **values: Any) -> None:
        if len(args) > len(_FIELDS):
            raise TypeError(f"TrackiodSettings() takes at most {len(_FIELDS)} positional arguments")
        for name, value in zip(_FIELDS, args):
            if name in values:
                raise TypeError(f"TrackiodSettings() got multiple values for argument {name!r}")
            values[name] = value
        unknown = sorted(set(values) - set(_FIELDS))
        if unknown:
            raise TypeError(f"TrackiodSettings() got an unexpected keyword argument {unknown[0]!r}")
        missing = [name for name in _FIELDS if name not in values and name not in _DEFAULTS]
        if missing:
            raise TypeError(f"TrackiodSettings() missing required argument(s): {', '.join(missing)}")
        for name in _FIELDS:
            object.__setattr__(self, name, values[name] if name in values else _DEFAULTS[name])

    def __setattr__(self, name: str, value: Any) -> None:
        from dataclasses import FrozenInstanceError  # only on this error path: keeps the import light

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _COMPARED)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, TrackiodSettings)
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _COMPARED)
        return f"{type(self).__name__}({shown})"

    @property
    def keys_dir(self) -> Path:
        """Where ``trackiod keys`` writes the CURVE key pairs and authorised client keys (docs/forwarding.md)."""
        return self.home / "keys"

    @property
    def node_path(self) -> Path:
        """The node's own settings (forwarding, listening), kept with its data: see :func:`read_node_file`."""
        return self.home / NODE_FILE

    @property
    def db_path(self) -> Path:
        return self.home / "trackiod.db"

    @property
    def media_dir(self) -> Path:
        return self.home / "media"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def log_path(self) -> Path:
        return self.home / "trackiod.log"

    @property
    def lock_path(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def state_path(self) -> Path:
        return self.home / "daemon.json"

    @property
    def sync_dir(self) -> Path:
        return self.home / "sync"

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def mirror_specs(self) -> list[Any]:
        """The daemon-wide mirrors (TRACKIOD_MIRRORS) as parsed specs; docs/mirrors.md."""
        from trackio_shim.mirror_spec import parse_mirrors

        return list(parse_mirrors(self.mirrors, "TRACKIOD_MIRRORS"))

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / "trackiod.sock"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> TrackiodSettings:
        """Build settings from ``overrides`` (None values ignored), then ``TRACKIOD_*`` variables, then defaults.

        Raises:
            SettingsError: a variable or override cannot be parsed, or the socket path is too long.
        """
        env = os.environ if environ is None else environ
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - set(_FIELDS)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        home = Path(given.get("home") or env.get("TRACKIOD_HOME") or _default_home(env)).expanduser()
        home = home.absolute()
        stored = read_node_file(home)
        values: dict[str, Any] = {}
        for name in _FIELDS:
            if name in ("home", "runtime_dir", "endpoint", "overrides"):
                continue
            kind = type(_DEFAULTS[name])
            if name in given:
                values[name] = given[name]
            elif f"TRACKIOD_{name.upper()}" in env:
                values[name] = _parse(name, env[f"TRACKIOD_{name.upper()}"], kind)
            elif name in stored:
                values[name] = stored[name]
        level = str(values.get("log_level", "INFO")).upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        _check_sampling(values)
        if values.get("integrity_check", "quick") not in ("quick", "full", "off"):
            raise SettingsError(f"TRACKIOD_INTEGRITY_CHECK={values['integrity_check']!r}: use quick, full or off")
        copy_mode = values.get("tensor_copy", "deferred")
        if copy_mode not in COPY_MODES:
            raise SettingsError(f"TRACKIOD_TENSOR_COPY={copy_mode!r}: use 'deferred' or 'sync'")
        if int(values.get("max_inflight_copies", 64)) < 1:
            raise SettingsError("TRACKIOD_MAX_INFLIGHT_COPIES must be at least 1")
        if int(values.get("checkpoint_pages", 1)) < 1:
            raise SettingsError(
                f"TRACKIOD_CHECKPOINT_PAGES={values['checkpoint_pages']!r}: use at least 1 (WAL pages, 4 KiB each)"
            )
        if values.get("ranks", "all") not in ("all", "zero"):
            raise SettingsError(
                f"TRACKIOD_RANKS={values['ranks']!r}: use 'all' (every rank logs) or 'zero' (rank 0 only)"
            )
        for name in ("listen", "forward"):
            spec = str(values.get(name, ""))
            if spec in NODE_OFF:
                spec = values[name] = ""
            if spec and not (spec.startswith("tcp://") and ":" in spec[6:]):
                raise SettingsError(f"TRACKIOD_{name.upper()}={spec!r}: use tcp://HOST:PORT")
        if int(values.get("forward_window", 50_000)) < 1:
            raise SettingsError("TRACKIOD_FORWARD_WINDOW must be at least 1")
        hub = str(values.get("hub", ""))
        if hub and not (hub.startswith("folder:") and len(hub) > len("folder:")):
            raise SettingsError(
                f"TRACKIOD_HUB={hub!r}: leave it unset for the Hugging Face Hub, or use folder:/path (tests only)"
            )
        if values.get("webhook_format", "auto") not in ("auto", "slack", "discord", "json"):
            raise SettingsError(
                f"TRACKIOD_WEBHOOK_FORMAT={values['webhook_format']!r} is not one of auto, slack, discord, json"
            )
        if values.get("mirrors"):
            from trackio_shim.mirror_spec import parse_mirrors

            try:
                parse_mirrors(values["mirrors"], "TRACKIOD_MIRRORS")
            except UsageError as exc:
                raise SettingsError(f"{exc}; fix or unset TRACKIOD_MIRRORS") from None
        runtime_raw = given.get("runtime_dir") or env.get("TRACKIOD_RUNTIME_DIR")
        runtime = Path(runtime_raw).expanduser().absolute() if runtime_raw else _default_runtime_dir(env, home)
        endpoint = given.get("endpoint") or env.get("TRACKIOD_ENDPOINT") or f"ipc://{runtime / 'trackiod.sock'}"
        if endpoint.startswith("ipc://") and len(endpoint) - len("ipc://") > _MAX_SOCKET_PATH:
            raise SettingsError(
                f"socket path {endpoint[6:]!r} is longer than {_MAX_SOCKET_PATH} characters; "
                "set TRACKIOD_RUNTIME_DIR to a shorter directory"
            )
        return cls(
            home=home,
            runtime_dir=runtime,
            endpoint=endpoint,
            overrides=tuple(sorted(given.items())),
            **values,
        )

    def ensure_dirs(self) -> None:
        """Create the data, spool and socket directories (mode 0700 when new) and check that they are private.

        Raises:
            AccessError: the data directory is open to group/others or someone else's, or the socket directory
                is (see :mod:`trackio_shim.access`; docs/security.md).
        """
        from trackio_shim.access import require_private_dir, require_real_dir

        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        require_private_dir(self.home, "data directory", "TRACKIOD_HOME")
        self.spool_dir.mkdir(mode=0o700, exist_ok=True)
        require_real_dir(self.spool_dir, "spool directory")
        self.ensure_socket_dir()

    def ensure_socket_dir(self) -> None:
        """Make sure the ipc socket's directory is this user's and closed to writers (the shim, before connecting).

        The directories trackiod names itself (the socket directory and, in the default layout, its
        ``trackiod-UID`` parent) are created 0700 or tightened; a directory the user chose (TRACKIOD_RUNTIME_DIR,
        an ipc TRACKIOD_ENDPOINT) is created 0700 when missing and otherwise only checked, never changed.

        Raises:
            AccessError: the socket directory belongs to another user or others may write in it.
        """
        if not self.endpoint.startswith("ipc://"):
            return
        from trackio_shim.access import make_own_dir, require_socket_dir

        socket_dir = Path(self.endpoint[6:]).parent
        named_by_us = self.runtime_dir.parent.name == f"trackiod-{os.getuid()}"
        if named_by_us and socket_dir == self.runtime_dir:
            make_own_dir(self.runtime_dir.parent)
            make_own_dir(self.runtime_dir)
        else:
            socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        require_socket_dir(socket_dir)

    def child_env(self) -> dict[str, str]:
        """The ``TRACKIOD_*`` variables that reproduce these settings in a daemon we spawn."""
        out = {"TRACKIOD_HOME": str(self.home), "TRACKIOD_RUNTIME_DIR": str(self.runtime_dir)}
        out["TRACKIOD_ENDPOINT"] = self.endpoint
        for name, value in self.overrides:
            if name not in ("home", "runtime_dir", "endpoint"):
                out[f"TRACKIOD_{name.upper()}"] = str(int(value) if isinstance(value, bool) else value)
        return out


#: The settings' field names in declaration order (the class's annotations), their defaults, and the fields
#: that equality, hashing and repr look at.
_FIELDS: tuple[str, ...] = tuple(TrackiodSettings.__annotations__)
_DEFAULTS: dict[str, Any] = {name: vars(TrackiodSettings)[name] for name in _FIELDS if name in vars(TrackiodSettings)}
_COMPARED: tuple[str, ...] = tuple(name for name in _FIELDS if name != "overrides")
