"""A whole chart on a step axis reads only the series' values (trackiod.read.stepvalues) and reduces each at once;
the answer must be the exact one: :func:`align` over every point :func:`read_series` gives (round 5).

The runs mix the layouts the read handles differently (an unbroken range, every 10th step, a late start, a
hole, rewound steps, a NaN and an infinity, a series too short to reduce) and series logged with a context, which
come after their run's plain series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.dashboard import client, decode_chart, settings_for
from trackiod.dashboard.downsample import align
from trackiod.read.connection import open_reader
from trackiod.read.series import read_series
from trackiod.store.writer import Store

STEPS = {
    "every": np.arange(0, 20_000, dtype=np.int64),
    "tenth": np.arange(0, 20_000, 10, dtype=np.int64),
    "late": np.arange(7_000, 20_000, dtype=np.int64),
    "hole": np.concatenate((np.arange(0, 5_000), np.arange(12_000, 19_000))).astype(np.int64),
    "rewound": np.arange(0, 16_000, dtype=np.int64),
    "short": np.arange(100, 140, dtype=np.int64),
}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    store = Store(home / "trackiod.db")
    rng = np.random.default_rng(3)
    with store.conn:
        plain = store.key_id("m")
        val = store.key_id("m", store.context_id('{"subset":"val"}'))
    for r, (name, steps) in enumerate(STEPS.items()):
        with store.conn:
            run_id = int(store.create_run("p", name, name, {}, {}, "h", 1)["id"])
        vals = np.cumsum(rng.standard_normal(steps.size))
        if name == "every":
            vals[[5, 6, 900]] = np.nan
            vals[3_000] = np.inf
        for start in range(0, steps.size, 3_000):  # commits of a few thousand points: sealed and tail chunks
            part = slice(start, start + 3_000)
            with store.conn:
                store.write_series(run_id, plain, steps[part], 1e9 + steps[part], vals[part])
        if name == "rewound":
            again = np.arange(2_000, 2_600, dtype=np.int64)
            with store.conn:
                store.write_series(run_id, plain, again, 2e9 + again, np.full(again.size, 50.0))
        if r % 2 == 0:
            with store.conn:
                store.write_series(run_id, val, steps[::3], 1e9 + steps[::3], vals[::3] * 2)
        with store.conn:
            store.count_keys({(run_id, plain): ("scalar", steps.size, int(steps[-1]))})
            if r % 2 == 0:
                store.count_keys({(run_id, val): ("scalar", steps[::3].size, int(steps[::3][-1]))})
    store.close()
    return home


def _exact(home: Path, runs: list[str], width: int) -> tuple[list[tuple[str, int]], np.ndarray, list[np.ndarray]]:
    """Every point of every series read whole, reduced over the steps stored."""
    conn = open_reader(home / "trackiod.db")
    try:
        series = []
        for name in runs:
            run_id = conn.execute("SELECT id FROM runs WHERE run_key=?", (name,)).fetchone()[0]
            sql = "SELECT key_id FROM run_keys WHERE run_id=? ORDER BY key_id > 0 DESC, key_id"  # plain, then contexts
            for (kid,) in conn.execute(sql, (run_id,)).fetchall():
                steps, _, vals = read_series(conn, run_id, kid, with_times=False)
                series.append((name, steps, vals))
    finally:
        conn.close()
    low = float(min(s[1][0] for s in series))
    high = float(max(s[1][-1] for s in series))
    grid, columns, reduced = align([s[1] for s in series], [s[2] for s in series], width, (low, high))
    assert reduced
    return [(s[0], s[1].size) for s in series], grid, columns


@pytest.mark.parametrize("width", [300, 1_000])
def test_a_whole_chart_is_the_exact_reduction_of_every_point(home: Path, width: int) -> None:
    runs = list(STEPS)
    http = client(settings_for(home))
    params = {"project": "p", "key": "m", "runs": ",".join(runs), "width": width, "format": "bin"}
    body = http.get("/api/chart", params=params)
    assert body.status_code == 200, body.text
    header, x, ys = decode_chart(body.content)
    series, grid, columns = _exact(home, runs, width)
    assert [(s["run"], s["points"]) for s in header["series"]] == series
    assert [("context" in s) for s in header["series"]] == [False, True, False, False, True, False, False, True, False]
    assert header["reduced"]
    np.testing.assert_array_equal(x, grid)
    assert len(ys) == len(columns)
    for got, want in zip(ys, columns):
        np.testing.assert_array_equal(got, want)
    assert np.isfinite(ys[0]).all(), "the NaNs and the infinity are left out of their columns' extremes"
