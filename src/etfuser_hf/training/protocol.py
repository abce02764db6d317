"""The paper's comparison for one task and one seed: every row gets the same splits, the same pretrained parts and the
same training budget; each is selected on validation (early stopping, best checkpoint) and evaluated once on test.

Rows (`PROTOCOL_ROWS`): the pretrained canonical model alone, fine-tuned; canonical + the priors' features
concatenated through an MLP; canonical + ET-Fuser; ET-Fuser on the priors alone; and the best single prior under a
linear probe (the prior chosen on validation).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..models.image_processing_etfuser import ETFuserImageProcessor
from .collators import FaceCollator
from .feature_cache import pooled_prior_features
from .probes import fit_probe
from .recipe import build_task_model
from .results import count_parameters
from .tasks import FaceTask, task_priors
from .trainer_runs import apply_lora, train_variant
from .variants import VariantResult


@dataclass(frozen=True)
class ProtocolRow:
    """One row of a task table: `overrides` of the default recipe, or the best-single-prior linear probe."""

    name: str
    description: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    probe: bool = False


MAIN_ROW = "et-fuser"
PROTOCOL_ROWS = (
    ProtocolRow(MAIN_ROW, "canonical model + ET-Fuser: the ensemble token over the frozen priors, fused into the "
                          "canonical model (fusion mode in the table heading)"),
    ProtocolRow("canonical", "the pretrained canonical model alone, fine-tuned (the baseline to beat)",
                {"fusion_mode": "none"}),
    ProtocolRow("concat-mlp", "canonical model + the frozen priors' features concatenated through an MLP "
                              "(no ensemble token)", {"fusion_mode": "concat_priors"}),
    ProtocolRow("et-fuser-priors-only", "ET-Fuser on the frozen priors alone (no canonical model)",
                {"fusion_mode": "priors_only"}),
    ProtocolRow("probe-best-prior", "linear probe on the single best frozen prior (chosen on validation)", probe=True),
)


@dataclass
class ProtocolContext:
    """What every row of a run shares: the data (with cached prior columns), the priors, the budget."""

    splits: datasets.DatasetDict
    prior_dirs: Mapping[str, str | os.PathLike]
    processor: ETFuserImageProcessor
    image_size: int
    output_dir: Path
    run_settings: dict[str, Any]  # TrainingArguments overrides (epochs, lr, batch size, bf16, ...)
    early_stopping: int | None = 3
    label_names: Mapping[str, Sequence[str] | None] = field(default_factory=dict)  # task -> class names
    lora_rank: int | None = None  # LoRA adapters on the et-fuser row (fusion attention, and a ViT canonical's)
    resume: bool = False  # continue every run from its newest checkpoint, where it has one

    def collator(self, task: FaceTask, model: Any) -> FaceCollator:
        config = model.config
        return FaceCollator(self.processor, task.column, len(self.label_names.get(task.name) or ()),
                            use_cached_features=config.fusion_properties.runs_priors,
                            include_pixel_values=config.backbone is not None, problem_type=task.problem_type)


def train_row(row: ProtocolRow, task: FaceTask, seed: int, context: ProtocolContext,
              train: datasets.Dataset | None = None, keep_model: Callable[[Any], None] | None = None,
              learning_rate: float | None = None, evaluate_test: bool = True, **overrides: Any) -> VariantResult:
    """Trains `row` for `task` with `seed` (the model's initialisation and the data order) and returns its test-split
    result with validation metrics and parameter counts. `train` replaces the training split (label fractions);
    `keep_model` receives the trained model (the run folder saves the main row's); `learning_rate` replaces the
    row's own (`task.row_learning_rate`); `evaluate_test=False` (validation sweeps) never predicts the test split and
    reports validation."""
    train = context.splits["train"] if train is None else train
    if row.probe:
        return best_prior_probe(task, seed, context, train, evaluate_test)
    import torch

    torch.manual_seed(seed)
    fusion = task.fusion if row.name == MAIN_ROW or row.overrides.get("fusion_mode") is None else {}
    model = build_task_model(task, context.prior_dirs, context.label_names.get(task.name), context.image_size,
                             **{**fusion, **row.overrides, **task.row_overrides.get(row.name, {}), **overrides})
    collator = context.collator(task, model)
    trained = apply_lora(model, context.lora_rank) if context.lora_rank and row.name == MAIN_ROW else model
    checkpoints = context.output_dir / "checkpoints" / task.name / f"{row.name}-seed{seed}"
    resume = context.resume and any(checkpoints.glob("checkpoint-*"))
    settings = {"learning_rate": task.row_learning_rate(row.name), **context.run_settings, "seed": seed, "data_seed": seed}
    if learning_rate is not None:  # a sweep's candidate rate wins over every other
        settings["learning_rate"] = learning_rate
    result, _ = train_variant(
        row.name, row.description, trained, train, context.splits["validation"], collator, checkpoints,
        early_stopping_patience=context.early_stopping, resume_from_checkpoint=resume or None,
        test_dataset=context.splits["test"] if evaluate_test else None, **settings)
    result.params = count_parameters(model)
    if trained is not model:
        result.params["params_trainable"] = sum(p.numel() for p in trained.parameters() if p.requires_grad)
        result.description += f" (LoRA rank {context.lora_rank}, merged)"
        model = trained.merge_and_unload()
    if keep_model is not None:
        keep_model(model)
    return result


def best_prior_probe(task: FaceTask, seed: int, context: ProtocolContext, train: datasets.Dataset,
                     evaluate_test: bool = True) -> VariantResult:
    """A linear probe on each frozen prior's cached feature; the one best on validation is reported on test."""
    data = {"train": train, "validation": context.splits["validation"],
            **({"test": context.splits["test"]} if evaluate_test else {})}
    candidates = []
    for name in task_priors(task, list(context.prior_dirs)):
        features = {split: pooled_prior_features(rows, [name]) for split, rows in data.items()}
        targets = {split: np.asarray(rows[task.column], np.float32 if not task.is_classification else np.int64)
                   for split, rows in data.items()}
        result = fit_probe(f"probe-{name}", f"linear probe on the frozen {name} prior", features["train"],
                           targets["train"], features["validation"], targets["validation"], seed=seed,
                           problem_type=task.problem_type, test_features=features.get("test"),
                           test_labels=targets.get("test"))
        candidates.append((name, result, features["train"].shape[1]))
    sign = 1.0 if task.greater_is_better else -1.0
    name, best, width = max(candidates, key=lambda item: sign * item[1].validation_metrics[task.metric])
    best.name, best.description = "probe-best-prior", f"linear probe on the best single prior ({name}, on validation)"
    probe = int(np.prod(best.logits.shape[1:])) * (width + 1)
    best.params = {"params_total": saved_parameter_count(context.prior_dirs[name]) + probe, "params_trainable": probe}
    return best


def saved_parameter_count(folder: str | os.PathLike) -> int:
    """Parameters in a saved folder's model.safetensors, read from its header (no weights loaded)."""
    from safetensors import safe_open

    with safe_open(str(Path(folder) / "model.safetensors"), framework="np") as weights:
        return sum(int(np.prod(weights.get_slice(key).get_shape())) for key in weights.keys())


@dataclass(frozen=True)
class ProtocolJob:
    """One independent training run of the comparison; `save_to` keeps its trained model as a saved folder."""

    row: ProtocolRow
    task: FaceTask
    seed: int
    overrides: Mapping[str, Any] = field(default_factory=dict)
    train: datasets.Dataset | None = None
    save_to: Path | None = None
    learning_rate: float | None = None  # None: the row's own on this task
    evaluate_test: bool = True  # False in validation sweeps


def _run_job(job: ProtocolJob, context: ProtocolContext, threads: int | None) -> VariantResult:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    keep = (lambda model: model.save_pretrained(job.save_to)) if job.save_to is not None else None
    return train_row(job.row, job.task, job.seed, context, train=job.train, keep_model=keep,
                     learning_rate=job.learning_rate, evaluate_test=job.evaluate_test, **job.overrides)


def run_jobs(jobs: Sequence[ProtocolJob], context: ProtocolContext, workers: int = 1,
             report: Callable[[ProtocolJob, VariantResult], None] | None = None) -> list[VariantResult]:
    """Runs `jobs` (results in `jobs` order). With `workers > 1` they run in that many spawned processes of one
    torch thread each: the runs are independent and seeded, so the results do not depend on the schedule, and on
    small canonical models one thread per run uses the cores better than threads inside one run."""
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(_run_job(job, context, None))
            if report is not None:
                report(job, results[-1])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_job, job, context, 1) for job in jobs]
        results = []
        for job, future in zip(jobs, futures):
            results.append(future.result())
            if report is not None:
                report(job, results[-1])
    return results
