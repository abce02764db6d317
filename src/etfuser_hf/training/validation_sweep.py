"""Choosing the recipe on the validation split only, with the same candidate grid for every compared row: each
learning rate `r` of the grid for the canonical model, times each speed-up `k` for the modules that are new next to
it (the fusion module and projections, the concatenation MLP, and every row's task head, the canonical row's too),
which train at `k x r` while the canonical model trains at `r` (`backbone_learning_rate_scale = 1/k`). ET-Fuser on the
priors alone has no canonical model: it gets as many candidates, all rates (`--priors-only-learning-rates`).
Tabulated as validation metric mean ± std over seeds; the test split is never predicted (`evaluate_test=False`).

    python training/sweep.py --tasks age_group --rows canonical et-fuser --learning-rates 3e-3 9e-3 \
        --new-module-speedups 1 3
    etfuser sweep --rows canonical et-fuser concat-mlp et-fuser-priors-only --learning-rates expression:1.2e-2 \
        expression:3.6e-2 --new-module-speedups 1 3 --priors-only-learning-rates 3e-4 1e-3 3e-3 1e-2
    etfuser sweep --tasks expression --rows et-fuser concat-mlp --grid-sizes pooled 1 2 4 native --canonical-tokens off on
    etfuser sweep --tasks expression --rows canonical et-fuser --distillation-weights 0 1 4

Distillation candidates (`--distillation-weights`) are distilled toward the pretrained canonical network's own
predictions on the training images (`distillation.py`), at each row's tuned rate; their table adds each candidate's
agreement with that network on real faces (`forgetting.py`), which a run measures wherever it applies.

Augmentation candidates (`--augment-candidates none light:2 light:4 standard:4`) train every row with each level and
number of views K: the job renders every view they draw from once, their priors cached, and each candidate's runs
draw from their own (`data.views.views_for`); the chosen setting travels in `recipe.json` like any other.

Read-only candidates (`--read-only-priors off on`) train each candidate of a row whose fusion has the ensemble-token
stack (with the `full` mask) also with `read_only_priors=True` (the prior tokens keys and values only); a row without
that stack (canonical, concat-mlp) has nothing to make read-only and trains each of its candidates once.

Spatial candidates (`--grid-sizes`, `--canonical-tokens`) read every prior as grid tokens (`native`: each prior's
own map size, at most `NATIVE_GRID_LIMIT`) at the row's own tuned rate; `on` also puts the canonical model's own grid
tokens into the fusion (`fusion_mode="canonical_tokens"`, rows with an ensemble token only).

A rate is `LR` (every task) or `TASK:LR` (that task only); without any for a task, its own rate. Takes every option
of the main job (`training/train.py`: data, budget, --workers); writes `sweep.md` and `sweep.json` (with the number
of candidates per row) into --output-dir (default runs/sweep), and `recipe.json`, each row's best setting on
validation, which `train.py --recipe` trains with (`recipe_file.py`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..metrics import GREATER_IS_BETTER
from ..models.fusion_modes import fusion_mode_properties
from ..priors.convert_face_priors import ensure_face_priors
from ..priors.fetch import default_cache_dir
from .comparison.augment_options import parse_augmentation_candidate
from .comparison.dataset_source import read_dataset
from .comparison.expression_measures import expression_measures_apply
from .comparison.protocol import ProtocolContext, Run, train_runs
from .comparison.recipe import native_grid_feature
from .comparison.recipe_file import RECIPE_FILE_NAME, sweep_recipe, write_recipe
from .comparison.rows import MAIN_ROW, OPTIONAL_ROWS, PROTOCOL_ROWS, Row
from .comparison.tasks import FaceTask, resolve_tasks
from .main import build_parser, parse_args, prepare_protocol
from .report.task_tables import mean_std
from .run.processes import process_state


@dataclass(frozen=True)
class SweepCandidate:
    """One setting of one row: `learning_rate` for the row's new modules and head, and the canonical model's share
    of it (`backbone_learning_rate_scale`, 1.0: the same rate); `settings`, named `tag`, are further overrides of
    the row's recipe (a spatial candidate's `prior_feature` and `fusion_mode`). `spatial`: the candidate chooses how
    the row reads the priors (pooled where `settings` set no `prior_feature`); every other candidate reads what its
    row reads on the task."""

    row: Row
    learning_rate: float
    backbone_learning_rate_scale: float = 1.0
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tag: str = ""
    spatial: bool = False
    at_chosen_tokens: bool = False

    @classmethod
    def at_tuned_setting(cls, task: FaceTask, row: Row, settings: Mapping[str, Any], tag: str,
                         spatial: bool = False) -> SweepCandidate:
        """`row` with `settings` at the rate and canonical share `task` already chose for it on validation, reading
        the tokens `task` chose for it too unless the candidate is `spatial` (it sets its own)."""
        scale = task.tuned_overrides(row).get("backbone_learning_rate_scale", 1.0)
        # the renamed candidate (`as_row`) no longer finds the tokens chosen for its row by name: they travel with it
        tokens = {} if spatial else task.row_tokens.get(row.name, {})
        return cls(row, task.tuned_learning_rate(row), scale, {**tokens, **settings}, tag, spatial,
                   at_chosen_tokens=not spatial)

    @property
    def description(self) -> str:
        """`tag`, with "read-only" where the candidate sets `read_only_priors` (a read-only twin reads what its
        original reads)."""
        read_only = "read-only" if self.settings.get("read_only_priors") else ""
        return ", ".join(part for part in (self.tag, read_only) if part)

    @property
    def label(self) -> str:
        scale = "" if self.backbone_learning_rate_scale == 1.0 else f", canonical x{self.backbone_learning_rate_scale:g}"
        tag = f", {self.description}" if self.description else ""
        return f"{self.row.name} (lr {self.learning_rate:g}{scale}{tag})"

    def as_row(self) -> Row:
        """The row under a name of its own, so that every candidate keeps its own checkpoint folder; its canonical
        share is set even at 1.0, so that no setting chosen earlier for the row (`FaceTask.row_overrides`) leaks in;
        a spatial candidate reads the priors as its own settings say, a candidate of et-fuser (whose tokens the
        sweep itself chooses, `FaceTask.main_tokens`) on the rate grid the pooled priors, so that a committed sweep
        command reruns the same runs after its choice landed, and every candidate at the tuned setting
        (`at_chosen_tokens`: distillation, augmentation) what its row reads on the task (et-fuser's chosen tokens,
        et-fuser-spatial's grid)."""
        overrides = {**self.row.overrides, **self.settings,
                     "backbone_learning_rate_scale": self.backbone_learning_rate_scale}
        name = f"{self.row.name}-lr{self.learning_rate:g}-bb{self.backbone_learning_rate_scale:g}"
        name += f"-{self.description.replace(', ', '-').replace(' ', '-')}" if self.description else ""
        chosen_by_sweep = self.row.tokens == "chosen" and not self.at_chosen_tokens
        tokens = "pooled" if self.spatial or chosen_by_sweep else self.row.tokens
        return dataclasses.replace(self.row, name=name, overrides=overrides, tokens=tokens)


def has_canonical_model(row: Row) -> bool:
    """Whether `row` fine-tunes the canonical model (None: the task's own fusion mode, which always does)."""
    mode = row.overrides.get("fusion_mode")
    return mode is None or fusion_mode_properties(mode).canonical_model


def sweep_candidates(task: FaceTask, rows: Sequence[Row], learning_rates: Sequence[float] = (),
                     new_module_speedups: Sequence[float] = (),
                     priors_only_learning_rates: Sequence[float] = ()) -> list[SweepCandidate]:
    """The grid of every row that fine-tunes the canonical model: each rate of `learning_rates` (default: the task's
    rate) for the canonical model, times each speed-up `k` of `new_module_speedups` (default 1) for its new modules
    and head; a row without a canonical model takes `priors_only_learning_rates`, which must be as many, so that every
    compared row has the same number of candidates."""
    rates = list(dict.fromkeys(learning_rates or [task.learning_rate]))
    speedups = list(dict.fromkeys(new_module_speedups or [1.0]))
    if any(rate <= 0 for rate in rates + list(priors_only_learning_rates)) or any(k <= 0 for k in speedups):
        raise ValueError(f"learning rates and speed-ups must be positive, got rates {rates + list(priors_only_learning_rates)}"
                         f" and speed-ups {speedups}.")
    grid = [(k * rate, 1.0 / k) for rate in rates for k in speedups]
    candidates = []
    for row in rows:
        if has_canonical_model(row):
            candidates += [SweepCandidate(row, rate, scale) for rate, scale in grid]
            continue
        own = list(dict.fromkeys(priors_only_learning_rates))
        if len(own) != len(grid):
            raise ValueError(f"--priors-only-learning-rates: {row.name} has no canonical model, so it needs as many "
                             f"rates as the other rows have candidates ({len(rates)} rates x {len(speedups)} "
                             f"speed-ups = {len(grid)}) for the same tuning, got {own or 'none'} for {task.name}.")
        candidates += [SweepCandidate(row, rate) for rate in own]
    return candidates


def candidates_per_row(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """`{row: number of candidates tried}`, in the records' order."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record["row"]] = counts.get(record["row"], 0) + 1
    return counts


def rates_by_task(values: Sequence[str], tasks: Sequence[str], option: str) -> dict[str, list[float]]:
    """`--learning-rates` style values, each `LR` (every task) or `TASK:LR`, as `{task: [rates]}`."""
    rates: dict[str, list[float]] = {task: [] for task in tasks}
    for value in values:
        task, _, rate = value.rpartition(":")
        if task and task not in rates:
            raise ValueError(f"{option}: {value!r} names task {task!r}, not one of --tasks {list(tasks)}.")
        try:
            number = float(rate)
        except ValueError:
            raise ValueError(f"{option}: expected LR or TASK:LR, got {value!r}.") from None
        for name in [task] if task else tasks:
            rates[name].append(number)
    return rates


NATIVE_GRID_LIMIT = 7  # "native" grids: each prior's own map size up to this (the landmark net's 7x7 map)


def spatial_candidates(task: FaceTask, rows: Sequence[Row], grid_sizes: Sequence[int | str],
                       canonical_tokens: Sequence[bool], prior_dirs: Mapping[str, Any]) -> list[SweepCandidate]:
    """Every row with every prior read as `grid_sizes` x `grid_sizes` tokens (`"native"`: each prior's own map size,
    `native_grid_feature`; `"pooled"`: the recipe's one vector per prior, the reference), and for rows with an ensemble token fused into the canonical model each of
    `canonical_tokens` (True: `fusion_mode="canonical_tokens"`); each at the row's tuned rate on `task`."""
    candidates = []
    for row in rows:
        mode = row.overrides.get("fusion_mode")
        properties = None if mode is None else fusion_mode_properties(mode)
        ensemble_in_canonical = properties is None or (properties.ensemble_token and properties.canonical_model)
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
                candidates.append(SweepCandidate.at_tuned_setting(task, row, settings, tag, spatial=True))
    return candidates


def distillation_candidates(task: FaceTask, rows: Sequence[Row], weights: Sequence[float],
                            temperature: float = 2.0) -> list[SweepCandidate]:
    """Every row that fine-tunes the canonical model with each distillation weight of `weights` toward the pretrained
    network's own predictions (`distillation.py`; 0: none, the reference), at the row's tuned rate on `task`."""
    if any(weight < 0 for weight in weights) or temperature <= 0:
        raise ValueError(f"--distillation-weights must be >= 0 and --distillation-temperature > 0, got {list(weights)}"
                         f" and {temperature}.")
    candidates = []
    for row in rows:
        if not has_canonical_model(row):
            continue
        for weight in dict.fromkeys(weights):
            settings = {"distillation": {"weight": weight, "temperature": temperature}} if weight else {}
            candidates.append(SweepCandidate.at_tuned_setting(
                task, row, settings, f"distillation {weight:g} T {temperature:g}" if weight else "no distillation"))
    return candidates


def augmentation_candidates(task: FaceTask, rows: Sequence[Row], settings: Sequence[Mapping[str, Any]]
                            ) -> list[SweepCandidate]:
    """Every row (the same candidates for each: the probe has no training images to augment) with each augmentation
    setting of `settings` (`augment_options.parse_augmentation_candidate`), at the row's tuned rate on `task`."""
    candidates = []
    for row in rows:
        for setting in settings:
            tag = "augment " + setting["level"] + (f" K={setting['views']}" if "views" in setting else "")
            candidates.append(SweepCandidate.at_tuned_setting(task, row, {"augmentation": dict(setting)}, tag))
    return candidates


def read_only_candidates(candidates: Sequence[SweepCandidate], choices: Sequence[bool]) -> list[SweepCandidate]:
    """Each candidate once per `choices` (True: with `read_only_priors=True`) where its row, as the candidate sets it,
    fuses through the ensemble-token stack with the `full` mask (what the option needs); any other candidate once."""
    choices = list(dict.fromkeys(choices))
    result = []
    for candidate in candidates:
        overrides = {**candidate.row.overrides, **candidate.settings}
        mode = overrides.get("fusion_mode")  # None: the task's own, which always has the stack
        stacked = (mode is None or fusion_mode_properties(mode).ensemble_token) and overrides.get(
            "attention_mask_strategy", "full") == "full"
        for read_only in choices if stacked else [False]:
            settings = {**candidate.settings, "read_only_priors": True} if read_only else candidate.settings
            result.append(dataclasses.replace(candidate, settings=settings))
    return result


def without_skipped_distillation(task: FaceTask, candidates: Sequence[SweepCandidate],
                                 label_names: Sequence[str] | None) -> list[SweepCandidate]:
    """`candidates` less the distillation ones where `task` has classes that are not expression classes: a run skips
    distillation there (`expression_measures.py`), so they would only repeat the reference."""
    if not task.is_classification or expression_measures_apply(label_names):
        return list(candidates)
    return [candidate for candidate in candidates if "distillation" not in candidate.settings]


def train_candidates(task: FaceTask, candidates: Sequence[SweepCandidate], seeds: Sequence[int],
                     context: ProtocolContext, workers: int = 1) -> list[dict[str, Any]]:
    """Trains every candidate with every seed (validation only) and returns one `candidate_record` per candidate."""
    runs = [Run(candidate.as_row(), task, seed, learning_rate=candidate.learning_rate, evaluate_test=False)
            for candidate in candidates for seed in seeds]
    results = train_runs(runs, context, workers)
    records = []
    for index, candidate in enumerate(candidates):
        own = results[index * len(seeds): (index + 1) * len(seeds)]
        agreements = [result.real_face_agreement for result in own if result.real_face_agreement is not None]
        records.append(candidate_record(task, candidate, [result.metrics[task.selection_metric] for result in own],
                                        agreements))
    return records


def candidate_record(task: FaceTask, candidate: SweepCandidate, scores: Sequence[float],
                     agreements: Sequence[float] = ()) -> dict[str, Any]:
    """`{"candidate", "row", "settings", "overrides", "learning_rate", "backbone_learning_rate_scale", "validation":
    mean ± std of `scores` (one per seed), "per_seed", "real_face_agreement"}`, and for et-fuser the tokens it read
    (`main_tokens`: the task's choice for a candidate at its tuned setting, else pooled), for its recipe."""
    reads = candidate.as_row().tokens
    return {"candidate": candidate.label, "row": candidate.row.name, "settings": candidate.description,
            **({"main_tokens": task.main_tokens if reads == "chosen" else "pooled"}
               if candidate.row.name == MAIN_ROW else {}),
            "overrides": dict(candidate.settings),
            "learning_rate": candidate.learning_rate,
            "backbone_learning_rate_scale": candidate.backbone_learning_rate_scale,
            "validation": mean_std(scores), "per_seed": [round(score, 4) for score in scores],
            "real_face_agreement": mean_std(agreements) if agreements else None}


def best_candidates(task: FaceTask, records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Per row, the record with the best validation mean (over every candidate of that row, spatial ones included)."""
    sign = 1.0 if GREATER_IS_BETTER[task.selection_metric] else -1.0
    best: dict[str, Mapping[str, Any]] = {}
    for record in records:
        current = best.get(record["row"])
        if current is None or sign * record["validation"]["mean"] > sign * current["validation"]["mean"]:
            best[record["row"]] = record
    return best


def render_sweep(task: FaceTask, records: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> str:
    """Markdown: one line per candidate, the best of each row in bold; with the real-face agreement
    (`forgetting.py`) where the runs measured it."""
    best = {id(record) for record in best_candidates(task, records).values()}
    counts = ", ".join(f"{row} {count}" for row, count in candidates_per_row(records).items())
    agreement = any(record.get("real_face_agreement") for record in records)
    lines = [f"### {task.name}: validation {task.selection_metric}, mean ± std over seeds "
             f"{', '.join(map(str, seeds))} "
             f"(validation split only; test never predicted)", "", f"Candidates per row: {counts}.", "",
             f"| row | lr (new modules) | canonical lr scale | validation {task.selection_metric} | per seed |"
             + (" real-face agreement |" if agreement else ""), "|---|---|---|---|---|" + ("---|" if agreement else "")]
    for record in records:
        cell = f"{record['validation']['mean']:.4f} ± {record['validation']['std']:.4f}"
        row = record["row"] + (f" ({record['settings']})" if record.get("settings") else "")
        line = (f"| {row} | {record['learning_rate']:g} | {record['backbone_learning_rate_scale']:g} | "
                f"{f'**{cell}**' if id(record) in best else cell} | "
                f"{', '.join(f'{score:.4f}' for score in record['per_seed'])} |")
        if agreement:
            value = record.get("real_face_agreement")
            line += f" {value['mean']:.4f} ± {value['std']:.4f} |" if value else " – |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict[str, Any]:
    """The sweep job: every candidate of every task, validation only; returns what `sweep.json` holds."""
    parser = build_parser(prog, __doc__)
    parser.set_defaults(output_dir=Path("runs/sweep"), seeds=2)
    sweep = parser.add_argument_group("sweep")
    rows = {row.name: row for row in PROTOCOL_ROWS if not row.probe} | OPTIONAL_ROWS
    sweep.add_argument("--rows", nargs="+", default=["et-fuser"], choices=list(rows))
    sweep.add_argument("--learning-rates", nargs="+", default=[], metavar="[TASK:]LR",
                       help="the canonical model's rates, for every row that fine-tunes it (default: the task's)")
    sweep.add_argument("--new-module-speedups", nargs="+", type=float, default=[], metavar="K",
                       help="new modules and task head (every row's, the canonical row's too) at K x the rate, the "
                            "canonical model at the rate (default: 1)")
    sweep.add_argument("--priors-only-learning-rates", nargs="+", default=[], metavar="[TASK:]LR",
                       help="et-fuser-priors-only's rates: as many as the other rows' candidates")
    sweep.add_argument("--grid-sizes", nargs="+", default=[], metavar="G",
                       help="spatial candidates: every prior as G x G grid tokens (an int; 'native': each prior's "
                            "own map size; 'pooled': the recipe's pooled vectors, the reference), at each row's tuned "
                            "rate")
    sweep.add_argument("--canonical-tokens", nargs="+", default=["off"], choices=["off", "on"],
                       help="with --grid-sizes: without ('off') and/or with ('on') the canonical model's own grid "
                            "tokens in the fusion (fusion_mode=canonical_tokens)")
    sweep.add_argument("--distillation-weights", nargs="+", type=float, default=[], metavar="W",
                       help="candidates distilled toward the pretrained canonical network's own predictions with "
                            "weight W (0: none, the reference), for every row that fine-tunes it, at its tuned rate")
    sweep.add_argument("--distillation-temperature", type=float, default=2.0, metavar="T",
                       help="with --distillation-weights: the softening temperature (default 2)")
    sweep.add_argument("--augment-candidates", nargs="+", default=[], metavar="LEVEL[:K]",
                       help="augmentation candidates for every row at its tuned rate: none, LEVEL or LEVEL:K (K views "
                            "per training image in view-cache mode; default --views); the job renders all their "
                            "views once and each candidate draws from its own")
    sweep.add_argument("--read-only-priors", nargs="+", default=["off"], choices=["off", "on"],
                       help="every candidate of a row with the ensemble-token stack without ('off') and/or with ('on') "
                            "read_only_priors (the prior tokens keys and values only)")
    args = parse_args(None if argv is None else list(argv), parser=parser)
    for grid in args.grid_sizes:
        if grid not in ("native", "pooled") and not (grid.isdigit() and int(grid) >= 1):
            parser.error(f"--grid-sizes: expected positive ints, 'native' or 'pooled', got {grid!r}.")
    # a spatial sweep alone trains its spatial candidates ('pooled' among them), not the rate grid as well
    rate_grid = bool(args.learning_rates or args.new_module_speedups or args.priors_only_learning_rates
                     or not (args.grid_sizes or args.distillation_weights or args.augment_candidates))
    canonical_tokens = [choice == "on" for choice in dict.fromkeys(args.canonical_tokens)]
    source = read_dataset(args) if args.dataset is not None else None  # a --dataset's task types come from its data
    try:  # the grid is checked before any work: it needs no data
        rates = rates_by_task(args.learning_rates, args.tasks, "--learning-rates")
        own = rates_by_task(args.priors_only_learning_rates, args.tasks, "--priors-only-learning-rates")
        tasks = resolve_tasks(args.tasks, args.dataset is None, args.canonical, args.learning_rate,
                              source.tasks if source is not None else None, objectives=args.objectives)
        chosen = [rows[name] for name in args.rows]
        augmentations = [parse_augmentation_candidate(value, args.augmentation, args)
                         for value in dict.fromkeys(args.augment_candidates)]
        grids = {task.name: (sweep_candidates(task, chosen, rates[task.name], args.new_module_speedups, own[task.name])
                             if rate_grid else [])
                 + distillation_candidates(task, chosen, args.distillation_weights, args.distillation_temperature)
                 + augmentation_candidates(task, chosen, augmentations)
                 for task in tasks}
    except ValueError as error:
        parser.error(str(error))
    state = process_state()  # under a launcher every process trains every candidate, the main process writes
    with state.main_process_first():  # the main process converts the priors and fills the caches, the others read
        if args.grid_sizes:
            prior_dirs = ensure_face_priors(args.cache_dir or default_cache_dir(), args.priors)
            for task in tasks:
                grids[task.name] += spatial_candidates(task, chosen, args.grid_sizes, canonical_tokens, prior_dirs)
        read_only = [choice == "on" for choice in args.read_only_priors]
        grids = {name: read_only_candidates(candidates, read_only) for name, candidates in grids.items()}
        views = [candidate.settings["prior_feature"] for candidates in grids.values() for candidate in candidates
                 if "prior_feature" in candidate.settings]
        tasks, context, split_record = prepare_protocol(args, views, source, augmentations)
    seeds = list(range(args.seed, args.seed + args.seeds))
    report, records = [], {}
    for task in tasks:
        grids[task.name] = without_skipped_distillation(task, grids[task.name], context.label_names.get(task.name))
        records[task.name] = train_candidates(task, grids[task.name], seeds, context, args.workers)
        report.append(render_sweep(task, records[task.name], seeds))
        state.print(report[-1], flush=True)
    summary = {"seeds": seeds, "command": command_line(argv), "splits": split_record,
               "candidates_per_row": {task: candidates_per_row(task_records) for task, task_records in records.items()},
               "tasks": records}
    recipe = sweep_recipe({task.name: best_candidates(task, records[task.name]) for task in tasks},
                          {task.name: task.selection_metric for task in tasks}, summary["candidates_per_row"],
                          summary["command"], seeds, {task.name: task.objective for task in tasks},
                          builds_on_defaults=not rate_grid)
    if state.is_main_process:
        (args.output_dir / "sweep.md").write_text("SYNTHETIC data; validation split only.\n\n" + "\n".join(report))
        (args.output_dir / "sweep.json").write_text(json.dumps(summary, indent=2))
        write_recipe(args.output_dir / RECIPE_FILE_NAME, recipe)
    return summary


def command_line(argv: Sequence[str] | None) -> str:
    """The sweep's own command line, for sweep.json: what reruns it."""
    import shlex
    import sys

    return shlex.join(["python", "training/sweep.py", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
