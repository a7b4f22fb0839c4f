"""Resource backends without ROS: sim physics, trace parsing, psutil, jtop with a fake, auto selection."""

import math
from types import SimpleNamespace

import pytest

from tnn_ros.resources import (
    BackendError,
    Mission,
    SimBackend,
    SimParams,
    find_config_file,
    find_mission_file,
    make_backend,
)
from tnn_ros.resources.jtop_backend import JtopBackend
from tnn_ros.resources.psutil_backend import PsutilBackend
from tnn_ros.resources.trace import TraceBackend, TraceFormatError, load_trace


def run_sim(backend, u, seconds, dt=1.0):
    backend.set_utilization(u)
    steps = round(seconds / dt)
    return [backend.sample(i * dt) for i in range(steps + 1)]


def test_sim_energy_balance_matches_power_integral():
    params = SimParams(capacity_wh=1.0, initial_fraction=1.0, idle_power_w=2.0, max_power_w=10.0)
    samples = run_sim(SimBackend(params), u=0.5, seconds=360.0)
    # 6 W for 360 s = 2160 J of 3600 J
    assert samples[-1].battery_fraction == pytest.approx(1.0 - 2160.0 / 3600.0)
    assert samples[-1].power_w == pytest.approx(6.0)
    # BatteryState fields: P = V * I
    last = samples[-1]
    assert last.battery_voltage * last.battery_current_a == pytest.approx(last.power_w)


def test_sim_battery_drains_faster_and_runs_hotter_at_high_utilization():
    high = run_sim(SimBackend(SimParams(capacity_wh=0.5)), u=1.0, seconds=60.0)
    low = run_sim(SimBackend(SimParams(capacity_wh=0.5)), u=0.2, seconds=60.0)
    assert high[-1].battery_fraction < low[-1].battery_fraction
    assert high[-1].temperature_c > low[-1].temperature_c
    fractions = [s.battery_fraction for s in high]
    assert all(b <= a for a, b in zip(fractions, fractions[1:]))  # monotone drain
    assert high[-1].cpu_load > low[-1].cpu_load


def test_sim_thermal_first_order_response():
    params = SimParams(
        ambient_c=20.0,
        thermal_resistance_c_per_w=5.0,
        thermal_time_constant_s=10.0,
        idle_power_w=0.0,
        max_power_w=10.0,
    )
    backend = SimBackend(params)
    backend.set_utilization(1.0)
    backend.sample(0.0)
    # after one time constant: 63.2% of the way to ambient + R*P = 70 C; independent of the step size
    backend.sample(5.0)
    assert backend.sample(10.0).temperature_c == pytest.approx(20.0 + 50.0 * (1 - math.exp(-1)), rel=1e-6)
    fine = SimBackend(params)
    run_sim(fine, 1.0, 10.0, dt=0.1)
    assert fine.temperature_c == pytest.approx(20.0 + 50.0 * (1 - math.exp(-1)), rel=1e-6)
    # cooling back when idle, never below ambient
    samples = run_sim(backend, 0.0, 200.0)
    assert samples[-1].temperature_c == pytest.approx(20.0, abs=0.01)
    assert min(s.temperature_c for s in samples) >= 20.0


def test_sim_rejects_bad_inputs():
    backend = SimBackend()
    with pytest.raises(ValueError):
        backend.set_utilization(math.nan)
    backend.set_utilization(7.0)
    assert backend.utilization == 1.0
    with pytest.raises(ValueError, match="idle_power_w"):
        SimBackend(SimParams(idle_power_w=20.0, max_power_w=10.0))
    with pytest.raises(ValueError, match="unknown sim parameter"):
        SimParams.from_mapping({"capacity": 3})


def test_sim_with_demo_mission_reaches_final_fraction_and_scripts_deadline_and_heat():
    mission = Mission.load(find_mission_file(), duration_s=30.0)  # half the nominal 60 s
    assert mission.time_scale == pytest.approx(0.5)
    backend = SimBackend(mission=mission)
    samples = run_sim(backend, mission.nominal_utilization, 30.0, dt=0.5)
    assert samples[0].battery_fraction == pytest.approx(0.60)
    assert samples[-1].battery_fraction == pytest.approx(0.15, abs=0.01)
    assert samples[0].deadline_ms == pytest.approx(80.0)
    assert samples[-1].deadline_ms == pytest.approx(30.0)
    by_time = {round(s.stamp, 1): s for s in samples}
    t0, t1, _ = mission.heat_events[0]
    assert by_time[round(t1 * 2) / 2].temperature_c > by_time[round(t0 * 2) / 2].temperature_c + 10.0
    # same mission at a lower utilization drains less (closed loop)
    slow = run_sim(SimBackend(mission=mission), 0.2, 30.0, dt=0.5)
    assert slow[-1].battery_fraction > 0.3


def test_trace_example_parses_and_interpolates(tmp_path):
    backend = TraceBackend(find_config_file("trace_example.csv"), loop=True)
    first = backend.sample(100.0)  # trace time 0 = first sample
    assert first.battery_fraction == pytest.approx(0.95) and first.deadline_ms == pytest.approx(80.0)
    mid = backend.sample(105.0)
    assert mid.temperature_c == pytest.approx(50.0)
    assert math.isnan(mid.gpu_load)
    looped = backend.sample(100.0 + 60.0 + 5.0)  # 60 s long trace loops
    assert looped.temperature_c == pytest.approx(50.0)
    yaml_trace = tmp_path / "t.yaml"
    yaml_trace.write_text(
        "samples:\n  - {time_s: 0, temperature_c: 40}\n  - {time_s: 2, temperature_c: 60}\n"
    )
    backend = TraceBackend(yaml_trace, loop=False)
    backend.sample(0.0)
    assert backend.sample(1.0).temperature_c == pytest.approx(50.0)
    assert backend.sample(9.0).temperature_c == pytest.approx(60.0)
    assert backend.sample(9.0).deadline_ms is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty trace"),
        ("time_s,battery\n0,0.5\n", "unknown column"),
        ("time_s,battery_fraction\n0,abc\n", "expected a number"),
        ("time_s,battery_fraction\n0,50\n", "outside"),
        ("time_s,cpu_load\n5,0.1\n2,0.2\n", "strictly increase"),
        ("time_s,cpu_load\n0,0.1,9\n", "more cells"),
        ("cpu_load\n0.1\n", "missing time_s"),
    ],
)
def test_trace_bad_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TraceFormatError, match=message):
        load_trace(path)


def test_trace_missing_file():
    with pytest.raises(TraceFormatError, match="cannot read"):
        load_trace("/nonexistent/trace.csv")


def test_psutil_backend_on_this_machine():
    sample = PsutilBackend().sample(1.0)
    assert 0.0 <= sample.cpu_load <= 1.0
    assert math.isnan(sample.battery_fraction) or 0.0 <= sample.battery_fraction <= 1.0


def test_psutil_backend_with_fake_sensors():
    entry = SimpleNamespace
    fake = SimpleNamespace(
        cpu_percent=lambda interval=None: 37.0,
        sensors_temperatures=lambda: {
            "nvme": [entry(current=70.0)],
            "coretemp": [entry(current=48.0), entry(current=52.0)],
        },
        sensors_battery=lambda: SimpleNamespace(percent=42.0, power_plugged=False),
    )
    sample = PsutilBackend(fake).sample(0.0)
    assert sample.cpu_load == pytest.approx(0.37)
    assert sample.temperature_c == pytest.approx(52.0)  # the CPU chip, not the hotter NVMe
    assert sample.battery_fraction == pytest.approx(0.42)


class FakeJtop:
    def __init__(self, ok=True):
        self._ok = ok
        self.started = self.closed = False
        self.power = {
            "rail": {"VDD_GPU": {"power": 3000}},
            "tot": {"power": 7500, "volt": 5000, "curr": 1500},
        }
        self.temperature = {
            "CPU": {"online": True, "temp": 51.5},
            "GPU": {"online": True, "temp": 55.0},
            "PMIC": {"online": False, "temp": -256},
            "board": {"online": True, "temp": 90.0},
        }
        self.cpu = {"total": {"user": 30.0, "system": 10.0, "idle": 60.0}}
        self.gpu = {"gpu": {"status": {"load": 45.0}}}

    def start(self):
        self.started = True

    def ok(self):
        return self._ok

    def close(self):
        self.closed = True


def test_jtop_backend_with_fake():
    fake = FakeJtop()
    backend = JtopBackend(lambda: fake)
    sample = backend.sample(0.0)
    assert fake.started
    assert sample.power_w == pytest.approx(7.5)
    assert sample.battery_voltage == pytest.approx(5.0)
    assert sample.temperature_c == pytest.approx(55.0)  # compute zones only
    assert sample.cpu_load == pytest.approx(0.4)
    assert sample.gpu_load == pytest.approx(0.45)
    assert math.isnan(sample.battery_fraction)
    fake._ok = False
    with pytest.raises(BackendError, match="stopped"):
        backend.sample(1.0)
    backend.close()
    assert fake.closed


def test_auto_selection(tmp_path):
    backend, why = make_backend("auto", jtop_factory=FakeJtop)
    assert backend.name == "jtop" and "jtop" in why
    # no jtop service socket here -> psutil, and the reason says why jtop was skipped
    backend, why = make_backend("auto", jtop_socket=str(tmp_path / "no.sock"))
    assert backend.name == "psutil"
    assert "no.sock" in why or "not installed" in why

    def broken():
        raise OSError("no service")

    backend, why = make_backend("auto", jtop_factory=broken)
    assert backend.name == "psutil" and "no service" in why


def test_make_backend_errors():
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("gpu")
    with pytest.raises(ValueError, match="trace_file"):
        make_backend("trace")
    backend, why = make_backend("sim", sim={"capacity_wh": 2.0})
    assert backend.params.capacity_wh == 2.0 and why == "sim requested"


def test_sim_long_pause_is_not_one_huge_step():
    backend = SimBackend(SimParams(capacity_wh=1.0, idle_power_w=0.0, max_power_w=10.0))
    backend.set_utilization(1.0)
    backend.sample(0.0)
    backend.sample(3600.0)  # e.g. the process was suspended for an hour
    assert backend.battery_fraction > 0.9


# --- when the mission clock starts (mission_start) ------------------------------------------------


def test_first_frame_mission_holds_the_start_state_until_the_first_measured_frame():
    mission = Mission.load(find_mission_file(), duration_s=30.0)
    backend = SimBackend(
        SimParams(idle_power_w=2.0, max_power_w=10.0), mission=mission, mission_start="first_frame"
    )
    initial = mission.battery_initial
    for now in (100.0, 101.0, 102.5):  # DDS still matching: no frame measured yet
        sample = backend.sample(now)
        assert backend.mission_time(now) is None and backend.waiting_for_first_frame
        assert sample.battery_fraction == pytest.approx(initial)  # nothing drains while waiting
        assert sample.temperature_c == pytest.approx(backend.params.ambient_c)
        assert sample.deadline_ms == pytest.approx(mission.deadline_at(0.0))
    assert backend.add_cpu_time(float("nan"), 102.6) is not None  # a rejected sample starts nothing
    assert backend.waiting_for_first_frame
    assert backend.add_cpu_time(20.0, 102.8) is None  # first measured frame, received at 102.8 s
    sample = backend.sample(103.0)
    assert backend.mission_time(103.0) == pytest.approx(0.2)  # the clock started at the frame, not the tick
    # 0.2 s of mission: idle power plus the frame's 20 ms of CPU (all of it fits into the step)
    used_j = 2.0 * 0.2 + (10.0 - 2.0) * 0.020
    assert initial * backend.capacity_j - backend.energy_j == pytest.approx(used_j, rel=1e-9)
    assert sample.deadline_ms == pytest.approx(mission.deadline_at(0.2))


def test_immediate_mission_starts_at_the_first_sample_whatever_the_frames():
    mission = Mission.load(find_mission_file(), duration_s=30.0)
    backend = SimBackend(mission=mission)  # default: immediate, as before
    assert backend.mission_start == "immediate"
    backend.sample(100.0)
    assert backend.mission_time(102.5) == pytest.approx(2.5)
    assert not backend.waiting_for_first_frame
    with pytest.raises(ValueError, match="mission_start"):
        SimBackend(mission=mission, mission_start="later")


def test_first_frame_without_a_receive_time_starts_at_the_next_sample():
    backend = make_backend("sim", mission_start="first_frame")[0]
    backend.sample(5.0)
    assert backend.mission_time(5.0) is None
    backend.add_cpu_time(10.0)  # no receive time known
    backend.sample(6.0)
    assert backend.mission_time(7.0) == pytest.approx(1.0)
