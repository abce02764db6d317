"""The cross-task comparison's table (`--multitask`): each branch of the multi-task model against the single-task
ET-Fuser of its column on the test split, and the parameters of both, with its markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..run.trainer import RunResult
from .statistics import paired_pvalues


def multitask_table(
    single_task: Mapping[str, RunResult],
    multi_task: Mapping[str, RunResult],
    labels: Mapping[str, np.ndarray],
    single_task_params: Sequence[Mapping[str, int]],
    multi_task_params: Mapping[str, int],
) -> dict[str, Any]:
    """One multi-task model against one single-task model per task: per task both metrics and the p-values of the
    multi-task branch against the single-task model; parameters of the multi-task model against the single-task
    models together (`count_parameters` of each)."""
    rows = []
    for task, reference in single_task.items():
        p_permutation, p_mcnemar = paired_pvalues(reference, multi_task[task], labels[task])
        rows.append({
            "task": task,
            "single_task": {key: round(value, 4) for key, value in reference.metrics.items()},
            "multi_task": {key: round(value, 4) for key, value in multi_task[task].metrics.items()},
            "p_value": p_permutation,
            "mcnemar_p": p_mcnemar,
        })
    separate = {key: sum(params[key] for params in single_task_params) for key in ("params_total", "params_trainable")}
    return {"tasks": rows, "params": {"multi_task": {key: multi_task_params[key] for key in separate},
                                      "single_task_models": separate}}


def render_multitask_markdown(comparison: Mapping[str, Any]) -> str:
    """Markdown of `multitask_table`: the metrics per task, then the parameters."""
    lines = ["| task | single-task accuracy | multi-task accuracy | single-task macro-F1 | multi-task macro-F1 | "
             "p (permutation) | p (McNemar) |", "|---|---|---|---|---|---|---|"]
    for row in comparison["tasks"]:
        lines.append(f"| {row['task']} | {row['single_task']['accuracy']:.4f} | {row['multi_task']['accuracy']:.4f} | "
                     f"{row['single_task']['macro_f1']:.4f} | {row['multi_task']['macro_f1']:.4f} | "
                     f"{row['p_value']:.4f} | {row['mcnemar_p']:.4f} |")
    params = comparison["params"]
    lines += ["", "| parameters | one multi-task model | single-task models together |", "|---|---|---|"]
    for key, label in (("params_total", "total"), ("params_trainable", "trainable")):
        lines.append(f"| {label} | {params['multi_task'][key]:,} | {params['single_task_models'][key]:,} |")
    return "\n".join(lines) + "\n"
