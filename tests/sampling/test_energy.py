"""GPU energy attribution and sampling, in process, against a real SQLite store.

NVML is FAKED here, because no GPU is here: trackiod.testing.fake_nvml.ScriptedNvml stands in for it behind the
same small interface the real pynvml provider implements. Its counters advance with the scripted load, on a
clock the tests move by hand, so the expected joules are exact. Everything else is real: the Sampler (and
psutil), the EnergyBook, the schema and its migration, the readers in trackiod.read.energy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from trackio_shim.errors import UsageError
from trackiod.cli.energy import card_yaml
from trackiod.ingest.runs import RunBook
from trackiod.read.connection import open_reader
from trackiod.read.energy import run_energy, system_keys, system_series
from trackiod.read.runs import find_run
from trackiod.sampling.energy import EnergyBook, _GpuState, declared_gpus, energy_delta
from trackiod.sampling.gpu import GpuIdentity
from trackiod.sampling.sampler import Sampler
from trackiod.store.writer import Store
from trackiod.testing.fake_nvml import ScriptedNvml

HOST = "testhost"


class Clock:
    """A hand-moved clock shared by the fake NVML and the sampler."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A store with runs and sessions, a fake NVML on a manual clock, a sampler and an energy book."""

    def __init__(self, tmp: Path, gpus: list[dict[str, Any]], interval: float = 2.0) -> None:
        self.tmp = tmp
        self.script = tmp / "nvml.json"
        self.gpus = gpus
        self.write()
        self.clock = Clock()
        self.store = Store(tmp / "trackiod.db")
        self.runbook = RunBook(self.store, {}, lambda sid, text: None)
        self.book = EnergyBook(self.store, self.runbook, HOST, interval, 475.0, "Test City")
        self.sampler = Sampler(interval, ScriptedNvml(self.script, clock=self.clock), wall=self.clock, mono=self.clock)
        self.sampler.open()
        self.interval = interval
        self._pids = 0

    def write(self) -> None:
        # A new mtime each time, even within one filesystem tick, so the fake re-reads the script.
        self.script.write_text(json.dumps({"gpus": self.gpus}))
        stat = self.script.stat()
        self._tick = getattr(self, "_tick", 0) + 1
        import os

        os.utime(self.script, ns=(stat.st_atime_ns, stat.st_mtime_ns + self._tick * 1000))

    def run(self, name: str, cuda: dict[str, Any] | None = None) -> tuple[int, int]:
        """A running run with one attached local process; returns (run_id, pid)."""
        self._pids += 1
        pid = 40000 + self._pids
        sid = pid.to_bytes(16, "big")
        with self.store.conn:
            self.store.save_session(sid, {"pid": pid, "host": HOST, "cuda": cuda or {}}, None)
            ok, body = self.runbook.start(sid, 1, {"project": "p", "id": name, "name": name})
            assert ok, body
            run_id = self.store.find_run("p", name, None)["id"]
            # The rig's samples carry its simulated clock; the run must start on that clock too.
            self.store.update_run(run_id, created_at=self.clock.now)
        return run_id, pid

    def finish(self, name: str) -> None:
        with self.store.conn:
            row = self.store.find_run("p", name, None)
            self.store.update_run(row["id"], state="finished", ended_at=self.clock.now)

    def step(self, seconds: float, samples: int = 1) -> None:
        """Advance the clock by ``seconds`` in ``samples`` equal steps, sampling after each, then apply."""
        taken = []
        sessions = self.book.live_sessions()
        self.sampler.watch(frozenset(s.pid for s in sessions))
        for _ in range(samples):
            self.clock.now += seconds / samples
            taken.append(self.sampler.sample())
        with self.store.conn:
            self.book.apply(taken, sessions)
            self.runbook.save_dirty()

    def report(self, name: str) -> dict[str, Any]:
        conn = open_reader(self.store.path)
        try:
            return run_energy(conn, find_run(conn, f"p/{name}"))
        finally:
            conn.close()

    def summary(self, name: str) -> dict[str, Any]:
        row = self.store.find_run("p", name, None)
        return dict(json.loads(row["summary"]))


def gpu(uuid: str, **extra: Any) -> dict[str, Any]:
    return {"uuid": uuid, "name": "Fake A100", "idle_w": 50, "max_w": 400, "utilization": 0, **extra}


@pytest.fixture
def rig_factory(tmp_path: Path) -> Any:
    rigs: list[Rig] = []

    def make(gpus: list[dict[str, Any]], interval: float = 2.0) -> Rig:
        rig = Rig(tmp_path, gpus, interval)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.store.close()


def test_counters_advance_with_load_and_a_busy_run_gets_more_energy(rig_factory: Any) -> None:
    rig = rig_factory([gpu("GPU-busy", utilization=100), gpu("GPU-idle", utilization=0)])
    _, busy_pid = rig.run("busy")
    _, idle_pid = rig.run("idle")
    rig.gpus[0]["processes"] = {str(busy_pid): 2e9}
    rig.gpus[1]["processes"] = {str(idle_pid): 1e9}
    rig.write()
    rig.step(2.0)  # the first sample only sets each GPU's baseline
    rig.step(10.0, samples=5)
    busy_report, idle_report = rig.report("busy"), rig.report("idle")
    assert busy_report["gpu_joules"] == pytest.approx(400 * 10, rel=1e-6)
    assert idle_report["gpu_joules"] == pytest.approx(50 * 10, rel=1e-6)
    assert busy_report["estimated_fraction"] == 0.0  # from the counter, not from power readings
    assert busy_report["gpu_hours"] == pytest.approx(10 / 3600)
    assert [g["uuid"] for g in busy_report["gpus"]] == ["GPU-busy"]
    assert busy_report["gpus"][0]["seen_by"] == ["nvml"]
    # The summary carries the same figures while the run is still running.
    summary = rig.summary("busy")
    assert summary["energy/gpu_joules"] == pytest.approx(4000, rel=1e-6)
    assert summary["energy/gpu_kwh"] == pytest.approx(4000 / 3.6e6, rel=1e-6)
    assert summary["energy/gpu_hours"] == pytest.approx(10 / 3600, rel=1e-4)
    assert summary["energy/co2eq_kg"] == pytest.approx(4000 / 3.6e6 * 475 / 1000, rel=1e-6)
    assert busy_report["co2eq_kg"] == pytest.approx(summary["energy/co2eq_kg"], rel=1e-6)
    assert busy_report["location"] == "Test City"


@pytest.mark.parametrize("bits", [64, 32])
def test_a_counter_wrap_is_counted_as_the_energy_it_is(rig_factory: Any, bits: int) -> None:
    start = 2**bits - 1_500_000  # 1,500 J before the top: it wraps within the first 4 s at 400 W
    rig = rig_factory([gpu("GPU-w", utilization=100, energy_start_mj=start, counter_bits=bits)])
    _, pid = rig.run("wrap")
    rig.gpus[0]["processes"] = {str(pid): None}
    rig.write()
    rig.step(2.0)
    rig.step(10.0, samples=5)
    report = rig.report("wrap")
    assert report["gpu_joules"] == pytest.approx(4000, rel=1e-6)
    assert report["estimated_fraction"] == 0.0


def test_a_counter_reset_falls_back_to_power_for_that_interval() -> None:
    prev = _GpuState(mono=0.0, energy_mj=5_000_000_000, power_w=300.0)
    joules, estimated = energy_delta(prev, 1_000, 300.0, 2.0, 400.0) or (None, None)
    assert joules == pytest.approx(600.0) and estimated == pytest.approx(600.0)
    # A jump far above what the power limit allows is not believed either.
    joules, estimated = energy_delta(prev, prev.energy_mj + 10**9, 100.0, 2.0, 400.0) or (None, None)
    assert joules == pytest.approx(2 * (300 + 100) / 2)
    assert energy_delta(_GpuState(0.0, None, None), None, None, 2.0, None) is None


def test_missing_fields_cost_only_those_fields(rig_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "trackiod")
    rig = rig_factory([gpu("GPU-old", utilization=100, unsupported=["energy", "clocks", "throttle_reasons"])])
    _, pid = rig.run("old")
    rig.gpus[0]["processes"] = {str(pid): 1e9}
    rig.write()
    rig.step(2.0)
    rig.step(10.0, samples=5)
    report = rig.report("old")
    # No energy counter: the power draw is integrated instead, and the report says so.
    assert report["gpu_joules"] == pytest.approx(4000, rel=1e-6)
    assert report["estimated_fraction"] == pytest.approx(1.0)
    sample = rig.sampler.sample()
    values = sample.gpus[0].values
    assert "sm_clock_mhz" not in values and "throttle_reasons" not in values
    assert values["power_w"] == 400 and values["utilization_pct"] == 100 and values["memory_total_bytes"] > 0
    assert sample.gpus[0].energy_mj is None
    told = [r.getMessage() for r in caplog.records if "does not support" in r.getMessage()]
    assert len(told) == 3  # once per field, not once per sample


def test_a_gpu_that_disappears_costs_its_own_energy_only(rig_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    rig = rig_factory([gpu("GPU-a", utilization=100), gpu("GPU-b", utilization=100)])
    _, pid = rig.run("two")
    rig.gpus[0]["processes"] = rig.gpus[1]["processes"] = {str(pid): 1e9}
    rig.write()
    rig.step(2.0)
    rig.step(4.0, samples=2)  # 4 s on both: 2 x 1,600 J
    rig.gpus[1]["lost"] = True
    rig.write()
    rig.step(6.0, samples=3)  # GPU b is gone: only a counts
    sample = rig.sampler.sample()
    assert sample.gpus[1].lost and not sample.gpus[0].lost and sample.gpus[0].values["power_w"] == 400
    assert any("stopped answering" in r.getMessage() for r in caplog.records)
    rig.gpus[1]["lost"] = False
    rig.write()
    rig.clock.now += 0.0
    rig.step(4.0, samples=2)  # b's first reading back only sets a new baseline
    report = rig.report("two")
    by_uuid = {g["uuid"]: g["joules"] for g in report["gpus"]}
    assert by_uuid["GPU-a"] == pytest.approx(400 * 14, rel=1e-6)
    assert by_uuid["GPU-b"] == pytest.approx(400 * 4 + 400 * 2, rel=1e-6)


def test_two_runs_sharing_a_gpu_split_its_energy_equally(rig_factory: Any) -> None:
    rig = rig_factory([gpu("GPU-shared", utilization=100)])
    _, pid_a = rig.run("a")
    _, pid_b = rig.run("b")
    rig.gpus[0]["processes"] = {str(pid_a): 3e9, str(pid_b): 1e9}
    rig.write()
    rig.step(2.0)
    rig.step(10.0, samples=5)  # both on the GPU: 4,000 J split 2,000 / 2,000
    rig.finish("b")
    rig.step(4.0, samples=2)  # only a is running: all 1,600 J to a
    a, b = rig.report("a"), rig.report("b")
    assert a["gpu_joules"] == pytest.approx(2000 + 1600, rel=1e-6)
    assert b["gpu_joules"] == pytest.approx(2000, rel=1e-6)
    assert a["gpu_hours"] == pytest.approx((5 + 4) / 3600) and b["gpu_hours"] == pytest.approx(5 / 3600)


def test_a_declared_gpu_is_attributed_without_nvml_seeing_the_process(rig_factory: Any) -> None:
    # In a container NVML lists no pids of ours: CUDA_VISIBLE_DEVICES, reported by the shim, decides.
    rig = rig_factory([gpu("GPU-0aaa", utilization=100), gpu("GPU-1bbb", utilization=100)])
    rig.run("declared", cuda={"visible_devices": "1", "local_rank": None})
    rig.step(2.0)
    rig.step(4.0, samples=2)
    report = rig.report("declared")
    assert [(g["uuid"], g["seen_by"]) for g in report["gpus"]] == [("GPU-1bbb", ["declared"])]
    assert report["gpu_joules"] == pytest.approx(1600, rel=1e-6)


def test_declared_gpus_follow_cuda_visible_devices_semantics() -> None:
    gpus = [(0, "GPU-aaaa-0000"), (1, "GPU-bbbb-1111"), (2, "GPU-cccc-2222")]

    def declared(**cuda: Any) -> set[str]:
        return declared_gpus({"cuda": cuda}, gpus)

    assert declared(visible_devices="2,0") == {"GPU-cccc-2222", "GPU-aaaa-0000"}
    assert declared(visible_devices="2,0", local_rank=1) == {"GPU-aaaa-0000"}  # torchrun: cuda:LOCAL_RANK
    assert declared(visible_devices="GPU-bbbb") == {"GPU-bbbb-1111"}  # UUID prefixes, as CUDA accepts
    assert declared(visible_devices="1,7,2") == {"GPU-bbbb-1111"}  # CUDA stops at the first bad entry
    assert declared(visible_devices="-1") == set() and declared(visible_devices="") == set()
    assert declared(visible_devices="MIG-xyz") == set()
    assert declared(visible_devices=None, local_rank=0) == set()  # unset: NVML's process list decides
    assert declared(visible_devices="0", device_uuid="cccc-2222") == {"GPU-cccc-2222"}  # torch's device wins
    assert declared_gpus({}, gpus) == set()


def test_a_run_gets_no_energy_from_before_it_was_created(rig_factory: Any) -> None:
    """A late sample stretches an interval back past a run's creation: only the part after it counts."""
    rig = rig_factory([gpu("GPU-early", utilization=100), gpu("GPU-late", utilization=100)])
    _, early_pid = rig.run("early")
    late, late_pid = rig.run("late")
    rig.gpus[0]["processes"] = {str(early_pid): 1e9}
    rig.gpus[1]["processes"] = {str(late_pid): 1e9}
    rig.write()
    rig.step(2.0)  # baseline
    with rig.store.conn:  # "late" was created a quarter into the next 4 s interval
        rig.store.update_run(late, created_at=rig.clock.now + 1.0)
    rig.step(4.0)
    full, part = rig.report("early")["gpu_joules"], rig.report("late")["gpu_joules"]
    assert full > 0 and part == pytest.approx(full * 0.75, rel=1e-6)


def test_a_shared_interval_is_split_by_the_time_each_run_existed(rig_factory: Any) -> None:
    rig = rig_factory([gpu("GPU-shared", utilization=100)])
    _, first_pid = rig.run("first")
    second, second_pid = rig.run("second")
    rig.gpus[0]["processes"] = {str(first_pid): 1e9, str(second_pid): 1e9}
    rig.write()
    rig.step(2.0)  # baseline
    with rig.store.conn:  # "second" was created a quarter into the next 4 s interval
        rig.store.update_run(second, created_at=rig.clock.now + 1.0)
    rig.step(4.0)
    first, later = rig.report("first")["gpu_joules"], rig.report("second")["gpu_joules"]
    # 1 s alone, then 3 s shared: 1/4 + 3/8 of the interval's energy, and 3/8; nothing is lost.
    assert first == pytest.approx(later * 5 / 3, rel=1e-6) and later > 0


def test_children_of_a_training_process_count_for_its_run(rig_factory: Any) -> None:
    import subprocess
    import sys

    rig = rig_factory([gpu("GPU-kid", utilization=100)])
    import os

    sid = os.getpid().to_bytes(16, "big")
    with rig.store.conn:
        rig.store.save_session(sid, {"pid": os.getpid(), "host": HOST}, None)
        rig.runbook.start(sid, 1, {"project": "p", "id": "parent", "name": "parent"})
        rig.store.update_run(rig.store.find_run("p", "parent", None)["id"], created_at=rig.clock.now)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        rig.gpus[0]["processes"] = {str(child.pid): 1e9}  # NVML sees the child (a spawned worker) only
        rig.write()
        rig.step(2.0)
        rig.step(4.0, samples=2)
    finally:
        child.kill()
        child.wait()
    assert rig.report("parent")["gpu_joules"] == pytest.approx(1600, rel=1e-6)


def test_no_driver_means_cpu_only_with_one_clear_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "trackiod")
    script = tmp_path / "nvml.json"
    script.write_text(json.dumps({"no_driver": True, "gpus": [gpu("GPU-x")]}))
    sampler = Sampler(2.0, ScriptedNvml(script))
    sampler.open()
    sample = sampler.sample()
    assert sample.gpus == [] and sampler.provider is None
    assert "cpu.percent" in sample.system and "memory.used_bytes" in sample.system
    lines = [r.getMessage() for r in caplog.records if "no NVML" in r.getMessage()]
    assert len(lines) == 1 and "CPU and system only" in lines[0] and "Driver Not Loaded" in lines[0]
    assert sampler.nvml_status.startswith("unavailable")


def test_real_pynvml_without_a_driver_is_unavailable_not_an_error() -> None:
    from trackiod.sampling.gpu import NvmlUnavailable
    from trackiod.sampling.nvml import PynvmlProvider

    provider = PynvmlProvider()
    try:
        gpus = provider.open()
    except NvmlUnavailable as exc:
        assert "nvml" in str(exc).lower() or "gpu" in str(exc).lower()
    else:  # a machine with a GPU: the provider lists it
        assert gpus and all(isinstance(g, GpuIdentity) and g.uuid for g in gpus)
        provider.close()


def test_psutil_system_and_process_readings_are_real_and_plausible() -> None:
    import os

    import psutil

    sampler = Sampler(2.0, None)
    sampler.open()
    sampler.watch(frozenset({os.getpid()}))
    first = sampler.sample()
    sum(i * i for i in range(300_000))  # some CPU for the process's next reading
    second = sampler.sample()
    total = psutil.virtual_memory().total
    system = second.system
    assert 0 <= system["cpu.percent"] <= 100
    assert 0 < system["memory.used_bytes"] < total and 0 < system["memory.available_bytes"] <= total
    assert system["load.1m"] >= 0 and 0 <= system["swap.percent"] <= 100
    for key in ("disk.read_bytes_per_s", "net.sent_bytes_per_s", "net.recv_bytes_per_s"):
        if key in system:  # rates need two readings; containers may lack disk counters
            assert system[key] >= 0
    assert "net.sent_bytes_per_s" not in first.system  # no rate from one reading
    mine = second.processes[os.getpid()]
    assert 10e6 < mine["rss_bytes"] < total
    assert "cpu_percent" not in first.processes[os.getpid()]  # psutil's first reading has no interval
    assert mine["cpu_percent"] >= 0
    assert second.cpu_s >= 0 and sampler.samples == 2


def test_system_series_are_stored_per_node_and_read_back_by_time(rig_factory: Any) -> None:
    rig = rig_factory([gpu("GPU-s", utilization=100)])
    rig.run("s")
    rig.step(2.0)
    rig.step(6.0, samples=3)
    with rig.store.conn:
        rig.book.flush_series(rig.clock.now, force=True)
    conn = open_reader(rig.store.path)
    try:
        keys = system_keys(conn)[HOST]
        assert {"cpu.percent", "memory.used_bytes", "gpu.0.power_w", "gpu.0.utilization_pct"} <= set(keys)
        times, values = system_series(conn, HOST, "gpu.0.power_w")
        assert times.tolist() == [1002.0, 1004.0, 1006.0, 1008.0] and set(values.tolist()) == {400.0}
        times, _ = system_series(conn, HOST, "gpu.0.power_w", start=1003.0, end=1006.0)
        assert times.tolist() == [1004.0, 1006.0]
        gpus = conn.execute("SELECT uuid, idx, name, power_limit_w FROM gpus").fetchall()
        assert gpus == [("GPU-s", 0, "Fake A100", 400.0)]
    finally:
        conn.close()


def test_card_yaml_is_the_hub_block_in_grams(rig_factory: Any) -> None:
    rig = rig_factory([gpu("GPU-c", utilization=100)])
    _, pid = rig.run("card")
    rig.gpus[0]["processes"] = {str(pid): 1e9}
    rig.write()
    rig.step(2.0)
    rig.step(9.0, samples=3)
    report = rig.report("card")
    text = card_yaml(report, "fine-tuning", "Quebec, Canada")
    lines = text.splitlines()
    assert lines[0] == "co2_eq_emissions:"
    fields = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert float(fields["emissions"]) == pytest.approx(3600 / 3.6e6 * 475, rel=1e-4)  # grams
    assert json.loads(fields["training_type"]) == "fine-tuning"
    assert json.loads(fields["geographical_location"]) == "Quebec, Canada"
    assert json.loads(fields["hardware_used"]).startswith("1 x Fake A100 (")
    assert "NVML energy counters" in json.loads(fields["source"])
    rig.run("cpu-only")
    with pytest.raises(UsageError, match="no GPU energy recorded"):
        card_yaml(rig.report("cpu-only"), "pre-training", "")
