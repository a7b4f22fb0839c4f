"""Learned controller: a contextual bandit (disjoint LinUCB, Li et al. 2010) that picks the level.

A policy like the others (state in -> setpoint + reason out). Each level is an arm with its own
ridge-regression model of the reward from a context vector; the arm with the highest upper
confidence bound ``theta_a . x_a + alpha * sqrt(x_a^T A_a^-1 x_a)`` is commanded. The context is
built per arm (:func:`arm_context`), from the battery, temperature, deadline, CPU load, the recent
latency quantile predicted for that arm, and the detection confidence.

Trained offline by ``tnn-train controller`` (from recorded bags or per-level replay traces), saved
as a state dict (``torch.save`` of tensors, or ``.npz``) with a JSON card next to it, and updated
online from every latency measurement the controller hears: the reward of the level that ran is
its accuracy proxy (the model card's accuracy of that level) if the frame met the deadline, minus a
penalty for a miss and an energy cost that grows as the battery empties or the chip heats up.

A missing or corrupt model file never stops the controller: :func:`make_learned_policy` falls back
to ``auto`` and says why (``fallback_reason``), once.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from tnn_ros.control.config import ControllerConfig
from tnn_ros.control.latency import LatencyProfile, LatencyQuantiles
from tnn_ros.control.policies import AutoPolicy, Policy, clamp
from tnn_ros.control.state import DEADLINE, ControlInputs, Decision

FEATURES = (
    "bias",
    "battery",
    "battery_low",
    "hot",
    "cpu_load",
    "latency_ratio",
    "fits",
    "kept",
    "kept_fits",
    "confidence",
)
CARD_SUFFIX = ".card.json"
FORMAT = "tnn_ros.linucb.v1"


class LearnedModelError(ValueError):
    """A controller model file that cannot be used (names the file and the problem)."""


# --- context and reward (shared by the policy, the trainer and the benchmark) ---------------------


@dataclass
class Context:
    """What the controller knows when it picks a level; None = unknown (a neutral value is used)."""

    battery: float | None = None
    temperature_c: float | None = None
    deadline_ms: float | None = None
    cpu_load: float | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class RewardWeights:
    """Reward = accuracy if in deadline, minus ``miss_penalty`` on a miss, minus an energy cost.

    The energy cost is ``busy * (energy + battery_energy * battery_low + thermal_energy * hot)``:
    ``busy`` is the fraction of a frame period the level kept the CPU busy, ``battery_low`` and
    ``hot`` are the context's 0..1 urgency features, so saving compute matters more as the battery
    empties or the chip heats up.
    """

    miss_penalty: float = 0.5
    energy: float = 0.05
    battery_energy: float = 1.0
    thermal_energy: float = 1.0


def battery_low(battery: float | None) -> float:
    """0 above 50 % charge, rising linearly to 1 at empty."""
    return 0.0 if battery is None else clamp((0.5 - battery) / 0.5, 0.0, 1.0)


def hotness(temperature_c: float | None) -> float:
    """0 below 60 C, 1 at 85 C (where chips start to throttle), up to 1.5 beyond."""
    return 0.0 if temperature_c is None else clamp((temperature_c - 60.0) / 25.0, 0.0, 1.5)


def kept_fraction(typical_ms: float | None, period_ms: float | None) -> float:
    """Fraction of camera frames a worker taking ``typical_ms`` per frame can process.

    The newest frame wins, the others are dropped; 1 when either value is unknown.
    """
    if typical_ms is None or period_ms is None or not (typical_ms > 0 and math.isfinite(typical_ms)):
        return 1.0
    return clamp(period_ms / typical_ms, 0.0, 1.0)


def expected_hit(service_ms: float, deadline_ms: float | None, period_ms: float | None) -> float:
    """Expected fraction of camera frames answered within the deadline when frames take ``service_ms``.

    A worker slower than the camera keeps ``period / service`` of the frames, and a kept frame waits
    about half a service time in the queue before it starts.
    """
    kept = kept_fraction(service_ms, period_ms)
    latency = service_ms if kept >= 1.0 else 1.5 * service_ms
    on_time = deadline_ms is None or latency <= deadline_ms
    return kept if on_time else 0.0


def arm_context(
    context: Context,
    predicted_ms: float,
    margin: float,
    typical_ms: float | None = None,
    period_ms: float | None = None,
) -> np.ndarray:
    """Feature vector (``FEATURES`` order) of one arm.

    ``predicted_ms`` is the arm's recent high latency quantile (deadline fit), ``typical_ms`` its
    recent median (throughput: which fraction of the camera's frames it can keep up with).
    """
    deadline = context.deadline_ms
    if deadline is None or not math.isfinite(predicted_ms):
        ratio, fits = 0.0, 1.0  # no deadline: everything "fits"
    else:
        ratio = clamp(predicted_ms / deadline, 0.0, 3.0)
        fits = 1.0 if predicted_ms <= deadline * (1.0 - margin) else 0.0
    kept = kept_fraction(typical_ms, period_ms)
    return np.array(
        [
            1.0,
            1.0 if context.battery is None else context.battery,
            battery_low(context.battery),
            hotness(context.temperature_c),
            0.0 if context.cpu_load is None else context.cpu_load,
            ratio,
            fits,
            kept,
            kept * fits,
            0.5 if context.confidence is None else context.confidence,
        ],
        dtype=np.float64,
    )


def reward(
    accuracy: float, hit: float, busy: float, context: Context, weights: RewardWeights = RewardWeights()
) -> float:
    """Reward of one frame (see :class:`RewardWeights`); ``hit`` may be an expected fraction (0..1)."""
    energy_weight = (
        weights.energy
        + weights.battery_energy * battery_low(context.battery)
        + weights.thermal_energy * hotness(context.temperature_c)
    )
    hit = float(hit)
    gain = accuracy * hit - weights.miss_penalty * (1.0 - hit)
    return float(gain - energy_weight * clamp(busy, 0.0, 4.0))


# --- the bandit -----------------------------------------------------------------------------------


class LinUCB:
    """Disjoint LinUCB: per arm ``A = ridge * I + sum x x^T`` and ``b = sum r x``.

    ``A`` and ``b`` are sufficient statistics, so offline training and online updates are the same
    operation and the file is just these arrays.
    """

    def __init__(
        self, num_arms: int, dim: int = len(FEATURES), alpha: float = 0.1, ridge: float = 1.0
    ) -> None:
        if num_arms < 1 or dim < 1:
            raise ValueError(f"need num_arms >= 1 and dim >= 1, got {num_arms}, {dim}")
        if alpha < 0 or ridge <= 0:
            raise ValueError(f"need alpha >= 0 and ridge > 0, got {alpha}, {ridge}")
        self.alpha = float(alpha)
        self.ridge = float(ridge)
        self.A = np.stack([np.eye(dim) * ridge for _ in range(num_arms)])
        self.b = np.zeros((num_arms, dim))
        self.counts = np.zeros(num_arms, dtype=np.int64)
        self._inverse: np.ndarray | None = None

    @property
    def num_arms(self) -> int:
        return self.A.shape[0]

    @property
    def dim(self) -> int:
        return self.A.shape[1]

    def _inverses(self) -> np.ndarray:
        if self._inverse is None:
            self._inverse = np.linalg.inv(self.A)
        return self._inverse

    def theta(self) -> np.ndarray:
        """Ridge estimates, one row per arm."""
        return np.einsum("aij,aj->ai", self._inverses(), self.b)

    def scores(
        self, contexts: np.ndarray, arms: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, ucb) per arm for per-arm contexts ``contexts`` (num_arms x dim, or len(arms) x dim)."""
        arms = list(range(self.num_arms)) if arms is None else list(arms)
        contexts = np.asarray(contexts, dtype=np.float64).reshape(len(arms), self.dim)
        inverse, theta = self._inverses()[arms], self.theta()[arms]
        mean = np.einsum("ai,ai->a", theta, contexts)
        width = np.sqrt(np.maximum(np.einsum("ai,aij,aj->a", contexts, inverse, contexts), 0.0))
        return mean, mean + self.alpha * width

    def select(self, contexts: np.ndarray, arms: Sequence[int] | None = None) -> int:
        """The arm (from ``arms``) with the highest upper confidence bound; ties go to the cheaper arm."""
        arms = list(range(self.num_arms)) if arms is None else list(arms)
        _, ucb = self.scores(contexts, arms)
        return arms[int(np.argmax(ucb))]

    def update(self, arm: int, context: np.ndarray, value: float) -> None:
        """Fold one observed reward of ``arm`` in context ``context``."""
        x = np.asarray(context, dtype=np.float64).reshape(self.dim)
        if not (np.all(np.isfinite(x)) and math.isfinite(value)):
            raise ValueError(f"non-finite bandit update (arm {arm}, reward {value})")
        self.A[arm] += np.outer(x, x)
        self.b[arm] += value * x
        self.counts[arm] += 1
        self._inverse = None

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "A": self.A.copy(),
            "b": self.b.copy(),
            "counts": self.counts.copy(),
            "alpha": np.array(self.alpha),
            "ridge": np.array(self.ridge),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], source: str = "state") -> "LinUCB":
        try:
            A = np.asarray(state["A"], dtype=np.float64)
            b = np.asarray(state["b"], dtype=np.float64)
            counts = np.asarray(state.get("counts", np.zeros(len(A))), dtype=np.int64)
            alpha, ridge = float(np.asarray(state["alpha"])), float(np.asarray(state["ridge"]))
        except (KeyError, TypeError, ValueError) as error:
            raise LearnedModelError(f"{source}: not a LinUCB state dict ({error!r})") from error
        if A.ndim != 3 or A.shape[1] != A.shape[2] or b.shape != A.shape[:2] or counts.shape != (A.shape[0],):
            raise LearnedModelError(f"{source}: inconsistent shapes A {A.shape}, b {b.shape}")
        if A.shape[2] != len(FEATURES):
            raise LearnedModelError(f"{source}: {A.shape[2]} features, this version uses {len(FEATURES)}")
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b)) and math.isfinite(alpha) and ridge > 0):
            raise LearnedModelError(f"{source}: non-finite values")
        try:
            np.linalg.cholesky(A)  # every A must stay symmetric positive definite
        except np.linalg.LinAlgError as error:
            raise LearnedModelError(f"{source}: A is not positive definite") from error
        model = cls(A.shape[0], A.shape[2], alpha=max(alpha, 0.0), ridge=ridge)
        model.A, model.b, model.counts = A.copy(), b.copy(), counts.copy()
        return model


# --- files ----------------------------------------------------------------------------------------


def card_path_of(path: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    return path.with_name(path.stem + CARD_SUFFIX)


def save_bandit(
    model: LinUCB, path: str | pathlib.Path, card: Mapping[str, Any]
) -> tuple[pathlib.Path, pathlib.Path]:
    """Write the state dict (``.npz`` by numpy, anything else by ``torch.save``) and its JSON card."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    if path.suffix == ".npz":
        with open(path, "wb") as handle:
            np.savez(handle, **state)
    else:
        import torch

        torch.save({key: torch.from_numpy(np.asarray(value)) for key, value in state.items()}, path)
    card = {"format": FORMAT, "features": list(FEATURES), "num_arms": model.num_arms, **card}
    card_file = card_path_of(path)
    card_file.write_text(json.dumps(card, indent=1) + "\n")
    return path, card_file


def load_bandit(path: str | pathlib.Path) -> tuple[LinUCB, dict]:
    """Read a bandit file and its card; raise :class:`LearnedModelError` naming what is wrong."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise LearnedModelError(f"{path}: no such file")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                state = {key: data[key] for key in data.files}
        else:
            import torch

            raw = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(raw, Mapping):
                raise LearnedModelError(f"{path}: expected a state dict, got {type(raw).__name__}")
            state = {key: np.asarray(value) for key, value in raw.items()}
    except LearnedModelError:
        raise
    except Exception as error:  # torch / numpy raise many types for truncated or foreign files
        raise LearnedModelError(f"{path}: cannot read ({type(error).__name__}: {error})") from error
    model = LinUCB.from_state_dict(state, source=str(path))
    card_file = card_path_of(path)
    try:
        card = json.loads(card_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LearnedModelError(f"{card_file}: cannot read the card ({error})") from error
    if card.get("format") != FORMAT or list(card.get("features", [])) != list(FEATURES):
        raise LearnedModelError(f"{card_file}: format/features do not match {FORMAT} {list(FEATURES)}")
    utilizations = card.get("utilizations")
    if not isinstance(utilizations, list) or len(utilizations) != model.num_arms:
        raise LearnedModelError(
            f"{card_file}: needs 'utilizations' with one entry per arm ({model.num_arms})"
        )
    return model, card


# --- online latency quantiles ---------------------------------------------------------------------


class RecentLatency:
    """Recent latency quantile per level: a quantile of measured / card latency over the last frames.

    Only the level that runs is measured, so the recent ratio (which carries contention and
    throttling: every level slows down together) is applied to the card latency of each level.
    """

    def __init__(self, profile: LatencyProfile, window: int = 15, quantile: float = 0.95) -> None:
        self.profile = profile
        self.ratios: deque[float] = deque(maxlen=window)
        self.quantile = quantile
        self.rejected = 0

    def observe(self, utilization: float, latency_ms: float) -> bool:
        usable = math.isfinite(utilization) and math.isfinite(latency_ms) and latency_ms > 0
        if not (usable and utilization > 0):
            self.rejected += 1
            return False
        self.ratios.append(latency_ms / self.profile.base_ms(utilization))
        return True

    def ratio(self, quantile: float | None = None) -> float:
        if not self.ratios:
            return self.profile.scale
        quantile = self.quantile if quantile is None else quantile
        return float(np.quantile(np.fromiter(self.ratios, float), quantile))

    def predict_ms(self, utilization: float, quantile: float | None = None) -> float:
        """Recent latency quantile (default: the high one; 0.5 = median) predicted for ``utilization``."""
        return self.ratio(quantile) * self.profile.base_ms(utilization)


# --- the policy -----------------------------------------------------------------------------------


class LearnedPolicy(Policy):
    """Pick the level with the highest UCB of the learned reward; learn online from measured latency.

    ``utilizations`` are the arms' utilizations (the model card's levels), ``accuracies`` the accuracy
    proxy per arm (card accuracy), ``frame_period_ms`` turns a latency into a busy fraction.
    """

    required_inputs = (DEADLINE,)

    def __init__(
        self,
        config: ControllerConfig,
        bandit: LinUCB,
        utilizations: Sequence[float],
        accuracies: Sequence[float],
        profile: LatencyProfile,
        online: bool = True,
        frame_period_ms: float = 1000.0 / 15.0,
        weights: RewardWeights = RewardWeights(),
        source: str = "learned",
    ) -> None:
        if bandit.num_arms != len(utilizations) or len(accuracies) != len(utilizations):
            raise ValueError(
                f"{len(utilizations)} utilizations / {len(accuracies)} accuracies for {bandit.num_arms} arms"
            )
        self.config = config
        self.bandit = bandit
        self.utilizations = [float(u) for u in utilizations]
        self.accuracies = [float(a) for a in accuracies]
        self.latency = RecentLatency(profile)
        self.online = online
        self.frame_period_ms = frame_period_ms
        self.cores = max(os.cpu_count() or 1, 1)
        self.weights = weights
        self.source = source
        self.updates = 0
        self.cpu_samples = 0  # updates whose busy fraction came from measured CPU time
        self.confidence: float | None = None
        self._last_latency_stamp: float | None = None
        self._pending: tuple[int, np.ndarray, Context] | None = None  # (arm, x, context) of the last pick
        self._current: int | None = None

    def observe_confidence(self, confidence: float) -> bool:
        """Mean detection score of the newest frame (0..1); NaN / out of range is ignored (False)."""
        if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
            return False
        self.confidence = float(confidence)
        return True

    def context_of(self, inputs: ControlInputs) -> Context:
        return Context(
            inputs.battery_fraction,
            inputs.temperature_c,
            inputs.deadline_ms,
            inputs.cpu_load,
            self.confidence,
        )

    def allowed_arms(self) -> list[int]:
        arms = [
            a
            for a, u in enumerate(self.utilizations)
            if self.config.min_utilization - 1e-9 <= u <= self.config.max_utilization + 1e-9
        ]
        if arms:
            return arms
        below = [a for a, u in enumerate(self.utilizations) if u <= self.config.max_utilization]
        return [max(below)] if below else [0]

    def _learn(self, inputs: ControlInputs) -> None:
        """Fold the newest latency measurement (if new) into the quantiles and the bandit."""
        stamp = inputs.latency_stamp
        if stamp is None or stamp == self._last_latency_stamp or inputs.latency_ms is None:
            return
        previous, self._last_latency_stamp = self._last_latency_stamp, stamp
        applied = inputs.applied_utilization
        if applied is None or not self.latency.observe(applied, inputs.latency_ms):
            return
        if not self.online or self._pending is None or inputs.deadline_ms is None:
            return
        arm, x, context = self._pending
        if abs(self.utilizations[arm] - applied) > 1e-3:  # the frame did not run the level we picked
            return
        hit = expected_hit(inputs.latency_ms, inputs.deadline_ms, self.frame_period_ms)
        # busy fraction of the machine, as offline (CPU time / period / cores), from the frame's
        # measured CPU time (perception sends it just before the latency); without a fresh one, the
        # wall latency stands in (an upper bound under load)
        fresh = inputs.frame_cpu_stamp is not None and (previous is None or inputs.frame_cpu_stamp > previous)
        cpu_ms = inputs.frame_cpu_ms if fresh else None
        busy = (inputs.latency_ms if cpu_ms is None else cpu_ms) / self.frame_period_ms / self.cores
        self.cpu_samples += cpu_ms is not None
        value = reward(self.accuracies[arm], hit, busy, context, self.weights)
        self.bandit.update(arm, x, value)
        self.updates += 1

    def decide(self, inputs: ControlInputs, now: float) -> Decision:
        self._learn(inputs)
        context = self.context_of(inputs)
        arms = self.allowed_arms()
        contexts = np.stack(
            [
                arm_context(
                    context,
                    self.latency.predict_ms(self.utilizations[a]),
                    self.config.deadline_margin,
                    self.latency.predict_ms(self.utilizations[a], 0.5),
                    self.frame_period_ms,
                )
                for a in arms
            ]
        )
        mean, ucb = self.bandit.scores(contexts, arms)
        best = int(np.argmax(ucb))
        if self._current in arms:  # switch only for a clear gain: noise must not make the level chatter
            current = arms.index(self._current)
            if ucb[best] - ucb[current] < self.config.learned_switch_margin:
                best = current
        arm = arms[best]
        self._current = arm
        self._pending = (arm, contexts[best], context)
        u = self.utilizations[arm]
        predicted = self.latency.predict_ms(u)
        deadline = f"{context.deadline_ms:.1f} ms" if context.deadline_ms is not None else "none"
        reason = (
            f"learned: u {u:.2f} (reward {mean[best]:+.2f}, ucb {ucb[best]:+.2f}), "
            f"p95 {predicted:.1f} ms / deadline {deadline}"
        )
        return Decision(u, reason, "learned")

    def reset(self, setpoint: float, now: float) -> None:
        """After safe mode or a strategy switch: continue from the level nearest ``setpoint``."""
        self._current = int(np.argmin([abs(u - setpoint) for u in self.utilizations]))
        self._pending = None


def make_learned_policy(
    config: ControllerConfig,
    latency: LatencyQuantiles | LatencyProfile | None,
    model_path: str | pathlib.Path | None,
) -> Policy:
    """The learned policy from ``model_path``, or ``auto`` with ``fallback_reason`` set when unusable.

    ``latency`` is what the controller feeds with measured frames (quantiles over a card profile) or a
    bare card profile; the bandit keeps its own recent-latency ratios over the card profile, the
    ``auto`` fallback uses ``latency`` as it is.
    """
    profile = latency.profile if isinstance(latency, LatencyQuantiles) else latency
    try:
        if not model_path:
            raise LearnedModelError("no learned_model file given")
        bandit, card = load_bandit(model_path)
        if profile is None:
            profile = LatencyProfile.synthetic(card["utilizations"])
        accuracies = card.get("accuracies") or [1.0] * bandit.num_arms
        bandit.alpha = config.learned_alpha
        policy: Policy = LearnedPolicy(
            config,
            bandit,
            card["utilizations"],
            accuracies,
            profile,
            online=config.learned_online,
            frame_period_ms=float(card.get("frame_period_ms", 1000.0 / 15.0)),
            weights=RewardWeights(**card.get("reward_weights", {})),
            source=str(model_path),
        )
        policy.fallback_reason = None
    except (LearnedModelError, ValueError, TypeError) as error:
        policy = AutoPolicy(config, latency)
        policy.fallback_reason = f"learned controller unavailable, using auto: {error}"
    return policy
