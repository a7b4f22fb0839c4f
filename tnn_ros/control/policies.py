"""Control policies: pure objects mapping the latest inputs to a utilization setpoint and a reason.

``tnn_ros.control.strategies.make_policy(strategy, config, profile)`` builds one of these (or the
learned policy of :mod:`tnn_ros.control.learned`):

- ``manual``: the ``manual_utilization`` slider.
- ``rule``: battery / thermal (/ CPU) thresholds map to utilization caps, with hysteresis.
- ``deadline``: the highest level whose measured latency quantile (p95 by default, card x observed
  slowdown for levels not seen lately, times a contention factor) meets the deadline with a margin.
- ``auto``: the minimum of every active cap, lowered to the cheapest level within
  ``accuracy_tolerance`` of the best level's card accuracy, rate limited so it does not oscillate.

Every policy except ``manual`` is wrapped in :class:`StaleGuard`, which commands ``safe_utilization``
while a required input has gone silent for longer than ``stale_timeout_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tnn_ros.control.config import ControllerConfig
from tnn_ros.control.latency import LatencyProfile, LatencyQuantiles
from tnn_ros.control.state import BATTERY, DEADLINE, THERMAL, ControlInputs, Decision


@dataclass(frozen=True)
class Cap:
    """An upper bound on utilization, what imposes it and why."""

    value: float
    binding: str
    reason: str


class Policy:
    """Base class: ``decide(inputs, now) -> Decision``; ``reset(setpoint, now)`` re-seeds any state."""

    required_inputs: tuple[str, ...] = ()

    def decide(self, inputs: ControlInputs, now: float) -> Decision:
        raise NotImplementedError

    def reset(self, setpoint: float, now: float) -> None:
        """Continue smoothly from ``setpoint`` (after safe mode or a strategy switch)."""


def clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


class ThresholdLadder:
    """Escalating thresholds with hysteresis for one signal.

    ``steps`` are (limit, cap) ordered from mild to severe. With ``above=True`` (temperature) a step is
    entered when value > limit and left when value < limit - hysteresis; with ``above=False``
    (battery) entered when value < limit and left when value > limit + hysteresis.
    """

    def __init__(self, steps: Sequence[tuple[float, float]], hysteresis: float, above: bool) -> None:
        self.steps = list(steps)
        self.hysteresis = hysteresis
        self.above = above
        self.stage = 0  # number of steps currently in force

    def _crossed(self, value: float, limit: float) -> bool:
        return value > limit if self.above else value < limit

    def _cleared(self, value: float, limit: float) -> bool:
        return value < limit - self.hysteresis if self.above else value > limit + self.hysteresis

    def update(self, value: float) -> int:
        """Move the stage for a new reading and return it (0 = no step in force)."""
        while self.stage < len(self.steps) and self._crossed(value, self.steps[self.stage][0]):
            self.stage += 1
        while self.stage > 0 and self._cleared(value, self.steps[self.stage - 1][0]):
            self.stage -= 1
        return self.stage

    def active(self) -> tuple[float, float] | None:
        """(limit, cap) of the most severe step in force, or None."""
        return self.steps[self.stage - 1] if self.stage else None


class ManualPolicy(Policy):
    """Utilization set by hand (``manual_utilization``), clamped to [min, max]."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config

    def decide(self, inputs: ControlInputs, now: float) -> Decision:
        u = clamp(self.config.manual_utilization, self.config.min_utilization, self.config.max_utilization)
        return Decision(u, f"manual {u:.2f}", "manual")


def _finish(caps: list[Cap], config: ControllerConfig, idle_reason: str) -> Decision:
    """The tightest cap (or max_utilization when none binds), clamped to [min, max]."""
    binding = min(caps, key=lambda cap: cap.value) if caps else None
    if binding is None or binding.value >= config.max_utilization:
        return Decision(config.max_utilization, idle_reason, "none")
    u = clamp(binding.value, config.min_utilization, config.max_utilization)
    reason = binding.reason if u == binding.value else f"{binding.reason} (floor min_utilization {u:.2f})"
    return Decision(u, reason, binding.binding)


class RulePolicy(Policy):
    """Battery and thermal (and optionally CPU load) thresholds -> utilization caps, with hysteresis."""

    required_inputs = (BATTERY, THERMAL)

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.battery = ThresholdLadder(
            [
                (config.battery_low, config.battery_low_cap),
                (config.battery_critical, config.battery_critical_cap),
            ],
            config.battery_hysteresis,
            above=False,
        )
        self.thermal = ThresholdLadder(
            [
                (config.thermal_warn_c, config.thermal_warn_cap),
                (config.thermal_critical_c, config.thermal_critical_cap),
            ],
            config.thermal_hysteresis_c,
            above=True,
        )
        self.cpu = ThresholdLadder(
            [(config.cpu_load_high, config.cpu_load_cap)], config.cpu_load_hysteresis, above=True
        )

    def caps(self, inputs: ControlInputs) -> list[Cap]:
        caps = []
        if inputs.battery_fraction is not None:
            self.battery.update(inputs.battery_fraction)
            step = self.battery.active()
            if step:
                caps.append(
                    Cap(
                        step[1],
                        "battery",
                        f"battery {inputs.battery_fraction * 100:.0f}% < "
                        f"{step[0] * 100:.0f}% cap {step[1]:.2f}",
                    )
                )
        if inputs.temperature_c is not None:
            self.thermal.update(inputs.temperature_c)
            step = self.thermal.active()
            if step:
                caps.append(
                    Cap(
                        step[1],
                        "thermal",
                        f"thermal {inputs.temperature_c:.1f}C > {step[0]:.1f}C cap {step[1]:.2f}",
                    )
                )
        if inputs.cpu_load is not None and self.config.cpu_load_high < 1.0:
            self.cpu.update(inputs.cpu_load)
            step = self.cpu.active()
            if step:
                caps.append(
                    Cap(
                        step[1],
                        "cpu",
                        f"cpu load {inputs.cpu_load * 100:.0f}% > {step[0] * 100:.0f}% cap {step[1]:.2f}",
                    )
                )
        return caps

    def decide(self, inputs: ControlInputs, now: float) -> Decision:
        return _finish(self.caps(inputs), self.config, _status(inputs, self.config))


def _status(inputs: ControlInputs, config: ControllerConfig) -> str:
    """Reason text when nothing binds: the readings that were checked."""
    parts = [f"no cap: max {config.max_utilization:.2f}"]
    if inputs.battery_fraction is not None:
        parts.append(f"battery {inputs.battery_fraction * 100:.0f}%")
    if inputs.temperature_c is not None:
        parts.append(f"thermal {inputs.temperature_c:.1f}C")
    if inputs.deadline_ms is not None:
        parts.append(f"deadline {inputs.deadline_ms:.0f} ms")
    return ", ".join(parts)


def make_latency_model(profile: LatencyProfile, config: ControllerConfig) -> LatencyQuantiles:
    """Per-level latency quantiles over the card ``profile``, tuned by ``config``'s latency_* fields."""
    return LatencyQuantiles(
        profile,
        quantile=config.latency_quantile,
        window=config.latency_window,
        horizon_s=config.latency_horizon_s,
        min_samples=config.latency_min_samples,
        prior_samples=config.latency_min_samples,
        contention_window_s=config.contention_window_s,
        contention_on=config.contention_threshold,
        frame_period_ms=config.frame_period_ms,
    )


class DeadlinePolicy(Policy):
    """Highest level whose predicted latency quantile plus the margin fits the deadline.

    ``latency`` is the :class:`LatencyQuantiles` the controller feeds with every measured frame (a
    bare :class:`LatencyProfile` is wrapped in a new one, fed through :meth:`observe`). Every level
    of the profile inside [min_utilization, max_utilization] is a candidate.
    """

    required_inputs = (DEADLINE,)

    def __init__(self, config: ControllerConfig, latency: LatencyQuantiles | LatencyProfile) -> None:
        self.config = config
        if not isinstance(latency, LatencyQuantiles):
            latency = make_latency_model(latency, config)
        self.latency = latency

    @property
    def profile(self) -> LatencyProfile:
        return self.latency.profile

    def observe(self, u: float, latency_ms: float, now: float) -> str | None:
        return self.latency.observe(u, latency_ms, now)

    def cap(self, inputs: ControlInputs, now: float | None = None) -> Cap | None:
        if inputs.deadline_ms is None:
            return None
        if now is None:  # no clock given: as of the newest measurement
            now = self.latency.last_time if self.latency.last_time is not None else 0.0
        budget_ms = inputs.deadline_ms * (1.0 - self.config.deadline_margin)
        utilizations = self.latency.utilizations
        levels = [u for u in utilizations if self.config.min_utilization <= u <= self.config.max_utilization]
        if not levels:  # [min, max] falls between two levels: the highest level below max
            levels = [max([u for u in utilizations if u <= self.config.max_utilization] or [utilizations[0]])]
        predictions = {u: self.latency.predict(u, now) for u in levels}
        # A frame the worker never gets to is a miss too: a level must also keep up with the camera
        # (mean service time within the frame period), else the newest-frame-wins queue drops frames.
        period = self.latency.frame_period(now)
        service = {u: self.latency.mean_service(u, now) for u in levels} if period else {}

        def keeps_up(u: float) -> bool:
            return service.get(u) is None or service[u] <= period

        fitting = [u for u in levels if predictions[u][0] <= budget_ms and keeps_up(u)]
        q = f"p{self.config.latency_quantile * 100:.0f}"
        if fitting:
            u = max(fitting)
            ms, source = predictions[u]
            above = [v for v in levels if v > u]
            why = ""
            if above and predictions[above[0]][0] <= budget_ms and not keeps_up(above[0]):
                slow = service[above[0]]
                why = f"; u {above[0]:.2f} cannot keep up: {slow:.1f} ms per {period:.1f} ms frame"
            return Cap(
                u,
                "deadline",
                f"deadline {inputs.deadline_ms:.1f} ms: u {u:.2f} predicts {q} {ms:.1f} ms ({source}){why}",
            )
        u = min(levels)
        ms, source = predictions[u]
        return Cap(
            u,
            "deadline",
            f"deadline {inputs.deadline_ms:.1f} ms unreachable: lowest u {u:.2f} predicts {q} {ms:.1f} ms "
            f"({source})" + (f", {service[u]:.1f} ms per {period:.1f} ms frame" if not keeps_up(u) else ""),
        )

    def decide(self, inputs: ControlInputs, now: float) -> Decision:
        cap = self.cap(inputs, now)
        return _finish([cap] if cap else [], self.config, _status(inputs, self.config))


class RateLimiter:
    """Limits how fast a value may rise (``up_per_s``) and fall (``down_per_s``)."""

    def __init__(self, up_per_s: float, down_per_s: float) -> None:
        self.up_per_s = up_per_s
        self.down_per_s = down_per_s
        self.value: float | None = None
        self.stamp: float | None = None

    def reset(self, value: float, now: float) -> None:
        self.value, self.stamp = value, now

    def step(self, target: float, now: float) -> float:
        if self.value is None or self.stamp is None:
            self.reset(target, now)
            return target
        dt = max(now - self.stamp, 0.0)
        limited = clamp(target, self.value - self.down_per_s * dt, self.value + self.up_per_s * dt)
        self.reset(limited, now)
        return limited


def efficient_utilization(
    profile: LatencyProfile | None, config: ControllerConfig
) -> tuple[float, str] | None:
    """The cheapest level whose card accuracy is within ``accuracy_tolerance`` of the reference level's.

    The reference is the highest level ``max_utilization`` allows: the accuracy the robot would get
    with no constraint binding. Levels are nested prefixes, so a lower level is the cheaper one.
    Returns (utilization, reason), or None when the tolerance is 0, the card has no accuracies, or
    no level below the reference qualifies.
    """
    if profile is None or profile.accuracies is None or config.accuracy_tolerance <= 0.0:
        return None
    levels = [
        (u, acc)
        for u, acc in zip(profile.utilizations, profile.accuracies)
        if config.min_utilization <= u <= config.max_utilization
    ]
    if len(levels) < 2:
        return None
    ref_u, ref_acc = levels[-1]
    # The small slack keeps a level whose gap equals the tolerance (cards round to 4 digits) in.
    u, acc = next((u, acc) for u, acc in levels if acc >= ref_acc - config.accuracy_tolerance - 1e-9)
    if u >= ref_u:
        return None
    return u, (
        f"efficiency: u {u:.2f} (card accuracy {acc:.3f}) within {config.accuracy_tolerance * 100:.1f} "
        f"pts of u {ref_u:.2f} ({ref_acc:.3f})"
    )


class AutoPolicy(Policy):
    """Minimum of the rule caps, the deadline cap and the accuracy-tolerance level, rate limited."""

    required_inputs = (BATTERY, THERMAL, DEADLINE)

    def __init__(self, config: ControllerConfig, profile: LatencyQuantiles | LatencyProfile | None) -> None:
        self.config = config
        self.rule = RulePolicy(config)
        self.deadline = DeadlinePolicy(config, profile) if profile is not None else None
        self.limiter = RateLimiter(config.max_step_per_s, config.max_step_down_per_s)
        card = self.deadline.profile if self.deadline is not None else None
        efficient = efficient_utilization(card, config)
        self.efficiency = Cap(efficient[0], "efficiency", efficient[1]) if efficient else None

    def decide(self, inputs: ControlInputs, now: float) -> Decision:
        caps = self.rule.caps(inputs)
        if self.deadline is not None:
            deadline_cap = self.deadline.cap(inputs, now)
            if deadline_cap is not None:
                caps.append(deadline_cap)
        if self.efficiency is not None:
            caps.append(self.efficiency)
        target = _finish(caps, self.config, _status(inputs, self.config))
        u = self.limiter.step(target.setpoint, now)
        if abs(u - target.setpoint) > 1e-9:
            reason = f"{target.reason} (rate limited {u:.2f} -> {target.setpoint:.2f})"
            return Decision(u, reason, target.binding)
        return target

    def reset(self, setpoint: float, now: float) -> None:
        self.limiter.reset(setpoint, now)


class StaleGuard(Policy):
    """Commands ``safe_utilization`` while a required input has been silent for ``stale_timeout_s``.

    An input that never arrived counts as silent since the guard was created (the first decide call),
    so a controller started without a resource monitor falls into safe mode after the timeout.
    """

    def __init__(self, inner: Policy, config: ControllerConfig) -> None:
        self.inner = inner
        self.config = config
        self.required_inputs = inner.required_inputs
        self.started: float | None = None
        self.stale_inputs: list[str] = []

    def stale(self, inputs: ControlInputs, now: float) -> list[tuple[str, float]]:
        """(input, seconds silent) for every required input silent longer than the timeout."""
        if self.started is None:
            self.started = now
        silent = []
        for name in self.required_inputs:
            last = inputs.heard.get(name, self.started)
            if now - last > self.config.stale_timeout_s:
                silent.append((name, now - last))
        return silent

    def decide(self, inputs: ControlInputs, now: float) -> Decision:
        decision = self.inner.decide(inputs, now)  # runs anyway so ladders and filters keep up
        silent = self.stale(inputs, now)
        self.stale_inputs = [name for name, _ in silent]
        if not silent:
            return decision
        safe = self.config.safe_utilization
        self.inner.reset(safe, now)
        details = ", ".join(f"{name} silent {age:.1f} s" for name, age in silent)
        reason = f"stale: {details} > {self.config.stale_timeout_s:.1f} s, safe {safe:.2f}"
        return Decision(safe, reason, "stale")

    def reset(self, setpoint: float, now: float) -> None:
        self.inner.reset(setpoint, now)
