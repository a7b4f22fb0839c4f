"""Event-level accuracy of online gesture recognition (ROS-free tooling).

Frame-level accuracy (each announced label against the ground truth of its own frame) punishes a
causal recognizer for its unavoidable lag: a 16-frame clip still shows a gesture up to a second
after it ended. Online gesture recognition papers (e.g. Koepueklue et al. 2019, "Real-time hand
gesture detection and classification using convolutional neural networks") therefore also score
*events*: each performed gesture should be detected exactly once, with the right class, and nothing
should be announced in between. This module computes both views from plain sequences:

- :func:`truth_events`: the scripted gestures (maximal runs of one non-``no_gesture`` label in the
  per-frame ground truth),
- :func:`announced_events`: the recognizer's announcements collapsed into events (a run of equal
  consecutive announcements is one event; ``no_gesture`` is silence),
- :func:`levenshtein_accuracy`: ``1 - edit_distance(announced, truth) / len(truth)`` over the label
  sequences (clipped at 0), the papers' Levenshtein accuracy,
- :func:`match_events`: each truth gesture owns the window ``[start, end + allowance)`` (cut at the
  next gesture's start); a window holding an announced event of the right class is a detection,
  every other announced event (wrong class, a second one in the same window, or outside all windows)
  is a false alarm.

Times are in any consistent unit (seconds in this package).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

NO_GESTURE = "no_gesture"
DEFAULT_ALLOWANCE_S = 0.8  # the scripted rests last >= 0.8 s, so windows never reach the next gesture


@dataclass(frozen=True)
class GestureEvent:
    """One gesture: ``label`` from ``start`` to ``end`` (times of its first and last frame)."""

    label: str
    start: float
    end: float


def _check_sequence(times: Sequence[float], labels: Sequence[str]) -> None:
    if len(times) != len(labels):
        raise ValueError(f"times and labels differ in length: {len(times)} vs {len(labels)}")
    for a, b in zip(times, times[1:]):
        if not b >= a:
            raise ValueError(f"times must be sorted and finite, got {a} before {b}")


def truth_events(times: Sequence[float], labels: Sequence[str]) -> list[GestureEvent]:
    """Maximal runs of one gesture label (not ``no_gesture``) in a per-frame ground truth."""
    _check_sequence(times, labels)
    events: list[GestureEvent] = []
    run_label, run_start, previous_t = None, 0.0, 0.0
    for t, label in zip(times, labels):
        if label != run_label:
            if run_label is not None and run_label != NO_GESTURE:
                events.append(GestureEvent(run_label, run_start, previous_t))
            run_label, run_start = label, t
        previous_t = t
    if run_label is not None and run_label != NO_GESTURE:
        events.append(GestureEvent(run_label, run_start, previous_t))
    return events


def announced_events(times: Sequence[float], labels: Sequence[str]) -> list[GestureEvent]:
    """The recognizer's announcements as events: runs of equal consecutive labels, silence dropped.

    ``start``/``end`` are the times of the first and last announcement of the run.
    """
    return truth_events(times, labels)


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """Edit distance (insertions, deletions, substitutions, each cost 1) between two sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def levenshtein_accuracy(announced: Sequence[str], truth: Sequence[str]) -> float | None:
    """``max(0, 1 - levenshtein(announced, truth) / len(truth))``; None without truth gestures."""
    if not truth:
        return None
    return max(0.0, 1.0 - levenshtein(list(announced), list(truth)) / len(truth))


@dataclass
class EventScores:
    """Event-level figures of one stretch of stream."""

    gestures: int  # scripted gestures scored
    announced: int  # announced events in the scored span
    detected: int  # gestures with a right-class announcement inside their window
    misclassified: int  # gestures whose window holds announcements, none of the right class
    missed: int  # gestures whose window holds no announcement at all
    false_alarms: int  # announced events that detect nothing
    levenshtein_accuracy: float | None
    detection_rate: float | None  # detected / gestures
    mean_delay_s: float | None  # announcement time - gesture start, over detections

    def as_dict(self) -> dict:
        return asdict(self)


def match_events(
    truth: Sequence[GestureEvent], announced: Sequence[GestureEvent], allowance_s: float = DEFAULT_ALLOWANCE_S
) -> EventScores:
    """Score announced events against the truth gestures (see the module docstring)."""
    if not allowance_s >= 0 or not math.isfinite(allowance_s):
        raise ValueError(f"allowance_s must be finite and >= 0, got {allowance_s}")
    truth = sorted(truth, key=lambda e: e.start)
    announced = sorted(announced, key=lambda e: e.start)
    windows = _windows(truth, allowance_s)
    owner = []  # index of the truth window each announced event falls in (None: outside all)
    for event in announced:
        inside = [i for i, (a, b) in enumerate(windows) if a <= event.start <= b]
        owner.append(inside[0] if inside else None)
    detected = misclassified = missed = 0
    used: set[int] = set()
    delays = []
    for i, event in enumerate(truth):
        mine = [k for k, o in enumerate(owner) if o == i]
        right = [k for k in mine if announced[k].label == event.label]
        if right:
            detected += 1
            used.add(right[0])
            delays.append(announced[right[0]].start - event.start)
        elif mine:
            misclassified += 1
        else:
            missed += 1
    return EventScores(
        gestures=len(truth),
        announced=len(announced),
        detected=detected,
        misclassified=misclassified,
        missed=missed,
        false_alarms=len(announced) - len(used),
        levenshtein_accuracy=levenshtein_accuracy([e.label for e in announced], [e.label for e in truth]),
        detection_rate=detected / len(truth) if truth else None,
        mean_delay_s=sum(delays) / len(delays) if delays else None,
    )


def frame_accuracy(announced_labels: Sequence[str], truth_labels: Sequence[str]) -> float | None:
    """Fraction of announcements equal to the ground truth of their own frame (None if none)."""
    if len(announced_labels) != len(truth_labels):
        raise ValueError("one truth label per announcement needed")
    if not announced_labels:
        return None
    return sum(a == b for a, b in zip(announced_labels, truth_labels)) / len(announced_labels)


def _windows(truth: Sequence[GestureEvent], allowance_s: float) -> list[tuple[float, float]]:
    """``[start, end + allowance)`` per truth gesture, cut at the next gesture's start."""
    windows = []
    for i, event in enumerate(truth):
        end = event.end + allowance_s
        if i + 1 < len(truth):
            end = min(end, truth[i + 1].start)
        windows.append((event.start, max(end, event.end)))
    return windows


def score_stream(
    truth_times: Sequence[float],
    truth_labels: Sequence[str],
    announce_times: Sequence[float],
    announce_labels: Sequence[str],
    allowance_s: float = DEFAULT_ALLOWANCE_S,
    span: tuple[float, float] | None = None,
) -> EventScores:
    """Event scores of a recognizer run: per-frame truth + timed announcements.

    Only the stretch the recognizer watched counts: ``span`` (default: first to last announcement)
    keeps the truth gestures whose whole window lies inside it. Announced events inside the window
    of a gesture that was cut off by the span, or outside the span, are not scored either.
    """
    truth = truth_events(truth_times, truth_labels)
    announced = announced_events(announce_times, announce_labels)
    if span is None:
        if not announce_times:
            return match_events([], [], allowance_s)
        span = (announce_times[0], announce_times[-1])
    lo, hi = span
    windows = _windows(truth, allowance_s)
    kept = [lo <= a and b <= hi for a, b in windows]
    dropped = [w for w, keep in zip(windows, kept) if not keep]
    announced = [
        e for e in announced if lo <= e.start <= hi and not any(a <= e.start <= b for a, b in dropped)
    ]
    return match_events([g for g, keep in zip(truth, kept) if keep], announced, allowance_s)
