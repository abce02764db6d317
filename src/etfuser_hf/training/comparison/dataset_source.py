"""A `--dataset` as the main job reads it, once: each `--tasks` column's task type (its reader's declaration, else its
feature, `--task-type COLUMN=TYPE` over both: `data.targets`), its targets prepared as the model reads them, and its
`FaceTask` (`tasks.dataset_task`: canonical network, head, loss, metrics)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import datasets

from ...data.face_datasets import load_face_dataset, source_report
from ...data.sources.base import RowLog, SourceReport
from ...data.sources.options import reader_options
from ...data.targets import column_task_type, parse_task_type, prepare_targets
from .tasks import FaceTask, dataset_task


def task_type_overrides(pairs: Sequence[str], tasks: Sequence[str], dataset: bool) -> dict[str, str]:
    """`--task-type COLUMN=TYPE` pairs as {column: task type}: each written COLUMN=TYPE, TYPE a known task type,
    COLUMN one of `tasks`, and only with a --dataset (the synthetic tasks' types are fixed); a ValueError naming the
    pair otherwise."""
    if pairs and not dataset:
        raise ValueError(f"--task-type {pairs[0]}: the synthetic tasks have fixed types; --task-type sets a "
                         f"--dataset column's.")
    overrides = {}
    for pair in pairs:
        column, separator, kind = pair.partition("=")
        if not separator or not column.strip() or not kind.strip():
            raise ValueError(f"--task-type: expected COLUMN=TYPE (e.g. age=regression), got {pair!r}.")
        if column.strip() not in tasks:
            raise ValueError(f"--task-type {pair}: {column.strip()!r} is not one of the --tasks columns {list(tasks)}.")
        overrides[column.strip()] = parse_task_type(kind, f"--task-type {pair}")
    return overrides


@dataclass
class DatasetSource:
    """A --dataset, read once: its data with each task column prepared as its task type reads it
    (`data.targets.prepare_targets`), the reader's report (rows the preparation skipped added to it), and the
    `FaceTask` of each --tasks column (`tasks.dataset_task`: type, canonical model, metrics)."""

    data: datasets.Dataset | datasets.DatasetDict
    report: SourceReport | None
    tasks: dict[str, FaceTask]


def read_dataset(args: argparse.Namespace) -> DatasetSource:
    """Reads `args.dataset` with its reader's options, finds the task type of each --tasks column (the reader's
    declaration, else the column's type, `--task-type` over both) and prepares the columns; --multitask columns are
    single-label branches."""
    options = reader_options(args.image_root, args.dataset_option)
    data = load_face_dataset(args.dataset, args.dataset_format, **options)
    report = source_report(data)  # read before the label columns are re-encoded
    specs = report.columns if report is not None else {}
    overrides = getattr(args, "task_types", {})
    log, tasks = RowLog(), {}
    for column in dict.fromkeys(list(args.tasks) + list(args.multitask)):
        is_task = column in args.tasks
        problem_type = (column_task_type(data, column, specs.get(column), overrides.get(column)) if is_task
                        else "single_label_classification")
        data = prepare_targets(data, column, problem_type, specs.get(column), log=log)
        if is_task:
            tasks[column] = dataset_task(column, problem_type, specs.get(column), _label_names(data, column, problem_type))
    if report is not None:
        for reason, count in log.skipped.items():
            report.skipped[reason] = report.skipped.get(reason, 0) + count
            report.examples.setdefault(reason, []).extend(log.examples.get(reason, []))
    return DatasetSource(data, report, tasks)


def _label_names(data: datasets.Dataset | datasets.DatasetDict, column: str, problem_type: str) -> list[str] | None:
    """The class names of a single-label column, or names for the entries of a multi-label vector the reader did
    not name (`<column>_<i>`); None for other types."""
    features = next(iter(data.values())).features if isinstance(data, datasets.DatasetDict) else data.features
    if problem_type == "single_label_classification":
        return list(features[column].names)
    if problem_type == "multi_label_classification":
        length = getattr(features[column], "length", -1)
        if length is None or length < 0:
            first = next(iter(data.values())) if isinstance(data, datasets.DatasetDict) else data
            length = len(first[0][column])
        return [f"{column}_{index}" for index in range(length)]
    return None


def task_label_names(task: FaceTask, splits: datasets.DatasetDict) -> list[str] | None:
    """What the model's id2label holds: a single-label task's class names, a multi-label task's entry names;
    None for regression and landmarks."""
    if task.is_classification:
        return list(splits["train"].features[task.column].names)
    if task.problem_type == "multi_label_classification":
        return list(task.label_names) or _label_names(splits, task.column, task.problem_type)
    return None


__all__ = ["DatasetSource", "read_dataset", "task_label_names", "task_type_overrides"]
