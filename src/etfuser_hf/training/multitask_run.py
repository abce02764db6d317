"""`--multitask`: one `ETFuserForMultiTaskFaceAnalysis` over several label columns against one single-task ET-Fuser
per column (the cross-task companion paper's comparison), on the same splits, canonical model and budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .collators import MultiTaskFaceCollator
from .protocol import MAIN_ROW, PROTOCOL_ROWS, ProtocolContext, train_row
from .recipe import build_etfuser_from_face_priors
from .results import count_parameters, multitask_comparison
from .tasks import FaceTask
from .trainer_runs import train_multitask_variant
from .variants import VariantResult


def run_multitask_comparison(first: FaceTask, columns: Sequence[str], seed: int, context: ProtocolContext,
                             first_runs: Mapping[str, Sequence[VariantResult]]) -> dict[str, Any]:
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
    collator = MultiTaskFaceCollator(context.processor, {column: len(names) for column, names in task_labels.items()})
    name = "multitask-" + "+".join(columns)
    branches, _ = train_multitask_variant(
        name, f"one cross-task ET-Fuser for {', '.join(columns)}", model, splits["train"], splits["validation"],
        collator, context.output_dir / "checkpoints" / name, early_stopping_patience=context.early_stopping,
        test_dataset=splits["test"],
        **{"learning_rate": first.learning_rate, **context.run_settings, "seed": seed, "data_seed": seed})
    main_row = next(row for row in PROTOCOL_ROWS if row.name == MAIN_ROW)
    single = {first.column: first_runs[MAIN_ROW][0]}
    for column in columns[1:]:
        task = FaceTask(column, column, "single_label_classification", first.canonical, first.learning_rate)
        context.label_names = {**context.label_names, column: task_labels[column]}
        single[column] = train_row(main_row, task, seed, context)
    comparison = multitask_comparison(single, branches, {column: np.asarray(splits["test"][column])
                                                         for column in columns},
                                      [result.params for result in single.values()], count_parameters(model))
    comparison["split"] = "test"
    return comparison
