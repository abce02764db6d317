"""`--multitask`: one `ETFuserForMultiTaskFaceAnalysis` over several label columns against one single-task ET-Fuser
per column (the cross-task companion paper's comparison), on the same splits, canonical model and budget: training
(`train_multitask_comparison`); its table is `report.multitask_table`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from ...data.collators import MultiTaskFaceCollator
from ..run.measurements import count_parameters
from ..run.trainer import RunResult, train_multitask_model
from .protocol import ProtocolContext, train_run
from .recipe import build_etfuser_from_face_priors
from .rows import MAIN_ROW, PROTOCOL_ROWS
from .tasks import FaceTask


class MultitaskRuns(NamedTuple):
    """What `report.multitask_table` compares: per column the single-task run and the multi-task branch, the test
    split's labels, and the parameter counts of the single-task models and of the multi-task model."""

    single_task: dict[str, RunResult]
    multi_task: dict[str, RunResult]
    labels: dict[str, np.ndarray]
    single_task_params: list[dict[str, int]]
    multi_task_params: dict[str, int]


def train_multitask_comparison(first: FaceTask, columns: Sequence[str], seed: int, context: ProtocolContext,
                               first_runs: Mapping[str, Sequence[RunResult]]) -> MultitaskRuns:
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
    return MultitaskRuns(single, branches, {column: np.asarray(splits["test"][column]) for column in columns},
                         [result.params for result in single.values()], count_parameters(model))
