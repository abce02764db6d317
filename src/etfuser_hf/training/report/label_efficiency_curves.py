"""Label efficiency's curves: per task and row the test metric against the fraction of training labels (mean ± std
over seeds), each ensemble-token row against concatenation over the same tokens and against the canonical model at
every fraction, their plot and their markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..comparison.tasks import FaceTask
from .curves import render_curves_markdown, row_comparisons, save_curve_plot
from .task_tables import mean_std


def label_efficiency_curves(tasks: Sequence[FaceTask], runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`{task: {"metric", "split", "rows": {row: {fraction: {"mean", "std", "per_seed", "num_train"}}},
    "comparisons"}}` from `comparison.label_efficiency`'s per-seed test metrics."""
    curves: dict[str, Any] = {}
    for task in tasks:
        per_row = {row: {fraction: {**mean_std(point["per_seed"]), **point} for fraction, point in points.items()}
                   for row, points in runs[task.name].items()}
        curves[task.name] = {"metric": task.metric, "split": "test", "rows": per_row,
                             "comparisons": row_comparisons(task, per_row, task.greater_is_better)}
    return curves


def save_label_efficiency_plot(folder: Path, curves: Mapping[str, Any], synthetic: bool) -> list[str]:
    """One panel per task: test metric against the fraction of training labels, a line and a ±1 std band per row."""
    return save_curve_plot(folder / "label_efficiency.png", curves, synthetic, "fraction of training labels")


def render_label_efficiency_markdown(curves: Mapping[str, Any]) -> str:
    return render_curves_markdown(curves, "## Label efficiency (test split, mean ± std over seeds)",
                                  lambda fraction: f"{float(fraction):g} of train")
