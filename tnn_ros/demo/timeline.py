"""timeline.png: resources, setpoint vs applied utilization, latency vs deadline and accuracy over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tnn_ros.demo.analysis import Phase, RunSeries, detection_map50, gesture_accuracy

_PHASE_COLORS = {"thermal": "tab:red", "deadline": "tab:purple", "manual": "tab:green"}


def rolling_accuracy(run: RunSeries, window_s: float = 5.0) -> np.ndarray:
    """Rows (window centre s, detection mAP@0.5, gesture accuracy) over consecutive windows (NaN = none)."""
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    end = max([f["t"] for f in run.frames] + [0.0])
    rows = []
    for start in np.arange(0.0, end + 1e-9, window_s):
        frames = [f for f in run.frames if start <= f["t"] < start + window_s]
        gestures = [g for g in run.gestures if start <= g["t"] < start + window_s]
        map50 = detection_map50(frames, run.truth) if frames else None
        gesture = gesture_accuracy(gestures, run.truth)
        rows.append(
            (start + window_s / 2, np.nan if map50 is None else map50, np.nan if gesture is None else gesture)
        )
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def _shade_phases(axes: list, phases: list[Phase]) -> None:
    for index, phase in enumerate(phases):
        color = next((c for key, c in _PHASE_COLORS.items() if phase.name.startswith(key)), "tab:gray")
        for ax in axes:
            ax.axvspan(phase.start_s, phase.end_s, color=color, alpha=0.08, lw=0)
        # labels on two rows so that overlapping phases stay readable
        axes[0].text(
            (phase.start_s + phase.end_s) / 2,
            1.02 + 0.09 * (index % 2),
            phase.name.replace("_", " "),
            transform=axes[0].get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=7,
            color=color,
        )


def _step(ax, series: np.ndarray, **kwargs) -> None:
    if len(series):
        ax.step(series[:, 0], series[:, 1], where="post", **kwargs)


def plot_timeline(
    auto: RunSeries,
    path: str | Path,
    phases: list[Phase] = (),
    baseline: RunSeries | None = None,
    title: str = "tnn_ros demo",
    accuracy_window_s: float = 5.0,
) -> Path:
    """Draw the four-panel timeline of a run (and the static baseline, in grey) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    res_ax, util_ax, lat_ax, acc_ax = axes

    if len(auto.battery):
        res_ax.plot(auto.battery[:, 0], 100 * auto.battery[:, 1], color="tab:blue", label="battery % (auto)")
    if baseline is not None and len(baseline.battery):
        res_ax.plot(
            baseline.battery[:, 0],
            100 * baseline.battery[:, 1],
            color="tab:blue",
            ls="--",
            alpha=0.5,
            label="battery % (static full)",
        )
    res_ax.set_ylabel("battery %")
    res_ax.set_ylim(0, 100)
    temp_ax = res_ax.twinx()
    if len(auto.temperature):
        temp_ax.plot(
            auto.temperature[:, 0], auto.temperature[:, 1], color="tab:red", label="temperature (auto)"
        )
    if baseline is not None and len(baseline.temperature):
        temp_ax.plot(
            baseline.temperature[:, 0],
            baseline.temperature[:, 1],
            color="tab:red",
            ls="--",
            alpha=0.5,
            label="temperature (static full)",
        )
    temp_ax.set_ylabel("deg C")
    lines = res_ax.get_legend_handles_labels()[0] + temp_ax.get_legend_handles_labels()[0]
    res_ax.legend(lines, [ln.get_label() for ln in lines], loc="lower left", fontsize=7, ncol=2)

    _step(util_ax, auto.setpoint, color="tab:orange", label="setpoint")
    _step(util_ax, auto.applied, color="tab:green", label="applied")
    if baseline is not None:
        _step(util_ax, baseline.applied, color="gray", ls="--", label="applied (static full)")
    util_ax.set_ylabel("utilization")
    util_ax.set_ylim(-0.05, 1.05)
    util_ax.legend(loc="lower left", fontsize=7, ncol=3)

    if baseline is not None and baseline.frames:
        lat_ax.scatter(
            [f["t"] for f in baseline.frames],
            [f["latency_ms"] for f in baseline.frames],
            s=3,
            color="gray",
            alpha=0.5,
            label="latency (static full)",
        )
    if auto.frames:
        lat_ax.scatter(
            [f["t"] for f in auto.frames],
            [f["latency_ms"] for f in auto.frames],
            s=3,
            color="tab:green",
            label="latency (auto)",
        )
    _step(lat_ax, auto.deadline, color="black", lw=1.5, label="deadline")
    lat_ax.set_yscale("log")  # a few slow frames must not flatten the deadline
    lat_ax.set_ylabel("latency ms (log)")
    lat_ax.legend(loc="upper left", fontsize=7, ncol=3)

    for run, style, name in ((auto, "-", "auto"), (baseline, "--", "static full")):
        if run is None:
            continue
        rows = rolling_accuracy(run, accuracy_window_s)
        if len(rows):
            acc_ax.plot(
                rows[:, 0],
                rows[:, 1],
                ls=style,
                marker="o",
                ms=3,
                color="tab:blue",
                label=f"detection mAP@0.5 ({name})",
            )
            acc_ax.plot(
                rows[:, 0],
                rows[:, 2],
                ls=style,
                marker="s",
                ms=3,
                color="tab:purple",
                label=f"gesture accuracy ({name})",
            )
    acc_ax.set_ylabel(f"accuracy ({accuracy_window_s:g} s windows)")
    acc_ax.set_ylim(-0.05, 1.05)
    acc_ax.set_xlabel("mission time (s)")
    acc_ax.legend(loc="lower left", fontsize=7, ncol=2)

    _shade_phases(list(axes), list(phases))
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
