"""Label efficiency's curves: per task and row the test metric against the fraction of training labels (mean ± std
over seeds), each ensemble-token row against concatenation over the same tokens and against the canonical model at
every fraction, their plot and their markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..comparison.rows import MAIN_ROW
from ..comparison.tasks import FaceTask
from .task_tables import gain_over_seeds, mean_std, same_token_pairs


def label_efficiency_curves(tasks: Sequence[FaceTask], runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`{task: {"metric", "split", "rows": {row: {fraction: {"mean", "std", "per_seed", "num_train"}}},
    "comparisons"}}` from `comparison.label_efficiency`'s per-seed test metrics."""
    curves: dict[str, Any] = {}
    for task in tasks:
        per_row = {row: {fraction: {**mean_std(point["per_seed"]), **point} for fraction, point in points.items()}
                   for row, points in runs[task.name].items()}
        curves[task.name] = {"metric": task.metric, "split": "test", "rows": per_row,
                             "comparisons": fraction_comparisons(task, per_row)}
    return curves


def fraction_comparisons(task: FaceTask, per_row: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """At every fraction, each ensemble-token row against concatenation over the same prior tokens and against the
    canonical model alone: the difference of test means (positive: the token row is better) and the paired t-test
    across seeds (test split)."""
    pairs = same_token_pairs(task, per_row, MAIN_ROW)
    pairs += [(token, "canonical") for token, _ in pairs if "canonical" in per_row]
    return [{"row": token, "against": other,
             "points": {fraction: gain_over_seeds(task, point["per_seed"], per_row[other][fraction]["per_seed"])
                        for fraction, point in per_row[token].items()}}
            for token, other in pairs]


def save_label_efficiency_plot(folder: Path, curves: Mapping[str, Any], synthetic: bool) -> list[str]:
    """One panel per task: test metric against the fraction of training labels, a line and a ±1 std band per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for axis, (task, curve) in zip(axes[0], curves.items()):
        for name, points in curve["rows"].items():
            fractions = [float(fraction) for fraction in points]
            mean = np.array([point["mean"] for point in points.values()])
            std = np.array([point["std"] for point in points.values()])
            axis.plot(fractions, mean, marker="o", label=name)
            axis.fill_between(fractions, mean - std, mean + std, alpha=0.2)
        axis.set(xscale="log", xlabel="fraction of training labels", ylabel=f"test {curve['metric']}",
                 title=f"{task} (SYNTHETIC data)" if synthetic else task)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "label_efficiency.png", dpi=120)
    plt.close(figure)
    return ["label_efficiency.png"]


def render_label_efficiency_markdown(curves: Mapping[str, Any]) -> str:
    lines = ["## Label efficiency (test split, mean ± std over seeds)", ""]
    for task, curve in curves.items():
        fractions = list(next(iter(curve["rows"].values())))
        lines += [f"| {task}: test {curve['metric']} | " + " | ".join(f"{float(f):g} of train" for f in fractions) + " |",
                  "|---|" + "---|" * len(fractions)]
        for name, points in curve["rows"].items():
            lines.append(f"| {name} | " + " | ".join(f"{points[f]['mean']:.4f} ± {points[f]['std']:.4f}"
                                                   for f in fractions) + " |")
        for comparison in curve.get("comparisons") or []:
            points = comparison["points"]
            lines.append(f"| {comparison['row']} - {comparison['against']}: gain, p (t-test over seeds, test split) | "
                         + " | ".join(_gain_and_p(points[f]) for f in fractions) + " |")
        lines.append("")
    return "\n".join(lines)


def _gain_and_p(point: Mapping[str, Any]) -> str:
    p = point["p_seeds_ttest"]
    return f"{'+' if point['gain'] >= 0 else ''}{point['gain']:.4f}, p = {'n/a' if p is None else f'{p:.4f}'}"
