"""Choosing the recipe on the validation split only: protocol rows trained under candidate learning rates (and, for
rows with new modules next to a pretrained canonical model, a faster rate for the new modules), tabulated as
validation metric mean ± std over seeds. The test split is never predicted (`evaluate_test=False`).

    python training/sweep.py --tasks age_group --rows et-fuser-priors-only --learning-rates 1e-3 3e-3 1e-2
    etfuser sweep --rows canonical et-fuser concat-mlp --new-module-speedups 1 3 10 --seeds 2

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
from .main import build_parser, parse_args, prepare_protocol
from .protocol import ProtocolContext, Run, train_runs
from .rows import PROTOCOL_ROWS, Row
from .task_tables import mean_std
from .tasks import FaceTask


@dataclass(frozen=True)
class SweepCandidate:
    """One setting of one row: `learning_rate` for the row's new modules, and the canonical model's share of it
    (`backbone_learning_rate_scale`, 1.0: the same rate)."""

    row: Row
    learning_rate: float
    backbone_learning_rate_scale: float = 1.0

    @property
    def label(self) -> str:
        scale = "" if self.backbone_learning_rate_scale == 1.0 else f", canonical x{self.backbone_learning_rate_scale:g}"
        return f"{self.row.name} (lr {self.learning_rate:g}{scale})"

    def as_row(self) -> Row:
        """The row under a name of its own, so that every candidate keeps its own checkpoint folder."""
        overrides = dict(self.row.overrides)
        if self.backbone_learning_rate_scale != 1.0:
            overrides["backbone_learning_rate_scale"] = self.backbone_learning_rate_scale
        name = f"{self.row.name}-lr{self.learning_rate:g}-bb{self.backbone_learning_rate_scale:g}"
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
        records.append({"candidate": candidate.label, "row": candidate.row.name,
                        "learning_rate": candidate.learning_rate,
                        "backbone_learning_rate_scale": candidate.backbone_learning_rate_scale,
                        "validation": mean_std(scores), "per_seed": [round(score, 4) for score in scores]})
    return records


def best_candidates(task: FaceTask, records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Per row, the record with the best validation mean."""
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
        lines.append(f"| {record['row']} | {record['learning_rate']:g} | {record['backbone_learning_rate_scale']:g} | "
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
    args = parse_args(None if argv is None else list(argv), parser=parser)
    tasks, context, _ = prepare_protocol(args)
    seeds = list(range(args.seed, args.seed + args.seeds))
    rows = [row for row in PROTOCOL_ROWS if row.name in args.rows]
    report, records = [], {}
    for task in tasks:
        candidates = sweep_candidates(task, rows, args.learning_rates, args.new_module_speedups)
        records[task.name] = train_candidates(task, candidates, seeds, context, args.workers)
        report.append(render_sweep(task, records[task.name], seeds))
        print(report[-1], flush=True)
    summary = {"seeds": seeds, "tasks": records}
    (args.output_dir / "sweep.md").write_text("SYNTHETIC data; validation split only.\n\n" + "\n".join(report))
    (args.output_dir / "sweep.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
