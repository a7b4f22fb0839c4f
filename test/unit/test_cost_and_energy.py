"""Measured cost per frame, the sim driven by measured CPU work, and real energy meters (fake sysfs)."""

import json
import math
import os
import threading
import time
from types import SimpleNamespace

import pytest

from tnn_ros.perception.cost import CostMeter, CostTotals, FrameCost, WorkerClock, thread_ids
from tnn_ros.perception.formatting import detections_to_json
from tnn_ros.perception.pipeline import FrameResult
from tnn_ros.resources.meters import (
    BatteryMeter,
    JtopPowerMeter,
    MeterError,
    MeterReader,
    RaplMeter,
    make_energy_meter,
)
from tnn_ros.resources.sim import SimBackend, SimParams
from tnn_ros.resources.work import MeasuredWork


class FakeClock:
    def __init__(self, value=0):
        self.value = value

    def __call__(self):
        return self.value


# -- cost of one frame ------------------------------------------------------------------------------


def test_cost_meter_reads_thread_cpu_and_wall_clocks_and_queue_delay():
    cpu, wall = FakeClock(1_000_000), FakeClock(10.0)
    meter = CostMeter(received_s=9.97, thread_clock_ns=cpu, wall_clock_s=wall)
    cpu.value += 12_500_000  # 12.5 ms of CPU
    wall.value += 0.040  # in 40 ms of wall time
    cost = meter.stop()
    assert cost.cpu_ms == pytest.approx(12.5)
    assert cost.wall_ms == pytest.approx(40.0)
    assert cost.queue_ms == pytest.approx(30.0)
    assert cost.response_ms == pytest.approx(70.0)
    # unknown arrival: NaN queue, response is the work alone
    unknown = CostMeter(None, thread_clock_ns=cpu, wall_clock_s=wall).stop()
    assert math.isnan(unknown.queue_ms) and unknown.response_ms == pytest.approx(0.0)


def test_cost_meter_counts_this_threads_cpu_not_sleep_or_other_threads():
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        meter = CostMeter()
        time.sleep(0.05)
        sleeping = meter.stop()
    finally:
        stop.set()
        spinner.join()
    # A sleeping thread uses (almost) no CPU while another thread spins: far below its wall time.
    assert sleeping.wall_ms >= 45.0
    assert sleeping.cpu_ms < 0.5 * sleeping.wall_ms
    meter = CostMeter()
    start = time.thread_time_ns()
    while time.thread_time_ns() - start < 20_000_000:  # 20 ms of this thread's own CPU
        pass
    busy = meter.stop()
    assert busy.cpu_ms >= 20.0


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc/self/task")
def test_worker_clock_adds_the_cpu_of_helper_threads_the_work_started():
    go, finish = threading.Event(), threading.Event()
    helper_cpu = {}

    def helper():  # stands in for a torch intra-op pool thread
        go.wait()
        start = time.thread_time_ns()
        while time.thread_time_ns() - start < 30_000_000:  # 30 ms of its own CPU
            pass
        helper_cpu["ns"] = time.thread_time_ns() - start
        finish.wait()

    clock = WorkerClock()
    before = thread_ids()
    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    assert clock.discover(before) == 1 and clock.helpers == {thread.native_id}
    own0, total0 = time.thread_time_ns(), clock()
    go.set()
    while "ns" not in helper_cpu:
        time.sleep(0.005)
    own1, total1 = time.thread_time_ns(), clock()
    # the helper's CPU (as it measured itself) is in the clock beside this thread's own
    helper_part = (total1 - total0) - (own1 - own0)
    assert helper_part >= helper_cpu["ns"] - 2_000_000
    assert helper_part <= helper_cpu["ns"] + 10_000_000
    finish.set()
    thread.join()
    for _ in range(200):  # Python's join returns a moment before the OS thread is gone
        if thread.native_id not in thread_ids():
            break
        time.sleep(0.01)
    assert clock() >= total1 and not clock.helpers  # an exited helper's time is kept


def test_cost_totals_and_diagnostics_values():
    totals = CostTotals()
    assert totals.values()["cpu_ms_mean"] == "nan"
    totals.add(FrameCost(cpu_ms=10.0, wall_ms=20.0, queue_ms=4.0))
    totals.add(FrameCost(cpu_ms=30.0, wall_ms=40.0, queue_ms=math.nan))
    assert totals.frames == 2 and totals.cpu_s == pytest.approx(0.040)
    assert totals.cpu_ms_mean == pytest.approx(20.0) and totals.queue_ms_mean == pytest.approx(4.0)
    values = totals.values()
    assert values["cpu_ms_last"] == "30.00" and values["queue_ms_last"] == "nan"
    assert values["cpu_s_total"] == "0.040"


def test_detections_json_carries_cost_only_when_given():
    result = FrameResult(
        detections=[], gesture=None, level=2, utilization_applied=0.375, latency_ms=5.0, image_size=(64, 48)
    )
    plain = json.loads(detections_to_json(result, 1, "cam"))
    assert "cpu_ms" not in plain and "queue_ms" not in plain
    payload = json.loads(detections_to_json(result, 1, "cam", FrameCost(4.25, 5.0, math.nan)))
    assert payload["cpu_ms"] == 4.25 and payload["queue_ms"] is None


# -- the sim driven by measured work ------------------------------------------------------------------


def test_measured_work_rejects_bad_samples_and_counts_them():
    work = MeasuredWork()
    assert not work.heard
    for bad in (math.nan, math.inf, -math.inf, -1.0, 1e9, "x"):
        assert work.add_cpu_ms(bad) is not None
    assert sum(work.rejected.values()) == 6 and work.rejected["nan"] == 1 and work.rejected["inf"] == 2
    assert not work.heard and work.take(1.0) == 0.0
    assert work.add_cpu_ms(250.0) is None and work.heard


def test_measured_work_carries_bursts_over_instead_of_clipping():
    work = MeasuredWork(max_busy=1.0)
    for _ in range(15):  # 1.5 CPU-seconds reported at once
        work.add_cpu_ms(100.0)
    busy = [work.take(0.5) for _ in range(4)]
    assert busy == pytest.approx([1.0, 1.0, 1.0, 0.0])
    assert sum(b * 0.5 for b in busy) == pytest.approx(1.5)  # nothing lost


def test_sim_energy_follows_measured_cpu_not_the_utilization():
    params = SimParams(capacity_wh=1.0, idle_power_w=2.0, max_power_w=10.0)
    measured, commanded = SimBackend(params), SimBackend(params)
    for backend in (measured, commanded):
        backend.set_utilization(1.0)  # the commanded/applied u says "full"
    measured.sample(0.0)
    commanded.sample(0.0)
    for i in range(1, 101):  # 100 s; the worker really used 250 ms of CPU per second
        for _ in range(5):
            assert measured.add_cpu_time(50.0) is None
        measured.add_cpu_time(math.nan)  # unknown samples are dropped, counted, harmless
        measured.sample(float(i))
        commanded.sample(float(i))
    assert measured.drive == "measured-cpu" and commanded.drive == "utilization"
    assert measured.work.rejected["nan"] == 100
    capacity_j = 3600.0
    used_measured = capacity_j - measured.energy_j
    used_commanded = capacity_j - commanded.energy_j
    # hand-computed: idle 2 W x 100 s + (10 - 2) W x 25 CPU-s = 400 J; the u-driven sim says 1000 J
    assert used_measured == pytest.approx(400.0)
    assert used_commanded == pytest.approx(1000.0)
    assert measured.busy_fraction == pytest.approx(0.25)
    assert measured.sample(101.0).cpu_load < commanded.sample(101.0).cpu_load


def test_sim_without_work_after_cpu_was_heard_is_idle():
    backend = SimBackend(SimParams(capacity_wh=1.0, idle_power_w=2.0, max_power_w=10.0))
    backend.set_utilization(1.0)
    backend.sample(0.0)
    backend.add_cpu_time(0.0)  # perception alive but doing nothing
    assert backend.sample(10.0).power_w == pytest.approx(2.0)


# -- energy meters ------------------------------------------------------------------------------------


def _rapl(root, energies_uj, max_uj=1_000_000):
    for i, value in enumerate(energies_uj):
        domain = root / f"intel-rapl:{i}"
        domain.mkdir(parents=True, exist_ok=True)
        (domain / "energy_uj").write_text(f"{value}\n")
        (domain / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (domain / "name").write_text(f"package-{i}\n")
        sub = domain / f"intel-rapl:{i}:0"  # a core sub-domain: part of the package, not added
        sub.mkdir(exist_ok=True)
        (sub / "energy_uj").write_text("123456\n")


def test_rapl_sums_packages_and_handles_wrap_around(tmp_path):
    _rapl(tmp_path, [900_000, 10_000])
    meter = RaplMeter(tmp_path)
    assert [d.name for d in meter.domains] == ["intel-rapl:0", "intel-rapl:1"]
    assert meter.read_j(0.0) == 0.0
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("950000\n")  # +0.05 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("30000\n")  # +0.02 J
    assert meter.read_j(1.0) == pytest.approx(0.07)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("50000\n")  # wrapped: +0.1 J
    assert meter.read_j(2.0) == pytest.approx(0.17)
    assert meter.wraps == 1


def test_rapl_permission_and_disappearance_are_meter_errors(tmp_path, monkeypatch):
    with pytest.raises(MeterError, match="no RAPL"):
        RaplMeter(tmp_path)
    _rapl(tmp_path, [1])
    meter = RaplMeter(tmp_path)
    original = type(tmp_path).read_text

    def denied(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "read_text", denied)
    with pytest.raises(MeterError, match="permission denied"):
        meter.read_j(1.0)
    monkeypatch.undo()
    (tmp_path / "intel-rapl:0" / "energy_uj").unlink()
    with pytest.raises(MeterError, match="gone"):
        meter.read_j(2.0)


def test_meter_reader_reports_a_lost_meter_once_and_falls_back(tmp_path):
    _rapl(tmp_path, [0])
    reader = MeterReader(RaplMeter(tmp_path), fallback_source="sim-from-measured-cpu")
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("2000000\n")
    assert reader.read(1.0) == (pytest.approx(2.0), None) and reader.source == "rapl"
    (tmp_path / "intel-rapl:0" / "energy_uj").unlink()
    value, lost = reader.read(2.0)
    assert math.isnan(value) and "gone" in lost and reader.errors == 1
    value, lost = reader.read(3.0)  # stays on the fallback, says nothing more
    assert math.isnan(value) and lost is None and reader.errors == 1
    assert reader.source == "sim-from-measured-cpu"


class FakeJetson:
    def __init__(self, watts):
        self.watts = list(watts)
        self.alive = True

    def start(self):
        pass

    def ok(self):
        return self.alive

    @property
    def power(self):
        return {"tot": {"power": self.watts.pop(0) * 1000.0, "volt": 5000.0}}

    def close(self):
        self.alive = False


def test_jtop_meter_integrates_total_power_and_notices_a_stopped_service():
    jetson = FakeJetson([4.0, 6.0, 6.0])
    meter = JtopPowerMeter(lambda: jetson)
    assert meter.read_j(0.0) == 0.0
    assert meter.read_j(2.0) == pytest.approx(10.0)  # trapezoid (4 + 6) / 2 x 2 s
    assert meter.read_j(3.0) == pytest.approx(16.0)
    jetson.alive = False
    with pytest.raises(MeterError, match="stopped"):
        meter.read_j(4.0)


def _battery(root, status="Discharging", energy_uwh=40_000_000):
    bat = root / "BAT0"
    bat.mkdir(parents=True, exist_ok=True)
    (bat / "status").write_text(status + "\n")
    (bat / "energy_now").write_text(f"{energy_uwh}\n")
    return bat


def test_battery_meter_counts_energy_taken_while_discharging(tmp_path):
    unplugged = SimpleNamespace(sensors_battery=lambda: SimpleNamespace(power_plugged=False, percent=50))
    bat = _battery(tmp_path)
    meter = BatteryMeter(tmp_path, psutil_module=unplugged)
    (bat / "energy_now").write_text("39990000\n")  # 10 mWh = 36 J
    assert meter.read_j(1.0) == pytest.approx(36.0)
    (bat / "status").write_text("Charging\n")
    with pytest.raises(MeterError, match="not discharging"):
        meter.read_j(2.0)
    plugged = SimpleNamespace(sensors_battery=lambda: SimpleNamespace(power_plugged=True, percent=50))
    with pytest.raises(MeterError, match="not discharging"):
        BatteryMeter(tmp_path, psutil_module=plugged)


def test_make_energy_meter_auto_picks_the_first_readable(tmp_path):
    meter, why = make_energy_meter(
        "auto",
        powercap_root=tmp_path / "none",
        power_supply_root=tmp_path / "none",
        jtop_factory=lambda: FakeJetson([5.0, 5.0]),
    )
    assert meter.source == "jtop" and "rapl: no RAPL" in why
    _rapl(tmp_path / "powercap", [0])
    meter, why = make_energy_meter("auto", powercap_root=tmp_path / "powercap")
    assert meter.source == "rapl"
    meter, why = make_energy_meter("none")
    assert meter is None
    with pytest.raises(MeterError):
        make_energy_meter("rapl", powercap_root=tmp_path / "none")
    with pytest.raises(ValueError):
        make_energy_meter("watts")
