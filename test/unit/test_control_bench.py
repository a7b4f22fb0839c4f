"""`tnn-bench control` replay simulation on tiny hand-made traces with hand-computed metrics (no ROS)."""

import json
import math

import numpy as np
import pytest

from tnn_ros.bench.control_bench import (
    BenchMission,
    FrameLog,
    detection_map50,
    fast_map50,
    gesture_accuracy,
    main,
    simulate,
    torchmetrics_map50,
)
from tnn_ros.control import LatencyProfile
from tnn_ros.eval.traces import Trace, frame_f1
from tnn_ros.resources.mission import Mission

GT_BOX = [10.0, 10.0, 50.0, 50.0]
MISS_BOX = [40.0, 40.0, 90.0, 90.0]  # IoU with GT_BOX far below 0.5


def make_trace(latency_ms, cpu_ms, boxes_per_level, frames=4, cores=1):
    """``frames`` frames with one class-0 object at GT_BOX; level k detects ``boxes_per_level[k]``."""
    levels = len(latency_ms)
    offsets, boxes, scores, labels, f1 = [0], [], [], [], np.zeros((frames, levels))
    for i in range(frames):
        for k in range(levels):
            boxes.append(boxes_per_level[k])
            scores.append(0.9)
            labels.append(0)
            offsets.append(offsets[-1] + 1)
            f1[i, k] = 1.0 if boxes_per_level[k] == GT_BOX else 0.0
    return Trace(
        latency_ms=np.tile(np.asarray(latency_ms, float), (frames, 1)),
        cpu_ms=np.tile(np.asarray(cpu_ms, float), (frames, 1)),
        det_offsets=np.array(offsets),
        det_boxes=np.array(boxes, np.float32),
        det_scores=np.array(scores, np.float32),
        det_labels=np.array(labels, np.int64),
        gt_offsets=np.arange(frames + 1),
        gt_boxes=np.tile(np.array([GT_BOX], np.float32), (frames, 1)),
        gt_labels=np.zeros(frames, np.int64),
        gesture_frames=np.zeros(0, np.int64),
        gesture_probs=np.zeros((0, levels, 2)),
        gesture_truth=np.zeros(frames, np.int64),
        f1=f1,
        meta={"cores": cores},
    )


def mission(duration_s=0.2, deadline_ms=120.0, contention=()):
    m = Mission.from_dict(
        {
            "mission": {
                "name": "t",
                "duration_s": duration_s,
                "sim": {"idle_power_w": 1.0, "max_power_w": 11.0},
                "deadline_ms": [{"t_s": 0.0, "value": deadline_ms}],
            }
        }
    )
    return BenchMission("t", m, contention=list(contention))


PROFILE = LatencyProfile([(0.125, 1.0), (0.25, 2.0)])


def test_static_fast_level_meets_every_deadline_and_energy_is_measured_busy_fraction():
    # 15 fps for 0.2 s: frames at 0, 66.7, 133.3 ms. Level 0 takes 10 ms (10 ms CPU) on 1 core.
    trace = make_trace([10.0, 100.0], [10.0, 100.0], [MISS_BOX, GT_BOX])
    row, frames = simulate(mission(), trace, None, "static_L0", PROFILE)
    assert [f.level for f in frames] == [0, 0, 0]
    assert row["deadline_hit_rate"] == 1.0
    assert row["cpu_s"] == pytest.approx(0.030)
    # tick (0, 0.1]: frames at 0 and 66.7 ms -> 20 ms CPU -> busy 0.2 -> 1 + 10 * 0.2 = 3 W
    # tick (0.1, 0.2]: frame at 133.3 ms -> busy 0.1 -> 2 W; energy 0.1 s * (3 + 2) W
    assert row["energy_j"] == pytest.approx(0.5)
    assert row["map50"] == pytest.approx(0.0)  # level 0 never overlaps the object
    assert row["utility"] == pytest.approx(0.0)
    assert row["switches_per_min"] == 0.0


def test_slow_level_queues_newest_frame_and_misses_the_deadline():
    # Level 1 takes 100 ms > the 66.7 ms frame period: frame 1 waits until 100 ms (done 200 ms,
    # 133.3 ms after it arrived), frame 2 waits until 200 ms (done 300 ms, 166.7 ms late).
    trace = make_trace([10.0, 100.0], [10.0, 100.0], [MISS_BOX, GT_BOX])
    row, frames = simulate(mission(deadline_ms=120.0), trace, None, "static_L1", PROFILE)
    assert [round(f.latency_ms, 1) for f in frames] == [100.0, 133.3, 166.7]
    assert [f.hit for f in frames] == [True, False, False]
    assert row["deadline_hit_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert row["map50"] == pytest.approx(1.0)
    assert row["utility"] == pytest.approx(1 / 3, abs=1e-4)
    assert row["processed"] == 3


def test_newest_frame_wins_when_the_worker_is_busy():
    # 250 ms per frame: frames 1..3 arrive while frame 0 runs; only frame 3 (the newest) runs next.
    trace = make_trace([10.0, 250.0], [1.0, 1.0], [MISS_BOX, GT_BOX])
    _, frames = simulate(mission(duration_s=0.27, deadline_ms=1000.0), trace, None, "static_L1", PROFILE)
    assert [f.seq for f in frames if f.level >= 0] == [0, 3]
    assert frames[3].latency_ms == pytest.approx(250.0 + 250.0 - 200.0)


def test_frame_drop_runs_full_level_on_the_kept_fraction():
    trace = make_trace([10.0, 20.0], [10.0, 20.0], [MISS_BOX, GT_BOX], frames=15)
    row, frames = simulate(mission(duration_s=1.0), trace, None, "frame_drop", PROFILE, frame_drop_keep=1 / 3)
    kept = [f.seq for f in frames if f.level >= 0]
    assert kept == [2, 5, 8, 11, 14] and all(frames[s].level == 1 for s in kept)
    assert row["deadline_hit_rate"] == pytest.approx(5 / 15, abs=1e-4)  # skipped frames have no result
    assert row["gesture_accuracy"] is None  # not replayable, see simulate()


def test_oracle_picks_the_accurate_level_while_it_fits_and_the_fast_one_when_not():
    # level 1 is accurate but takes 50 ms; the deadline is 60 ms for 1 s, then 20 ms.
    trace = make_trace([10.0, 50.0], [10.0, 50.0], [MISS_BOX, GT_BOX], frames=30)
    m = Mission.from_dict(
        {
            "mission": {
                "name": "t",
                "duration_s": 2.0,
                "deadline_ms": [
                    {"t_s": 0.0, "value": 60.0},
                    {"t_s": 0.999, "value": 60.0},
                    {"t_s": 1.0, "value": 20.0},
                ],
            }
        }
    )
    row, frames = simulate(BenchMission("t", m), trace, None, "oracle", PROFILE)
    assert {f.level for f in frames if f.arrival < 1.0} == {1}
    assert {f.level for f in frames if f.arrival >= 1.0} == {0}
    assert row["deadline_hit_rate"] == 1.0
    static, _ = simulate(BenchMission("t", m), trace, None, "static_L1", PROFILE)
    assert row["utility"] > static["utility"]


def test_contention_window_uses_the_loaded_trace():
    idle = make_trace([10.0, 20.0], [10.0, 20.0], [MISS_BOX, GT_BOX], frames=15)
    loaded = make_trace([30.0, 60.0], [10.0, 20.0], [MISS_BOX, GT_BOX], frames=15)
    _, frames = simulate(
        mission(duration_s=1.0, deadline_ms=100.0, contention=[(0.5, 1.0)]),
        idle,
        loaded,
        "static_L1",
        PROFILE,
    )
    assert {round(f.latency_ms) for f in frames if f.arrival < 0.5} == {20}
    assert {round(f.latency_ms) for f in frames if f.arrival >= 0.5} == {60}


def test_controller_policies_run_through_the_real_controller():
    trace = make_trace([10.0, 200.0], [10.0, 200.0], [MISS_BOX, GT_BOX], frames=30)
    profile = LatencyProfile([(0.125, 10.0), (0.25, 200.0)])
    row, frames = simulate(mission(duration_s=2.0, deadline_ms=50.0), trace, None, "deadline", profile)
    # LevelSchedule(8) maps u 0.125 to level 0; the deadline policy keeps the 200 ms level off
    assert row["processed"] > 0 and all(f.level == 0 for f in frames if f.level >= 0)
    row, _ = simulate(
        mission(duration_s=0.5), trace, None, "learned", profile, learned_model="/nonexistent.pt"
    )
    assert "using auto" in row["notes"]


def test_fast_map50_equals_torchmetrics_on_random_detections():
    rng = np.random.default_rng(3)
    frames, levels = 12, 3
    offsets, boxes, scores, labels = [0], [], [], []
    gt_boxes, gt_labels, gt_offsets = [], [], [0]
    for i in range(frames):
        truth = rng.uniform(0, 200, size=(int(rng.integers(0, 4)), 2))
        for x, y in truth:
            gt_boxes.append([x, y, x + 40, y + 30])
            gt_labels.append(int(rng.integers(0, 3)))
        gt_offsets.append(len(gt_boxes))
        for _ in range(levels):
            n = int(rng.integers(0, 5))
            for _ in range(n):
                if gt_boxes[gt_offsets[-2] :] and rng.random() < 0.6:
                    base = np.array(gt_boxes[gt_offsets[-2] + int(rng.integers(0, len(truth)))])
                    boxes.append(list(base + rng.normal(0, 6, 4)))
                else:
                    x, y = rng.uniform(0, 200, 2)
                    boxes.append([x, y, x + 30, y + 30])
                labels.append(int(rng.integers(0, 3)))
                scores.append(float(rng.uniform(0.3, 1.0)))
            order = np.argsort(-np.array(scores[offsets[-1] :]), kind="stable")
            for name, values in (("b", boxes), ("s", scores), ("l", labels)):
                values[offsets[-1] :] = [values[offsets[-1] + j] for j in order]
            offsets.append(len(scores))
    trace = Trace(
        latency_ms=np.ones((frames, levels)),
        cpu_ms=np.ones((frames, levels)),
        det_offsets=np.array(offsets),
        det_boxes=np.array(boxes, np.float32).reshape(-1, 4),
        det_scores=np.array(scores, np.float32),
        det_labels=np.array(labels, np.int64),
        gt_offsets=np.array(gt_offsets),
        gt_boxes=np.array(gt_boxes, np.float32).reshape(-1, 4),
        gt_labels=np.array(gt_labels, np.int64),
        gesture_frames=np.zeros(0, np.int64),
        gesture_probs=np.zeros((0, levels, 2)),
        gesture_truth=np.zeros(frames, np.int64),
        f1=np.zeros((frames, levels)),
        meta={},
    )
    for pick in range(4):
        log = [FrameLog(i, i / 15.0, level=int((i * 7 + pick) % levels)) for i in range(frames)]
        reference = torchmetrics_map50(log, lambda f: trace)
        assert detection_map50(log, lambda f: trace) == pytest.approx(reference, abs=1e-6)
    assert fast_map50([]) is None


def test_frame_f1_hand_cases():
    gt = np.array([GT_BOX], np.float32)
    one = np.zeros(1, np.int64)
    assert frame_f1(np.array([GT_BOX], np.float32), one, gt, one) == 1.0
    assert frame_f1(np.array([MISS_BOX], np.float32), one, gt, one) == 0.0
    assert frame_f1(np.array([GT_BOX], np.float32), np.ones(1, np.int64), gt, one) == 0.0  # wrong class
    # one hit and one false positive of two detections vs one object: 2 * 1 / (2 + 1)
    two = np.array([GT_BOX, MISS_BOX], np.float32)
    assert frame_f1(two, np.zeros(2, np.int64), gt, one) == pytest.approx(2 / 3)
    assert frame_f1(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0)) == 1.0


def test_gesture_accuracy_smooths_the_chosen_levels_probabilities():
    trace = make_trace([1.0, 1.0], [1.0, 1.0], [GT_BOX, GT_BOX], frames=4)
    trace.gesture_frames = np.array([0, 1, 2, 3])
    # class 1 is the truth; level 1 is sure of it, level 0 says class 0 (no_gesture)
    trace.gesture_probs = np.array([[[0.9, 0.1], [0.0, 1.0]]] * 4)
    trace.gesture_truth = np.ones(4, np.int64)
    at = [FrameLog(i, i / 15.0, level=lv) for i, lv in enumerate([1, 1, 0, 0])]
    # smoothing 2: runs 0+1 -> [0, 1] right; 1+2 -> [0.45, 0.55] right; 2+3 -> [0.9, 0.1] wrong
    assert gesture_accuracy(at, lambda f: trace) == pytest.approx(2 / 3)


def test_cli_writes_the_interface_json_and_plot(tmp_path, monkeypatch):
    from tnn_ros.bench import control_bench

    trace = make_trace([5.0] * 8, [5.0] * 8, [MISS_BOX] * 4 + [GT_BOX] * 4, frames=20)
    trace.meta.update(seed=0, contention=False, recorded_s=0.0)
    loaded = make_trace([15.0] * 8, [5.0] * 8, [MISS_BOX] * 4 + [GT_BOX] * 4, frames=20)
    loaded.meta.update(seed=0, contention=True, recorded_s=0.0)
    traces = tmp_path / "traces"
    trace.save(traces / "idle_seed0.npz")
    loaded.save(traces / "contention_seed0.npz")
    monkeypatch.setattr(
        control_bench,
        "build_missions",
        lambda idle, quick: [
            mission(duration_s=1.0, deadline_ms=40.0),
            BenchMission("contention", mission(1.0).mission, contention=[(0.3, 0.6)]),
        ],
    )
    out = tmp_path / "control.json"
    assert (
        main(
            ["--json", str(out), "--traces", str(traces), "--quick", "--frames", "20", "--learned-model", ""]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert [m["name"] for m in result["missions"]] == ["t", "contention"]
    keys = {
        "policy",
        "cpu_s",
        "energy_j",
        "deadline_hit_rate",
        "map50",
        "gesture_accuracy",
        "utility",
        "switches_per_min",
    }
    for m in result["missions"]:
        assert [row["policy"] for row in m["policies"]] == list(control_bench.POLICIES)
        assert all(keys <= set(row) for row in m["policies"])
        assert all(math.isfinite(row["utility"]) for row in m["policies"])
    assert (tmp_path / "control.png").stat().st_size > 1000
    with pytest.raises(SystemExit):  # the oracle needs hindsight: replay only
        main(["--json", str(out), "--mode", "live", "--policies", "oracle"])


def test_live_metrics_from_a_recorded_run_bag(tmp_path):
    """The live mode's figures from a hand-made run bag (test_demo_analysis.s known run)."""
    import importlib.util
    from pathlib import Path

    from tnn_ros.bench.control_bench import live_metrics

    known_run = Path(__file__).with_name("test_demo_analysis.py")
    spec = importlib.util.spec_from_file_location("bag_run", known_run)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bag = module._run_bag(tmp_path / "run")  # 20 frames: 10 in deadline with the object found, 10 late
    row = live_metrics(bag, duration_s=5.0)
    assert row["frames"] == 20 and row["processed"] == 20
    assert row["deadline_hit_rate"] == pytest.approx(0.5)
    assert row["map50"] == pytest.approx(0.5, abs=0.02)
    assert row["utility"] == pytest.approx(row["map50"] * 0.5, abs=1e-3)
    assert row["energy_j"] == pytest.approx(12.0, rel=1e-3)  # 6 W for 2 s of battery samples
    assert row["gesture_accuracy"] == pytest.approx(0.5)
    assert row["switches_per_min"] == 0.0 and row["cpu_s"] is None  # this bag has no cpu_ms


def test_nan_and_missing_trace_samples_count_as_missed_frames():
    trace = make_trace([10.0, 20.0], [10.0, 20.0], [MISS_BOX, GT_BOX], frames=3)
    trace.latency_ms[1, 0] = np.nan  # a lost measurement
    trace.cpu_ms[2, 0] = np.inf  # a broken one
    row, frames = simulate(mission(), trace, None, "static_L0", PROFILE)
    assert [f.level for f in frames] == [0, -1, -1]
    assert row["deadline_hit_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert row["cpu_s"] == pytest.approx(0.010)
    assert "2 unusable trace sample(s)" in row["notes"]


class _Recorder:
    """A level source that runs one level and records what the controller would be told per frame."""

    name = "recorder"

    def __init__(self, level):
        self.fixed, self.done = level, []

    def tick(self, t, readings):
        pass

    def frame_done(self, t, level, latency_ms, cpu_ms, queue_ms=0.0):
        self.done.append((round(t * 1e3, 2), level, latency_ms, round(queue_ms, 2)))

    def level(self, t, seq):
        return self.fixed


def test_controller_hears_each_frames_queueing_delay():
    # 90 ms per frame at 15 fps (frames every 66.67 ms), newest frame wins. By hand:
    # f0 0 -> 90; f1 (66.67) starts 90, waited 23.33, done 180; f2 (133.33) starts 180, waited 46.67,
    # done 270; f3 (200) is replaced by f4 (266.67), which starts 270, waited 3.33, done 360;
    # f5 (333.33) starts 360, waited 26.67, done 450.
    from tnn_ros.bench.control_bench import ReplaySim

    trace = make_trace([10.0, 90.0], [1.0, 1.0], [MISS_BOX, GT_BOX], frames=10)
    source = _Recorder(1)
    sim = ReplaySim(mission(duration_s=0.5, deadline_ms=1000.0), trace, None, source)
    sim.run_until(0.46)
    assert [(t, q) for t, _, _, q in source.done] == [
        (90.0, 0.0),
        (180.0, 23.33),
        (270.0, 46.67),
        (360.0, 3.33),
        (450.0, 26.67),
    ]
    assert all(latency == 90.0 for _, _, latency, _ in source.done)  # service time, as the node reports


def test_deadline_policy_in_replay_keeps_up_with_the_camera():
    # A loose 300 ms deadline (270 ms budget). Level 7 takes 80 ms, longer than the 66.7 ms frame
    # period: by hand its frames queue 13.3, 26.7, 40, 53.3 ms (latency 93.3..133.3 ms, all within
    # the budget) and then one frame in six is dropped (f5 is replaced by f6 while f4 runs): a 5/6
    # hit rate although every frame it answers is in time. Level 6 (75 ms) does the same; level 5
    # (60 ms) keeps up and answers every frame. The card has the same shape (1/10 of the latency).
    latency = [20.0, 40.0, 45.0, 50.0, 55.0, 60.0, 75.0, 80.0]
    trace = make_trace(latency, [1.0] * 8, [MISS_BOX] + [GT_BOX] * 7, frames=150)
    profile = LatencyProfile([((k + 1) / 8, ms / 10.0) for k, ms in enumerate(latency)])
    row, frames = simulate(mission(duration_s=10.0, deadline_ms=300.0), trace, None, "static_L7", profile)
    assert row["deadline_hit_rate"] == pytest.approx(125 / 150, abs=0.01)
    row, frames = simulate(mission(duration_s=10.0, deadline_ms=300.0), trace, None, "deadline", profile)
    late = [f for f in frames if f.arrival >= 3.0]
    assert {f.level for f in late} == {5}
    assert all(f.hit for f in late)


def test_live_queueing_delay_is_paired_with_the_nearest_frame():
    from tnn_ros.bench.control_bench import paired_queue_ms

    # frames at 0.10, 0.20, 0.30, 0.40 s; queue samples 2 ms after the first two, a NaN one after the
    # third, none near the fourth (the nearest is 0.32 s, 80 ms away): 5, 7, unknown, unknown
    queue = np.array([[0.102, 5.0], [0.202, 7.0], [0.302, np.nan], [0.32, 9.0]])
    got = paired_queue_ms([0.10, 0.20, 0.30, 0.40], queue)
    np.testing.assert_array_equal(got, [5.0, 7.0, np.nan, np.nan])
    assert np.isnan(paired_queue_ms([0.1], np.zeros((0, 2)))).all()


def test_recorded_gesture_probabilities_are_the_clip_models_at_every_level():
    # The recorder streams the shipped (temporal="valid") gesture net frame by frame, as the node
    # does; the reference is the clip model run on the same 16 frames at the same level.
    import torch

    from tnn_ros.bench.control_bench import GESTURE_STRIDE, record_traces
    from tnn_ros.models import load_gesture
    from tnn_ros.models.gesture import resize_frame
    from tnn_ros.sim.stream import SimFrameSource

    torch.set_num_threads(1)
    trace = record_traces(21, seed=3, progress=lambda _: None)
    net = load_gesture()
    assert trace.meta["gesture_mode"] == "streaming"
    assert list(trace.gesture_frames) == [15, 15 + GESTURE_STRIDE]  # first full clip, then every stride
    source = SimFrameSource(320, 240, seed=3, fps=15.0)
    frames = [resize_frame(source.frame_at(i).rgb, net.frame_size) for i in range(21)]
    for row, end in enumerate(trace.gesture_frames):
        for level in (0, net.num_levels - 1):
            net.set_level(level)
            expected = net.predict_clip(frames[end - net.clip_length + 1 : end + 1])
            np.testing.assert_allclose(trace.gesture_probs[row, level], expected, atol=1e-4)


def test_live_hit_rate_counts_only_frames_published_in_the_window(monkeypatch):
    # Hand-made run: 4 frames published at t = -0.05, 0.5, 1.0, 1.5 s; every result is on time, the
    # first one arrives at t = 0.01 (inside the window although its frame was published before it).
    from types import SimpleNamespace

    from tnn_ros.bench import control_bench
    from tnn_ros.demo import analysis

    published = [-0.05, 0.5, 1.0, 1.5]
    truth = {
        i + 1: {"t": t, "boxes": [], "class_ids": [], "gesture": "no_gesture"}
        for i, t in enumerate(published)
    }
    frames = [
        {"stamp_ns": i + 1, "t": max(t, 0.0) + 0.01, "latency_ms": 5.0, "level": 0, "detections": []}
        for i, t in enumerate(published)
    ]
    run = SimpleNamespace(
        frames=frames,
        truth=truth,
        gestures=[],
        queue_ms=np.zeros((0, 2)),
        deadline=np.array([[0.0, 30.0]]),
        battery=np.zeros((0, 4)),
    )
    monkeypatch.setattr(analysis, "load_run", lambda bag: run)
    row = control_bench.live_metrics("unused", duration_s=2.0)
    assert row["frames"] == 3 and row["processed"] == 3
    assert row["deadline_hit_rate"] == pytest.approx(1.0)  # 3 of 3, not 4 of 3


def test_several_seeds_give_per_seed_runs_and_their_means(tmp_path, monkeypatch):
    from tnn_ros.bench import control_bench

    traces = tmp_path / "traces"
    # seed 0: levels 4-7 find the object; seed 1: only level 7 does (hand-computed mAP 1 / 0)
    for seed, boxes in ((0, [MISS_BOX] * 4 + [GT_BOX] * 4), (1, [MISS_BOX] * 7 + [GT_BOX])):
        for contention in (False, True):
            trace = make_trace([5.0] * 8, [5.0] * 8, boxes, frames=20)
            trace.meta.update(seed=seed, contention=contention, recorded_s=0.0)
            trace.save(traces / f"{'contention' if contention else 'idle'}_seed{seed}.npz")
    monkeypatch.setattr(
        control_bench, "build_missions", lambda idle, quick: [mission(duration_s=1.0, deadline_ms=40.0)]
    )
    learned = tmp_path / "controller.pt"  # only its card is read for the training seeds
    (tmp_path / "controller.card.json").write_text(
        json.dumps({"training": {"sources": [{"recorded": {"seed": 1}}, {"bag": "x"}]}})
    )
    assert control_bench.learned_training_seeds(str(learned)) == [1]
    out = tmp_path / "control.json"
    args = ["--json", str(out), "--traces", str(traces), "--frames", "20", "--learned-model", ""]
    assert main(args + ["--seed", "0", "1", "--policies", "static_L3,static_L5,static_L7"]) == 0
    result = json.loads(out.read_text())
    assert result["seeds"] == [0, 1]
    assert [run["seed"] for run in result["per_seed"]] == [0, 1]
    rows = {row["policy"]: row for row in result["missions"][0]["policies"]}
    assert rows["static_L3"]["map50"] == pytest.approx(0.0)
    assert rows["static_L5"]["map50"] == pytest.approx(0.5)  # 1 on seed 0, 0 on seed 1
    assert rows["static_L7"]["map50"] == pytest.approx(1.0)
    assert rows["static_L5"]["per_seed_utility"] == pytest.approx([1.0, 0.0])
    assert result["summary"]["best_static"] == "static_L7"
    assert result["summary"]["best_non_oracle_per_seed"] == {"0": "static_L5", "1": "static_L7"}
    # one seed keeps the old layout (no per_seed)
    assert main(args + ["--seed", "1", "--policies", "static_L7"]) == 0
    single = json.loads(out.read_text())
    assert "per_seed" not in single and single["conditions"]["trace_frames"] == 20
