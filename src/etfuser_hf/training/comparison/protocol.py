"""Training the comparison's runs: one run is one row (`rows.Row`) of one task trained with one seed. Every row gets
the same splits, the same pretrained parts and the same training budget; each run is selected on validation (early
stopping, best checkpoint) and evaluated once on test. `train_runs` trains many, in parallel processes if asked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ...data.collators import FaceCollator
from ...data.face_crops import landmark_labels_in_frame
from ...data.feature_cache import feature_view, pooled_prior_features
from ...data.image_cache import PIXEL_COLUMN
from ...data.views import Augmentation, EpochSampler, first_view_rows, image_groups, views_for
from ...metrics import GREATER_IS_BETTER
from ...models.fusion_modes import fusion_mode_properties
from ...models.image_processing_etfuser import ETFuserImageProcessor
from ...priors.crop_plan import CropPlan
from ..run.distillation import CanonicalTeacher, Distillation
from ..run.forgetting import real_face_agreement
from ..run.measurements import count_parameters
from ..run.probes import fit_probe
from ..run.processes import process_state
from ..run.trainer import RunResult, apply_lora, train_model
from .augment_options import run_augmentation
from .expression_measures import expression_measures_apply
from .objective import BALANCED
from .recipe import build_task_model
from .rows import Row
from .splits import draw_train
from .tasks import FaceTask, canonical_source, row_recipe, task_priors


@dataclass
class ProtocolContext:
    """What every run shares: the data (with cached prior columns), the priors, the budget."""

    splits: datasets.DatasetDict
    prior_dirs: Mapping[str, str | os.PathLike]
    processor: ETFuserImageProcessor
    image_size: int
    output_dir: Path
    run_settings: dict[str, Any]  # TrainingArguments overrides (epochs, lr, batch size, bf16, ...)
    early_stopping: int | None = 3
    label_names: Mapping[str, Sequence[str] | None] = field(default_factory=dict)  # task -> class names
    lora_rank: int | None = None  # LoRA adapters on the canonical model of every row that fine-tunes one
    resume: bool = False  # continue every run from its newest checkpoint, where it has one
    train_size: int | None = None  # --resample-train: images each seed draws from splits["train"], the pool
    geometry_column: str | None = None  # the faces' (68, 2) landmarks in [0, 1]: each network reads its own crop
    augmentation: Augmentation = Augmentation()  # the job's (views rendered into the training split, or online);
    # a row's own choice over it: `augment_options.run_augmentation`

    def train_split(self, seed: int) -> datasets.Dataset:
        """The training images of a run with model seed `seed`: the training split, or (`train_size`) the seed's own
        draw from the pool."""
        if self.train_size is None:
            return self.splits["train"]
        return draw_train(self.splits["train"], self.train_size, seed)

    def collator(self, task: FaceTask, model: Any, prior_feature: Mapping[str, Any] | None = None,
                 online: Augmentation | None = None) -> FaceCollator:
        """Batches for `model`, whose priors are read as `prior_feature` says (`recipe.build_task_model`), its pixels
        from the splits' decoded `PIXEL_COLUMN` where `image_cache` made one. `online`: the run's augmentation, drawn
        afresh every batch, so the priors run in the forward on those pixels instead of being read from the cache."""
        config = model.config
        image_column = PIXEL_COLUMN if PIXEL_COLUMN in self.splits["train"].column_names else "image"
        return FaceCollator(self.processor, task.column, len(self.label_names.get(task.name) or ()),
                            image_column=image_column,
                            use_cached_features=config.fusion_properties.runs_priors and not online,
                            include_pixel_values=config.backbone is not None or online,
                            problem_type=task.problem_type, feature_view=feature_view(prior_feature),
                            augmentation=online.policy_for(task.problem_type) if online else None,
                            point_columns=self.point_columns(task) if online else (), **self.crop_options(model))

    def training_collator(self, task: FaceTask, model: Any, prior_feature: Mapping[str, Any] | None,
                          augmentation: Augmentation) -> FaceCollator | None:
        """The training split's own collator where it differs from `collator` (`augmentation` online), else None."""
        return self.collator(task, model, prior_feature, online=augmentation) if augmentation.online else None

    def point_columns(self, task: FaceTask) -> tuple[str, ...]:
        """The columns an augmentation moves with the pixels: the faces' landmarks and a landmarks task's labels."""
        columns = [self.geometry_column] if self.geometry_column else []
        return tuple(dict.fromkeys(columns + ([task.column] if task.problem_type == "landmarks" else [])))

    def crop_options(self, model: Any) -> dict[str, Any]:
        """The collator options that give each of `model`'s networks its own crop of the face, where the splits say
        where the faces are (`geometry_column`)."""
        if self.geometry_column is None:
            return {}
        return {"crop_plan": CropPlan.for_model(model), "geometry_column": self.geometry_column}


def needs_token_backbone(overrides: dict) -> bool:
    """prepend_token and the patch-level auxiliary tasks work only on a ViT-style canonical model."""
    token_tasks = {"inpainting", "masked_pixels", "landmark_heatmap"}
    into_tokens = "fusion_mode" in overrides and fusion_mode_properties(overrides["fusion_mode"]).into_token_sequence
    return into_tokens or bool(token_tasks & set(overrides.get("auxiliary_tasks") or {}))


def reads_grid_tokens(row: Row, task: FaceTask) -> bool:
    """The row's ensemble token attends over grid tokens on `task` (so its attention can be drawn on the face)."""
    recipe = row_recipe(row, task)
    mode = recipe.get("fusion_mode")
    has_token = mode is None or fusion_mode_properties(mode).ensemble_token
    feature = recipe.get("prior_feature") or {}
    grids = [feature] if "feature" in feature else list(feature.values())
    return has_token and any(spec.get("feature") == "grid" for spec in grids)


def distinct_rows(rows: Sequence[Row], task: FaceTask) -> list[Row]:
    """`rows` less each one that would train exactly as an earlier one on `task` (the same recipe and rate: e.g.
    et-fuser-pooled where et-fuser reads pooled priors, or the spatial rows of a task without a spatial setting)."""
    kept, seen = [], []
    for row in rows:
        key = (row.probe, row.num_priors, row_recipe(row, task), task.tuned_learning_rate(row))
        if key in seen:
            print(f"{task.name}: {row.name} trains exactly as an earlier row there; trained once")
            continue
        kept.append(row)
        seen.append(key)
    return kept


def train_run(row: Row, task: FaceTask, seed: int, context: ProtocolContext,
              train: datasets.Dataset | None = None, keep_model: Callable[[Any], None] | None = None,
              learning_rate: float | None = None, evaluate_test: bool = True, **overrides: Any) -> RunResult:
    """Trains `row` for `task` with `seed` (the model's initialisation and the data order) and returns its test-split
    result with validation metrics and parameter counts. `train` replaces the training split (label fractions);
    `keep_model` receives the trained model (the run folder saves the main row's); `learning_rate` replaces the
    row's own (`task.row_learning_rate`); `evaluate_test=False` (validation sweeps) never predicts the test split and
    reports validation."""
    train = context.train_split(seed) if train is None else train
    if row.probe:  # the job's own views only: other rows' chosen views would give it their augmentation
        return best_prior_probe(task, seed, context, views_for(train, context.augmentation), evaluate_test)
    import torch

    torch.manual_seed(seed)
    recipe = row_recipe(row, task, overrides)
    distillation = Distillation.from_recipe(recipe.pop("distillation", None))
    augmentation = run_augmentation(context.augmentation, recipe.pop("augmentation", None))
    train = views_for(train, augmentation)  # the views this run draws from, where several were rendered
    if task.is_classification and not expression_measures_apply(context.label_names.get(task.name)):
        distillation = None  # the FER net reads no other classes (announced once per job: announce_skipped)
    label_names = context.label_names.get(task.name)
    # class weights and smoothing from the task's objective, the same for every row (balanced: from this run's split)
    recipe.update(task.objective.config_overrides(task, train, len(label_names) if label_names else None))
    model = build_task_model(task, context.prior_dirs, label_names, context.image_size, **recipe)
    collator = context.collator(task, model, recipe.get("prior_feature"))
    teacher = canonical_teacher(task, context, model, distillation) if distillation is not None else None
    # LoRA on the canonical model of every row that fine-tunes one, so that the rows compared stay alike
    lora = context.lora_rank and model.config.backbone is not None
    trained = apply_lora(model, context.lora_rank) if lora else model
    checkpoints = context.output_dir / "checkpoints" / task.name / f"{row.name}-seed{seed}"
    resume = context.resume and any(checkpoints.glob("checkpoint-*"))
    arguments = {"learning_rate": task.tuned_learning_rate(row), **context.run_settings, "seed": seed,
                 "data_seed": seed}
    if learning_rate is not None:  # a sweep's candidate rate wins over every other
        arguments["learning_rate"] = learning_rate
    result, _ = train_model(
        row.name, row.description, trained, train, context.splits["validation"], collator, checkpoints,
        early_stopping_patience=context.early_stopping, resume_from_checkpoint=resume or None,
        test_dataset=context.splits["test"] if evaluate_test else None, teacher=teacher, metric_names=task.metrics,
        select_on=task.selection_metric, train_sampler=epoch_sampler(task, train, seed),
        train_collator=context.training_collator(task, model, recipe.get("prior_feature"), augmentation), **arguments)
    result.params = count_parameters(model)
    result.learning_rate = arguments["learning_rate"]
    result.canonical_learning_rate_scale = float(getattr(model.config, "backbone_learning_rate_scale", 1.0))
    result.augmentation = augmentation.label
    if trained is not model:
        result.params["params_trainable"] = sum(p.numel() for p in trained.parameters() if p.requires_grad)
        result.description += f" (LoRA rank {context.lora_rank} on the canonical model, merged)"
        model = trained.merge_and_unload()
    result.real_face_agreement = real_face_agreement(task.canonical, model)
    if keep_model is not None:
        keep_model(model)
    return result


def epoch_sampler(task: FaceTask, train: datasets.Dataset, seed: int) -> EpochSampler | None:
    """The order a run draws its training rows in: one view per image per epoch where views were rendered, each class
    equally often under a balanced sampler (`objective.TaskObjective.image_weights`); None: the Trainer's own."""
    balanced = task.objective.sampler == BALANCED
    groups = image_groups(train)
    if not balanced and len(np.unique(groups)) == len(groups):
        # one row per image (no views, or a run without augmentation in a job that rendered views for other rows):
        # the Trainer's own shuffling, so that such a run draws the order it draws in a job without views
        return None
    weights = task.objective.image_weights(task, train.select(first_view_rows(train))) if balanced else None
    return EpochSampler(groups, seed, weights)


def canonical_teacher(task: FaceTask, context: ProtocolContext, model: Any, setting: Distillation) -> CanonicalTeacher:
    """The frozen pretrained canonical network of `task` that `model` (fine-tuned from it) is distilled toward."""
    if model.config.backbone is None or not task.is_classification:
        raise ValueError(f"distillation: {task.name} needs a classification model fine-tuned from a pretrained "
                         f"canonical network, got problem type {task.problem_type!r} (fusion_mode="
                         f"{model.config.fusion_mode!r}).")
    source = canonical_source(task.canonical, context.prior_dirs, context.image_size)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"distillation: the canonical model {task.canonical!r} is trained from scratch; there is "
                         f"no pretrained network to distil from.")
    return CanonicalTeacher.from_pretrained(source, context.label_names[task.name], model.config.backbone, setting)


def best_prior_probe(task: FaceTask, seed: int, context: ProtocolContext, train: datasets.Dataset,
                     evaluate_test: bool = True) -> RunResult:
    """A linear probe on each frozen prior's cached feature, fitted on train and scored on validation; only the one
    best on validation is then predicted on test (the only time a test feature or label is read)."""
    splits = {"train": train, "validation": context.splits["validation"]}
    dtype = np.int64 if task.is_classification else np.float32

    def targets_of(rows: datasets.Dataset) -> np.ndarray:
        values = np.asarray(rows[task.column], dtype)
        if task.problem_type == "landmarks" and context.geometry_column is not None:
            # the frame a model without canonical model predicts in (`CropPlan.label_frame`), as et-fuser-priors-only
            frame = (context.processor.size["height"], context.processor.size["width"])
            values = landmark_labels_in_frame(torch.from_numpy(values), np.asarray(rows[context.geometry_column]),
                                              CropPlan({}, None), frame).numpy()
        return values

    targets = {split: targets_of(rows) for split, rows in splits.items()}
    num_labels = (len(context.label_names.get(task.name) or ()) or None) if task.is_classification else None

    names = task_priors(task, list(context.prior_dirs))
    features = {name: {split: pooled_prior_features(rows, [name]) for split, rows in splits.items()} for name in names}

    def probe(name: str, test: datasets.Dataset | None = None) -> RunResult:
        return fit_probe(f"probe-{name}", f"linear probe on the frozen {name} prior", features[name]["train"],
                         targets["train"], features[name]["validation"], targets["validation"], seed=seed,
                         problem_type=task.problem_type, num_labels=num_labels, metric_names=task.scored_metrics,
                         interocular_indices=task.interocular_indices if task.problem_type == "landmarks" else (36, 45),
                         test_features=None if test is None else pooled_prior_features(test, [name]),
                         test_labels=None if test is None else targets_of(test))

    sign = 1.0 if GREATER_IS_BETTER[task.selection_metric] else -1.0
    scored = {name: probe(name) for name in names}
    name = max(scored, key=lambda prior: sign * scored[prior].validation_metrics[task.selection_metric])
    best = probe(name, context.splits["test"]) if evaluate_test else scored[name]  # refitted: the same seeded fit
    best.name, best.description = "probe-best-prior", f"linear probe on the best single prior ({name}, on validation)"
    probe_size = int(np.prod(best.logits.shape[1:])) * (features[name]["train"].shape[1] + 1)
    best.params = {"params_total": saved_parameter_count(context.prior_dirs[name]) + probe_size,
                   "params_trainable": probe_size}
    return best


def saved_parameter_count(folder: str | os.PathLike) -> int:
    """Parameters in a saved folder's model.safetensors, read from its header (no weights loaded)."""
    from safetensors import safe_open

    with safe_open(str(Path(folder) / "model.safetensors"), framework="np") as weights:
        return sum(int(np.prod(weights.get_slice(key).get_shape())) for key in weights.keys())


@dataclass(frozen=True)
class Run:
    """One independent training run of the comparison: `row` of `task` with `seed`; `overrides` of the row's recipe,
    `train` in place of the training split, `save_to` keeps the trained model as a saved folder (written by the main
    process alone under a launcher)."""

    row: Row
    task: FaceTask
    seed: int
    overrides: Mapping[str, Any] = field(default_factory=dict)
    train: datasets.Dataset | None = None
    save_to: Path | None = None
    learning_rate: float | None = None  # None: the row's own on this task
    evaluate_test: bool = True  # False in validation sweeps


def _train_in_worker(run: Run, context: ProtocolContext, threads: int | None) -> RunResult:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    # under a launcher every process trains the run; the main process alone saves it
    saves = run.save_to is not None and process_state().is_main_process
    keep = (lambda model: model.save_pretrained(run.save_to)) if saves else None
    return train_run(run.row, run.task, run.seed, context, train=run.train, keep_model=keep,
                     learning_rate=run.learning_rate, evaluate_test=run.evaluate_test, **run.overrides)


def train_runs(runs: Sequence[Run], context: ProtocolContext, workers: int = 1,
               report: Callable[[Run, RunResult], None] | None = None) -> list[RunResult]:
    """Trains `runs` (results in `runs` order). With `workers > 1` they train in that many spawned processes of one
    torch thread each: the runs are independent and seeded, so the results do not depend on the schedule, and on
    small canonical models one thread per run uses the cores better than threads inside one run."""
    if workers <= 1 or len(runs) <= 1:
        results = []
        for run in runs:
            results.append(_train_in_worker(run, context, None))
            if report is not None:
                report(run, results[-1])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_in_worker, run, context, 1) for run in runs]
        results = []
        for run, future in zip(runs, futures):
            results.append(future.result())
            if report is not None:
                report(run, results[-1])
    return results
