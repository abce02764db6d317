"""The recipe file: what a validation sweep chose for each row, carried to a run.

`etfuser sweep` writes `recipe.json` beside `sweep.json`: per task, per swept row, the setting with the best
validation mean (learning rate, the canonical model's share of it, and the row's further settings: how it reads the
priors, its fusion mode, distillation), with how many candidates each row had and the sweep command that chose them.
`train.py --recipe recipe.json` trains every row of those tasks with exactly those settings; a row the sweep did not
try keeps the task's own rate. The run's metrics.json and card name the file and the command, so every number says
where its settings were chosen.

    {"format": "etfuser-recipe/1", "chosen_on": "validation", "command": "python training/sweep.py ...",
     "seeds": [0, 1], "tasks": {"expression": {"metric": "accuracy", "candidates_per_row": {"et-fuser": 4},
       "rows": {"et-fuser": {"learning_rate": 0.009, "backbone_learning_rate_scale": 0.333,
                             "settings": {"prior_feature": {"feature": "grid", "grid_size": 2}},
                             "validation": {"mean": 0.61, "std": 0.01}}}}}}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .objective import TaskObjective
from .rows import MAIN_ROW

RECIPE_FORMAT = "etfuser-recipe/1"
RECIPE_FILE_NAME = "recipe.json"
_ROW_KEYS = {"learning_rate", "backbone_learning_rate_scale", "settings", "validation", "candidate"}


def sweep_recipe(chosen: Mapping[str, Mapping[str, Mapping[str, Any]]], metrics: Mapping[str, str],
                 candidates_per_row: Mapping[str, Mapping[str, int]], command: str, seeds: Sequence[int],
                 objectives: Mapping[str, TaskObjective] | None = None, builds_on_defaults: bool = False
                 ) -> dict[str, Any]:
    """The recipe of a sweep: `chosen` task -> row -> its best candidate's record (`validation_sweep.best_candidates`,
    each with the candidate's `overrides` and, for et-fuser, the `main_tokens` it read), `metrics` the validation
    metric each task was chosen on, `objectives` the class weights, smoothing, sampler and selection metric every
    candidate of a task trained with. `builds_on_defaults`: every candidate trained at its row's tuned setting (an
    augmentation, distillation or spatial sweep), so its candidates add to those that chose that setting."""
    tasks = {}
    for task, rows in chosen.items():
        objective = (objectives or {}).get(task)
        main_tokens = rows.get(MAIN_ROW, {}).get("main_tokens")
        tasks[task] = {"metric": metrics[task], "candidates_per_row": dict(candidates_per_row.get(task, {})),
                       **({"builds_on_defaults": True} if builds_on_defaults else {}),
                       **({"main_tokens": main_tokens} if main_tokens else {}),
                       **({"objective": objective.record()} if objective is not None else {}),
                       "rows": {row: {"candidate": record["candidate"], "learning_rate": record["learning_rate"],
                                      "backbone_learning_rate_scale": record["backbone_learning_rate_scale"],
                                      "settings": dict(record.get("overrides") or {}),
                                      "validation": record["validation"]}
                                for row, record in rows.items()}}
    return {"format": RECIPE_FORMAT, "chosen_on": "validation", "command": command, "seeds": list(seeds),
            "tasks": tasks}


def write_recipe(path: str | os.PathLike, recipe: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.write_text(json.dumps(recipe, indent=2) + "\n")
    return path


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """A recipe file, checked: a clear error naming the file and what is wrong where it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--recipe: {path} does not exist (expected the {RECIPE_FILE_NAME} an `etfuser sweep` "
                         "wrote).")
    try:
        recipe = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--recipe: {path} is not JSON ({error}).") from error
    if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT:
        found = recipe.get("format") if isinstance(recipe, dict) else type(recipe).__name__
        raise ValueError(f"--recipe: {path} is not a recipe file: expected format {RECIPE_FORMAT!r}, got {found!r}.")
    tasks = recipe.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise ValueError(f"--recipe: {path} chooses nothing: expected a non-empty 'tasks' mapping.")
    for task, entry in tasks.items():
        rows = entry.get("rows") if isinstance(entry, dict) else None
        if not isinstance(rows, dict) or not rows:
            raise ValueError(f"--recipe: {path}: task {task!r} has no 'rows' mapping of row -> setting.")
        for row, setting in rows.items():
            where = f"--recipe: {path}: tasks.{task}.rows.{row}"
            if not isinstance(setting, dict) or set(setting) - _ROW_KEYS:
                raise ValueError(f"{where}: expected keys among {sorted(_ROW_KEYS)}, got "
                                 f"{sorted(setting) if isinstance(setting, dict) else setting!r}.")
            for key in ("learning_rate", "backbone_learning_rate_scale"):
                value = setting.get(key, 1.0)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                        math.isfinite(value) and value > 0):
                    raise ValueError(f"{where}.{key}: expected a positive number, got {value!r}.")
            if not isinstance(setting.get("settings", {}), dict):
                raise ValueError(f"{where}.settings: expected a mapping of ETFuserConfig / recipe overrides, got "
                                 f"{setting['settings']!r}.")
        if entry.get("main_tokens", "pooled") not in ("pooled", "spatial"):
            raise ValueError(f"--recipe: {path}: tasks.{task}.main_tokens: expected 'pooled' or 'spatial', got "
                             f"{entry['main_tokens']!r}.")
        if "objective" in entry:
            try:
                TaskObjective.from_record(entry["objective"])
            except ValueError as error:
                raise ValueError(f"--recipe: {path}: tasks.{task}.objective: {error}") from None
    recipe["path"] = str(path)
    return recipe


def task_fields(recipe: Mapping[str, Any], task: Any) -> dict[str, Any]:
    """`FaceTask` fields that train `task`'s rows as `recipe` chose (empty where it chose nothing for `task`): each
    swept row's rate and overrides in place of the task's own for that row (rows the sweep did not try keep theirs),
    its candidate counts (added to the task's where the sweep built on its tuned settings), the objective its
    candidates trained with; where the sweep chose for et-fuser, et-fuser reads the priors as its chosen candidate
    did (`main_tokens`: the task's chosen tokens for a candidate at its tuned setting; pooled, unless its settings set
    `prior_feature`, for a rate-grid or spatial candidate and in recipes written before it was recorded)."""
    entry = recipe["tasks"].get(task.name)
    if entry is None:
        return {}
    rows, counts = entry["rows"], dict(entry.get("candidates_per_row", {}))
    if entry.get("builds_on_defaults"):
        counts = {row: task.candidates_per_row.get(row, 0) + count for row, count in counts.items()}
    overrides = {row: {"backbone_learning_rate_scale": float(setting.get("backbone_learning_rate_scale", 1.0)),
                       **setting.get("settings", {})} for row, setting in rows.items()}
    return {"row_learning_rates": {**task.row_learning_rates,
                                   **{row: float(setting["learning_rate"]) for row, setting in rows.items()}},
            "row_overrides": {**task.row_overrides, **overrides},
            "candidates_per_row": {**task.candidates_per_row, **counts},
            **({"main_tokens": entry.get("main_tokens", "pooled")} if MAIN_ROW in rows else {}),
            **({"objective": TaskObjective.from_record(entry["objective"])} if "objective" in entry else {})}


def recipe_record(recipe: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What metrics.json and the card say of where the settings were chosen."""
    if recipe is None:
        return None
    return {"path": recipe["path"], "chosen_on": recipe.get("chosen_on", "validation"), "command": recipe.get("command"),
            "tasks": {task: {row: setting.get("candidate") for row, setting in entry["rows"].items()}
                      for task, entry in recipe["tasks"].items()}}


__all__ = ["RECIPE_FILE_NAME", "RECIPE_FORMAT", "read_recipe", "recipe_record", "sweep_recipe", "task_fields",
           "write_recipe"]
