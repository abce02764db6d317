"""Label efficiency (the companion paper's few-shot protocol): the canonical model alone, concat-mlp (over pooled
priors, and over the tokens et-fuser reads) and ET-Fuser trained on fractions of the training labels (the same seeded subset for every row), each selected on the full
validation split and tested once; test metric against fraction, mean ± std over seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import ProtocolContext, Run, distinct_rows, train_runs
from .rows import MAIN_ROW, PROTOCOL_ROWS
from .splits import subsample_train
from .task_tables import gain_over_seeds, mean_std, same_token_pairs
from .tasks import FaceTask

EFFICIENCY_ROWS = ("canonical", "concat-mlp", "concat-mlp-grid", MAIN_ROW, "et-fuser-spatial")


def label_efficiency(tasks: Sequence[FaceTask], fractions: Sequence[float], seeds: Sequence[int],
                     context: ProtocolContext, data_seed: int, tables: Mapping[str, Mapping[str, Any]],
                     workers: int = 1) -> dict[str, Any]:
    """`{task: {row: {fraction: {"mean", "std", "per_seed"}}}}` of the test metric. A fraction of 1.0 reuses the
    protocol's own runs (`tables`), which trained on the same full split with the same seeds."""
    curves: dict[str, Any] = {}
    for task in tasks:
        # concat-mlp-grid only where the task's et-fuser reads other tokens than concat-mlp's pooled ones
        rows = {row.name: row for row in distinct_rows([row for row in PROTOCOL_ROWS if row.name in EFFICIENCY_ROWS],
                                                       task)}
        per_row: dict[str, Any] = {}
        table_rows = {row["variant"]: row for row in tables[task.name]["rows"]}
        for name, row in rows.items():
            points = {}
            for fraction in sorted(set(fractions)):
                if fraction == 1.0 and name in table_rows:
                    values = table_rows[name]["test"]["per_seed"]
                else:
                    runs = [Run(row, task, seed, train=subsample_train(context.train_split(seed), fraction, data_seed))
                            for seed in seeds]
                    values = [result.metrics[task.metric] for result in train_runs(runs, context, workers)]
                points[str(fraction)] = {**mean_std(values), "per_seed": [round(float(value), 4) for value in values],
                                         "num_train": max(1, round(fraction * len(context.train_split(seeds[0]))))}
            per_row[name] = points
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
