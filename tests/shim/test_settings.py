"""Settings: defaults that follow XDG, the environment and overrides, bad values named, private directories."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from trackio_shim.errors import SettingsError
from trackio_shim.settings import TrackiodSettings


def test_settings_defaults_follow_xdg(tmp_path: Path) -> None:
    settings = TrackiodSettings.load(environ={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert settings.home == tmp_path / "data" / "trackiod"
    assert settings.db_path == tmp_path / "data" / "trackiod" / "trackiod.db"
    assert settings.spool_dir == settings.home / "spool"
    assert settings.autostart is True
    assert settings.finish_timeout_s == 5.0
    assert settings.endpoint == f"ipc://{settings.runtime_dir / 'trackiod.sock'}"
    assert settings.runtime_dir.parent.name == f"trackiod-{os.getuid()}"


def test_settings_from_environment_and_overrides(tmp_path: Path) -> None:
    environ = {
        "TRACKIOD_HOME": str(tmp_path / "home"),
        "TRACKIOD_AUTOSTART": "no",
        "TRACKIOD_HEARTBEAT_INTERVAL_S": "0.75",
        "TRACKIOD_BUFFER_BYTES": "1024",
        "TRACKIOD_FINISH_TIMEOUT_S": "2.5",
        "TRACKIOD_LOG_LEVEL": "DEBUG",
        "TRACKIOD_RUNTIME_DIR": str(tmp_path / "rt"),
    }
    settings = TrackiodSettings.load(environ=environ)
    assert settings.home == tmp_path / "home"
    assert settings.autostart is False
    assert settings.heartbeat_interval_s == 0.75
    assert settings.buffer_bytes == 1024
    assert settings.finish_timeout_s == 2.5
    assert settings.log_level == "DEBUG"
    assert settings.socket_path == tmp_path / "rt" / "trackiod.sock"
    # Explicit overrides win over the environment; None means "not given".
    overridden = TrackiodSettings.load(environ=environ, buffer_bytes=4096, finish_timeout_s=None)
    assert overridden.buffer_bytes == 4096
    assert overridden.finish_timeout_s == 2.5
    # child_env() reproduces the same settings in a spawned daemon.
    again = TrackiodSettings.load(environ=overridden.child_env())
    assert (again.home, again.endpoint, again.buffer_bytes) == (overridden.home, overridden.endpoint, 4096)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TRACKIOD_BUFFER_BYTES", "lots"),
        ("TRACKIOD_BUFFER_BYTES", "1.5"),
        ("TRACKIOD_FINISH_TIMEOUT_S", "soon"),
        ("TRACKIOD_AUTOSTART", "maybe"),
    ],
)
def test_settings_bad_values_name_the_variable(tmp_path: Path, name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name) as info:
        TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path), name: raw})
    assert repr(raw) in str(info.value)


def test_settings_checkpoint_pages_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TRACKIOD_CHECKPOINT_PAGES=0: use at least 1"):
        TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path), "TRACKIOD_CHECKPOINT_PAGES": "0"})


def test_settings_unknown_override_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no_such_setting"):
        TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path)}, no_such_setting=1)


def test_settings_socket_path_length_is_checked(tmp_path: Path) -> None:
    long_dir = tmp_path / ("d" * 120)
    with pytest.raises(SettingsError, match="TRACKIOD_RUNTIME_DIR"):
        TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path), "TRACKIOD_RUNTIME_DIR": str(long_dir)})
    # The default socket path stays short even for a very long data directory (it is hashed).
    deep_home = tmp_path / ("h" * 200)
    settings = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(deep_home), "XDG_RUNTIME_DIR": str(tmp_path)})
    assert len(str(settings.socket_path)) <= 100
    other = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path / "b"), "XDG_RUNTIME_DIR": str(tmp_path)})
    assert other.socket_path != settings.socket_path  # one daemon per data directory


def test_settings_ensure_dirs_makes_private_socket_directories(tmp_path: Path) -> None:
    runtime = tmp_path / "run" / "sock"
    runtime.parent.mkdir(mode=0o755)
    os.chmod(runtime.parent, 0o755)
    settings = TrackiodSettings.load(
        environ={"TRACKIOD_HOME": str(tmp_path / "home"), "TRACKIOD_RUNTIME_DIR": str(runtime)}
    )
    settings.ensure_dirs()
    assert settings.home.is_dir() and settings.spool_dir.is_dir()
    assert stat.S_IMODE(settings.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    # A directory the user pointed TRACKIOD_RUNTIME_DIR into is theirs: never tightened (it could be /tmp).
    assert stat.S_IMODE(runtime.parent.stat().st_mode) == 0o755
    # In the default layout the per-user "trackiod-UID" parent is ours, and is tightened even if it existed.
    xdg = Path(tempfile.mkdtemp(prefix="xdg", dir="/tmp"))  # short: socket paths are limited to ~100 bytes
    try:
        namespace = xdg / f"trackiod-{os.getuid()}"
        namespace.mkdir(mode=0o755)
        os.chmod(namespace, 0o755)
        default = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path / "h2"), "XDG_RUNTIME_DIR": str(xdg)})
        default.ensure_dirs()
        for directory in (default.runtime_dir, namespace):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    finally:
        shutil.rmtree(xdg)
