"""Choosing the recipe on the validation split only: protocol rows trained under candidate learning rates (and, for
rows with new modules next to a pretrained canonical model, a faster rate for the new modules), tabulated as
validation metric mean ± std over seeds. The test split is never predicted (`evaluate_test=False`).

    python training/sweep.py --tasks age_group --rows et-fuser-priors-only --learning-rates 1e-3 3e-3 1e-2
    etfuser sweep --rows canonical et-fuser concat-mlp --new-module-speedups 1 3 10 --seeds 2
    etfuser sweep --tasks expression --rows et-fuser concat-mlp --grid-sizes pooled 1 2 4 native --canonical-tokens off on

Spatial candidates (`--grid-sizes`, `--canonical-tokens`) read every prior as grid tokens (`native`: each prior's
own map size, at most `NATIVE_GRID_LIMIT`) at the row's own tuned rate; `on` also puts the canonical model's own grid
tokens into the fusion (`fusion_mode="canonical_tokens"`, rows with an ensemble token only).

Takes every option of the main job (`training/train.py`: data, budget, --workers); writes `sweep.md` and `sweep.json`
into --output-dir (default runs/sweep).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.fusion_modes import fusion_mode_properties
from ..priors.convert_face_priors import ensure_face_priors
from ..priors.fetch import default_cache_dir
from .main import build_parser, parse_args, prepare_protocol
from .protocol import ProtocolContext, Run, train_runs
from .recipe import native_grid_feature
from .rows import PROTOCOL_ROWS, Row
from .task_tables import mean_std
from .tasks import FaceTask, resolve_tasks


@dataclass(frozen=True)
class SweepCandidate:
    """One setting of one row: `learning_rate` for the row's new modules, and the canonical model's share of it
    (`backbone_learning_rate_scale`, 1.0: the same rate); `settings`, named `tag`, are further overrides of the row's
    recipe (a spatial candidate's `prior_feature` and `fusion_mode`)."""

    row: Row
    learning_rate: float
    backbone_learning_rate_scale: float = 1.0
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tag: str = ""

    @property
    def label(self) -> str:
        scale = "" if self.backbone_learning_rate_scale == 1.0 else f", canonical x{self.backbone_learning_rate_scale:g}"
        tag = f", {self.tag}" if self.tag else ""
        return f"{self.row.name} (lr {self.learning_rate:g}{scale}{tag})"

    def as_row(self) -> Row:
        """The row under a name of its own, so that every candidate keeps its own checkpoint folder."""
        overrides = {**self.row.overrides, **self.settings}
        if self.backbone_learning_rate_scale != 1.0:
            overrides["backbone_learning_rate_scale"] = self.backbone_learning_rate_scale
        name = f"{self.row.name}-lr{self.learning_rate:g}-bb{self.backbone_learning_rate_scale:g}"
        name += f"-{self.tag.replace(' ', '-')}" if self.tag else ""
        return dataclasses.replace(self.row, name=name, overrides=overrides)


def sweep_candidates(task: FaceTask, rows: Sequence[Row], learning_rates: Sequence[float],
                     new_module_speedups: Sequence[float] = ()) -> list[SweepCandidate]:
    """Every row at every rate of `learning_rates`, then at every speed-up `k` of `new_module_speedups`: a row with
    new modules beside the canonical model trains them at `k x task.learning_rate` and the canonical model at
    `task.learning_rate` (its rate in every other row); rows without such modules (`canonical`, the priors alone)
    take `k = 1` only, the task's rate."""
    candidates = []
    for row in rows:
        candidates += [SweepCandidate(row, rate) for rate in learning_rates]
        mode = row.overrides.get("fusion_mode")  # None: the task's own mode, an ensemble token beside the canonical
        has_new_modules = mode is None or fusion_mode_properties(mode).adds_modules_to_canonical_model
        for speedup in dict.fromkeys(new_module_speedups if has_new_modules else
                                     [k for k in new_module_speedups if k == 1.0]):
            candidates.append(SweepCandidate(row, speedup * task.learning_rate, 1.0 / speedup))
    return candidates


NATIVE_GRID_LIMIT = 7  # "native" grids: each prior's own map size up to this (the landmark net's 7x7 map)


def spatial_candidates(task: FaceTask, rows: Sequence[Row], grid_sizes: Sequence[int | str],
                       canonical_tokens: Sequence[bool], prior_dirs: Mapping[str, Any]) -> list[SweepCandidate]:
    """Every row with every prior read as `grid_sizes` x `grid_sizes` tokens (`"native"`: each prior's own map size,
    `native_grid_feature`; `"pooled"`: the recipe's one vector per prior, the reference), and for rows with an ensemble token fused into the canonical model each of
    `canonical_tokens` (True: `fusion_mode="canonical_tokens"`); each at the row's tuned rate on `task`."""
    candidates = []
    for row in rows:
        mode = row.overrides.get("fusion_mode")
        ensemble_in_canonical = mode is None or fusion_mode_properties(mode).supervises_ensemble_token
        scale = task.row_overrides.get(row.tuning, {}).get("backbone_learning_rate_scale", 1.0)
        for grid in grid_sizes:
            prior_feature = {}
            if grid == "native":
                prior_feature = native_grid_feature(prior_dirs, NATIVE_GRID_LIMIT)
            elif grid != "pooled":
                prior_feature = {"feature": "grid", "grid_size": int(grid)}
            for canonical in canonical_tokens if ensemble_in_canonical else [False]:
                settings = {**({"prior_feature": prior_feature} if prior_feature else {}),
                            **({"fusion_mode": "canonical_tokens"} if canonical else {})}
                tag = ("pooled" if grid == "pooled" else f"grid {grid}") + (" + canonical tokens" if canonical else "")
                candidates.append(SweepCandidate(row, task.row_learning_rate(row.tuning), scale, settings, tag))
    return candidates


def train_candidates(task: FaceTask, candidates: Sequence[SweepCandidate], seeds: Sequence[int],
                     context: ProtocolContext, workers: int = 1) -> list[dict[str, Any]]:
    """Trains every candidate with every seed (validation only) and returns one record per candidate:
    `{"candidate", "row", "learning_rate", "backbone_learning_rate_scale", "validation": mean ± std, "per_seed"}`."""
    runs = [Run(candidate.as_row(), task, seed, learning_rate=candidate.learning_rate, evaluate_test=False)
            for candidate in candidates for seed in seeds]
    results = train_runs(runs, context, workers)
    records = []
    for index, candidate in enumerate(candidates):
        scores = [result.metrics[task.metric] for result in results[index * len(seeds): (index + 1) * len(seeds)]]
        records.append({"candidate": candidate.label, "row": candidate.row.name, "settings": candidate.tag,
                        "learning_rate": candidate.learning_rate,
                        "backbone_learning_rate_scale": candidate.backbone_learning_rate_scale,
                        "validation": mean_std(scores), "per_seed": [round(score, 4) for score in scores]})
    return records


def best_candidates(task: FaceTask, records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Per row, the record with the best validation mean (over every candidate of that row, spatial ones included)."""
    sign = 1.0 if task.greater_is_better else -1.0
    best: dict[str, Mapping[str, Any]] = {}
    for record in records:
        current = best.get(record["row"])
        if current is None or sign * record["validation"]["mean"] > sign * current["validation"]["mean"]:
            best[record["row"]] = record
    return best


def render_sweep(task: FaceTask, records: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> str:
    """Markdown: one line per candidate, the best of each row in bold."""
    best = {id(record) for record in best_candidates(task, records).values()}
    lines = [f"### {task.name}: validation {task.metric}, mean ± std over seeds {', '.join(map(str, seeds))} "
             f"(validation split only; test never predicted)", "",
             f"| row | lr (new modules) | canonical lr scale | validation {task.metric} | per seed |", "|---|---|---|---|---|"]
    for record in records:
        cell = f"{record['validation']['mean']:.4f} ± {record['validation']['std']:.4f}"
        row = record["row"] + (f" ({record['settings']})" if record.get("settings") else "")
        lines.append(f"| {row} | {record['learning_rate']:g} | {record['backbone_learning_rate_scale']:g} | "
                     f"{f'**{cell}**' if id(record) in best else cell} | "
                     f"{', '.join(f'{score:.4f}' for score in record['per_seed'])} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    """The sweep job: every candidate of every task, validation only; returns what `sweep.json` holds."""
    parser = build_parser(prog, __doc__)
    parser.set_defaults(output_dir=Path("runs/sweep"), seeds=2)
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--rows", nargs="+", default=["et-fuser"],
                       choices=[row.name for row in PROTOCOL_ROWS if not row.probe])
    sweep.add_argument("--learning-rates", nargs="+", type=float, default=[], metavar="LR",
                       help="rates tried for every row (new modules and canonical model alike)")
    sweep.add_argument("--new-module-speedups", nargs="+", type=float, default=[], metavar="K",
                       help="rows that fine-tune the canonical model: new modules at K x the task's rate, the "
                            "canonical model at the task's rate")
    sweep.add_argument("--grid-sizes", nargs="+", default=[], metavar="G",
                       help="spatial candidates: every prior as G x G grid tokens (an int; 'native': each prior's "
                            "own map size; 'pooled': the recipe's pooled vectors, the reference), at each row's tuned "
                            "rate")
    sweep.add_argument("--canonical-tokens", nargs="+", default=["off"], choices=["off", "on"],
                       help="with --grid-sizes: without ('off') and/or with ('on') the canonical model's own grid "
                            "tokens in the fusion (fusion_mode=canonical_tokens)")
    args = parse_args(None if argv is None else list(argv), parser=parser)
    for grid in args.grid_sizes:
        if grid not in ("native", "pooled") and not (grid.isdigit() and int(grid) >= 1):
            parser.error(f"--grid-sizes: expected positive ints, 'native' or 'pooled', got {grid!r}.")
    rows = [row for row in PROTOCOL_ROWS if row.name in args.rows]
    canonical_tokens = [choice == "on" for choice in dict.fromkeys(args.canonical_tokens)]
    tasks = resolve_tasks(args.tasks, args.dataset is None, args.canonical, args.learning_rate)
    prior_dirs = ensure_face_priors(args.cache_dir or default_cache_dir(), args.priors)
    per_task = {task.name: sweep_candidates(task, rows, args.learning_rates, args.new_module_speedups)
                + spatial_candidates(task, rows, args.grid_sizes, canonical_tokens, prior_dirs) for task in tasks}
    views = [candidate.settings["prior_feature"] for candidates in per_task.values() for candidate in candidates
             if "prior_feature" in candidate.settings]
    tasks, context, _ = prepare_protocol(args, views)
    seeds = list(range(args.seed, args.seed + args.seeds))
    report, records = [], {}
    for task in tasks:
        candidates = per_task[task.name]
        records[task.name] = train_candidates(task, candidates, seeds, context, args.workers)
        report.append(render_sweep(task, records[task.name], seeds))
        print(report[-1], flush=True)
    summary = {"seeds": seeds, "tasks": records}
    (args.output_dir / "sweep.md").write_text("SYNTHETIC data; validation split only.\n\n" + "\n".join(report))
    (args.output_dir / "sweep.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
