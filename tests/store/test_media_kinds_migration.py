"""Schema version 8 widens the media table's kinds: a version-7 database keeps its rich values, ids included."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from trackiod.store import schema


def test_a_version_7_media_table_is_rebuilt_with_its_rows_and_takes_the_new_kinds(tmp_path: Path) -> None:
    conn = apsw.Connection(str(tmp_path / "v7.db"))
    for version, sql in enumerate(schema.MIGRATIONS[:7]):
        with conn:
            conn.execute(sql)
            conn.execute(f"PRAGMA user_version={version + 1}")
    row = (7, 1, 2, 3, 4.5, "image", '{"width": 2}', None, "1/k/3-abc.png")
    conn.execute(
        "INSERT INTO media(id, run_id, key_id, step, ts, kind, meta, body, path) VALUES (?,?,?,?,?,?,?,?,?)", row
    )
    with pytest.raises(apsw.ConstraintError):
        conn.execute("INSERT INTO media(run_id, key_id, step, ts, kind) VALUES (1, 2, 4, 0, 'video')")
    assert schema.migrate(conn) == 7
    assert conn.execute("SELECT * FROM media").fetchall() == [row]
    for step, kind in enumerate(("video", "audio", "object3d", "plotly", "plot", "gallery"), start=10):
        conn.execute("INSERT INTO media(run_id, key_id, step, ts, kind) VALUES (1, 2, ?, 0, ?)", (step, kind))
    with pytest.raises(apsw.ConstraintError):
        conn.execute("INSERT INTO media(run_id, key_id, step, ts, kind) VALUES (1, 2, 99, 0, 'hologram')")
    with pytest.raises(apsw.ConstraintError):  # (run, key, step) is still unique
        conn.execute("INSERT INTO media(run_id, key_id, step, ts, kind) VALUES (1, 2, 3, 0, 'image')")
