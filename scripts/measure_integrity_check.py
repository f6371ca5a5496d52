#!/usr/bin/env python
"""Time ``PRAGMA quick_check`` against ``PRAGMA integrity_check`` on a realistic trackiod database.

Builds (or reuses) a database through trackiod's own Store: RUNS runs x KEYS keys x STEPS steps of float
points in sealed chunks, a text key per run, and the usual run rows. Then times each check warm (file in the
page cache) and cold (its pages dropped with posix_fadvise), and prints one line per figure. docs/faults.md
quotes the figures and explains the choice made from them.

    python scripts/measure_integrity_check.py /tmp/big.db --runs 40 --keys 50 --steps 50000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import apsw
import numpy as np

from trackiod.store.writer import Store


def build(path: Path, runs: int, keys: int, steps: int) -> None:
    """Write the database a long project leaves behind (sealed chunks, texts, summaries)."""
    store = Store(path)
    rng = np.random.default_rng(0)
    conn = store.conn
    for r in range(runs):
        conn.execute("BEGIN")
        run = store.create_run("bench", f"run{r:05d}", f"run-{r}", {}, {"lr": 0.001 * r}, "host", 1)
        step_arr = np.arange(steps, dtype=np.int64)
        time_arr = 1.7e9 + step_arr * 0.1
        for k in range(keys):
            store.write_series(run["id"], store.key_id(f"train/metric_{k}"), step_arr, time_arr, rng.random(steps))
        phase = store.key_id("phase")
        store.write_texts([(run["id"], phase, s, 1.7e9 + s, f"epoch {s // 1000}") for s in range(0, steps, 100)])
        store.update_run(run["id"], state="finished", last_step=steps - 1)
        conn.execute("COMMIT")
        store.forget_tails(run["id"])
    store.close()


def evict(path: Path) -> None:
    """Drop the file's clean pages from the page cache, so the next read comes from the disk."""
    for name in (path, Path(f"{path}-wal")):
        if name.exists():
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(path: Path, pragma: str) -> float:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        started = time.perf_counter()
        rows = conn.execute(f"PRAGMA {pragma}").fetchall()
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    assert rows == [("ok",)], rows
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.db.exists():
        started = time.perf_counter()
        build(args.db, args.runs, args.keys, args.steps)
        print(f"built {args.db} in {time.perf_counter() - started:.1f} s")
    size = args.db.stat().st_size
    print(f"database: {size / 2**20:.0f} MiB, {args.runs * args.keys * args.steps / 1e6:.0f} M points (if built here)")
    for pragma in ("quick_check", "integrity_check"):
        warm = min(timed(args.db, pragma) for _ in range(args.repeats))
        colds = []
        for _ in range(args.repeats):
            evict(args.db)
            colds.append(timed(args.db, pragma))
        cold = min(colds)
        print(
            f"{pragma:16s} warm {warm * 1000:8.0f} ms ({size / 2**20 / warm:6.0f} MiB/s)   "
            f"cold {cold * 1000:8.0f} ms ({size / 2**20 / cold:6.0f} MiB/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
