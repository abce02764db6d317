"""What a task trains toward and is selected on, beyond the rows' architectures (issue 34, item 2): class weights and
label smoothing inside the model's own loss (`ETFuserConfig.class_weights` / `label_smoothing`, applied by the shared
loss helper to the task head and the ensemble token's deep-supervision head alike), a class-balanced sampler, and the
validation metric that selects the checkpoint, stops early and picks a sweep's candidates. One setting per task, the
same for every compared row, so that no baseline trains toward another target than ET-Fuser.

    --class-weights balanced                   # every classification task: N / (C * n_c); multi-label: n_neg / n_pos
    --class-weights expression=1,2,1,1,1,1,1   # one task's weights, one per class in the model's class order
    --label-smoothing 0.1                      # every single-label task
    --sampler balanced                         # every single-label task: each class drawn equally often
    --select-on macro_f1                       # every task that reports it; or TASK=METRIC
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import datasets
import numpy as np

from ...metrics import GREATER_IS_BETTER, SCORED_METRICS

BALANCED = "balanced"
SAMPLERS = ("shuffle", BALANCED)
CLASSIFICATION = ("single_label_classification", "multi_label_classification")


class TaskFields(Protocol):
    """What an objective reads of a task: `tasks.FaceTask`, which holds its objective (so this file cannot import
    it)."""

    name: str
    column: str
    problem_type: str


@dataclass(frozen=True)
class TaskObjective:
    """One task's training objective and selection.

    Args:
        class_weights: `"balanced"` (from the training split's label counts: `balanced_class_weights`), one positive
            weight per class (multi-label: per label, BCE's `pos_weight`), or None (unweighted).
        label_smoothing: single-label: the share of each target spread uniformly over the classes, in [0, 1).
        sampler: `"shuffle"` (the Trainer's) or `"balanced"` (single-label: examples drawn with replacement, each
            with probability 1 / (C * n_its_class), so every class is drawn equally often).
        select_on: the validation metric selecting checkpoints and candidates; None: the task's headline metric.
    """

    class_weights: str | tuple[float, ...] | None = None
    label_smoothing: float = 0.0
    sampler: str = "shuffle"
    select_on: str | None = None

    def check(self, task: TaskFields, num_labels: int | None = None) -> None:
        """A ValueError naming the option and the task where this objective does not fit `task` (`num_labels`: its
        classes, where known)."""
        if self.class_weights is not None and task.problem_type not in CLASSIFICATION:
            raise ValueError(f"--class-weights: {task.name} is a {task.problem_type} task; class weights apply to "
                             f"classification tasks only.")
        if isinstance(self.class_weights, tuple) and num_labels and len(self.class_weights) != num_labels:
            raise ValueError(f"--class-weights: {task.name} has {num_labels} classes, got {len(self.class_weights)} "
                             f"weights.")
        if self.label_smoothing and task.problem_type != "single_label_classification":
            raise ValueError(f"--label-smoothing: {task.name} is a {task.problem_type} task; label smoothing applies "
                             f"to single-label classification only.")
        if self.sampler == BALANCED and task.problem_type != "single_label_classification":
            raise ValueError(f"--sampler balanced: {task.name} is a {task.problem_type} task; a class-balanced "
                             f"sampler needs one class per image (single-label classification).")
        if self.select_on is not None and self.select_on not in SCORED_METRICS[task.problem_type]:
            raise ValueError(f"--select-on: {task.name} ({task.problem_type}) reports "
                             f"{list(SCORED_METRICS[task.problem_type])}, got {self.select_on!r}.")

    def config_overrides(self, task: TaskFields, train: datasets.Dataset, num_labels: int | None) -> dict[str, Any]:
        """The `ETFuserConfig` settings of this objective for a model of `task` with `num_labels` classes trained on
        `train`; a ValueError naming the option where they do not fit (`check`)."""
        self.check(task, num_labels)
        overrides: dict[str, Any] = {}
        if self.class_weights == BALANCED:
            overrides["class_weights"] = balanced_class_weights(task, train, num_labels)
        elif self.class_weights is not None:
            overrides["class_weights"] = list(self.class_weights)
        if self.label_smoothing:
            overrides["label_smoothing"] = self.label_smoothing
        return overrides

    def image_weights(self, task: TaskFields, images: datasets.Dataset) -> np.ndarray | None:
        """(len(images),) each training image's draw weight under the balanced sampler, 1 / (C * n_its_class) with
        C the classes present (`images`: one row per image, whatever its views); None with plain shuffling."""
        if self.sampler != BALANCED:
            return None
        labels = np.asarray(images[task.column], np.int64)
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        return 1.0 / (len(classes) * counts[inverse])

    def record(self) -> dict[str, Any]:
        """What the run folder and the recipe file keep of this objective (JSON)."""
        weights = list(self.class_weights) if isinstance(self.class_weights, tuple) else self.class_weights
        return {"class_weights": weights, "label_smoothing": self.label_smoothing, "sampler": self.sampler,
                "select_on": self.select_on}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TaskObjective:
        """The objective `record` describes, checked (a ValueError naming the key)."""
        if not isinstance(record, Mapping) or set(record) - {"class_weights", "label_smoothing", "sampler",
                                                              "select_on"}:
            raise ValueError(f"expected a mapping with keys among class_weights, label_smoothing, sampler, "
                             f"select_on, got {record!r}.")
        weights = record.get("class_weights")
        if isinstance(weights, list):
            weights = _class_weights(",".join(map(str, weights)), "class_weights", "recipe")
        elif weights not in (None, BALANCED):
            raise ValueError(f"class_weights: expected {BALANCED!r}, a list of weights or null, got {weights!r}.")
        smoothing = record.get("label_smoothing") or 0.0
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label_smoothing: expected a number in [0, 1), got {smoothing!r}.")
        sampler = record.get("sampler") or "shuffle"
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: expected one of {list(SAMPLERS)}, got {sampler!r}.")
        select_on = record.get("select_on")
        return cls(weights, float(smoothing), sampler,
                   None if select_on is None else _metric(select_on, "select_on", None))


def balanced_class_weights(task: TaskFields, train: datasets.Dataset, num_labels: int | None) -> list[float]:
    """Inverse-frequency weights from the training labels: single-label N / (C * n_c) over the C = `num_labels`
    classes (a class absent from train counts as one example: its weight only matters if it appears); multi-label
    n_negative / n_positive per label (BCE's `pos_weight`; 1 for a label never positive)."""
    labels = np.asarray(train[task.column])
    if task.problem_type == "multi_label_classification":
        positives = labels.reshape(len(labels), -1).astype(bool).sum(axis=0)
        return [float((len(labels) - n) / n) if n else 1.0 for n in positives]
    classes = num_labels or int(labels.max()) + 1
    counts = np.bincount(labels.astype(np.int64), minlength=classes)
    return [float(len(labels) / (classes * max(int(n), 1))) for n in counts]


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("objective and selection (the same for every row of a task)")
    group.add_argument("--class-weights", nargs="+", default=[], metavar="SPEC",
                       help="'balanced' (every classification task, from the training labels), or TASK=balanced, or "
                            "TASK=w1,w2,... (one weight per class, the model's class order)")
    group.add_argument("--label-smoothing", type=float, default=0.0, metavar="F",
                       help="label smoothing in [0, 1) for every single-label task, in the model's own loss")
    group.add_argument("--sampler", default="shuffle", choices=SAMPLERS,
                       help="'balanced': single-label tasks draw every class equally often (with replacement)")
    group.add_argument("--select-on", nargs="+", default=[], metavar="METRIC",
                       help="the validation metric selecting checkpoints and sweep candidates: METRIC for every task "
                            f"that reports it, or TASK=METRIC (one of {sorted(GREATER_IS_BETTER)})")


def parse_objective_arguments(args: argparse.Namespace) -> dict[str | None, TaskObjective]:
    """`{task name or None (every task): TaskObjective}` from the options, their syntax checked (a ValueError
    naming the option); whether they fit each task is checked when the tasks are known (`apply_objectives`). Empty
    where no option was given: the tasks keep their own objective (a recipe file's)."""
    if not (args.class_weights or args.label_smoothing or args.sampler != "shuffle" or args.select_on):
        return {}
    if not 0.0 <= args.label_smoothing < 1.0:
        raise ValueError(f"--label-smoothing: expected a value in [0, 1), got {args.label_smoothing}.")
    weights = _per_task(args.class_weights, "--class-weights", _class_weights)
    selected = _per_task(args.select_on, "--select-on", _metric)
    names = dict.fromkeys([None, *weights, *selected])
    return {name: TaskObjective(weights.get(name), args.label_smoothing, args.sampler, selected.get(name))
            for name in names}


def apply_objectives(tasks: Sequence[TaskFields], objectives: Mapping[str | None, TaskObjective] | None
                     ) -> list[TaskFields]:
    """`tasks` with their objective: a task's own entry, else the one for every task, whose settings apply only
    where they fit (class weights to classification tasks, smoothing and the sampler to single-label ones, a metric
    to the tasks that report it); one that fits no task, or a task's own that does not fit it, is refused."""
    if not objectives:
        return list(tasks)
    unknown = sorted(set(objectives) - {None} - {task.name for task in tasks})
    if unknown:
        raise ValueError(f"--class-weights / --select-on: no task named {unknown}; tasks: {[t.name for t in tasks]}.")
    general, resolved = objectives.get(None, TaskObjective()), []
    for task in tasks:
        own = objectives.get(task.name, TaskObjective())
        objective = dataclasses.replace(_fitting(general, task), **{
            key: value for key, value in (("class_weights", own.class_weights), ("select_on", own.select_on))
            if value is not None})
        objective.check(task)  # a task's own entries must fit it
        resolved.append(dataclasses.replace(task, objective=objective))
    _refuse_unused(general, resolved)
    return resolved


def _fitting(objective: TaskObjective, task: TaskFields) -> TaskObjective:
    """`objective` less the settings that do not apply to `task`'s type (an option given for every task)."""
    single = task.problem_type == "single_label_classification"
    metrics = SCORED_METRICS[task.problem_type]
    return TaskObjective(objective.class_weights if task.problem_type in CLASSIFICATION and
                         not isinstance(objective.class_weights, tuple) else None,
                         objective.label_smoothing if single else 0.0, objective.sampler if single else "shuffle",
                         objective.select_on if objective.select_on in metrics else None)


def _refuse_unused(general: TaskObjective, tasks: Sequence[TaskFields]) -> None:
    """An option given for every task that no task takes is a mistake, not a no-op."""
    given = {"--class-weights": general.class_weights is not None, "--label-smoothing": bool(general.label_smoothing),
             "--sampler balanced": general.sampler == BALANCED, "--select-on": general.select_on is not None}
    taken = {"--class-weights": any(task.objective.class_weights is not None for task in tasks),
             "--label-smoothing": any(task.objective.label_smoothing for task in tasks),
             "--sampler balanced": any(task.objective.sampler == BALANCED for task in tasks),
             "--select-on": any(task.objective.select_on == general.select_on for task in tasks)}
    unused = [option for option in given if given[option] and not taken[option]]
    if unused:
        kinds = ", ".join(f"{task.name} ({task.problem_type})" for task in tasks)
        raise ValueError(f"{' and '.join(unused)}: fits none of the tasks: {kinds}.")


def _per_task(specs: Sequence[str], option: str, parse) -> dict[str | None, Any]:
    parsed: dict[str | None, Any] = {}
    for spec in specs:
        name, separator, value = spec.rpartition("=")
        key = name if separator else None
        if separator and not name:
            raise ValueError(f"{option}: expected VALUE or TASK=VALUE, got {spec!r}.")
        if key in parsed:
            raise ValueError(f"{option}: given twice for {key or 'every task'}.")
        parsed[key] = parse(value, option, key)
    return parsed


def _class_weights(value: str, option: str, task: str | None) -> str | tuple[float, ...]:
    if value == BALANCED:
        return BALANCED
    if task is None:
        raise ValueError(f"{option}: a list of weights belongs to one task (TASK=w1,w2,...), got {value!r}.")
    try:
        weights = tuple(float(weight) for weight in value.split(","))
    except ValueError:
        raise ValueError(f"{option}: {task}: expected 'balanced' or comma-separated numbers, got {value!r}.") from None
    if not all(math.isfinite(weight) and weight > 0 for weight in weights):
        raise ValueError(f"{option}: {task}: weights must be positive and finite, got {value!r}.")
    return weights


def _metric(value: str, option: str, task: str | None) -> str:
    if value not in GREATER_IS_BETTER:
        raise ValueError(f"{option}: unknown metric {value!r}; expected one of {sorted(GREATER_IS_BETTER)}.")
    return value


__all__ = ["BALANCED", "SAMPLERS", "TaskObjective", "add_objective_arguments", "apply_objectives",
           "balanced_class_weights", "parse_objective_arguments"]
