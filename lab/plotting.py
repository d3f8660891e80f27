"""Learning curves from a run's metrics.jsonl, drawn with matplotlib."""
from __future__ import annotations

import math
from pathlib import Path

from lab.errors import LabError
from lab.tracking import read_metrics


def plot_run(run_dir: Path, out: Path | None = None) -> Path:
    records = read_metrics(run_dir)
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        for key, value in record.items():
            if key == "step" or key.startswith("time/") or not isinstance(value, (int, float)):
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(record["step"])
            values.append(float(value))
    if not series:
        raise LabError(f"'{run_dir}' has no metrics to plot yet (metrics.jsonl is empty or missing)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # std_* curves become shaded bands around their mean_* twins rather than panels of their own.
    panels = [k for k in sorted(series, key=lambda k: (not k.startswith("eval/"), k))
              if not k.split("/")[-1].startswith("std_")]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        steps, values = series[key]
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3)
        prefix, name = key.rsplit("/", 1) if "/" in key else ("", key)
        std_key = f"{prefix}/{name.replace('mean_', 'std_', 1)}" if name.startswith("mean_") else None
        if std_key in series and len(series[std_key][1]) == len(values):
            std = series[std_key][1]
            ax.fill_between(steps, [v - s for v, s in zip(values, std)], [v + s for v, s in zip(values, std)],
                            alpha=0.25)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = out or run_dir / "plots" / "curves.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
