"""Per-frame (streaming) vs clip cost of the gesture net on the onnxruntime and torch backends.

:func:`measure_streaming_backends` times, in the same interleaved rounds on the same frames, for each
level asked: the onnxruntime stream step (:mod:`tnn_ros.engines.ort_stream`), the onnxruntime clip
graph, the torch stream (:class:`~tnn_ros.models.gesture_streaming.StreamingGestureNet`) and the
torch clip forward. Ratios of medians from one run are fair on a busy machine; absolute times are not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from ..models.gesture_streaming import StreamingGestureNet, random_stream_inputs, streaming_macs


def _timed(fn: Callable[[], object], wall: list[float], cpu: list[float]) -> None:
    # Process CPU time: counts every thread of this process (onnxruntime's and torch's workers,
    # spinning included) and not the time other processes take the cores away.
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)


def _run_bound(stream, part: str) -> None:
    state = stream._state
    session = state.step if part == "step" else state.trunk
    session.run_with_iobinding(state.binding(part, state.start))


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e3, 3)


def _row(frame: tuple[list, list], clip: tuple[list, list], per_frame_macs: int, clip_macs: int) -> dict:
    frame_ms, clip_ms = _ms(frame[0]), _ms(clip[0])
    frame_cpu, clip_cpu = _ms(frame[1]), _ms(clip[1])
    return {
        "per_frame_ms_median": frame_ms,
        "clip_ms_median": clip_ms,
        "ratio": round(frame_ms / clip_ms, 3),
        # process CPU time: robust when other processes preempt this one
        "per_frame_cpu_ms_median": frame_cpu,
        "clip_cpu_ms_median": clip_cpu,
        "cpu_ratio": round(frame_cpu / clip_cpu, 3) if clip_cpu > 0 else None,
        "per_frame_macs": per_frame_macs,
        "clip_macs": clip_macs,
        "mac_ratio": round(per_frame_macs / clip_macs, 3),
    }


@torch.no_grad()
def measure_streaming_backends(
    net, ort_model, levels: Sequence[int] | None = None, repeats: int = 30
) -> dict:
    """Streaming vs clip latency per level on onnxruntime (``ort_model``: its engine facade) and torch.

    Returns the ``streaming`` section of ``tnn-bench throttle``: ``{"backend": "onnxruntime",
    "threads", "levels": {level: row}, "torch": {"levels": {level: row}}}``; a row has
    ``per_frame_ms_median`` (a step with its result), ``clip_ms_median``, ``ratio``, the same from
    process CPU time (``*_cpu_*``), MAC counts and, for onnxruntime, ``trunk_only_*`` (a step whose
    result is not read: the trunk graph alone), ``trunk_run_ms_median`` / ``step_run_ms_median``
    (the trunk and the step graph's session ``run`` alone: the rest of a step is Python, writing
    the frame and the entries into the rings), ``stride4_cpu_ratio`` (derived:
    the recognizer's average frame at stride 4, three trunk-only steps and one with the head, over
    a clip) and ``level_change_ms_median`` (a step right after a level change, which rebuilds the
    histories from the buffered clip; torch rows too); ``back_to_back``: the onnxruntime step and
    clip each timed in a block of consecutive runs (warm caches) instead of interleaved.
    """
    from ..throttle import count_level_costs

    net.eval()
    levels = [0, net.num_levels - 1] if levels is None else list(levels)
    engine = ort_model.engine
    streams = {
        "ort": engine.gesture_stream(net),
        "ort_trunk": engine.gesture_stream(net),
        "ort_switch": engine.gesture_stream(net),
        "torch": StreamingGestureNet(net),
        "torch_switch": StreamingGestureNet(net),
    }
    frames, clip = random_stream_inputs(net)
    costs = {c.level: c.macs for c in count_level_costs(net, net.example_input())}
    previous = net.level
    ort_rows, torch_rows = {}, {}
    for level in levels:
        net.set_level(level)
        other = 0 if level else net.num_levels - 1  # the switch streams alternate with this level
        for stream in streams.values():
            stream.reset()
            for frame in frames:  # fill the histories at this level
                stream.push_tensor(frame, level)
        ort = streams["ort"]
        names = (
            "ort_frame", "ort_trunk_only", "ort_clip", "ort_trunk_run", "ort_step_run", "ort_switch",
            "torch_frame", "torch_clip", "torch_switch",
        )  # fmt: skip
        samples = {name: ([], []) for name in names}
        for i in range(repeats):
            frame = frames[i % len(frames)]
            switch_level = level if i % 2 else other
            jobs = {
                "ort_frame": lambda: ort.push_tensor(frame, level),
                "ort_trunk_only": lambda: streams["ort_trunk"].push_tensor(frame, level, result=False),
                "ort_clip": lambda: engine.run(level, clip),
                # the two graphs' session runs alone at the stream's current window: they write the
                # entries into the next free slots, which its next step overwrites (no state change)
                "ort_trunk_run": lambda: _run_bound(ort, "trunk"),
                "ort_step_run": lambda: _run_bound(ort, "step"),
                "ort_switch": lambda: streams["ort_switch"].push_tensor(frame, switch_level),
                "torch_frame": lambda: streams["torch"].push_tensor(frame, level),
                "torch_clip": lambda: net(clip),
                "torch_switch": lambda: streams["torch_switch"].push_tensor(frame, switch_level),
            }
            order = list(jobs)
            shift = i % len(order)  # rotate the order so no job always runs after the same one
            for name in order[shift:] + order[:shift]:
                _timed(jobs[name], *samples[name])
        # Back to back (caches warm: the step's ~1-3 MB of weights stay in cache between frames), as
        # a node that runs only the gesture net would see; the interleaved rounds above are colder.
        warm = {"ort_frame": ([], []), "ort_clip": ([], [])}
        for name, job in (
            ("ort_frame", lambda: ort.push_tensor(frames[0], level)),
            ("ort_clip", lambda: engine.run(level, clip)),
        ):
            for _ in range(max(repeats // 2, 3)):
                _timed(job, *warm[name])
        macs = streaming_macs(net, level)
        row = _row(samples["ort_frame"], samples["ort_clip"], macs, costs[level])
        warm_row = _row(warm["ort_frame"], warm["ort_clip"], macs, costs[level])
        row["back_to_back"] = {
            key: warm_row[key] for key in ("per_frame_cpu_ms_median", "clip_cpu_ms_median", "cpu_ratio")
        }
        trunk = _row(samples["ort_trunk_only"], samples["ort_clip"], macs, costs[level])
        row["trunk_only_ms_median"] = trunk["per_frame_ms_median"]
        row["trunk_only_ratio"] = trunk["ratio"]
        row["trunk_only_cpu_ms_median"] = trunk["per_frame_cpu_ms_median"]
        row["trunk_only_cpu_ratio"] = trunk["cpu_ratio"]
        # Derived, not timed: the recognizer reads a result every `stride` frames (default 4), so
        # its frames cost on average (stride - 1) trunk-only steps + one step with the head.
        row["stride4_cpu_ratio"] = round(
            (3 * trunk["per_frame_cpu_ms_median"] + row["per_frame_cpu_ms_median"])
            / 4
            / row["clip_cpu_ms_median"],
            3,
        )
        row["trunk_run_ms_median"] = _ms(samples["ort_trunk_run"][0])
        row["step_run_ms_median"] = _ms(samples["ort_step_run"][0])
        # the switch streams change level on every push; odd rounds replay at this level
        row["level_change_ms_median"] = _ms(samples["ort_switch"][0][1::2])
        ort_rows[str(level)] = row
        torch_row = _row(samples["torch_frame"], samples["torch_clip"], macs, costs[level])
        torch_row["level_change_ms_median"] = _ms(samples["torch_switch"][0][1::2])
        torch_rows[str(level)] = torch_row
    net.set_level(previous)
    info = engine.info()
    return {
        "backend": "onnxruntime",
        "measured_on": "this model",
        "threads": info.get("stream_threads"),  # of the stream sessions; the clip sessions' below
        "clip_threads": info.get("threads"),
        "spinning": info.get("spinning"),
        "levels": ort_rows,
        "torch": {"threads": torch.get_num_threads(), "levels": torch_rows},
    }
