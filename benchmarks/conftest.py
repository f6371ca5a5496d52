"""Fixtures for the benchmarks: sizes, budgets, an isolated TRACKIOD_HOME, real daemons, the floor receiver.

Run them with ``.venv/bin/pytest benchmarks`` (full sizes, budgets asserted, about 2-3 minutes on 2 cores) or
``TRACKIOD_BENCH_QUICK=1 .venv/bin/pytest benchmarks`` / ``--benchmark-disable`` (small sizes, budgets only
reported, a few seconds). ``TRACKIOD_BENCH_ENFORCE=0|1`` overrides whether budgets fail the run.

Every figure a test measures is recorded with :func:`Figures.add`; the table is printed at the end of the
session and written to ``.benchmarks/trackiod-figures.json`` (or ``TRACKIOD_BENCH_FIGURES``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchmarks._support import ROOT, SIZES, Floor, start_floor
from tests.conftest import shim as shim
from tests.support.daemons import DaemonProcess


@dataclass
class Mode:
    quick: bool
    enforce: bool

    def size(self, name: str) -> int:
        """The size ``name`` for this mode; ``TRACKIOD_BENCH_SIZE_<NAME>`` (e.g. ``..._PAGE_POINTS``) overrides it."""
        override = os.environ.get(f"TRACKIOD_BENCH_SIZE_{name.upper()}")
        if override:
            return int(override)
        quick, full = SIZES[name]
        return quick if self.quick else full


@dataclass
class Figure:
    test: str
    name: str
    value: float
    unit: str
    budget: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Figures:
    """What the benchmarks measured, for the summary table, the JSON file and docs/benchmarks.md."""

    mode: Mode
    rows: list[Figure] = field(default_factory=list)
    misses: dict[str, list[str]] = field(default_factory=dict)

    def add(self, test: str, name: str, value: float, unit: str, note: str = "") -> None:
        self.rows.append(Figure(test, name, float(value), unit, note=note))

    def budget(self, test: str, name: str, value: float, unit: str, limit: float, at_least: bool = False) -> bool:
        """Record a figure with its budget (``value <= limit``, or ``>=`` with ``at_least``); True if met."""
        ok = value >= limit if at_least else value <= limit
        sign = "≥" if at_least else "≤"
        self.rows.append(Figure(test, name, float(value), unit, f"{sign} {limit:g} {unit}", ok))
        if not ok:
            self.misses.setdefault(test, []).append(f"{name}: {value:.4g} {unit}, budget {sign} {limit:g} {unit}")
        return ok

    def check(self, test: str) -> None:
        """Fail the test for missed budgets, when budgets are enforced (full sizes)."""
        misses = self.misses.get(test, [])
        if misses and self.mode.enforce:
            pytest.fail("budget missed: " + "; ".join(misses), pytrace=False)


_FIGURES: Figures | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _FIGURES
    quick_env = os.environ.get("TRACKIOD_BENCH_QUICK")
    disabled = bool(config.getoption("benchmark_disable", default=False))
    quick = quick_env == "1" or (quick_env is None and disabled)
    enforce_env = os.environ.get("TRACKIOD_BENCH_ENFORCE")
    enforce = (enforce_env == "1") if enforce_env is not None else not quick
    _FIGURES = Figures(Mode(quick=quick, enforce=enforce))


@pytest.fixture(scope="session")
def figures() -> Figures:
    assert _FIGURES is not None
    return _FIGURES


@pytest.fixture(scope="session")
def mode(figures: Figures) -> Mode:
    return figures.mode


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    figs = _FIGURES
    if figs is None or not figs.rows:
        return
    write = terminalreporter.write_line
    kind = "quick sizes, budgets reported only" if not figs.mode.enforce else "full sizes, budgets enforced"
    terminalreporter.section(f"trackiod figures ({kind})")
    for row in figs.rows:
        verdict = "" if row.ok is None else ("PASS" if row.ok else "MISS")
        budget = f"[{row.budget}] {verdict}" if row.budget else ""
        write(f"{row.test:<22} {row.name:<46} {_fmt(row.value):>12} {row.unit:<8} {budget} {row.note}".rstrip())
    target = Path(os.environ.get("TRACKIOD_BENCH_FIGURES") or ROOT / ".benchmarks" / "trackiod-figures.json")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python": platform.python_version(),
            "quick": figs.mode.quick,
            "enforced": figs.mode.enforce,
            "figures": [row.__dict__ for row in figs.rows],
        }
        target.write_text(json.dumps(doc, indent=1))
        write(f"figures written to {target}")
    except OSError as exc:
        write(f"could not write {target}: {exc}")


def _tree_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of this process and each live descendant, by pid."""
    import psutil

    out: dict[int, float] = {}
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _reaped_children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture(autouse=True)
def _interference(request: pytest.FixtureRequest, figures: Figures) -> Iterator[None]:
    """Record how much CPU *other* processes used during each benchmark: on a shared 2-core machine that skews
    every figure, so the table says so. (Machine-wide busy time minus this process tree's, over wall x cores.)
    """
    import psutil

    def busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)

    started, busy0, tree0, reaped0 = time.monotonic(), busy(), _tree_cpu(), _reaped_children_cpu()
    yield
    wall = time.monotonic() - started
    tree1 = _tree_cpu()
    own = sum(cpu - tree0.get(pid, 0.0) for pid, cpu in tree1.items()) + _reaped_children_cpu() - reaped0
    other = max(0.0, busy() - busy0 - own) / (wall * (os.cpu_count() or 1)) * 100
    figures.add(request.node.name, "other processes' CPU during the test", other, "%", note=f"over {wall:.1f} s")


# ---------------------------------------------------------------------------------------------- environment
@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An isolated TRACKIOD_HOME, no autostart, default heartbeats, no WANDB_*/TRACKIOD_* leaking in."""
    for name in list(os.environ):
        if name.startswith(("WANDB_", "TRACKIOD_")) and not name.startswith("TRACKIOD_BENCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRACKIOD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRACKIOD_AUTOSTART", "0")
    return dict(os.environ)


@pytest.fixture
def daemon(env: dict[str, str], tmp_path: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(env, tmp_path / "daemon-stdout.log")
    proc.start()
    try:
        yield proc
    finally:
        if proc.alive:
            try:
                proc.terminate(timeout=30)
            finally:
                proc.cleanup()


@pytest.fixture(scope="session")
def floor() -> Iterator[Floor]:
    """The msgpack + zmq floor: a draining ROUTER in another process and a blocking DEALER here."""
    f = start_floor()
    try:
        yield f
    finally:
        f.close()
