"""Writes the run folder: metrics.json (the documented schema), splits.json and results.md."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..comparison.splits import render_faces_lines
from .label_efficiency_curves import render_label_efficiency_markdown
from .multitask_table import render_multitask_markdown
from .task_tables import render_task_table

SYNTHETIC_BANNER = ("> **SYNTHETIC data.** Every number below is measured on generated faces "
                    "(`etfuser_hf.data.synthetic_faces`), not on photographs of real people.\n\n")


def render_protocol_markdown(protocol: Mapping[str, Any]) -> str:
    """The per-task tables (test split, mean ± std over seeds), the splits and the reading of the numbers."""
    splits = protocol["splits"]
    lines = ["## The comparison (test split; every choice made on validation)", "",
             f"Splits ({splits['source']}, seed {splits['seed']}): "
             + ", ".join(f"{name} {size}" for name, size in splits["sizes"].items())
             + f". Model seeds: {', '.join(map(str, protocol['seeds']))}.", ""]
    recipe = protocol.get("recipe_file")
    if recipe:
        chosen = "; ".join(f"{task}: " + ", ".join(f"{row} {candidate}" for row, candidate in rows.items())
                           for task, rows in recipe["tasks"].items())
        lines += [f"Row settings from `{recipe['path']}`, chosen on the {recipe['chosen_on']} split by "
                  f"`{recipe['command']}` ({chosen}); rows it does not name keep their task's defaults.", ""]
    objectives = [f"{task}: {describe_objective(record)}" for task, record in protocol.get("objective", {}).items()
                  if describe_objective(record)]
    if objectives:
        lines += [f"Objective, the same for every row of a task: {'; '.join(objectives)}.", ""]
    augmentation = protocol.get("augmentation") or {}
    if augmentation.get("level", "none") != "none":
        how = (f"{augmentation['views']} cached views per training image (the image, its mirror and random views, "
               f"seed {augmentation['seed']})" if augmentation.get("views") else
               "a fresh draw every batch, the priors run on it")
        lines += [f"Augmentation of the training split: **{augmentation['level']}**, {how}; every network reads the "
                  f"same augmented face.", ""]
    for table in protocol["tasks"].values():
        lines += [render_task_table(table)]
    lines += ["Reading:", ""] + [f"- {sentence}" for sentence in protocol.get("reading", [])]
    return "\n".join(lines) + "\n"


def describe_objective(record: Mapping[str, Any]) -> str:
    """A task's objective (`objective.TaskObjective.record`) in words, empty where it is the default."""
    weights = record.get("class_weights")
    smoothing = record.get("label_smoothing")
    parts = [f"class weights {weights if isinstance(weights, str) else ', '.join(f'{w:g}' for w in weights)}"
             if weights else "", f"label smoothing {smoothing:g}" if smoothing else "",
             "class-balanced sampler" if record.get("sampler") == "balanced" else "",
             f"checkpoints and candidates selected on validation {record['select_on']}" if record.get("select_on")
             else ""]
    return ", ".join(part for part in parts if part)


def render_data_markdown(splits: Mapping[str, Any]) -> str | None:
    """Where a user dataset's rows came from (`splits.json`): the layout read and its annotation files, each split's
    origin, the validation cut, and the rows skipped (damaged) or excluded (by the protocol) per reason. None for
    data that did not come through a reader and was not cut (the synthetic default)."""
    report, carve, undecodable = splits.get("source_report"), splits.get("carve"), splits.get("undecodable") or {}
    if not report and not carve and not undecodable:
        return None
    lines = []
    if report:
        files = report.get("files") or []
        shown = ", ".join(f"`{Path(file).name}`" for file in files[:3]) + (f" and {len(files) - 3} more"
                                                                              if len(files) > 3 else "")
        layout_splits = "; ".join(f"{name}: {origin}" for name, origin in (report.get("split_origin") or {}).items())
        lines += [f"Read as the **{report['format']}** layout from `{report['source']}`"
                  + (f" (annotations: {shown})" if files else "") + "."
                  + (f" Its splits: {layout_splits}." if layout_splits else ""), ""]
    lines += ["| split | images | origin |", "|---|---|---|"]
    lines += [f"| {name} | {size} | {splits.get('origin', {}).get(name, '')} |" for name, size in splits["sizes"].items()]
    if carve:
        stratified = f", stratified by `{carve['stratify_column']}`" if carve.get("stratify_column") else ""
        lines += ["", f"Cut by the run (seed {carve['seed']}, fraction {carve['fraction']:g}{stratified}): "
                  + ", ".join(f"{name} {count}" for name, count in carve["counts"].items()) + "."]
    if report or undecodable:
        counts = [("skipped", reason, count) for reason, count in ((report or {}).get("skipped") or {}).items()]
        counts += [("excluded by the protocol", reason, count)
                   for reason, count in ((report or {}).get("excluded") or {}).items()]
        counts += [("skipped when decoded", f"{name}: image cannot be decoded", found["count"])
                   for name, found in undecodable.items()]
        lines.append("")
        lines += (["| rows left out | reason | rows |", "|---|---|---|"]
                  + [f"| {kind} | {reason} | {count} |" for kind, reason, count in counts]) if counts \
            else ["No row was skipped or excluded."]
    lines += render_faces_lines(splits)
    return "\n".join(lines) + "\n"


def write_run_folder(folder: str | os.PathLike, summary: Mapping[str, Any]) -> Path:
    """metrics.json (`summary`, the documented schema: its "protocol" holds every row's numbers), splits.json (how
    the splits were made) and results.md: the per-task tables, then the label-efficiency and multi-task sections
    where `summary` has them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(summary, indent=2))
    protocol = summary["protocol"]
    banner = SYNTHETIC_BANNER if (summary.get("dataset") or {}).get("synthetic") else ""
    (folder / "splits.json").write_text(json.dumps(protocol["splits"], indent=2))
    text = banner + render_protocol_markdown(protocol)
    data = render_data_markdown(protocol["splits"])
    if data:
        text += "\n## Data\n\n" + data
    if summary.get("label_efficiency"):
        text += "\n" + render_label_efficiency_markdown(summary["label_efficiency"])
    if summary.get("multitask"):
        text += ("\n## One multi-task model against single-task models (test split)\n\n"
                 + render_multitask_markdown(summary["multitask"]))
    (folder / "results.md").write_text(text)
    return folder
