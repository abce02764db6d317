"""Label efficiency (the companion paper's few-shot protocol): the canonical model alone, concat-mlp (over the tokens
validation chose for it, over pooled priors, and over the tokens et-fuser-spatial reads) and ET-Fuser trained on fractions of the training labels (the same seeded
subset for every row), each selected on the full validation split and tested once. Its curves (test metric against
fraction, mean ± std over seeds) are `report.label_efficiency_curves`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...data.views import first_view_rows
from .protocol import ProtocolContext, Run, distinct_rows, train_runs
from .rows import MAIN_ROW, PROTOCOL_ROWS
from .splits import subsample_train
from .tasks import FaceTask

EFFICIENCY_ROWS = ("canonical", "concat-mlp", "concat-mlp-pooled", "concat-mlp-grid", MAIN_ROW, "et-fuser-spatial")


def label_efficiency(tasks: Sequence[FaceTask], fractions: Sequence[float], seeds: Sequence[int],
                     context: ProtocolContext, data_seed: int, tables: Mapping[str, Mapping[str, Any]],
                     workers: int = 1) -> dict[str, Any]:
    """`{task: {row: {fraction: {"per_seed", "num_train"}}}}`: the test metric of each seed's run and the training
    images it saw. A fraction of 1.0 reuses the protocol's own runs (`tables`), which trained on the same full split
    with the same seeds."""
    runs_by_task: dict[str, Any] = {}
    for task in tasks:
        # each concatenation row only where it reads other tokens than an earlier one
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
                images = len(first_view_rows(context.train_split(seeds[0])))  # views are not training images
                points[str(fraction)] = {"per_seed": [round(float(value), 4) for value in values],
                                         "num_train": max(1, round(fraction * images))}
            per_row[name] = points
        runs_by_task[task.name] = per_row
    return runs_by_task
