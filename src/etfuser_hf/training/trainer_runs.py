"""One Trainer run per variant (bf16 on CPU, early stopping, resume, optional LoRA), returning its eval predictions."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

from ..metrics import make_compute_metrics, make_multitask_compute_metrics
from ..models.modeling_etfuser import ETFuserPreTrainedModel
from ..models.modeling_multitask import ETFuserForMultiTaskFaceAnalysis
from .collators import FaceCollator, MultiTaskFaceCollator
from .variants import VariantResult


def training_arguments(output_dir: str | os.PathLike, **overrides: Any) -> TrainingArguments:
    """The defaults of every run: CPU, no reporting, evaluation and saving per epoch, best model kept."""
    settings = dict(
        output_dir=str(output_dir), use_cpu=not torch.cuda.is_available(), report_to="none", num_train_epochs=6,
        per_device_train_batch_size=32, per_device_eval_batch_size=64, learning_rate=3e-4, weight_decay=0.05,
        warmup_steps=0.1, lr_scheduler_type="cosine", eval_strategy="epoch", save_strategy="epoch",
        save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="accuracy", logging_steps=10,
        remove_unused_columns=False, dataloader_num_workers=0, seed=0, disable_tqdm=False,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


def apply_lora(model: ETFuserPreTrainedModel, rank: int = 8, include_fusion: bool = True):
    """Wraps `model` with LoRA adapters on the backbone's (and optionally the fusion module's) query/value projections;
    the classifier trains fully and is saved with the adapters."""
    from peft import LoraConfig, get_peft_model

    scope = "(backbone|fusion)" if include_fusion else "backbone"
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                        target_modules=rf".*etfuser\.{scope}\..*\.(query|value|q_proj|v_proj)",
                        modules_to_save=["classifier"])
    return get_peft_model(model, config)


def _fit(model: nn.Module, train_dataset: datasets.Dataset, eval_dataset: datasets.Dataset, collator: FaceCollator,
         output_dir: str | os.PathLike, compute_metrics: Callable, early_stopping_patience: int | None,
         resume_from_checkpoint: str | bool | None, **argument_overrides: Any):
    """One Trainer run: (trainer, eval-set prediction, training seconds)."""
    args = training_arguments(output_dir, **argument_overrides)
    callbacks = [EarlyStoppingCallback(early_stopping_patience)] if early_stopping_patience else []
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      data_collator=collator, compute_metrics=compute_metrics, callbacks=callbacks)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    seconds = time.perf_counter() - start
    return trainer, trainer.predict(eval_dataset), seconds


def train_variant(
    name: str,
    description: str,
    model: nn.Module,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    collator: FaceCollator,
    output_dir: str | os.PathLike,
    early_stopping_patience: int | None = 3,
    resume_from_checkpoint: str | bool | None = None,
    **argument_overrides: Any,
) -> tuple[VariantResult, Trainer]:
    """Fine-tunes one variant with the Trainer and returns its eval-set predictions and metrics."""
    trainer, prediction, seconds = _fit(
        model, train_dataset, eval_dataset, collator, output_dir,
        make_compute_metrics("single_label_classification", collator.num_labels), early_stopping_patience,
        resume_from_checkpoint, **argument_overrides)
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    metrics = {key.removeprefix("test_"): float(value) for key, value in prediction.metrics.items()
               if key.removeprefix("test_") in ("accuracy", "macro_f1")}
    result = VariantResult(name, description, logits.argmax(-1), logits, metrics, trainer.state.log_history, seconds)
    return result, trainer


def train_multitask_variant(
    name: str,
    description: str,
    model: ETFuserForMultiTaskFaceAnalysis,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    collator: MultiTaskFaceCollator,
    output_dir: str | os.PathLike,
    early_stopping_patience: int | None = 3,
    **argument_overrides: Any,
) -> tuple[dict[str, VariantResult], Trainer]:
    """`train_variant` for a multi-task model with single-label branches: one `VariantResult` per task (its branch's
    eval predictions), the best checkpoint chosen by the mean of the tasks' accuracies."""
    trainer, prediction, seconds = _fit(
        model, train_dataset, eval_dataset, collator, output_dir, make_multitask_compute_metrics(model.config.tasks),
        early_stopping_patience, None, label_names=model.trainer_label_names, metric_for_best_model="mean_accuracy",
        **argument_overrides)
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    results = {}
    for task in model.config.tasks:
        metrics = {metric: float(prediction.metrics[f"test_{task}_{metric}"]) for metric in ("accuracy", "macro_f1")}
        results[task] = VariantResult(name, f"{description} ({task} branch)", np.asarray(logits[task]).argmax(-1),
                                      np.asarray(logits[task]), metrics, trainer.state.log_history, seconds)
    return results, trainer
