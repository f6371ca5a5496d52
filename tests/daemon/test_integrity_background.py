"""The start-up database check never holds serving back: large files get the cheap check up front, the full
one in the background after an unclean shutdown, and damage found there is moved aside at the next start.

"Large" is :data:`trackiod.daemon.integrity.UPFRONT_BYTES`; the tests lower it instead of writing 48 MiB.
"""

from __future__ import annotations

from pathlib import Path

import apsw
import numpy as np
import pytest

from tests.support.daemons import wait_for
from trackiod.daemon import integrity
from trackiod.daemon.integrity import BackgroundCheck, checks_upfront, ensure_usable, mark_clean, take_clean_mark
from trackiod.store.writer import Store


def small_database(db: Path) -> None:
    store = Store(db)
    store.conn.execute("BEGIN")
    run = store.create_run("p", "run00001", "r", {}, {}, "host", 1)
    steps = np.arange(5_000, dtype=np.int64)
    for k in range(10):
        store.write_series(run["id"], store.key_id(f"k{k}"), steps, steps * 0.1, steps * 1.0)
    store.conn.execute("COMMIT")
    store.close()


def damage_index_page(db: Path) -> None:
    """Random bytes over one index page: only a full check (quick_check) sees it, not the schema read."""
    conn = apsw.Connection(str(db))
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='chunks_by_series'").fetchone()
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    data[(root - 1) * page_size : root * page_size] = np.random.default_rng(3).bytes(page_size)
    db.write_bytes(bytes(data))


@pytest.fixture
def large_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every database counts as large."""
    monkeypatch.setattr(integrity, "UPFRONT_BYTES", 0)


def test_large_database_gets_the_cheap_check_up_front(tmp_path: Path, large_limit: None) -> None:
    db = tmp_path / "trackiod.db"
    small_database(db)
    assert checks_upfront(db, "quick") == "off"
    damage_index_page(db)
    assert ensure_usable(db, tmp_path / "media") is None, "page damage is left to the background check"
    assert db.exists()


def test_truncated_large_database_is_seen_up_front(tmp_path: Path, large_limit: None) -> None:
    db = tmp_path / "trackiod.db"
    small_database(db)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    recovery = ensure_usable(db, tmp_path / "media")
    assert recovery is not None and "truncated" in recovery.problem
    assert not db.exists()


def test_background_check_finds_damage_and_the_next_start_moves_it_aside(tmp_path: Path, large_limit: None) -> None:
    db = tmp_path / "trackiod.db"
    small_database(db)
    damage_index_page(db)
    check = BackgroundCheck(db, "quick")
    check.start()
    wait_for(lambda: check.state not in ("pending", "running"), timeout=30, what="the background check")
    assert check.state.startswith("damaged"), check.state
    assert checks_upfront(db, "quick") == "quick", "damage found in the background: the next start checks in full"
    recovery = ensure_usable(db, tmp_path / "media")
    assert recovery is not None and not db.exists()


def test_background_check_passes_a_sound_database(tmp_path: Path) -> None:
    db = tmp_path / "trackiod.db"
    small_database(db)
    check = BackgroundCheck(db, "quick")
    check.start()
    wait_for(lambda: check.state not in ("pending", "running"), timeout=30, what="the background check")
    assert check.state == "ok"
    assert check.stop(5)


def test_clean_mark_is_taken_once(tmp_path: Path) -> None:
    db = tmp_path / "trackiod.db"
    small_database(db)
    assert not take_clean_mark(db)
    mark_clean(db)
    assert take_clean_mark(db)
    assert not take_clean_mark(db), "a daemon that crashes after start leaves no mark"


def test_markers_are_owner_only_and_never_follow_a_planted_symlink(tmp_path: Path) -> None:
    db = tmp_path / "trackiod.db"
    small_database(db)
    mark_clean(db)
    assert (tmp_path / "trackiod.db.clean").stat().st_mode & 0o077 == 0
    assert take_clean_mark(db)
    target = tmp_path / "elsewhere"
    (tmp_path / "trackiod.db.clean").symlink_to(target)
    mark_clean(db)  # refused (logged), not followed
    assert not target.exists()
