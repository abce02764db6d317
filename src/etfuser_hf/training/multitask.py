"""`--multitask`: one `ETFuserForMultiTaskFaceAnalysis` over several label columns against one single-task ET-Fuser
per column (the cross-task companion paper's comparison), on the same splits, canonical model and budget: training
(`train_multitask_comparison`), the comparison's numbers (`multitask_table`) and its markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .collators import MultiTaskFaceCollator
from .measurements import count_parameters
from .protocol import ProtocolContext, train_run
from .recipe import build_etfuser_from_face_priors
from .rows import MAIN_ROW, PROTOCOL_ROWS
from .statistics import paired_pvalues
from .tasks import FaceTask
from .trainer import RunResult, train_multitask_model


def train_multitask_comparison(first: FaceTask, columns: Sequence[str], seed: int, context: ProtocolContext,
                               first_runs: Mapping[str, Sequence[RunResult]]) -> dict[str, Any]:
    """Trains the multi-task model over `first.column` and `columns` with `seed` and compares each branch, on the
    test split, with the single-task ET-Fuser of its column (the protocol's own run for `first`)."""
    if not first.is_classification:
        raise ValueError(f"--multitask needs a classification first task, got {first.name!r} ({first.problem_type}).")
    columns = [first.column] + [column for column in dict.fromkeys(columns) if column != first.column]
    splits = context.splits
    task_labels = {column: splits["train"].features[column].names for column in columns}
    torch.manual_seed(seed)
    model = build_etfuser_from_face_priors(context.prior_dirs, task_labels, context.image_size,
                                           canonical=first.canonical)
    collator = MultiTaskFaceCollator(context.processor, {column: len(names) for column, names in task_labels.items()},
                                     **context.crop_options(model))
    name = "multitask-" + "+".join(columns)
    branches, _ = train_multitask_model(
        name, f"one cross-task ET-Fuser for {', '.join(columns)}", model, context.train_split(seed), splits["validation"],
        collator, context.output_dir / "checkpoints" / name, early_stopping_patience=context.early_stopping,
        test_dataset=splits["test"],
        **{"learning_rate": first.learning_rate, **context.run_settings, "seed": seed, "data_seed": seed})
    main_row = next(row for row in PROTOCOL_ROWS if row.name == MAIN_ROW)
    single = {first.column: first_runs[MAIN_ROW][0]}
    for column in columns[1:]:
        task = FaceTask(column, column, "single_label_classification", first.canonical, first.learning_rate)
        context.label_names = {**context.label_names, column: task_labels[column]}
        single[column] = train_run(main_row, task, seed, context)
    comparison = multitask_table(single, branches, {column: np.asarray(splits["test"][column]) for column in columns},
                                 [result.params for result in single.values()], count_parameters(model))
    comparison["split"] = "test"
    return comparison


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
