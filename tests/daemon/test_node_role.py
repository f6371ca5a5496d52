"""The node's role kept in its data directory (node.json): written by `trackiod start --forward/--listen`,
read by every TrackiodSettings.load() for that home, below flags and the environment (docs/settings.md)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from trackio_shim.errors import SettingsError
from trackio_shim.settings import TrackiodSettings
from trackiod.daemon.node_role import journals, remember_role


def test_the_stored_role_is_every_daemons_unless_a_flag_or_variable_says_otherwise(tmp_path: Path) -> None:
    home = tmp_path / "node"
    env = {"TRACKIOD_HOME": str(home)}
    assert TrackiodSettings.load(environ=env).forward == ""
    remember_role(home, forward="tcp://head:5555", listen=None)
    assert stat.S_IMODE((home / "node.json").stat().st_mode) == 0o600
    settings = TrackiodSettings.load(environ=env)  # what an autostarted daemon loads: nothing in its environment
    assert settings.forward == "tcp://head:5555" and settings.listen == "" and journals(settings)
    assert TrackiodSettings.load(environ={**env, "TRACKIOD_FORWARD": "tcp://other:1"}).forward == "tcp://other:1"
    assert TrackiodSettings.load(environ=env, forward="tcp://flag:2").forward == "tcp://flag:2"
    off = TrackiodSettings.load(environ={**env, "TRACKIOD_FORWARD": "off"})
    assert off.forward == "" and journals(off)  # not sending, still journaling for the next daemon
    remember_role(home, forward="off", listen="tcp://0.0.0.0:5555")
    settings = TrackiodSettings.load(environ=env)
    assert settings.forward == "" and settings.listen == "tcp://0.0.0.0:5555" and not journals(settings)


@pytest.mark.parametrize("text", ["[1]", '{"forward": 5}', '{"mirrors": "csv:/x"}', "not json"])
def test_a_node_file_that_cannot_be_understood_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    home = tmp_path / "node"
    home.mkdir()
    (home / "node.json").write_text(text)
    with pytest.raises(SettingsError, match=r"node\.json"):
        TrackiodSettings.load(environ={"TRACKIOD_HOME": str(home)})
