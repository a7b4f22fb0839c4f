"""Mission files: schema, time scaling, manual windows, errors."""

import pytest
import yaml

from tnn_ros.resources import Mission, MissionError, find_mission_file


def test_demo_mission_story():
    mission = Mission.load(find_mission_file())
    assert mission.duration_s == pytest.approx(60.0)
    assert mission.battery_initial == pytest.approx(0.60) and mission.battery_final == pytest.approx(0.15)
    assert mission.deadline_at(0.0) == pytest.approx(80.0)
    assert mission.deadline_at(mission.duration_s) == pytest.approx(30.0)
    assert max(w for _, _, w in mission.heat_events) > 0
    assert len(mission.manual_windows) >= 1
    t0, t1, u = mission.manual_windows[0]
    assert mission.manual_utilization_at((t0 + t1) / 2) == u
    assert mission.manual_utilization_at(0.0) is None


def test_duration_scales_every_time():
    nominal = Mission.load(find_mission_file())
    fast = Mission.load(find_mission_file(), duration_s=nominal.duration_s / 4)
    assert fast.manual_windows[0][0] == pytest.approx(nominal.manual_windows[0][0] / 4)
    assert fast.heat_events[0][1] == pytest.approx(nominal.heat_events[0][1] / 4)
    assert fast.deadline_keyframes[-1][0] == pytest.approx(nominal.deadline_keyframes[-1][0] / 4)
    key = "thermal_time_constant_s"
    assert fast.sim_overrides[key] == pytest.approx(nominal.sim_overrides[key] / 4)


def _mission(**spec):
    return {"mission": {"duration_s": 10.0, **spec}}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"not_mission": {}}, "top-level 'mission'"),
        ({"mission": {"name": "x"}}, "duration_s"),
        (_mission(heat=[{"start_s": 5, "end_s": 2, "extra_w": 1}]), "end_s must be > start_s"),
        (_mission(deadline_ms=[{"t_s": 5, "value": 50}, {"t_s": 1, "value": 30}]), "time order"),
        (_mission(manual=[{"start_s": 1, "end_s": 2, "utilization": 1.5}]), "utilization"),
        (_mission(battery={"initial_fraction": 0.2, "final_fraction": 0.5}), "final_fraction"),
        (_mission(sim={"capacity": 1.0}), "unknown key"),
        (_mission(deadlines=[]), "unknown key"),
    ],
)
def test_bad_missions_are_rejected_with_reason(data, message):
    with pytest.raises(MissionError, match=message):
        Mission.from_dict(data)


def test_minimal_mission_and_bad_file(tmp_path):
    mission = Mission.from_dict(_mission())
    assert mission.deadline_at(3.0) is None and mission.extra_heat_w(3.0) == 0.0
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(_mission(manual=[{"start_s": 1, "end_s": 2, "utilization": 0.3}])))
    assert Mission.load(path, duration_s=20.0).manual_windows == [(2.0, 4.0, 0.3)]
    path.write_text("mission: [unclosed")
    with pytest.raises(MissionError, match="cannot read"):
        Mission.load(path)
