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

from ..models.gesture_streaming import StreamingGestureNet, streaming_macs


def _timed(fn: Callable[[], object], wall: list[float], cpu: list[float]) -> None:
    start, start_cpu = time.perf_counter(), time.thread_time()
    fn()
    wall.append(time.perf_counter() - start)
    cpu.append(time.thread_time() - start_cpu)


def _row(frame: tuple[list, list], clip: tuple[list, list], per_frame_macs: int, clip_macs: int) -> dict:
    frame_ms, clip_ms = (statistics.median(frame[0]) * 1e3, statistics.median(clip[0]) * 1e3)
    frame_cpu, clip_cpu = (statistics.median(frame[1]) * 1e3, statistics.median(clip[1]) * 1e3)
    return {
        "per_frame_ms_median": round(frame_ms, 3),
        "clip_ms_median": round(clip_ms, 3),
        "ratio": round(frame_ms / clip_ms, 3),
        # CPU time of the calling thread: robust when other processes preempt it (exact with 1 thread)
        "per_frame_cpu_ms_median": round(frame_cpu, 3),
        "clip_cpu_ms_median": round(clip_cpu, 3),
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
    "threads", "levels": {level: {per_frame_ms_median, clip_ms_median, ratio, *_cpu_*, macs,
    "session_run_ms_median", "python_ms_median"}}, "torch": {"levels": {...}}}``. ``session_run_ms``
    is the stream graph alone (onnxruntime's ``run`` on the current histories) and ``python_ms`` the
    rest of a step (frame layout, history roll, result tensor).
    """
    from ..throttle import count_level_costs

    net.eval()
    levels = [0, net.num_levels - 1] if levels is None else list(levels)
    ort_stream = ort_model.engine.gesture_stream(net)
    torch_stream = StreamingGestureNet(net)
    generator = torch.Generator().manual_seed(0)
    frames = [
        torch.randn(1, 3, net.frame_size[1], net.frame_size[0], generator=generator)
        for _ in range(net.clip_length)
    ]
    clip = torch.cat(frames).permute(1, 0, 2, 3)[None]  # (1, 3, T, H, W)
    costs = {c.level: c.macs for c in count_level_costs(net, net.example_input())}
    previous = net.level
    ort_rows, torch_rows = {}, {}
    for level in levels:
        net.set_level(level)
        ort_stream.reset()
        torch_stream.reset()
        for frame in frames:  # fill the histories at this level
            ort_stream.push_tensor(frame, level)
            torch_stream.push_tensor(frame, level)
        session, feed, names = ort_stream._session, ort_stream._feed, ort_stream._output_names
        jobs_names = ("ort_frame", "ort_clip", "ort_run", "torch_frame", "torch_clip")
        samples = {name: ([], []) for name in jobs_names}
        for i in range(repeats):
            frame = frames[i % len(frames)]
            jobs = [
                ("ort_frame", lambda: ort_stream.push_tensor(frame, level)),
                ("ort_clip", lambda: ort_model.engine.run(level, clip)),
                ("ort_run", lambda: session.run(names, feed)),
                ("torch_frame", lambda: torch_stream.push_tensor(frame, level)),
                ("torch_clip", lambda: net(clip)),
            ]
            shift = i % len(jobs)  # rotate the order so no job always runs after the same one
            for name, job in jobs[shift:] + jobs[:shift]:
                _timed(job, *samples[name])
        macs = streaming_macs(net, level)
        row = _row(samples["ort_frame"], samples["ort_clip"], macs, costs[level])
        run_ms = statistics.median(samples["ort_run"][0]) * 1e3
        row["session_run_ms_median"] = round(run_ms, 3)
        row["python_ms_median"] = round(row["per_frame_ms_median"] - run_ms, 3)
        ort_rows[str(level)] = row
        torch_rows[str(level)] = _row(samples["torch_frame"], samples["torch_clip"], macs, costs[level])
    net.set_level(previous)
    info = ort_model.engine.info()
    return {
        "backend": "onnxruntime",
        "measured_on": "this model",
        "threads": info.get("threads"),
        "spinning": info.get("spinning"),
        "levels": ort_rows,
        "torch": {"threads": torch.get_num_threads(), "levels": torch_rows},
    }
