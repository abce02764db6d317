"""A metric against one varied quantity, per task and row (mean ± std over seeds): the plot and the markdown shared by
label efficiency (test metric against the fraction of training labels) and the data-size curve (validation metric
against the number of training images). A curve is `{"metric", "split", "rows": {row: {x: {"mean", "std",
"per_seed"}}}, "comparisons": [{"row", "against", "points": {x: {"gain", "p_seeds_ttest"}}}]}`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..comparison.rows import MAIN_ROW
from ..comparison.tasks import FaceTask
from .task_tables import gain_over_seeds, same_token_pairs


def row_comparisons(task: FaceTask, per_row: Mapping[str, Mapping[Any, Any]], greater_is_better: bool
                    ) -> list[dict[str, Any]]:
    """At every x, each ensemble-token row against concatenation over the same prior tokens and against the canonical
    model alone: the difference of means (positive: the token row is better, by `greater_is_better`) and the paired
    t-test across seeds."""
    pairs = same_token_pairs(task, per_row, MAIN_ROW)
    pairs += [(token, "canonical") for token, _ in pairs if "canonical" in per_row]
    return [{"row": token, "against": other,
             "points": {x: gain_over_seeds(greater_is_better, point["per_seed"], per_row[other][x]["per_seed"])
                        for x, point in per_row[token].items()}}
            for token, other in pairs]


def save_curve_plot(path: Path, curves: Mapping[str, Any], synthetic: bool, x_label: str) -> list[str]:
    """One panel per task: each row's metric against x (log scale), a line and a ±1 std band per row; returns the
    file's name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for axis, (task, curve) in zip(axes[0], curves.items()):
        for name, points in curve["rows"].items():
            xs = [float(x) for x in points]
            mean = np.array([point["mean"] for point in points.values()])
            std = np.array([point["std"] for point in points.values()])
            axis.plot(xs, mean, marker="o", label=name)
            axis.fill_between(xs, mean - std, mean + std, alpha=0.2)
        axis.set(xscale="log", xlabel=x_label, ylabel=f"{curve['split']} {curve['metric']}",
                 title=f"{task} (SYNTHETIC data)" if synthetic else task)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return [path.name]


def render_curves_markdown(curves: Mapping[str, Any], heading: str, column: Callable[[Any], str]) -> str:
    """A table per task: one line per row (mean ± std at every x, `column(x)` naming the x), then one per comparison
    (the gain, positive where the first row is better, and the paired t-test across seeds on the curve's split)."""
    lines = [heading, ""]
    for task, curve in curves.items():
        xs = list(next(iter(curve["rows"].values())))
        lines += [f"| {task}: {curve['split']} {curve['metric']} | " + " | ".join(column(x) for x in xs) + " |",
                  "|---|" + "---|" * len(xs)]
        for name, points in curve["rows"].items():
            lines.append(f"| {name} | " + " | ".join(f"{points[x]['mean']:.4f} ± {points[x]['std']:.4f}"
                                                   for x in xs) + " |")
        for comparison in curve.get("comparisons") or []:
            points = comparison["points"]
            lines.append(f"| {comparison['row']} - {comparison['against']}: gain, p (t-test over seeds, "
                         f"{curve['split']} split) | " + " | ".join(_gain_and_p(points[x]) for x in xs) + " |")
        lines.append("")
    return "\n".join(lines)


def _gain_and_p(point: Mapping[str, Any]) -> str:
    p = point["p_seeds_ttest"]
    return f"{'+' if point['gain'] >= 0 else ''}{point['gain']:.4f}, p = {'n/a' if p is None else f'{p:.4f}'}"
