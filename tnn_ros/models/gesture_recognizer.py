"""Online gesture recognition: a sliding clip (or a frame stream) over a gesture net, smoothing, events.

:class:`GestureRecognizer` turns camera frames into gesture announcements. A net with temporal padding
runs on whole clips every ``stride`` frames; a ``temporal="valid"`` net runs frame by frame through
:class:`~tnn_ros.models.gesture_streaming.StreamingGestureNet` with the same results.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..sim.gestures import NO_GESTURE
from .gesture import ThrottleableGestureNet, resize_frame
from .gesture_streaming import StreamingGestureNet


@dataclass
class GestureResult:
    """One announcement of the recognizer.

    ``confidence`` is the smoothed probability of ``label`` (for a fallback to ``no_gesture`` that is
    the smoothed probability of ``no_gesture``); ``probabilities`` are the smoothed class probabilities.
    """

    label: str
    class_id: int
    confidence: float
    probabilities: dict[str, float]


def _torch_net(net: Any) -> Any:
    """The torch module behind ``net`` (an inference-engine facade wraps it as ``model``)."""
    return getattr(net, "model", net)


def supports_streaming(net: Any) -> bool:
    """Whether ``net`` (a gesture net or an inference-engine facade over one) can run frame by frame.

    Only a ``temporal="valid"`` :class:`ThrottleableGestureNet` can: with temporal zero padding an
    output depends on where the clip starts.
    """
    torch_net = _torch_net(net)
    architecture = getattr(torch_net, "architecture", None) or {}
    return isinstance(torch_net, ThrottleableGestureNet) and architecture.get("temporal") == "valid"


# The constructor settings a recognizer reports and a rebuilt one takes over (in this order).
RECOGNIZER_SETTINGS = (
    "stride",
    "smoothing",
    "min_confidence",
    "event_gate",
    "commit_mass",
    "commit_margin",
    "release_runs",
    "refractory_runs",
    "streaming",
    "max_gap_fill",
)


def recognizer_settings(recognizer: Any) -> dict[str, Any]:
    """The :data:`RECOGNIZER_SETTINGS` ``recognizer`` has, by name (to report it or build its twin)."""
    return {name: getattr(recognizer, name) for name in RECOGNIZER_SETTINGS if hasattr(recognizer, name)}


# The perception node's parameter defaults (gesture.stride, gesture.smoothing) are these, so tools that
# build a recognizer with its defaults (tnn-bench gesture-stream) measure what the node runs.
DEFAULT_STRIDE = 4
DEFAULT_SMOOTHING = 2


class GestureRecognizer:
    """Sliding clip buffer + temporal smoothing over a :class:`ThrottleableGestureNet` (no ROS).

    ``push`` stores each frame (resized to the net's frame size). Once ``clip_length`` frames are
    buffered the net runs on the newest clip every ``stride`` frames; the class probabilities of the
    last ``smoothing`` runs are averaged, and a result is returned once ``smoothing`` runs exist. The
    top class is announced when its smoothed probability is at least ``min_confidence``, otherwise
    ``no_gesture``. The net runs at whatever level it is set to.

    ``streaming``: a ``temporal="valid"`` net can run frame by frame
    (:class:`~tnn_ros.models.gesture_streaming.StreamingGestureNet`): every frame computes only its
    own slice of every layer, and every ``stride`` frames the clip result is read off the stream, the
    same probabilities as a clip forward (1e-4) at a fraction of its cost per frame and without the
    latency spike of a whole clip on every ``stride``-th frame. ``None`` (default) streams when the
    net allows it; ``True`` on a net with temporal padding raises ValueError. On an onnxruntime
    engine facade the stream runs that engine's per-level stream-step graphs
    (:mod:`tnn_ros.engines.ort_stream`); on the torch backend, or when those graphs cannot be built
    (the reason is logged by the engine and kept in ``stream_fallback_reason``), it runs the torch
    net. ``stream_backend`` says which.

    ``event_gate``: one announcement per gesture (:class:`EventGate`, with ``commit_mass``,
    ``commit_margin``, ``release_runs`` and ``refractory_runs``).

    Frame gaps: the net reads 16 *consecutive* camera frames (about 1 s at 15 fps). When the caller
    drops frames (a node under load keeps only the newest one) a clip of the frames that arrived
    spans more time and shows every motion faster than the net learnt it. ``push(frame, stamp_s)``
    with the camera stamps lets the recognizer see the gap: the frame period is estimated from the
    recent intervals (their lower quartile, robust to a minority of drops and to jitter), and each
    missing frame's slot is filled with the last frame that arrived (at most ``max_gap_fill`` per
    gap; 0 turns filling off), so the clip keeps its time scale. A gap of a whole clip or more starts
    over (:meth:`reset`). Filled slots are counted in ``filled_frames``; they never return a result.
    """

    def __init__(
        self,
        net: ThrottleableGestureNet,
        stride: int = DEFAULT_STRIDE,
        smoothing: int = DEFAULT_SMOOTHING,
        min_confidence: float = 0.5,
        event_gate: bool = False,
        commit_mass: float = 0.4,
        commit_margin: float = 0.2,
        release_runs: int = 1,
        refractory_runs: int = 2,
        streaming: bool | None = None,
        max_gap_fill: int = 3,
    ) -> None:
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be an int >= 1, got {stride!r}")
        if not isinstance(smoothing, int) or smoothing < 1:
            raise ValueError(f"smoothing must be an int >= 1, got {smoothing!r}")
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
        self.net = net
        self.stride = stride
        self.smoothing = smoothing
        self.min_confidence = float(min_confidence)
        self._frames: collections.deque[np.ndarray] = collections.deque(maxlen=net.clip_length)
        self._history: collections.deque[np.ndarray] = collections.deque(maxlen=smoothing)
        self._since_run = stride  # the first run happens as soon as the buffer is full
        self.runs = 0  # number of network evaluations so far (for diagnostics)
        self.event_gate = bool(event_gate)
        EventGate.check_settings(commit_mass, commit_margin, release_runs, refractory_runs)
        # The gate needs a no_gesture class (EventGate raises without one; a converted Kinetics net
        # has none, so the perception pipeline runs such a net without the gate).
        self._event_gate = (
            EventGate(net.classes, commit_mass, commit_margin, release_runs, refractory_runs)
            if event_gate
            else None
        )
        self.commit_mass, self.commit_margin = float(commit_mass), float(commit_margin)
        self.release_runs, self.refractory_runs = release_runs, refractory_runs
        if not isinstance(max_gap_fill, int) or max_gap_fill < 0:
            raise ValueError(f"max_gap_fill must be an int >= 0, got {max_gap_fill!r}")
        self.max_gap_fill = max_gap_fill
        self.filled_frames = 0  # slots of dropped frames filled so far (for diagnostics)
        self._last_stamp: float | None = None
        self._intervals: collections.deque[float] = collections.deque(maxlen=32)
        self._last_frame: np.ndarray | None = None
        self.stream_fallback_reason = ""
        self._stream = self._make_stream(net, streaming)

    def _make_stream(self, net: Any, streaming: bool | None) -> Any:
        """The per-frame stream over ``net`` (its engine's stream graphs, else its torch module), or None."""
        streamable = supports_streaming(net)
        if streaming and not streamable:
            raise ValueError(
                "streaming needs a gesture net trained with temporal='valid' (tnn-train gesture "
                "--temporal valid); this one pads time, so it can only run whole clips"
            )
        if not (streamable if streaming is None else streaming):
            return None
        torch_net = _torch_net(net).eval()
        # An engine that runs the stream itself (onnxruntime: one stream-step graph per level).
        engine_stream = getattr(getattr(net, "engine", None), "gesture_stream", None)
        if engine_stream is not None:
            try:
                return engine_stream(torch_net)
            except (RuntimeError, ValueError) as exc:  # EngineError is a RuntimeError; logged there
                self.stream_fallback_reason = f"{type(exc).__name__}: {exc}"
        return StreamingGestureNet(torch_net)

    @property
    def streaming(self) -> bool:
        """Whether frames run one by one through the stream (else whole clips every ``stride``)."""
        return self._stream is not None

    @property
    def stream_backend(self) -> str:
        """What runs the stream: ``onnxruntime``, ``torch``, or ``none`` (whole clips)."""
        if self._stream is None:
            return "none"
        return getattr(self._stream, "backend", "torch")

    def reset(self) -> None:
        """Forget buffered frames and smoothing history (e.g. after a gap in the stream)."""
        if self._stream is not None:
            self._stream.reset()
        self._frames.clear()
        self._history.clear()
        self._since_run = self.stride
        if self._event_gate is not None:
            self._event_gate.reset()
        self._last_stamp, self._last_frame = None, None
        self._intervals.clear()

    def push(self, frame_rgb: np.ndarray, stamp_s: float | None = None) -> GestureResult | None:
        """Add one HxWx3 uint8 RGB frame; return a result when the net ran and smoothing is full.

        ``stamp_s``: the frame's camera time stamp in seconds (None or NaN: unknown), used to fill
        the slots of dropped frames (see the class docstring). A malformed frame raises ValueError
        and leaves the buffer unchanged.
        """
        frame = resize_frame(frame_rgb, self.net.frame_size)  # checks the frame before any state changes
        missing = self._missing_frames(stamp_s)
        if missing >= self.net.clip_length:  # nothing of the clip is left: start over
            self.reset()
            self._last_stamp = float(stamp_s)
            missing = 0
        if self._last_frame is not None:
            for _ in range(min(missing, self.max_gap_fill)):
                self._push_frame(self._last_frame, result=False)
                self.filled_frames += 1
        self._last_frame = frame
        return self._push_frame(frame, result=True)

    def _missing_frames(self, stamp_s: float | None) -> int:
        """Frames dropped between the previous stamp and ``stamp_s`` (0 while the period is unknown)."""
        if stamp_s is None or not math.isfinite(stamp_s):
            return 0
        stamp_s = float(stamp_s)
        previous, self._last_stamp = self._last_stamp, stamp_s
        if previous is None or stamp_s <= previous:  # first frame, or stamps going backwards
            return 0
        interval = stamp_s - previous
        missing = 0
        if len(self._intervals) >= 4:
            period = float(np.percentile(self._intervals, 25))
            missing = max(0, round(interval / period) - 1) if period > 0 else 0
        self._intervals.append(interval / (missing + 1))
        return missing

    def _push_frame(self, frame: np.ndarray, result: bool) -> GestureResult | None:
        """One fitted frame into the clip / stream; ``result=False`` (a filled slot) never runs the head."""
        if self._stream is not None:
            return self._push_streaming(frame, result)
        self._frames.append(frame)
        self._since_run += 1
        if not result or len(self._frames) < self.net.clip_length or self._since_run < self.stride:
            return None
        self._since_run = 0
        self.runs += 1
        self._history.append(self.net.predict_clip(list(self._frames)))
        return self._smoothed()

    def _push_streaming(self, frame_rgb: np.ndarray, result: bool = True) -> GestureResult | None:
        # Every frame enters the stream (its slice of every layer is needed by later clips); the
        # clip result is read only every ``stride`` frames, so results match the clip path.
        if self.stream_backend == "onnxruntime":
            # The layers after the last temporal pool and the FC head (its step graph) run only on
            # the frames whose result is read; the others (and filled gap slots) run the trunk graph.
            wanted = result and self._since_run + 1 >= self.stride
            logits = self._stream.push(frame_rgb, level=self.net.level, result=wanted)
        else:
            logits = self._stream.push(frame_rgb, level=self.net.level)
        self._since_run += 1
        if not result or logits is None or self._since_run < self.stride:
            return None
        self._since_run = 0
        self.runs += 1
        self._history.append(torch.softmax(logits, dim=0).numpy())
        return self._smoothed()

    def _smoothed(self) -> GestureResult | None:
        if len(self._history) < self.smoothing:
            return None
        return self._announce(np.mean(np.stack(self._history), axis=0))

    def _announce(self, probabilities: np.ndarray) -> GestureResult:
        classes = self.net.classes
        top = int(np.argmax(probabilities))
        if probabilities[top] < self.min_confidence:
            top = classes.index(NO_GESTURE)
        if self._event_gate is not None:
            top = self._event_gate.update(top, probabilities)
        return GestureResult(
            label=classes[top],
            class_id=top,
            confidence=float(probabilities[top]),
            probabilities={name: float(p) for name, p in zip(classes, probabilities)},
        )


class EventGate:
    """One announcement per gesture: commit to a class once its evidence is clear, hold it.

    ``update(top, probabilities)`` takes one recognizer run (the smoothed class probabilities and the
    class the recognizer would announce without the gate) and returns the class to announce. While
    ``top`` is a gesture, its probabilities are summed over the runs; a class is committed once its
    sum reaches ``commit_mass`` and leads the runner-up by ``commit_margin``, and then announced
    until ``release_runs`` runs in a row say ``no_gesture``. The first runs of a gesture (which often
    look like another one) and the runs while the hand jumps to its next pose (contiguous with the
    gesture) thus add up to one event instead of several.

    ``refractory_runs``: after an event is released, the next that many runs count as ``no_gesture``
    whatever they say. A released gesture is still partly in the clip (the net reads ``no_gesture``
    once most of it has left), and clips whose oldest frames hold a gesture's end and the hand's jump
    to its next pose read as another gesture (``push``, measured in docs/gesture.md, "Why live
    events are missed"); the next real gesture cannot begin that soon (the script's rests last
    >= 0.8 s). ``release_runs + refractory_runs`` runs of ``stride`` frames should cover about the
    rest of the clip.
    """

    def __init__(
        self,
        classes: list[str],
        commit_mass: float = 0.4,
        commit_margin: float = 0.2,
        release_runs: int = 2,
        refractory_runs: int = 0,
    ) -> None:
        self.check_settings(commit_mass, commit_margin, release_runs, refractory_runs)
        if NO_GESTURE not in classes:
            raise ValueError(f"the classes must include {NO_GESTURE!r}, got {list(classes)}")
        self.no_gesture = list(classes).index(NO_GESTURE)
        self.commit_mass, self.commit_margin = float(commit_mass), float(commit_margin)
        self.release_runs, self.refractory_runs = release_runs, refractory_runs
        self._evidence = np.zeros(len(classes))
        self.reset()

    @staticmethod
    def check_settings(
        commit_mass: float, commit_margin: float, release_runs: int, refractory_runs: int
    ) -> None:
        """Raise ValueError unless the settings are valid (see the class docstring)."""
        if not (commit_mass >= 0 and commit_margin >= 0):
            raise ValueError(
                f"commit_mass and commit_margin must be >= 0, got {commit_mass} / {commit_margin}"
            )
        if not isinstance(release_runs, int) or release_runs < 1:
            raise ValueError(f"release_runs must be an int >= 1, got {release_runs!r}")
        if not isinstance(refractory_runs, int) or refractory_runs < 0:
            raise ValueError(f"refractory_runs must be an int >= 0, got {refractory_runs!r}")

    def reset(self) -> None:
        """Forget the evidence and any committed class."""
        self._evidence[:] = 0.0
        self.committed: int | None = None
        self._quiet = 0
        self._refractory = 0  # runs left that count as no_gesture after a released event

    def update(self, top: int, probabilities: np.ndarray) -> int:
        """Feed one run; return the class index to announce (``no_gesture``'s while uncommitted)."""
        if self._refractory > 0:
            self._refractory -= 1
            top = self.no_gesture
        if top != self.no_gesture:
            self._quiet = 0
            self._evidence += probabilities
            if self.committed is None:
                evidence = self._evidence.copy()
                evidence[self.no_gesture] = -np.inf
                first, second = np.argsort(evidence)[::-1][:2]
                if (
                    evidence[first] >= self.commit_mass
                    and evidence[first] - evidence[second] >= self.commit_margin
                ):
                    self.committed = int(first)
        else:
            self._quiet += 1
            if self._quiet >= self.release_runs:
                if self.committed is not None:
                    self._refractory = self.refractory_runs
                self._evidence[:] = 0.0
                self.committed = None
        return self.no_gesture if self.committed is None else self.committed
