"""Fixtures only: an isolated TRACKIOD_HOME, daemons owned by a tracker, the shim reset, hypothesis profiles.

Helpers live in tests/support/ and are imported from there, never from this file. Every process a test starts
through these fixtures is reaped at its teardown: daemons by the ``daemons`` tracker (a daemon left running
for the test's home that no tracker made fails the test), scripts from ``spawn_script`` by ``_reap_scripts``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import ROOT, DaemonProcess, Daemons, fail_on_strays, stray_daemons
from tests.support.scripts import SPAWNED


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An isolated environment: its own TRACKIOD_HOME, no autostart, fast heartbeats, no WANDB_* leaking in.

    At teardown, a daemon still running for a home under this test's tmp_path fails the test (see
    tests/support/daemons.py); the ones the ``daemons`` tracker made are reaped before this runs.
    """
    for name in list(os.environ):
        if name.startswith(("WANDB_", "TRACKIOD_")):
            monkeypatch.delenv(name)
    values = {
        "TRACKIOD_HOME": str(tmp_path / "home"),
        "TRACKIOD_AUTOSTART": "0",
        "TRACKIOD_HEARTBEAT_INTERVAL_S": "0.5",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    yield dict(os.environ)
    fail_on_strays(stray_daemons([tmp_path]))


@pytest.fixture
def daemons(env: dict[str, str]) -> Iterator[Daemons]:
    """A factory of DaemonProcess objects that reaps every one it made when the test ends (pyzmq's pattern).

    It asks for ``env`` so that it is torn down first: its daemons are gone before ``env`` looks for strays.
    """
    with Daemons() as made:
        yield made


@pytest.fixture
def daemon(daemons: Daemons, env: dict[str, str], tmp_path: Path) -> DaemonProcess:
    """A running daemon for this test's home; killed at teardown if the test left it running."""
    return daemons(env, tmp_path / "daemon-stdout.log").start()


@pytest.fixture
def stopped_daemon(daemons: Daemons, env: dict[str, str], tmp_path: Path) -> DaemonProcess:
    """A daemon handle that is not started yet (tests start, kill and restart it themselves)."""
    return daemons(env, tmp_path / "daemon-stdout.log")


@pytest.fixture
def shim(env: dict[str, str]) -> Iterator[Any]:
    """trackio_shim used in this process, reset afterwards (runs finished, session closed)."""
    import trackio_shim

    try:
        yield trackio_shim
    finally:
        trackio_shim.teardown()


@pytest.fixture(autouse=True)
def _reap_scripts() -> Iterator[None]:
    """Kill the scripts this test started with spawn_script and left running."""
    mark = SPAWNED.mark()
    yield
    SPAWNED.reap(mark)


@pytest.fixture(autouse=True, scope="session")
def _reap_module_scripts() -> Iterator[None]:
    """Kill the scripts that module-scoped fixtures started and left running, once every test is done."""
    yield
    SPAWNED.reap()


def _hypothesis_profiles() -> None:
    """Hypothesis: "ci" (the default: few examples, no deadline on 2 shared cores) and "deep" for long local runs.

    Pick one with HYPOTHESIS_PROFILE=deep; the example database lives in .hypothesis/ (gitignored).
    """
    try:
        from hypothesis import settings
        from hypothesis.database import DirectoryBasedExampleDatabase
    except ImportError:  # only the dev extra has it
        return
    database = DirectoryBasedExampleDatabase(str(ROOT / ".hypothesis" / "examples"))
    settings.register_profile("ci", max_examples=40, deadline=None, database=database)
    settings.register_profile("deep", max_examples=2000, deadline=None, database=database)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_hypothesis_profiles()
