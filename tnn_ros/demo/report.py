"""summary.json + timeline.png from recorded bags (used by the demo and by ``tnn-demo analyze``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from tnn_ros.demo.analysis import compare, load_run, mission_phases, summarize
from tnn_ros.demo.timeline import plot_timeline


def write_report(
    bag: str | Path,
    output: str | Path,
    mission: object | None = None,
    baseline_bag: str | Path | None = None,
    namespace: str | None = None,
) -> dict:
    """Analyze ``bag`` (and the static baseline bag, if any); write summary.json and timeline.png.

    ``mission`` (a :class:`tnn_ros.resources.mission.Mission`) supplies the phases; without it the
    figures are computed for the whole run only.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    phases = mission_phases(mission) if mission is not None else []
    run = load_run(bag, namespace)
    summary: dict = {"bag": str(bag), "mission": getattr(mission, "name", None)}
    summary.update(summarize(run, phases))
    baseline = None
    if baseline_bag is not None:
        baseline = load_run(baseline_bag, namespace)
        summary["baseline_static_full"] = {"bag": str(baseline_bag), **summarize(baseline, phases)}
        summary["comparison"] = compare(summary, summary["baseline_static_full"])
    timeline = plot_timeline(
        run,
        output / "timeline.png",
        phases,
        baseline=baseline,
        title=f"tnn_ros: {getattr(mission, 'name', Path(bag).name)} "
        "(throttled; dashed/grey: static full utilization)",
    )
    summary["files"] = {"summary": str(output / "summary.json"), "timeline": str(timeline)}
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def print_summary(summary: dict, out: TextIO) -> None:
    """A short side-by-side table of the headline figures."""
    base = summary.get("baseline_static_full") or {}
    rows = [
        ("frames processed", "frames", "{:d}"),
        ("deadline hit rate", "deadline_hit_rate", "{:.1%}"),
        ("  outside manual", "deadline_hit_rate_controlled", "{:.1%}"),
        ("mean utilization", "mean_utilization", "{:.2f}"),
        ("perception CPU (s)", "cpu_s", "{:.2f}"),
        ("CPU per frame (ms)", "cpu_ms_per_frame", "{:.1f}"),
        ("energy (J)", "energy_j", "{:.1f}"),
        ("battery at end", "battery_end", "{:.1%}"),
        ("detection mAP@0.5", "detection_map50", "{:.3f}"),
        ("gesture accuracy", "gesture_accuracy", "{:.1%}"),
        ("gesture events (Lev.)", "gesture_event_accuracy", "{:.1%}"),
        ("mean latency (ms)", "mean_latency_ms", "{:.1f}"),
    ]

    def cell(value, fmt: str) -> str:
        return "n/a" if value is None else fmt.format(value)

    print(f"{'':22s}{'throttled (auto)':>18s}{'static full' if base else '':>16s}", file=out)
    for title, key, fmt in rows:
        line = f"{title:22s}{cell(summary.get(key), fmt):>18s}"
        if base:
            line += f"{cell(base.get(key), fmt):>16s}"
        print(line, file=out)
    sources = {summary.get("energy_source"), base.get("energy_source")} - {None}
    if sources:
        print(f"{'energy source':22s}{', '.join(sorted(sources)):>18s}", file=out)
    factor = (summary.get("comparison") or {}).get("cpu_saving_factor")
    if factor is not None:
        print(f"{'CPU saving (full/thr.)':22s}{factor:>17.2f}x", file=out)
    tight = summary.get("phases", {}).get("deadline_tightening")
    tight_base = base.get("phases", {}).get("deadline_tightening") if base else None
    if tight:
        line = f"{'hit rate, tight phase':22s}{cell(tight.get('deadline_hit_rate'), '{:.1%}'):>18s}"
        if tight_base:
            line += f"{cell(tight_base.get('deadline_hit_rate'), '{:.1%}'):>16s}"
        print(line, file=out)
