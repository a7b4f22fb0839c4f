"""Learned (LinUCB) controller: learning, files, fallback, bad input, offline training (no ROS)."""

import json

import numpy as np
import pytest

from tnn_ros.control import Controller, ControllerConfig, LatencyProfile
from tnn_ros.control.learned import (
    FEATURES,
    Context,
    LearnedModelError,
    LearnedPolicy,
    LinUCB,
    RewardWeights,
    arm_context,
    expected_hit,
    load_bandit,
    make_learned_policy,
    reward,
    save_bandit,
)
from tnn_ros.control.policies import AutoPolicy
from tnn_ros.paths import find_package_file

UTILIZATIONS = [0.25, 0.5, 0.75, 1.0]
PROFILE_POINTS = list(zip(UTILIZATIONS, [10.0, 20.0, 35.0, 50.0]))


def test_linucb_learns_the_best_arm_of_a_synthetic_contextual_problem():
    """Rewards known by construction: arm 0 pays 0.5, arm 1 pays c, arm 2 pays 1 - c (c in [0, 1])."""
    rng = np.random.default_rng(0)
    bandit = LinUCB(3, dim=2, alpha=0.5)
    best_picks = []
    for step in range(1500):
        c = rng.uniform()
        x = np.array([1.0, c])
        arm = bandit.select(np.stack([x] * 3))
        means = [0.5, c, 1.0 - c]
        bandit.update(arm, x, means[arm] + rng.normal(0, 0.1))
        if step >= 1000:
            best_picks.append(means[arm] >= max(means) - 0.1)
    assert np.mean(best_picks) > 0.9
    for c, expected in ((0.95, 1), (0.05, 2), (0.5, 0)):
        mean, _ = bandit.scores(np.stack([np.array([1.0, c])] * 3))
        assert np.isclose(mean[expected], [0.5, c, 1 - c][expected], atol=0.1)
    # the ridge estimate of arm 1 recovers its slope
    assert bandit.theta()[1] == pytest.approx([0.0, 1.0], abs=0.15)


def test_linucb_rejects_non_finite_updates():
    bandit = LinUCB(2, dim=2)
    with pytest.raises(ValueError):
        bandit.update(0, np.array([1.0, np.nan]), 0.5)
    with pytest.raises(ValueError):
        bandit.update(0, np.array([1.0, 0.0]), float("inf"))
    assert bandit.counts.tolist() == [0, 0]


def test_expected_hit_counts_dropped_and_late_frames():
    assert expected_hit(40.0, 100.0, 50.0) == 1.0  # keeps up, on time
    assert expected_hit(40.0, 30.0, 50.0) == 0.0  # keeps up, late
    assert expected_hit(100.0, 200.0, 50.0) == pytest.approx(0.5)  # half dropped, 150 ms queued+run
    assert expected_hit(100.0, 140.0, 50.0) == 0.0  # 1.5 x 100 ms > 140 ms
    assert expected_hit(100.0, None, None) == 1.0


def test_reward_hand_cases():
    weights = RewardWeights(miss_penalty=0.5, energy=0.1, battery_energy=1.0, thermal_energy=1.0)
    full = Context(battery=0.9, temperature_c=40.0)
    assert reward(0.8, True, 0.5, full, weights) == pytest.approx(0.8 - 0.1 * 0.5)
    assert reward(0.8, False, 0.5, full, weights) == pytest.approx(-0.5 - 0.05)
    # empty battery (battery_low 1) and 85 C (hot 1): energy weight 0.1 + 1 + 1
    hot_empty = Context(battery=0.0, temperature_c=85.0)
    assert reward(0.8, True, 0.5, hot_empty, weights) == pytest.approx(0.8 - 2.1 * 0.5)
    # an expected hit fraction mixes the two outcomes
    assert reward(0.8, 0.25, 0.0, full, weights) == pytest.approx(0.25 * 0.8 - 0.75 * 0.5)


def test_arm_context_features():
    x = arm_context(Context(battery=0.25, temperature_c=72.5, deadline_ms=40.0, cpu_load=0.3), 20.0, 0.1)
    named = dict(zip(FEATURES, x))
    assert named["battery_low"] == pytest.approx(0.5) and named["hot"] == pytest.approx(0.5)
    assert named["latency_ratio"] == pytest.approx(0.5) and named["fits"] == 1.0
    assert named["kept"] == 1.0 and named["kept_fits"] == 1.0  # no frame period given: keeps up
    # a median of 100 ms at a 50 ms camera period keeps half the frames
    slow = dict(zip(FEATURES, arm_context(Context(deadline_ms=400.0), 150.0, 0.1, 100.0, 50.0)))
    assert slow["kept"] == pytest.approx(0.5) and slow["kept_fits"] == pytest.approx(0.5)
    assert arm_context(Context(deadline_ms=40.0), 37.0, 0.1)[FEATURES.index("fits")] == 0.0  # 37 > 36
    unknown = dict(zip(FEATURES, arm_context(Context(), 10.0, 0.1)))
    assert unknown["fits"] == 1.0 and unknown["confidence"] == 0.5 and unknown["battery"] == 1.0


def _trained(path, alpha=0.0):
    """A bandit that learned 'level u pays u while it fits the deadline, -1 otherwise'."""
    bandit = LinUCB(len(UTILIZATIONS), alpha=alpha)
    rng = np.random.default_rng(1)
    for _ in range(400):
        context = Context(battery=rng.uniform(), temperature_c=40.0, deadline_ms=rng.uniform(5, 80))
        for arm, (u, ms) in enumerate(PROFILE_POINTS):
            fits = ms <= context.deadline_ms * 0.9
            bandit.update(arm, arm_context(context, ms, 0.1), u if fits else -1.0)
    save_bandit(bandit, path, {"utilizations": UTILIZATIONS, "accuracies": UTILIZATIONS})
    return path


@pytest.mark.parametrize("name", ["controller.pt", "controller.npz"])
def test_save_load_round_trip(tmp_path, name):
    path = _trained(tmp_path / name)
    bandit, card = load_bandit(path)
    assert card["utilizations"] == UTILIZATIONS and card["features"] == list(FEATURES)
    assert bandit.counts.tolist() == [400] * 4
    assert (tmp_path / name).with_name(path.stem + ".card.json").is_file()


def test_learned_controller_picks_the_highest_level_that_fits(tmp_path):
    path = _trained(tmp_path / "controller.pt")
    config = ControllerConfig(strategy="learned", learned_model=str(path), learned_online=False)
    controller = Controller(config, LatencyProfile(PROFILE_POINTS))
    assert controller.fallback_reason is None
    for deadline, expected in ((80.0, 1.0), (30.0, 0.5), (15.0, 0.25)):
        controller.update("deadline", deadline, 0.0)
        # the recent quantile is 1.0 x the card: a measured latency at the card's value
        controller.update("applied", 0.5, 0.0)
        controller.update("latency", 20.0, 0.0)
        decision = controller.step(0.0)
        assert decision.setpoint == pytest.approx(expected), decision.reason
        assert decision.binding == "learned" and decision.reason.startswith("learned: u ")


def test_learned_controller_notices_contention_from_measured_latency(tmp_path):
    path = _trained(tmp_path / "controller.pt")
    config = ControllerConfig(strategy="learned", learned_model=str(path), learned_online=False)
    controller = Controller(config, LatencyProfile(PROFILE_POINTS))
    controller.update("deadline", 60.0, 0.0)
    assert controller.step(0.0).setpoint == pytest.approx(1.0)
    for k in range(20):  # everything runs 3x slower: 1.0 predicts 150 ms, 0.25 predicts 30 ms
        controller.update("applied", 1.0, 0.1 * k)
        controller.update("latency", 150.0, 0.1 * k)
        decision = controller.step(0.1 * k)
    assert decision.setpoint == pytest.approx(0.25)


def test_online_updates_count_and_ignore_frames_of_other_levels(tmp_path):
    path = _trained(tmp_path / "controller.pt")
    config = ControllerConfig(strategy="learned", learned_model=str(path), learned_online=True)
    controller = Controller(config, LatencyProfile(PROFILE_POINTS))
    policy = controller.policy.inner
    assert isinstance(policy, LearnedPolicy)
    controller.update("deadline", 80.0, 0.0)
    chosen = controller.step(0.0).setpoint
    before = policy.bandit.counts.copy()
    controller.update("applied", chosen, 0.05)
    controller.update("latency", 40.0, 0.05)
    controller.step(0.1)
    assert policy.updates == 1 and (policy.bandit.counts - before).sum() == 1
    other = 0.25 if chosen != 0.25 else 0.5
    controller.update("applied", other, 0.15)
    controller.update("latency", 12.0, 0.15)
    controller.step(0.2)
    assert policy.updates == 1, "a frame that ran another level than the one picked teaches nothing"


def test_online_update_uses_the_frames_measured_cpu_time_when_sent(tmp_path):
    from tnn_ros.control.learned import reward

    path = _trained(tmp_path / "controller.pt")
    config = ControllerConfig(strategy="learned", learned_model=str(path), learned_online=True)
    controller = Controller(config, LatencyProfile(PROFILE_POINTS))
    policy = controller.policy.inner
    controller.update("deadline", 80.0, 0.0)
    chosen = controller.step(0.0).setpoint
    arm = policy.utilizations.index(chosen)
    _, x, context = policy._pending
    b_before = policy.bandit.b[arm].copy()
    # the node's order: applied, cpu_ms, queue_ms, latency_ms; 40 ms wall, of which 10 ms on the CPU
    controller.update("applied", chosen, 0.05)
    controller.update("frame_cpu", 10.0, 0.05)
    controller.update("latency", 40.0, 0.05)
    controller.step(0.1)
    assert policy.updates == 1 and policy.cpu_samples == 1
    busy = 10.0 / policy.frame_period_ms / policy.cores  # not 40 ms of wall time
    value = reward(policy.accuracies[arm], 1.0, busy, context, policy.weights)
    np.testing.assert_allclose(policy.bandit.b[arm] - b_before, value * x)
    # the next frame sends no CPU time: the old one is not reused, the wall latency stands in
    chosen = controller.step(0.2).setpoint
    controller.update("applied", chosen, 0.25)
    controller.update("latency", 40.0, 0.25)
    controller.step(0.3)
    assert policy.updates == 2 and policy.cpu_samples == 1


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "card", "shape"])
def test_unusable_model_file_falls_back_to_auto_with_a_reason(tmp_path, damage):
    path = tmp_path / "controller.pt"
    if damage != "missing":
        _trained(path)
    if damage == "garbage":
        path.write_bytes(b"not a torch file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "card":
        path.with_name("controller.card.json").write_text("{")
    elif damage == "shape":
        import torch

        torch.save(
            {
                "A": torch.eye(3)[None],
                "b": torch.zeros(1, 3),
                "alpha": torch.tensor(0.1),
                "ridge": torch.tensor(1.0),
            },
            path,
        )
    config = ControllerConfig(strategy="learned", learned_model=str(path))
    profile = LatencyProfile(PROFILE_POINTS)
    policy = make_learned_policy(config, profile, str(path))
    assert isinstance(policy, AutoPolicy)
    assert policy.fallback_reason.startswith("learned controller unavailable, using auto: ")
    assert str(tmp_path / "controller.") in policy.fallback_reason  # names the file or its card
    controller = Controller(config, profile)
    controller.update("battery", 0.9, 0.0)
    controller.update("thermal", 40.0, 0.0)
    controller.update("deadline", 80.0, 0.0)
    decision = controller.step(0.0)
    assert 0.0 < decision.setpoint <= 1.0 and decision.binding != "learned"
    assert controller.diagnostics()["fallback"] == controller.fallback_reason


def test_load_rejects_non_finite_state(tmp_path):
    path = _trained(tmp_path / "controller.npz")
    with np.load(path) as data:
        state = {k: data[k] for k in data.files}
    state["b"][0, 0] = np.nan
    with open(path, "wb") as handle:
        np.savez(handle, **state)
    with pytest.raises(LearnedModelError, match="non-finite"):
        load_bandit(path)


def test_bad_inputs_are_dropped_and_the_output_stays_a_level(tmp_path):
    path = _trained(tmp_path / "controller.pt")
    controller = Controller(
        ControllerConfig(strategy="learned", learned_model=str(path)), LatencyProfile(PROFILE_POINTS)
    )
    controller.update("deadline", 80.0, 0.0)
    assert controller.update("latency", float("nan"), 0.0) is not None
    assert controller.update("deadline", float("inf"), 0.0) is not None
    assert controller.observe_confidence(float("nan")) is not None
    assert controller.observe_confidence(0.7) is None
    decision = controller.step(0.0)
    assert decision.setpoint in UTILIZATIONS
    assert controller.tracker.dropped["latency"] == 1 and controller.tracker.dropped["confidence"] == 1
    # the deadline going silent puts the learned controller in safe mode like the others
    assert controller.step(10.0).binding == "stale"


def test_train_cli_from_traces_and_bags_without_topics(tmp_path, capsys):
    from rosbags.rosbag2 import StoragePlugin, Writer

    from tnn_ros.bag.common import typestore_with
    from tnn_ros.eval.traces import Trace
    from tnn_ros.train.controller import main

    levels, frames = 8, 6
    # one object per frame; levels 0-4 put their one detection elsewhere (IoU 0: AP 0), levels 5-7
    # on the object (AP 1): the accuracy proxy is each level's mAP@0.5, by hand [0] * 5 + [1] * 3
    truth, wrong = [10.0, 10.0, 50.0, 50.0], [100.0, 100.0, 140.0, 140.0]
    trace = Trace(
        latency_ms=np.tile(np.linspace(5, 40, levels), (frames, 1)),
        cpu_ms=np.tile(np.linspace(5, 40, levels), (frames, 1)),
        det_offsets=np.arange(frames * levels + 1, dtype=np.int64),
        det_boxes=np.array(
            [wrong if k < 5 else truth for _ in range(frames) for k in range(levels)], np.float32
        ),
        det_scores=np.full(frames * levels, 0.9, np.float32),
        det_labels=np.zeros(frames * levels, np.int64),
        gt_offsets=np.arange(frames + 1, dtype=np.int64),
        gt_boxes=np.tile(np.array([truth], np.float32), (frames, 1)),
        gt_labels=np.zeros(frames, np.int64),
        gesture_frames=np.zeros(0, np.int64),
        gesture_probs=np.zeros((0, levels, 2)),
        gesture_truth=np.zeros(frames, np.int64),
        f1=np.tile(np.linspace(0.5, 0.9, levels), (frames, 1)),
        meta={"cores": 2},
    )
    trace.save(tmp_path / "trace.npz")
    # a bag with a battery topic only: no detections/json, no ground truth
    store = typestore_with(["std_msgs/msg/String"])
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/tnn/controller/reason", "std_msgs/msg/String", typestore=store)
        writer.write(
            connection,
            1,
            store.serialize_cdr(store.types["std_msgs/msg/String"](data="x"), "std_msgs/msg/String"),
        )
    out = tmp_path / "c.pt"
    assert main(["--bags", str(tmp_path / "bag"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "skipped" in err and "no usable data" in err
    assert (
        main(["--traces", str(tmp_path / "trace.npz"), "--bags", str(tmp_path / "bag"), "-o", str(out)]) == 0
    )
    bandit, card = load_bandit(out)
    assert card["samples_per_arm"] == [frames * 4] * levels
    assert card["accuracies"] == pytest.approx([0.0] * 5 + [1.0] * 3, abs=1e-4)
    assert any("bag" in reason for reason in card["training"]["skipped"])
    json.dumps(card)
    # reward weights from the command line: with no miss penalty and no energy cost the reward is
    # accuracy x hit, so levels 0-4 (mAP 0 by construction) learn exactly zero reward everywhere
    plain = tmp_path / "plain.npz"
    flags = ["--miss-penalty", "0", "--energy-weight", "0", "--battery-weight", "0", "--thermal-weight", "0"]
    assert main(["--traces", str(tmp_path / "trace.npz"), "-o", str(plain), *flags]) == 0
    bandit, card = load_bandit(plain)
    assert card["reward_weights"] == {
        "miss_penalty": 0.0,
        "energy": 0.0,
        "battery_energy": 0.0,
        "thermal_energy": 0.0,
    }
    assert np.abs(bandit.b[:5]).max() == 0.0 and np.abs(bandit.b[5:]).max() > 0.0
    assert "--miss-penalty 0" in card["training"]["command"]
    with pytest.raises(SystemExit):
        main(["--traces", str(tmp_path / "trace.npz"), "-o", str(plain), "--battery-weight", "-1"])
    # the detector card's held-out accuracy instead of the training data's mAP
    shipped = json.loads(find_package_file("models", "detector.card.json").read_text())
    by_card = tmp_path / "card.npz"
    assert (
        main(["--traces", str(tmp_path / "trace.npz"), "-o", str(by_card), "--accuracy-source", "card"]) == 0
    )
    _, card = load_bandit(by_card)
    assert card["accuracies"] == pytest.approx([level["accuracy"] for level in shipped["levels"]], abs=1e-4)
    assert "detector card" in card["accuracy_proxy"]


def test_trainer_leaves_out_nan_trace_samples():
    from tnn_ros.eval.traces import Trace
    from tnn_ros.train.controller import samples_from_trace

    levels, frames = 2, 3
    trace = Trace(
        latency_ms=np.array([[5.0, 10.0], [np.nan, 10.0], [5.0, np.inf]]),
        cpu_ms=np.full((frames, levels), 5.0),
        det_offsets=np.zeros(frames * levels + 1, np.int64),
        det_boxes=np.zeros((0, 4), np.float32),
        det_scores=np.zeros(0, np.float32),
        det_labels=np.zeros(0, np.int64),
        gt_offsets=np.zeros(frames + 1, np.int64),
        gt_boxes=np.zeros((0, 4), np.float32),
        gt_labels=np.zeros(0, np.int64),
        gesture_frames=np.zeros(0, np.int64),
        gesture_probs=np.zeros((0, levels, 2)),
        gesture_truth=np.zeros(frames, np.int64),
        f1=np.full((frames, levels), 0.8),
        meta={"cores": 1},
    )
    bad = [0]
    samples = samples_from_trace(trace, np.random.default_rng(0), 1, 0.1, bad)
    assert bad[0] == 2 and len(samples) == 4
    assert all(np.all(np.isfinite(x)) and np.isfinite(hit + busy) for _, x, hit, busy, _ in samples)


def test_queued_latency_newest_frame_wins_hand_case():
    from tnn_ros.train.controller import queued_latency

    # 90 ms per frame, a frame every 66.67 ms. By hand: f0 0 -> 90 (90); f1 starts 90, done 180
    # (113.33); f2 starts 180, done 270 (136.67); f3 (200) is replaced by f4 (266.67) while waiting;
    # f4 starts 270, done 360 (93.33); f5 starts 360, done 450 (116.67); f6 starts 450 (140); f7 is
    # replaced by f8, which starts 540 (96.67). A frame with a NaN service time is lost (inf).
    period = 1000.0 / 15.0
    got = queued_latency(np.full(9, 90.0), period)
    want = [90.0, 113.33, 136.67, np.inf, 93.33, 116.67, 140.0, np.inf, 96.67]
    np.testing.assert_allclose(got, want, atol=0.01)
    got = queued_latency(np.array([10.0, np.nan, 10.0]), period)
    np.testing.assert_allclose(got, [10.0, np.inf, 10.0])
