"""Learning curves from runs' metrics.jsonl, drawn with matplotlib: one run's every metric, or several runs
overlaid panel by panel (seeds, configs, DQN against PQN), against steps or training time."""
from __future__ import annotations

import fnmatch
import math
import os
from pathlib import Path
from typing import Literal

from lab.errors import LabError
from lab.outputs import figure_suffixes, output_file, save_figure
from lab.tracking import read_metrics

Series = dict[str, tuple[list[float], list[float]]]  # metric -> (x, y)
X_LABELS = {"step": "step", "time": "training time (min)"}


def run_series(run_dir: Path, x_axis: Literal["step", "time"] = "step") -> Series:
    """Every numeric metric of a run against its step or its training time in minutes."""
    series: Series = {}
    for record in read_metrics(run_dir):
        x = record["step"] if x_axis == "step" else record.get("time/elapsed", math.nan) / 60
        for key, value in record.items():
            if key == "step" or key.startswith("time/elapsed") or not isinstance(value, (int, float)):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(x)
            ys.append(float(value))
    return series


def smoothed(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0."""
    out, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** count))
    return out


def select_metrics(available: list[str], patterns: list[str] | None) -> list[str]:
    """Panels to draw: every metric (eval/ first) or those matching `patterns` (exact keys or globs like eval/*).
    Unasked, std_* metrics are drawn as bands around their mean_* twins rather than as panels of their own."""
    ordered = sorted(available, key=lambda k: (not k.startswith("eval/"), k))

    def without_bands(keys: list[str]) -> list[str]:  # a std_* curve drawn as its mean_* twin's band
        twins = {_std_key(k) for k in keys}
        return [k for k in keys if k not in twins]

    if not patterns:
        return without_bands(ordered)
    chosen = []
    for pattern in patterns:
        matches = without_bands([k for k in ordered if fnmatch.fnmatchcase(k, pattern)])
        if not matches:
            raise LabError(f"--metric '{pattern}' matches no metric of these runs (they have: {', '.join(ordered)})")
        chosen += [k for k in matches if k not in chosen]
    return chosen


def default_output(run_dirs: list[Path]) -> Path:
    """One run: RUN_DIR/plots/curves.png. Several: compare.png in the folder the runs share."""
    if len(run_dirs) == 1:
        return run_dirs[0] / "plots" / "curves.png"
    shared = Path(os.path.commonpath([p.resolve().parent for p in run_dirs]))
    # Runs with nothing but the filesystem's root in common: the current folder, not the root or a home.
    return (shared if len(shared.parts) > 1 and shared != Path.home() else Path.cwd()) / "compare.png"


def plot_runs(run_dirs: list[Path], out: Path | None = None, metrics: list[str] | None = None,
              x_axis: Literal["step", "time"] = "step", smooth: float = 0.0) -> tuple[Path, list[str]]:
    """Draw the runs' curves, one panel a metric and one colour a run; returns the PNG and the metrics drawn."""
    if not 0 <= smooth < 1:
        raise LabError(f"--smooth must be in [0, 1) (0 = raw, 0.9 = strong); got {smooth}")
    runs = {run_dir: run_series(run_dir, x_axis) for run_dir in run_dirs}
    for run_dir, series in runs.items():
        if not series:
            raise LabError(f"'{run_dir}' has no metrics to plot yet (metrics.jsonl is empty or missing)")
    panels = select_metrics(sorted({key for series in runs.values() for key in series}), metrics)
    out = output_file(out or default_output(run_dirs), "--out", figure_suffixes(), default_suffix=".png")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    legend_columns = min(4, len(runs))
    legend_height = 0.3 * math.ceil(len(runs) / legend_columns) + 0.1 if len(runs) > 1 else 0.0  # inches
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows + legend_height), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, panels):
        for index, (run_dir, series) in enumerate(runs.items()):
            if key not in series:
                continue
            colour = colours[index % len(colours)]
            xs, ys = series[key]
            _draw_curve(ax, xs, ys, _std_twin(series, key), colour, smooth, label=_label(run_dir, run_dirs))
        ax.set_title(key)
        ax.set_xlabel(X_LABELS[x_axis])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if len(runs) > 1:
        handles, labels = [], []
        for ax in axes.flat:  # a run may be missing from the first panels: gather each run's line once
            for handle, label in zip(*ax.get_legend_handles_labels()):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        fig.legend(handles, labels, loc="upper center", ncol=legend_columns, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 1 - legend_height / fig.get_figheight()))
    else:
        fig.suptitle(run_dirs[0].name)
        fig.tight_layout()
    return save_figure(fig, out, "--out"), panels


def _std_key(key: str) -> str | None:
    """The key of a mean_* metric's spread (eval/mean_return → eval/std_return); None for other metrics."""
    prefix, slash, name = key.rpartition("/")
    return f"{prefix}{slash}std_{name.removeprefix('mean_')}" if name.startswith("mean_") else None


def _std_twin(series: Series, key: str) -> list[float] | None:
    std_key = _std_key(key)
    std = series.get(std_key) if std_key else None
    return std[1] if std is not None and len(std[1]) == len(series[key][1]) else None


def _draw_curve(ax, xs: list[float], ys: list[float], std: list[float] | None, colour: str, smooth: float,
                label: str) -> None:
    marker = {"marker": "o", "markersize": 3} if len(xs) < 30 else {}
    if std is not None:
        ax.fill_between(xs, [v - s for v, s in zip(ys, std)], [v + s for v, s in zip(ys, std)], color=colour,
                        alpha=0.2)
    if smooth > 0 and len(ys) > 1:
        ax.plot(xs, ys, color=colour, alpha=0.25, linewidth=0.8)  # the raw curve stays visible, faint
        ys = smoothed(ys, smooth)
        marker = {}
    ax.plot(xs, ys, color=colour, label=label, **marker)


def _label(run_dir: Path, run_dirs: list[Path]) -> str:
    """The run's folder name, or its path where two runs share a name."""
    names = [p.name for p in run_dirs]
    return run_dir.name if names.count(run_dir.name) == 1 else str(run_dir)
