"""The backfill re-encodes a stored run exactly: applied to another store as a head applies forwarded frames,
it gives the same series (values by step, stored point counts: a step logged twice stays twice), contexts,
texts, config and summary, also when the run is read in many step windows and journaled in many pieces."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostile_frames import H, IngestRig
from trackio_shim import protocol as P
from trackiod.daemon import backfill
from trackiod.read.series import read_series, read_texts


def _snapshot(rig: IngestRig) -> dict[str, Any]:
    conn = rig.store.conn
    out: dict[str, Any] = {}
    for run_id, config, summary, state in conn.execute("SELECT id, config, summary, state FROM runs"):
        out["run"] = (json.loads(config), json.loads(summary), state)
        for key_id, kind, points in conn.execute(
            "SELECT key_id, kind, points FROM run_keys WHERE run_id=? ORDER BY key_id", (run_id,)
        ):
            name = conn.execute("SELECT name FROM keys WHERE id=?", (key_id,)).fetchone()
            if name is None:  # a context series: its base name and context
                base, body = conn.execute(
                    "SELECT k.base_name, c.body FROM key_contexts k JOIN contexts c ON c.id = k.context_id "
                    "WHERE k.id=?",
                    (-key_id,),
                ).fetchone()
                name = (f"{base}{body}",)
            if kind == "text":
                steps, _, values = read_texts(conn, run_id, key_id)
                out[name[0]] = (points, steps.tolist(), values)
            else:
                steps, times, vals = read_series(conn, run_id, key_id)
                out[name[0]] = (points, steps.tolist(), times.tolist(), vals.tolist())
    return out


def test_a_backfilled_run_applies_to_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backfill, "WINDOW_STEPS", 8)
    monkeypatch.setattr(backfill, "FLUSH_FRAMES", 7)
    node = IngestRig(tmp_path / "node")
    ts = time.time()
    node.feed_fields(P.CONFIG, H, {"lr": 0.5})
    node.feed_fields(P.DEFINE_METRIC, H, {"name": "x", "summary": ["min", "last"]})
    for step in [*range(40), 5, 3, 10**12, -3]:  # repeats, a step back, a far step, a negative one
        node.feed_fields(P.LOG, H, step, ts + step % 7, {"x": float(step) * 1.5, "y": step})
    node.feed_fields(P.LOG, H, 20, ts + 20, {"x": 99.0})  # step 20 logged again, at another time
    node.feed_fields(P.LOG, H, 41, ts, {"note": "hello"})
    node.feed_fields(P.LOG_CONTEXT, H, 7, ts, {"x": -1.0}, {"subset": "val"})
    node.feed_fields(P.SUMMARY, H, {"best": 7.5})
    node.feed_fields(P.RUN_FINISH, H, 0, ts + 50)
    assert node.ingest.commit()

    backfill.prepare_journal(node.store, tmp_path / "node" / "sync")
    frames = [bytes(f) for (f,) in node.store.conn.execute("SELECT frame FROM forward_journal ORDER BY id")]
    assert len(frames) > 7 * 3  # journaled in several pieces

    head = IngestRig(tmp_path / "head")
    forwarder = b"f" * 16
    pairs = list(enumerate(frames, start=1))
    for start in range(0, len(pairs), 5):
        head.ingest.handle_forwarded(forwarder, pairs[start : start + 5])
    assert head.ingest.commit()
    assert head.ingest.counters.malformed == 0 and head.ingest.counters.frames_lost == 0
    node_view, head_view = _snapshot(node), _snapshot(head)
    # The head rig's own session started "target" too, so the backfilled run resumed it: its state stays running.
    # The summary's "last" values are not compared: a SUMMARY applied in the same head transaction as the points
    # it follows loses to them (a known limit of the ingest's summary, docs/forwarding.md).
    (config, summary, _), (node_config, node_summary, _) = head_view.pop("run"), node_view["run"]
    assert config == node_config and summary["best"] == 7.5 and summary["note"] == "hello"
    assert summary["x"]["min"] == node_summary["x"]["min"]
    assert set(head_view) == set(node_view) - {"run"}
    for key, value in node_view.items():
        if key != "run":
            assert head_view[key] == value, key
    assert node_view["x"][0] == 45  # 44 logs of x plus step 20 again: each stored point once, none merged
