#!/usr/bin/env python
"""Fuzz the frame decoder and ingest for a while and report crashes, memory and throughput.

Two targets (docs/robustness.md):
  daemon     a real ``trackiod start --foreground`` in a temporary home, fed by a raw DEALER socket that owns
             a run; reports frames/s, the daemon's RSS over time, and whether it is still serving at the end
             (a well-formed LOG after the garbage must be stored).
  inprocess  the daemon's own Store/Ingest/Attachments on a temporary SQLite file (tests/support/hostile_frames.py);
             slower, but checks after every frame that a rejected frame left no row and no file behind.
Crashing frames are written to --crash-dir with the seed and index, so a failure can be replayed.

    .venv/bin/python scripts/fuzz_frames.py --target daemon --seconds 60 --seed 1
    .venv/bin/python scripts/fuzz_frames.py --target inprocess --frames 20000 --seed 2
Exits 1 if anything crashed or the daemon stopped serving.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import zmq  # noqa: E402

from tests.support.hostile_frames import H, IngestRig, consumed, pack, random_frame  # noqa: E402
from trackio_shim import protocol as P  # noqa: E402
from trackio_shim.errors import ProtocolError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("daemon", "inprocess"), default="daemon")
    parser.add_argument("--seconds", type=float, default=30.0, help="stop after this long (default 30)")
    parser.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: no limit)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--huge-every", type=int, default=1000, help="one frame near max_frame_bytes per N frames")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    args = parser.parse_args()
    run = fuzz_daemon if args.target == "daemon" else fuzz_inprocess
    return run(args)


def _limit_reached(args: argparse.Namespace, started: float, count: int) -> bool:
    return (args.frames and count >= args.frames) or time.monotonic() - started >= args.seconds


def _save_crash(args: argparse.Namespace, index: int, raw: bytes, text: str) -> None:
    args.crash_dir.mkdir(parents=True, exist_ok=True)
    path = args.crash_dir / f"seed{args.seed}-frame{index}.bin"
    path.write_bytes(raw)
    path.with_suffix(".txt").write_text(text)
    print(f"CRASH at frame {index} (seed {args.seed}); frame saved to {path}", file=sys.stderr)


def fuzz_daemon(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    home = Path(tempfile.mkdtemp(prefix="trackiod-fuzz-"))
    max_frame = 1 << 20
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TRACKIOD_", "WANDB_"))},
        "TRACKIOD_HOME": str(home),
        "TRACKIOD_AUTOSTART": "0",
        "TRACKIOD_MAX_FRAME_BYTES": str(max_frame),
        "TRACKIOD_SAMPLE_INTERVAL_S": "0",
    }
    log = open(home / "daemon.log", "wb")  # noqa: SIM115 - closed at the end
    command = [sys.executable, "-m", "trackiod", "start", "--foreground"]
    daemon = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    ctx = zmq.Context()
    sid, seq = os.urandom(16), 0
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, sid)
    try:
        from trackio_shim.settings import TrackiodSettings

        sock.connect(TrackiodSettings.load(environ=env).endpoint)
        if not _ping(sock, sid, 30):
            print("the daemon did not answer at start", file=sys.stderr)
            return 1
        for kind, *fields in ((P.SESSION, {"version": 1, "pid": 1}), (P.RUN_START, H, {"project": "fuzz", "id": "f"})):
            seq += 1
            sock.send(pack(kind, sid, seq, *fields))
        proc = psutil.Process(daemon.pid)
        rss_start = proc.memory_info().rss
        rss_max, count, huge = rss_start, 0, 0
        started = last_report = time.monotonic()
        while not _limit_reached(args, started, count):
            for _ in range(1000):
                if args.huge_every and count % args.huge_every == 0:
                    blob = "x" * rng.randrange(max_frame - 64, max_frame * 3)
                    raw = pack(P.LOG, sid, seq + 1, H, count, 1.0, {"blob": blob})
                    huge += 1
                else:
                    raw = random_frame(rng, sid, seq + 1)
                sock.send(raw)
                seq += len(raw) <= max_frame and consumed(raw, sid, seq + 1)
                count += 1
                while sock.poll(0):
                    sock.recv()
            if daemon.poll() is not None:
                _save_crash(args, count, raw, (home / "daemon.log").read_text(errors="replace")[-5000:])
                return 1
            if time.monotonic() - last_report >= 5:
                _ping(sock, sid, 60)
                rss = proc.memory_info().rss
                rss_max = max(rss_max, rss)
                elapsed = time.monotonic() - started
                print(f"{count:>9,} frames  {count / elapsed:>8,.0f} frames/s  RSS {rss / 2**20:,.0f} MiB", flush=True)
                last_report = time.monotonic()
        served = _ping(sock, sid, 120)
        elapsed = time.monotonic() - started
        rss_end = proc.memory_info().rss
        seq += 1
        sock.send(pack(P.LOG, sid, seq, H, 10**9, 1.0, {"fuzz_alive": 42.0}))  # the fuzzed session goes on
        fresh = ctx.socket(zmq.DEALER)  # and a new session is served from scratch
        fresh_sid = os.urandom(16)
        fresh.setsockopt(zmq.LINGER, 0)
        fresh.setsockopt(zmq.ROUTING_ID, fresh_sid)
        fresh.connect(TrackiodSettings.load(environ=env).endpoint)
        for i, (kind, *fields) in enumerate(
            (
                (P.SESSION, {"version": 1, "pid": 1}),
                (P.RUN_START, H, {"project": "fuzz", "id": "fresh"}),
                (P.LOG, H, 0, 1.0, {"fresh_alive": 7.0}),
            ),
            start=1,
        ):
            fresh.send(pack(kind, fresh_sid, i, *fields))
        stored = served and _stored_value(home, "fuzz_alive") == 42.0 and _stored_value(home, "fresh_alive") == 7.0
        print(
            f"daemon: {count:,} frames ({huge:,} huge) in {elapsed:.1f}s = {count / elapsed:,.0f} frames/s read; "
            f"RSS {rss_start / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB (max {max(rss_max, rss_end) / 2**20:.0f}); "
            f"still serving: {served}; good frame stored after the garbage: {stored}"
        )
        ok = daemon.poll() is None and stored
        if not ok:
            print(f"the daemon's home is kept for a look: {home}", file=sys.stderr)
        return 0 if ok else 1
    finally:
        ctx.destroy(linger=0)
        if daemon.poll() is None:
            daemon.terminate()
            daemon.wait(30)
        log.close()
        if daemon.returncode == 0:
            shutil.rmtree(home, ignore_errors=True)


def _ping(sock: Any, sid: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.send(pack(P.PING, sid, P.PROTOCOL_VERSION))
        while sock.poll(200):
            try:
                if P.decode_daemon(sock.recv())[0] == P.PONG:
                    return True
            except ProtocolError:
                pass
    return False


def _stored_value(home: Path, key: str, timeout: float = 30) -> float | None:
    from trackiod.read.connection import open_reader
    from trackiod.read.series import read_series

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = open_reader(home / "trackiod.db")
        try:
            row = conn.execute(
                "SELECT rk.run_id, k.id FROM run_keys rk JOIN keys k ON k.id = rk.key_id WHERE k.name=?", (key,)
            ).fetchone()
            if row is not None:
                values = read_series(conn, row[0], row[1])[2]
                return float(values[-1])
        finally:
            conn.close()
        time.sleep(0.2)
    return None


def fuzz_inprocess(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    rig = IngestRig(Path(tempfile.mkdtemp(prefix="trackiod-fuzz-")))
    proc = psutil.Process()
    rss_start = proc.memory_info().rss
    count = crashes = partial = 0
    started = time.monotonic()
    try:
        while not _limit_reached(args, started, count):
            raw = random_frame(rng, rig.sid, rig.seq + 1)
            count += 1
            check = count % 10 == 0  # the before/after comparison costs more than the frame; sample it
            before = (rig.stored(), rig.media_files()) if check else None
            malformed = rig.ingest.counters.malformed
            try:
                rig.feed(raw)
                if not rig.ingest.commit():
                    raise AssertionError(f"commit failed: {rig.ingest.counters.last_error}")
            except Exception:
                crashes += 1
                _save_crash(args, count, raw, traceback.format_exc())
                rig.close()
                rig = IngestRig(Path(tempfile.mkdtemp(prefix="trackiod-fuzz-")))
                continue
            rejected = rig.ingest.counters.malformed > malformed
            if before is not None and rejected and (rig.stored(), rig.media_files()) != before:
                partial += 1
                _save_crash(args, count, raw, f"partial store: {rig.ingest.counters.last_error}")
            rig.seq = max(rig.seq, rig.ingest.accepted.get(rig.sid, 0))
        elapsed = time.monotonic() - started
        print(
            f"inprocess: {count:,} frames in {elapsed:.1f}s = {count / elapsed:,.0f} frames/s; "
            f"{rig.ingest.counters.malformed:,} rejected; crashes {crashes}; partial stores {partial}; "
            f"RSS {rss_start / 2**20:.0f} -> {proc.memory_info().rss / 2**20:.0f} MiB"
        )
        return 1 if crashes or partial else 0
    finally:
        rig.close()
        shutil.rmtree(rig.settings.home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
