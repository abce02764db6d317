"""One run (one model, one seed) with the 🤗 Trainer: bf16 on CPU, early stopping, resume, optional LoRA; and
`RunResult`, what a run gives the tables."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from ...data.collators import FaceCollator, MultiTaskFaceCollator
from ...metrics import (
    DEFAULT_METRICS,
    GREATER_IS_BETTER,
    make_compute_metrics,
    make_multitask_compute_metrics,
    per_example_scores,
    predictions_from_outputs,
)
from ...models.input_checks import BACKBONE_CROP_KEY, WINDOW_SUFFIX
from ...models.modeling_etfuser import ETFuserPreTrainedModel
from ...models.modeling_multitask import ETFuserForMultiTaskFaceAnalysis
from .measurements import gate_magnitude
from .processes import trains_on_cpu


@dataclass
class RunResult:
    """Everything the comparison tables need of one trained run, on the split it is reported on (`split`): the test
    split when training was given one, else the validation split it was selected on."""

    name: str
    description: str
    predictions: np.ndarray  # (N,) class ids, (N, L) multi-hot, (N, 1) values, or (N, K, 2) landmarks
    logits: np.ndarray  # (N, num_labels) head output (landmarks: (N, K, 2))
    metrics: dict[str, float]
    log_history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    validation_metrics: dict[str, float] = field(default_factory=dict)
    scores: np.ndarray | None = None  # (N,) per-example term of the headline metric on `split` (per_example_scores)
    split: str = "validation"
    params: dict[str, int] = field(default_factory=dict)
    learning_rate: float | None = None  # the new modules' (and head's) rate the run trained with; None: a probe
    canonical_learning_rate_scale: float = 1.0  # the canonical model's share of `learning_rate`
    gate_magnitude: float | None = None  # mean |tanh(g)| of the selected checkpoint's fusion gate; None: no gate
    real_face_agreement: float | None = None  # agreement with the pretrained canonical net on real faces (forgetting.py)
    augmentation: str | None = None  # the training split's augmentation (`views.Augmentation.label`); None: a probe


CLASS_PROBLEM_TYPES = ("single_label_classification", "multi_label_classification")


class GateMagnitudeCallback(TrainerCallback):
    """Adds `gate_magnitude` (mean |tanh(g)| of the fusion gate) to every log entry of `state.log_history`, so a
    run's record shows how far, and when, the gate opened."""

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        value = gate_magnitude(model) if model is not None else None
        if value is not None and logs is not None:
            logs["gate_magnitude"] = state.log_history[-1]["gate_magnitude"] = round(value, 6)


# Parameters trained without weight decay besides the Trainer's own (biases, norms): the zero-initialised fusion gate,
# which decay would pull back towards closed whatever the task loss says.
NO_DECAY_PARAMETERS = ("fusion_gate",)


def release_autocast(model: nn.Module) -> None:
    """Undoes what an earlier Trainer's accelerate did to `model`: its `forward` wrapped in that Trainer's autocast,
    and a mark that makes every later Trainer leave the model as it is. Without this a model trained in bf16 trains
    or evaluates in bf16 under the next Trainer whatever its arguments say (and one first trained in fp32 never
    computes in bf16): a second Trainer would silently measure or train in the first one's precision."""
    if getattr(model, "_is_accelerate_prepared", False):
        extract_model_from_parallel(model, keep_fp32_wrapper=False)
        model._is_accelerate_prepared = False


def refuse_loss_bypass(args: TrainingArguments, compute_loss_func: Any) -> None:
    """The Trainer's own label smoothing and loss function replace the model's loss with one computed from the logits
    alone, silently dropping the ensemble head's deep supervision and the auxiliary tasks computed inside the model:
    refused, naming the model's own options."""
    if args.label_smoothing_factor:
        raise ValueError(f"label_smoothing_factor={args.label_smoothing_factor}: the Trainer's label smoothing would "
                         "replace ET-Fuser's loss and drop its deep supervision; set the model's own "
                         "`config.label_smoothing` instead.")
    if compute_loss_func is not None:
        raise ValueError("compute_loss_func: a Trainer loss function would replace ET-Fuser's loss and drop its deep "
                         "supervision; the model's loss takes `config.class_weights` and `config.label_smoothing` "
                         "(and `regression_loss` / `landmark_loss`) instead.")


class ETFuserTrainer(Trainer):
    """`Trainer` whose optimizer gives a pretrained canonical model (`etfuser.backbone`) its own learning rate:
    `config.backbone_learning_rate_scale` times that of the new modules (fusion, projections, heads), so the new
    modules can move fast without dragging the pretrained weights away from what they already know; which does not
    weight-decay `NO_DECAY_PARAMETERS`; and which, given a `teacher` (`distillation.CanonicalTeacher`), adds its
    distillation term to the training loss (evaluation losses stay the task's own). A model that an earlier Trainer
    prepared computes in this Trainer's precision, not in that one's (`release_autocast`)."""

    def __init__(self, *args: Any, teacher: nn.Module | None = None,
                 train_sampler: torch.utils.data.Sampler | None = None, train_collator: Callable | None = None,
                 **kwargs: Any):
        model = kwargs.get("model", args[0] if args else None)
        if model is not None:
            release_autocast(model)
        super().__init__(*args, **kwargs)
        refuse_loss_bypass(self.args, self.compute_loss_func)
        self.teacher = teacher
        self.train_sampler, self.train_collator = train_sampler, train_collator

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        """`train_sampler` where given (`views.EpochSampler`: one view per image per epoch, or class-balanced
        draws), else the Trainer's own shuffling."""
        if self.train_sampler is None:
            return super()._get_train_sampler(train_dataset)
        return self.train_sampler

    def get_train_dataloader(self):
        """Batches of the training split through `train_collator` where given (online augmentation: training batches
        are augmented, evaluation batches never)."""
        if self.train_collator is None:
            return super().get_train_dataloader()
        evaluation, self.data_collator = self.data_collator, self.train_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = evaluation

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.teacher is not None and model.training:
            crops = inputs.get("prior_crops") or {}
            loss = loss + self.teacher.loss(outputs["logits"], inputs["pixel_values"], crops.get(BACKBONE_CROP_KEY),
                                            crops.get(BACKBONE_CROP_KEY + WINDOW_SUFFIX))
        return (loss, outputs) if return_outputs else loss

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return [name for name in super().get_decay_parameter_names(model)
                if name.split(".")[-1] not in NO_DECAY_PARAMETERS]

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        model = self.model if model is None else model
        scale = float(getattr(getattr(model, "config", None), "backbone_learning_rate_scale", 1.0))
        if self.optimizer is not None or scale == 1.0:
            return super().create_optimizer(model)
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                groups.setdefault((".backbone." in f".{name}", name in decay), []).append(parameter)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        learning_rate = optimizer_kwargs.pop("lr", self.args.learning_rate)
        self.optimizer = optimizer_cls(
            [{"params": parameters, "lr": learning_rate * (scale if in_backbone else 1.0),
              "weight_decay": self.args.weight_decay if decayed else 0.0}
             for (in_backbone, decayed), parameters in groups.items()],
            lr=learning_rate, **optimizer_kwargs)
        return self.optimizer


def training_arguments(output_dir: str | os.PathLike, **overrides: Any) -> TrainingArguments:
    """The defaults of every run: CPU, no reporting, evaluation and saving per epoch, best model kept."""
    settings = dict(
        output_dir=str(output_dir), use_cpu=trains_on_cpu(), report_to="none", num_train_epochs=6,
        per_device_train_batch_size=32, per_device_eval_batch_size=64, learning_rate=3e-4, weight_decay=0.05,
        warmup_steps=0.1, lr_scheduler_type="cosine", eval_strategy="epoch", save_strategy="epoch",
        save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="accuracy", logging_steps=10,
        remove_unused_columns=False, dataloader_num_workers=0, seed=0, disable_tqdm=False,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


# Top-level modules of a converted face network that hold its own output head: the fused model reads its pooled
# feature instead (unless the canonical model's feature is "logits"), so an adapter there would never learn.
CANONICAL_OWN_HEADS = ("head", "classifier")


def lora_target_modules(model: ETFuserPreTrainedModel) -> list[str]:
    """The canonical model's layers that LoRA adapts, by full module name: every `nn.Linear` and every ungrouped
    plain `nn.Conv2d` of `etfuser.backbone` (a ViT's projections and MLPs; the converted CNNs' stems, strided and
    pointwise convs, stride-1 "same" convs), outside the network's own output head. Depthwise convs and conv
    subclasses that pad in their own forward (`TFSamePadConv2d`: the stride-2 "same" convs) are left alone: peft's
    adapter conv would not match their output."""
    base = model.base_model
    if base.backbone is None:
        return []
    reads_head = model.config.backbone.feature == "logits"
    targets = []
    for name, module in base.backbone.named_modules():
        if not reads_head and name.split(".")[0] in CANONICAL_OWN_HEADS:
            continue
        if type(module) is nn.Linear or (type(module) is nn.Conv2d and module.groups == 1):
            targets.append(f"{model.base_model_prefix}.backbone.{name}")
    return targets


def apply_lora(model: ETFuserPreTrainedModel, rank: int = 8):
    """Wraps `model` with LoRA adapters of `rank` on the canonical model's layers (`lora_target_modules`); every new
    module (prior projections, ensemble tokens, fusion layers or concatenation MLP, gate, `ensemble_to_backbone`,
    deep-supervision head, classifier) trains fully; the priors stay frozen. The adapter file alone does not hold the
    new modules: keep the merged model (`merge_and_unload`), as the protocol does. Raises a clear error where the
    canonical model has no layer an adapter fits, or where there is no canonical model."""
    from peft import LoraConfig, get_peft_model

    base = model.base_model
    if base.backbone is None:
        raise ValueError(f"--lora adapts the canonical model, but this model (fusion_mode="
                         f"{model.config.fusion_mode!r}) has none; its modules are all new and train fully.")
    targets = lora_target_modules(model)
    if not targets:
        raise ValueError(f"--lora: the canonical model {type(base.backbone).__name__} has no layer LoRA can adapt "
                         f"(nn.Linear, or nn.Conv2d without groups or own padding); train it without --lora.")
    frozen = (f"{model.base_model_prefix}.backbone.", f"{model.base_model_prefix}.priors.")
    wrapped = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets))
    for name, parameter in model.named_parameters():  # the same objects the wrapper trains
        if not name.startswith(frozen):
            parameter.requires_grad_(True)
    return wrapped


def _fit(model: nn.Module, train_dataset: datasets.Dataset, eval_dataset: datasets.Dataset, collator: FaceCollator,
         output_dir: str | os.PathLike, compute_metrics: Callable, early_stopping_patience: int | None,
         resume_from_checkpoint: str | bool | None, teacher: nn.Module | None = None,
         train_sampler: torch.utils.data.Sampler | None = None, train_collator: FaceCollator | None = None,
         **argument_overrides: Any):
    """One Trainer run: (trainer, the selected checkpoint's `eval_*` metrics on `eval_dataset`, training seconds)."""
    args = training_arguments(output_dir, **argument_overrides)
    callbacks = [GateMagnitudeCallback()]
    callbacks += [EarlyStoppingCallback(early_stopping_patience)] if early_stopping_patience else []
    trainer = ETFuserTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                             data_collator=collator, compute_metrics=compute_metrics, callbacks=callbacks,
                             teacher=teacher, train_sampler=train_sampler, train_collator=train_collator)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    seconds = time.perf_counter() - start
    validation = selected_evaluation(trainer) or trainer.predict(eval_dataset, metric_key_prefix="eval").metrics
    return trainer, validation, seconds


def selected_evaluation(trainer: Trainer) -> dict[str, float] | None:
    """The metrics (`eval_*`) of the evaluation that selected the checkpoint `load_best_model_at_end` restored, read
    from the log: evaluating the restored weights again would give the same numbers at the cost of another pass over
    the validation split. None where no checkpoint was selected."""
    best, key = trainer.state.best_model_checkpoint, f"eval_{trainer.args.metric_for_best_model}"
    if not (trainer.args.load_best_model_at_end and best):
        return None
    step = int(os.path.basename(os.path.normpath(best)).rpartition("-")[2])
    return next((entry for entry in trainer.state.log_history if entry.get("step") == step and key in entry), None)


def train_model(
    name: str,
    description: str,
    model: nn.Module,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    collator: FaceCollator,
    output_dir: str | os.PathLike,
    early_stopping_patience: int | None = 3,
    resume_from_checkpoint: str | bool | None = None,
    test_dataset: datasets.Dataset | None = None,
    teacher: nn.Module | None = None,
    metric_names: Sequence[str] | None = None,
    select_on: str | None = None,
    train_sampler: torch.utils.data.Sampler | None = None,
    train_collator: FaceCollator | None = None,
    **argument_overrides: Any,
) -> tuple[RunResult, Trainer]:
    """Fine-tunes `model` with the Trainer (one run). Early stopping and the best checkpoint read `eval_dataset` (the
    validation split) only, by `select_on` (default: the first of `metric_names`, default the problem type's,
    `DEFAULT_METRICS`); `train_sampler` replaces the Trainer's shuffling (`views.EpochSampler`) and `train_collator`
    batches the training split (online augmentation);
    `test_dataset`, when given, is predicted once, at the end, with the selected checkpoint, and is what the result
    reports (`result.split == "test"`): every metric of `metric_names`, and the headline's per-example scores for
    the paired tests. `teacher` adds its distillation term in training. Every split is read through
    `collator.view` (only the columns the collator reads)."""
    problem_type = collator.problem_type
    keys = tuple(metric_names or DEFAULT_METRICS[problem_type])
    config = getattr(model, "config", None)
    interocular = tuple(getattr(config, "interocular_indices", None) or (36, 45))
    train_dataset, eval_dataset = (train_collator or collator).view(train_dataset), collator.view(eval_dataset)
    test_dataset = collator.view(test_dataset) if test_dataset is not None else None
    classes = collator.num_labels if problem_type in CLASS_PROBLEM_TYPES else None
    compute_metrics = make_compute_metrics(problem_type, classes, interocular)
    selected = select_on or keys[0]
    selection = {"metric_for_best_model": selected, "greater_is_better": GREATER_IS_BETTER[selected]}
    keys = tuple(dict.fromkeys(keys + (selected,)))
    trainer, validation, seconds = _fit(model, train_dataset, eval_dataset, collator, output_dir, compute_metrics,
                                        early_stopping_patience, resume_from_checkpoint, teacher, train_sampler,
                                        train_collator, **{**selection, **argument_overrides})
    reported = trainer.predict(test_dataset if test_dataset is not None else eval_dataset)
    outputs = reported.predictions[0] if isinstance(reported.predictions, tuple) else reported.predictions

    def metrics_of(metrics: Mapping[str, float]) -> dict[str, float]:
        return {name: float(value) for name, value in ((key.partition("_")[2], value) for key, value in metrics.items())
                if name in keys}

    labels = np.asarray(reported.label_ids)
    scores = per_example_scores(keys[0], problem_type, outputs, labels, interocular)
    result = RunResult(name, description, predictions_from_outputs(problem_type, outputs), outputs,
                       metrics_of(reported.metrics), trainer.state.log_history, seconds, metrics_of(validation), scores,
                       "test" if test_dataset is not None else "validation", gate_magnitude=gate_magnitude(model))
    return result, trainer


def train_multitask_model(
    name: str,
    description: str,
    model: ETFuserForMultiTaskFaceAnalysis,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    collator: MultiTaskFaceCollator,
    output_dir: str | os.PathLike,
    early_stopping_patience: int | None = 3,
    test_dataset: datasets.Dataset | None = None,
    **argument_overrides: Any,
) -> tuple[dict[str, RunResult], Trainer]:
    """`train_model` for a multi-task model with single-label branches: one `RunResult` per task (its branch's
    predictions on `test_dataset`, else on `eval_dataset`), the best checkpoint chosen on `eval_dataset` by the mean
    of the tasks' accuracies."""
    trainer, validation, seconds = _fit(
        model, train_dataset, eval_dataset, collator, output_dir, make_multitask_compute_metrics(model.config.tasks),
        early_stopping_patience, None, label_names=model.trainer_label_names, metric_for_best_model="mean_accuracy",
        **argument_overrides)
    reported = trainer.predict(test_dataset if test_dataset is not None else eval_dataset)
    logits = reported.predictions[0] if isinstance(reported.predictions, tuple) else reported.predictions
    labels = reported.label_ids if isinstance(reported.label_ids, (tuple, list)) else (reported.label_ids,)
    results = {}
    for (task, task_labels) in zip(model.config.tasks, labels):
        metrics = {metric: float(reported.metrics[f"test_{task}_{metric}"]) for metric in ("accuracy", "macro_f1")}
        predictions = np.asarray(logits[task]).argmax(-1)
        results[task] = RunResult(
            name, f"{description} ({task} branch)", predictions, np.asarray(logits[task]), metrics,
            trainer.state.log_history, seconds,
            {metric: float(validation[f"eval_{task}_{metric}"]) for metric in ("accuracy", "macro_f1")},
            (predictions == np.asarray(task_labels)).astype(np.float64),
            "test" if test_dataset is not None else "validation")
    return results, trainer
