#!/usr/bin/env python
"""Soak test (not in CI): N training processes log at full speed while the daemon is killed with kill -9.

Each worker is a real training process (``import trackio_shim``) logging four scalars per step as fast as it can
(or at ``--rate`` steps/s) for ``--duration`` seconds, timing every ``run.log()`` call. Meanwhile this script
kills the daemon with SIGKILL at random intervals; the shims bring it back themselves (their autostart restarts
a daemon that went quiet while they had data pending), and this script starts one only if none is back after
``--restart-grace`` seconds (counted separately). At the end every point sent is looked up in the SQLite file:
each (run, key, step) must be stored exactly once. It reports points sent and stored, kills and restarts, the
daemon's and the clients' RSS over time, and ``run.log()`` latency percentiles, as JSON and Markdown.

    .venv/bin/python scripts/soak.py                      # 8 processes, 30 minutes (the full soak)
    .venv/bin/python scripts/soak.py --duration 150       # the short run of docs/benchmarks.md
    .venv/bin/python scripts/soak.py --chaos --duration 120   # and what training scripts do (below)

With ``--chaos`` each worker also behaves like the scripts of issue 18: a timer signal every few milliseconds
whose handler raises inside ``run.log()`` (as timeout helpers do; such a step may or may not be stored, no
other may be lost), a poisoned key (a tuple) in one call of 1,024 (the call's other keys must be stored), and
a forked child every few seconds that logs its own key to the same run, finishes and leaves with ``os._exit``
(every one of its points must be stored).

Exits 0 when every point was stored exactly once, 1 otherwise. See docs/benchmarks.md ("Soak").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEYS = ("loss", "acc", "lr", "grad_norm")
PROJECT = "soak"
# --chaos: a SIGALRM every ALARM_S raising inside log(), a tuple key every POISON_EVERY steps, a forked child
# logging FORK_STEPS steps of its own key every FORK_EVERY_S seconds.
ALARM_S = 0.007
POISON_EVERY = 1024
FORK_EVERY_S = 4.0
FORK_STEPS = 200


class _Interrupted(Exception):
    """Raised by the chaos timer's signal handler inside run.log()."""


# run.log() latencies go into log-scale buckets (8 per power of two, about 9% wide): exact counts, tiny memory.
SUB_BUCKETS = 8


def _bucket(ns: int) -> int:
    bits = ns.bit_length()
    if bits <= 4:
        return ns
    return (bits << 3) | ((ns >> (bits - 4)) & 7)


def _bucket_floor(index: int) -> int:
    if index < 16:
        return index
    bits, frac = index >> 3, index & 7
    return (8 | frac) << (bits - 4)


def _percentile(hist: dict[int, int], q: float) -> float:
    """The q-quantile (0..1) of a bucket histogram, in microseconds (the bucket's lower edge)."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank, seen = q * total, 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return _bucket_floor(index) / 1000
    return _bucket_floor(max(hist)) / 1000


def _rss_mib(pid: int | str = "self") -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ----------------------------------------------------------------------------- the worker (one training process)
def _fork_child(run: Any, number: int) -> None:
    """A forked worker: logs its own key to the inherited run, finishes its session and leaves at once."""
    code = 1
    try:
        for step in range(FORK_STEPS):
            run.log({f"fork{number}/v": float(step)}, step=step)
        run.finish()
        code = 0
    finally:
        os._exit(code)


def worker(index: int, deadline: float, rate: float, out: Path, chaos: bool = False) -> int:
    import warnings

    import trackio_shim as wandb
    from trackio_shim.session.client import current_client

    run = wandb.init(project=PROJECT, id=f"w{index}", config={"worker": index, "rate": rate})
    log = run.log
    in_log = [False]
    uncertain: list[int] = []  # steps whose log() the timer interrupted: stored or not, never twice
    forks: list[int] = []
    next_fork = time.monotonic() + FORK_EVERY_S
    if chaos:
        warnings.simplefilter("ignore")  # the poisoned key warns once; the rest is checked by counting

        def interrupt(signum: int, frame: Any) -> None:
            if in_log[0]:
                raise _Interrupted

        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, ALARM_S, ALARM_S)
    clock = time.perf_counter_ns
    hist: dict[int, int] = {}
    rss: list[tuple[float, float | None]] = []
    started = time.time()
    stop_path = os.environ["SOAK_STOP"]
    step = 0
    next_sample = time.monotonic()
    worst = 0
    while True:
        if step % 256 == 0:
            now = time.monotonic()
            if time.time() >= deadline or os.path.exists(stop_path):
                break
            if now >= next_sample:
                rss.append((round(time.time() - started, 1), _rss_mib()))
                next_sample = now + 1.0
            if rate:
                ahead = step / rate - (time.time() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if chaos and now >= next_fork:
                pid = os.fork()
                if pid == 0:
                    _fork_child(run, len(forks))
                forks.append(pid)
                next_fork = now + FORK_EVERY_S
            while chaos:  # reap the children that are done
                try:
                    done, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if not done:
                    break
        value = float(step)
        values: dict[Any, float] = {"loss": 1.0 / (1.0 + value), "acc": value % 1.0, "lr": 1e-3, "grad_norm": value}
        if chaos and step % POISON_EVERY == POISON_EVERY // 2:
            values[("layer", step)] = value  # a tuple key: dropped with a warning, the other keys kept
        t0 = clock()
        if chaos:
            in_log[0] = True
            try:
                log(values, step=step)
            except _Interrupted:
                uncertain.append(step)
            finally:
                in_log[0] = False
        else:
            log(values, step=step)
        spent = clock() - t0
        b = _bucket(spent)
        hist[b] = hist.get(b, 0) + 1
        if spent > worst:
            worst = spent
        step += 1
    if chaos:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for pid in forks:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # reaped in the loop
    finish_started = time.monotonic()
    run.finish()
    finish_s = time.monotonic() - finish_started
    client = current_client()
    stats = client.stats() if client is not None else {}
    result = {
        "worker": index,
        "steps": step,
        "points": step * len(KEYS) + len(forks) * FORK_STEPS,
        # the fewest points that must be stored: an interrupted log() call may have been lost whole
        "points_min": (step - len(uncertain)) * len(KEYS) + len(forks) * FORK_STEPS,
        "uncertain": uncertain,
        "forks": len(forks),
        "seconds": time.time() - started,
        "finish_s": finish_s,
        "latency_hist": {str(k): v for k, v in hist.items()},
        "latency_max_us": worst / 1000,
        "rss_mib": rss,
        "spooled_frames": stats.get("spooled_frames", 0),
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0


# ----------------------------------------------------------------------------- the driver
class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = Path(tempfile.mkdtemp(prefix="soak", dir=args.tmp))  # short: ipc socket paths are limited
        self.home = self.base / "home"
        self.out = Path(args.out).absolute()
        self.out.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKIOD_", "WANDB_"))}
        self.env.update(
            TRACKIOD_HOME=str(self.home),
            TRACKIOD_AUTOSTART="1",
            TRACKIOD_SILENT="1",
            TRACKIOD_SAMPLE_INTERVAL_S="0",
            TRACKIOD_RUNTIME_DIR=str(self.base / "run"),
        )
        self.rng = random.Random(args.seed)
        self.kills: list[float] = []
        self.restarts_by_shim = 0
        self.restarts_by_script = 0
        self.downtimes: list[float] = []
        self.daemon_rss: list[tuple[float, float | None]] = []
        self.t0 = time.time()
        self._script_daemons: list[subprocess.Popen[bytes]] = []
        self.killed_at: float | None = None
        self.serving_gaps: list[float] = []
        self.stopped_early = ""
        self.stored_steps: dict[tuple[str, str], Any] = {}  # --chaos: the steps stored per (run, key)

    def daemon_pid(self) -> int | None:
        """The live daemon process of this data directory, serving or still starting (it writes daemon.json
        only once it serves, after taking in the spool files, which after a kill can take a while)."""
        marker = f"TRACKIOD_HOME={self.home}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if b"trackiod\0start" not in (entry / "cmdline").read_bytes():
                    continue
                if marker not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            except OSError:
                continue
            return int(entry.name)
        return None

    def serving_pid(self) -> int | None:
        try:
            return int(json.loads((self.home / "daemon.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def start_daemon(self) -> None:
        log = open(self.home / "soak-daemon.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", "trackiod", "start", "--foreground"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._script_daemons.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.daemon_pid() is None:
            time.sleep(0.05)
        if self.daemon_pid() is None:
            raise SystemExit(f"soak: the daemon did not start; see {self.home / 'trackiod.log'}")

    def reap(self) -> None:
        for proc in self._script_daemons:
            proc.poll()

    def run(self) -> int:
        args = self.args
        self.home.mkdir(mode=0o700, parents=True)
        self.start_daemon()
        deadline = time.time() + args.duration
        results = self.base / "results"
        results.mkdir()
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(i), "--deadline", str(deadline), "--rate", str(args.rate)]
                + (["--chaos"] if args.chaos else []),
                env={**self.env, "SOAK_OUT": str(results / f"w{i}.json"), "SOAK_STOP": str(self.base / "stop")},
            )
            for i in range(args.procs)
        ]
        print(f"soak: {args.procs} processes for {args.duration:.0f}s; data in {self.base}", flush=True)
        next_kill = time.time() + self.rng.uniform(args.kill_min, args.kill_max) if args.kill_max > 0 else float("inf")
        next_report = time.time() + 30
        stop = self.base / "stop"
        while any(w.poll() is None for w in workers):
            now = time.time()
            if not self.stopped_early and shutil.disk_usage(self.base).free < args.min_free_gib * 2**30:
                stop.touch()  # the workers end their loops at the next check
                self.stopped_early = f"free disk space under {args.min_free_gib} GiB at t={now - self.t0:.0f}s"
                print(f"soak: stopping early: {self.stopped_early}", flush=True)
            pid = self.daemon_pid()
            if self.killed_at is not None and pid is not None and self.serving_pid() == pid:
                self.serving_gaps.append(now - self.killed_at)
                self.killed_at = None
            self.daemon_rss.append((round(now - self.t0, 1), _rss_mib(pid) if pid else None))
            if now >= next_kill and now < deadline - 5 and pid is not None:
                os.kill(pid, signal.SIGKILL)
                self.kills.append(round(now - self.t0, 1))
                if self.killed_at is not None:
                    self.serving_gaps.append(now - self.killed_at)  # killed again before it served: counts so far
                self.killed_at = now
                self.wait_for_restart(now)
                next_kill = time.time() + self.rng.uniform(args.kill_min, args.kill_max)
            if now >= next_report:
                rss = self.daemon_rss[-1][1]
                print(f"soak: t={now - self.t0:.0f}s kills={len(self.kills)} daemon_rss={rss} MiB", flush=True)
                next_report = now + 30
            self.reap()
            time.sleep(1.0)
        if self.daemon_pid() is None:
            self.start_daemon()
            self.restarts_by_script += 1
        per_worker = [json.loads((results / f"w{i}.json").read_text()) for i in range(args.procs)]
        stored, drain_s = self.wait_stored(per_worker)
        report = self.report(per_worker, stored, drain_s)
        self.stop_daemon()
        if not args.keep:
            shutil.rmtree(self.base, ignore_errors=True)
        return 0 if report["exactly_once"] else 1

    def wait_for_restart(self, killed_at: float) -> None:
        """Wait for the shims to restart the daemon; start one ourselves after the grace period."""
        grace = time.time() + self.args.restart_grace
        while time.time() < grace:
            self.daemon_rss.append((round(time.time() - self.t0, 1), None))
            if self.daemon_pid() is not None:
                self.restarts_by_shim += 1
                self.downtimes.append(time.time() - killed_at)
                return
            self.reap()
            time.sleep(0.2)
        self.start_daemon()
        self.restarts_by_script += 1
        self.downtimes.append(time.time() - killed_at)

    def stored_counts(self) -> dict[tuple[str, str], tuple[int, int, int, int]]:
        """Per (run, key): raw points stored, distinct steps, lowest and highest step."""
        from trackiod.read.connection import open_reader
        from trackiod.read.runs import list_runs, run_keys
        from trackiod.read.series import read_series

        db = self.home / "trackiod.db"
        conn = open_reader(db)
        try:
            out = {}
            for run in list_runs(conn, PROJECT):
                for key, (key_id, _, _) in run_keys(conn, run["id"]).items():
                    row: Any = conn.execute(
                        "SELECT COALESCE(SUM(n), 0) FROM chunks WHERE run_id=? AND key_id=?", (run["id"], key_id)
                    ).fetchone()
                    raw = row[0]
                    steps = read_series(conn, run["id"], key_id, with_times=False)[0]
                    lo, hi = (int(steps[0]), int(steps[-1])) if len(steps) else (-1, -1)
                    out[(run["run_key"], key)] = (int(raw), len(steps), lo, hi)
                    if self.args.chaos and key in KEYS:
                        self.stored_steps[(run["run_key"], key)] = steps
            return out
        finally:
            conn.close()

    def wait_stored(self, per_worker: list[dict[str, Any]]) -> tuple[dict[tuple[str, str], Any], float]:
        """Wait (bounded) until the daemon has taken in everything sent, spool files included."""
        expected = sum(w.get("points_min", w["points"]) for w in per_worker)
        start = time.monotonic()
        deadline = start + self.args.drain_timeout
        stored: dict[tuple[str, str], Any] = {}
        while time.monotonic() < deadline:
            stored = self.stored_counts()
            spool = list((self.home / "spool").glob("*.spool"))
            if sum(v[0] for v in stored.values()) >= expected and not spool:
                break
            time.sleep(1.0)
        return stored, time.monotonic() - start

    def stop_daemon(self) -> None:
        subprocess.run([sys.executable, "-m", "trackiod", "stop"], env=self.env, capture_output=True, timeout=120)
        pid = self.daemon_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        for proc in self._script_daemons:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    def report(
        self, per_worker: list[dict[str, Any]], stored: dict[tuple[str, str], Any], drain_s: float
    ) -> dict[str, Any]:
        args = self.args
        hist: dict[int, int] = {}
        for w in per_worker:
            for k, v in w["latency_hist"].items():
                hist[int(k)] = hist.get(int(k), 0) + v
        problems = []
        for w in per_worker:
            run_key = f"w{w['worker']}"
            for number in range(w.get("forks", 0)):
                raw, distinct, lo, hi = stored.get((run_key, f"fork{number}/v"), (0, 0, -1, -1))
                if (raw, distinct, lo, hi) != (FORK_STEPS, FORK_STEPS, 0, FORK_STEPS - 1):
                    problems.append(f"{run_key}/fork{number}/v: sent {FORK_STEPS} steps, stored {raw} points")
            for key in KEYS:
                raw, distinct, lo, hi = stored.get((run_key, key), (0, 0, -1, -1))
                if args.chaos:  # every step stored once, but for interrupted calls (stored once or not at all)
                    import numpy as np

                    steps = self.stored_steps.get((run_key, key), np.empty(0, np.int64))
                    missing = np.setdiff1d(np.arange(w["steps"]), steps)
                    lost = missing[~np.isin(missing, np.asarray(w["uncertain"], np.int64))]
                    if raw != distinct or len(lost) or (len(steps) and steps[-1] >= w["steps"]):
                        problems.append(
                            f"{run_key}/{key}: {raw} points for {distinct} steps, {len(lost)} steps lost "
                            f"(first {lost[:5].tolist()}), {len(missing) - len(lost)} interrupted calls not stored"
                        )
                    continue
                want = (w["steps"], w["steps"], 0, w["steps"] - 1)
                if (raw, distinct, lo, hi) != want:
                    problems.append(
                        f"w{w['worker']}/{key}: sent steps 0..{w['steps'] - 1}, stored {raw} points, "
                        f"{distinct} distinct steps {lo}..{hi}"
                    )
        sent = sum(w["points"] for w in per_worker)
        stored_total = sum(v[0] for v in stored.values())
        client_peak = [max((r for _, r in w["rss_mib"] if r is not None), default=0.0) for w in per_worker]
        daemon_values = [r for _, r in self.daemon_rss if r is not None]
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        seconds = max(w["seconds"] for w in per_worker)
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{os.cpu_count()} cores, {memory_gib:.0f} GiB",
            "params": {
                "procs": args.procs,
                "duration_s": args.duration,
                "rate_steps_per_s": args.rate or "full speed",
                "kill_interval_s": [args.kill_min, args.kill_max],
                "restart_grace_s": args.restart_grace,
                "seed": args.seed,
                "keys_per_step": len(KEYS),
            },
            "points_sent": sent,
            "points_stored": stored_total,
            "exactly_once": not problems and (args.chaos or stored_total == sent),
            "chaos": {
                "interrupted_log_calls": sum(len(w.get("uncertain", ())) for w in per_worker),
                "forked_children": sum(w.get("forks", 0) for w in per_worker),
                "poisoned_calls": sum(w["steps"] // POISON_EVERY for w in per_worker),
            }
            if args.chaos
            else None,
            "problems": problems[:20],
            "points_per_s": sent / seconds if seconds else 0.0,
            "kills": self.kills,
            "restarts_by_shim": self.restarts_by_shim,
            "restarts_by_script": self.restarts_by_script,
            "downtime_s": {
                "mean": sum(self.downtimes) / len(self.downtimes) if self.downtimes else 0.0,
                "max": max(self.downtimes, default=0.0),
            },
            "kill_to_serving_s": {
                "mean": sum(self.serving_gaps) / len(self.serving_gaps) if self.serving_gaps else 0.0,
                "max": max(self.serving_gaps, default=0.0),
            },
            "stopped_early": self.stopped_early,
            "drain_after_end_s": drain_s,
            "spooled_frames": sum(w["spooled_frames"] for w in per_worker),
            "finish_s_max": max(w["finish_s"] for w in per_worker),
            "log_latency_us": {
                "p50": _percentile(hist, 0.50),
                "p99": _percentile(hist, 0.99),
                "p999": _percentile(hist, 0.999),
                "max": max(w["latency_max_us"] for w in per_worker),
                "calls": sum(hist.values()),
            },
            "daemon_rss_mib": {
                "first": daemon_values[0] if daemon_values else None,
                "peak": max(daemon_values, default=None),
                "last": daemon_values[-1] if daemon_values else None,
                "series": _thin(self.daemon_rss, 120),
            },
            "client_rss_mib": {
                "peak_per_process": client_peak,
                "series_w0": _thin(per_worker[0]["rss_mib"], 120),
            },
        }
        (self.out / "soak.json").write_text(json.dumps(result, indent=1))
        (self.out / "soak.md").write_text(_markdown(result))
        print(_markdown(result))
        return result


def _thin(series: list[Any], most: int) -> list[Any]:
    step = max(1, len(series) // most)
    return series[::step]


def _markdown(r: dict[str, Any]) -> str:
    p, lat, d = r["params"], r["log_latency_us"], r["daemon_rss_mib"]
    peaks = r["client_rss_mib"]["peak_per_process"]
    verdict = "yes" if r["exactly_once"] else "NO: " + "; ".join(r["problems"][:3])
    return "\n".join(
        [
            f"Soak run {r['date']} on {r['machine']}: {p['procs']} processes, {p['duration_s']:.0f} s, "
            f"{p['keys_per_step']} keys per step at {p['rate_steps_per_s']} (steps/s per process), "
            f"kill -9 every {p['kill_interval_s'][0]:.0f}-{p['kill_interval_s'][1]:.0f} s (seed {p['seed']}).",
            "",
            "| figure | value |",
            "|---|---|",
            f"| points sent / stored | {r['points_sent']:,} / {r['points_stored']:,} |",
            f"| every point stored exactly once | {verdict} |",
            f"| throughput (all processes) | {r['points_per_s']:,.0f} points/s |",
            f"| daemon kills (kill -9) | {len(r['kills'])} at {r['kills']} s |",
            f"| restarts by the shims' autostart / by this script | {r['restarts_by_shim']} / "
            f"{r['restarts_by_script']} |",
            f"| kill to restarted process, mean / max | {r['downtime_s']['mean']:.1f} / "
            f"{r['downtime_s']['max']:.1f} s |",
            f"| kill to serving again (spool taken in first), mean / max | {r['kill_to_serving_s']['mean']:.1f} / "
            f"{r['kill_to_serving_s']['max']:.1f} s |",
            f"| frames spooled to disk by the shims | {r['spooled_frames']:,} |",
            f"| catch-up after the last step | {r['drain_after_end_s']:.1f} s "
            f"(slowest finish() {r['finish_s_max']:.1f} s) |",
            f"| run.log() latency p50 / p99 / p99.9 / max | {lat['p50']:.1f} / {lat['p99']:.1f} / {lat['p999']:.1f} / "
            f"{lat['max']:,.0f} µs ({lat['calls']:,} calls) |",
            f"| daemon RSS first / peak / last | {d['first']:.0f} / {d['peak']:.0f} / {d['last']:.0f} MiB |",
            f"| client RSS peak (min..max over processes) | {min(peaks):.0f}..{max(peaks):.0f} MiB |",
            f"| stopped early | {r['stopped_early'] or 'no'} |",
        ]
        + (
            [
                f"| --chaos: log() calls a signal interrupted / poisoned calls / forked children | "
                f"{r['chaos']['interrupted_log_calls']:,} / {r['chaos']['poisoned_calls']:,} / "
                f"{r['chaos']['forked_children']:,} |"
            ]
            if r.get("chaos")
            else []
        )
        + [""]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=8, help="training processes (default 8)")
    parser.add_argument("--duration", type=float, default=1800, help="seconds of logging (default 1800)")
    parser.add_argument("--rate", type=float, default=0, help="steps/s per process; 0 = full speed (default)")
    parser.add_argument("--kill-min", type=float, default=30, help="shortest time between kills, s (default 30)")
    parser.add_argument("--kill-max", type=float, default=120, help="longest; 0 = never kill (default 120)")
    parser.add_argument("--restart-grace", type=float, default=30, help="s to wait for a shim to restart it")
    parser.add_argument("--drain-timeout", type=float, default=600, help="s to wait for the data after the end")
    parser.add_argument("--min-free-gib", type=float, default=5, help="stop logging below this free disk space")
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill times")
    parser.add_argument("--out", default="soak-results", help="folder for soak.json and soak.md")
    parser.add_argument("--tmp", default="/tmp", help="where the data directory goes (short path)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory afterwards")
    parser.add_argument("--chaos", action="store_true", help="signals in log(), poisoned keys, forked children")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.deadline, args.rate, Path(os.environ["SOAK_OUT"]), args.chaos)
    if args.kill_max and args.kill_min > args.kill_max:
        parser.error("--kill-min must not exceed --kill-max")
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
