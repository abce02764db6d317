"""Training, evaluation and comparison of ET-Fuser with `transformers.Trainer`: the logic behind `training/train.py`.

- `build_etfuser_from_face_priors`: ET-Fuser on the real converted face priors and a small ViT backbone.
- `VARIANTS` / `register_variant`: the comparison entries (baselines, ablations, companion-paper tasks) as overrides
  of the default recipe; one line adds a new one.
- `PriorFeatureCache`: frozen priors run once per image; features stored as Arrow columns keyed by the image content
  hash and the priors' fingerprint (weights + input contract), reused across runs and variants.
- `FaceCollator`: images -> `pixel_values`, label column -> `labels`, cached columns -> `prior_features`.
- `train_variant`: one Trainer run (bf16 on CPU, early stopping, resume, optional LoRA) returning eval predictions;
  `train_multitask_variant` / `MultiTaskFaceCollator` / `multitask_comparison` do the same for
  `ETFuserForMultiTaskFaceAnalysis` and compare it with single-task models.
- `paired_bootstrap_pvalue`, `mcnemar_pvalue`: significance of one model against another on the same eval set.
- `write_run_folder`: metrics.json, results.md and plots in the documented run-folder format.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments, ViTConfig

from ..models.configuration_etfuser import ETFuserConfig
from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..metrics import accuracy, macro_f1, make_compute_metrics, make_multitask_compute_metrics
from ..models.modeling_etfuser import ETFuserForImageClassification, ETFuserPreTrainedModel
from ..models.modeling_multitask import ETFuserForMultiTaskFaceAnalysis

DEFAULT_PRIORS = ("face_recognition", "face_landmarks", "age", "expression")
PRIOR_COLUMN_PREFIX = "prior__"


def small_vit_backbone(image_size: int = 112) -> ViTConfig:
    """The canonical task backbone of the default recipe: a ViT-Tiny-width, 4-layer ViT/16 trained from scratch."""
    return ViTConfig(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=384,
                     image_size=image_size, patch_size=16)


def build_etfuser_from_face_priors(
    prior_dirs: Mapping[str, str | os.PathLike],
    label_names: Sequence[str] | Mapping[str, Sequence[str]],
    image_size: int = 112,
    **config_overrides: Any,
) -> ETFuserForImageClassification | ETFuserForMultiTaskFaceAnalysis:
    """ET-Fuser from converted prior folders (`ensure_face_priors()`): classification over `label_names`, or, given a
    mapping `{task: label names}`, an `ETFuserForMultiTaskFaceAnalysis` with one single-label branch per task on the
    same recipe.

    The default recipe adds the ensemble token to the pooled output of a ViT trained from scratch: on a few thousand
    images this learns fastest of the fusion modes (prepend_token needs more data and a lower learning rate; see
    the --ablations table)."""
    settings = dict(
        backbone=small_vit_backbone(image_size), image_size=image_size, hidden_size=192, num_attention_heads=4,
        intermediate_size=384, num_hidden_layers=2, attention_mask_strategy="full", fusion_mode="add_to_pooled",
    )
    if isinstance(label_names, Mapping):
        settings["tasks"] = {task: {"problem_type": "single_label_classification", "label_names": list(names)}
                             for task, names in label_names.items()}
        model_class = ETFuserForMultiTaskFaceAnalysis
    else:
        settings.update(id2label=dict(enumerate(label_names)), label2id={name: i for i, name in enumerate(label_names)},
                        problem_type="single_label_classification")
        model_class = ETFuserForImageClassification
    settings.update(config_overrides)
    return model_class.from_priors_pretrained(priors=dict(prior_dirs), **settings)


@dataclass(frozen=True)
class Variant:
    """One entry of the comparison: ET-Fuser built by `build_etfuser_from_face_priors` with `overrides` of the default
    recipe (ETFuserConfig keyword arguments), on the first `num_priors` of the selected priors where that is set."""

    description: str
    group: str  # "baseline" (always trained), "ablation" (--ablations) or "companion" (--companion)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    num_priors: int | None = None


VARIANT_GROUPS = ("baseline", "ablation", "companion")
VARIANTS: dict[str, Variant] = {}


def register_variant(name: str, description: str, group: str = "ablation", num_priors: int | None = None,
                     **overrides: Any) -> Variant:
    """Adds `name` to `VARIANTS` (e.g. `register_variant("mask-isolated", "...", attention_mask_strategy="isolated")`);
    `training/train.py` trains it under `--ablations`, `--companion` or `--variants name`."""
    if group not in VARIANT_GROUPS:
        raise ValueError(f"group must be one of {VARIANT_GROUPS}, got {group!r}.")
    if name in VARIANTS or name == "et-fuser":
        raise ValueError(f"variant {name!r} is already registered.")
    VARIANTS[name] = Variant(description, group, dict(overrides), num_priors)
    return VARIANTS[name]


register_variant("backbone-only", "the ViT backbone alone (fusion_mode=none, no priors)", "baseline",
                 fusion_mode="none")
register_variant("mask-ensemble-reads-priors", "ET-Fuser ablation: attention_mask_strategy=ensemble_reads_priors",
                 attention_mask_strategy="ensemble_reads_priors")
register_variant("mask-isolated", "ET-Fuser ablation: attention_mask_strategy=isolated",
                 attention_mask_strategy="isolated")
register_variant("fusion-prepend-token", "ET-Fuser ablation: fusion_mode=prepend_token", fusion_mode="prepend_token")
register_variant("fusion-concat-before-head", "ET-Fuser ablation: fusion_mode=concat_before_head",
                 fusion_mode="concat_before_head")
register_variant("fusion-priors-only", "ET-Fuser ablation: fusion_mode=priors_only (no backbone)",
                 fusion_mode="priors_only", backbone=None)
for _count in (1, 2, 3):
    register_variant(f"priors-{_count}", f"ET-Fuser ablation: only the first {_count} selected prior(s)",
                     num_priors=_count)
register_variant("aux-jigsaw", "ET-Fuser + HMTL jigsaw puzzling (3x3 grid, weight 0.1)", "companion",
                 auxiliary_tasks={"jigsaw": {"grid": 3}})
register_variant("aux-inpainting", "ET-Fuser + HMTL in-painting (L1 + perceptual loss on the first prior)",
                 "companion", auxiliary_tasks={"inpainting": True})
register_variant("aux-multilevel", "ET-Fuser + pixel / patch / component face-prior tasks", "companion",
                 auxiliary_tasks={"masked_pixels": True, "landmark_heatmap": True, "components": True})


def check_label_column(dataset: datasets.Dataset, column: str, num_labels: int, split: str = "dataset") -> None:
    """Raises a ValueError naming the first rows whose `column` is not a class id in 0..num_labels-1 (a corrupt
    manifest or a label set that changed), before any training time is spent."""
    if len(dataset) == 0:
        raise ValueError(f"{split}: dataset is empty.")
    if column not in dataset.column_names:
        raise ValueError(f"{split}: no column {column!r}; columns: {dataset.column_names}.")
    values = dataset[column]
    bad = [index for index, value in enumerate(values)
           if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < num_labels]
    if bad:
        shown = ", ".join(f"row {index}: {values[index]!r}" for index in bad[:5])
        raise ValueError(f"{split}: {len(bad)} label(s) in {column!r} outside id2label (0..{num_labels - 1}): {shown}.")


def encode_label_column(data: datasets.Dataset | datasets.DatasetDict, column: str
                        ) -> datasets.Dataset | datasets.DatasetDict:
    """Makes `column` a `ClassLabel` (a manifest's plain integer or string labels), with one label set shared by all
    splits: names are the distinct values, sorted (numerically for integers). A ClassLabel column is left alone."""
    splits = data if isinstance(data, datasets.DatasetDict) else {"data": data}
    for name, split in splits.items():
        if column not in split.features:
            raise ValueError(f"{name} split: no column {column!r}; columns: {list(split.features)}.")
    feature = next(iter(splits.values())).features[column]
    if isinstance(feature, datasets.ClassLabel):
        return data
    if not isinstance(feature, datasets.Value) or not (feature.dtype == "string" or "int" in feature.dtype):
        raise ValueError(f"column {column!r} must hold class labels (ClassLabel, integers or strings), got {feature}.")
    values = sorted({value for split in splits.values() for value in split[column]})
    index = {value: position for position, value in enumerate(values)}
    class_label = datasets.ClassLabel(names=[str(value) for value in values])

    def encode(split: datasets.Dataset) -> datasets.Dataset:
        features = split.features.copy()
        features[column] = class_label
        return split.map(lambda batch: {column: [index[value] for value in batch[column]]}, batched=True,
                         features=features, desc=f"encoding {column!r} as ClassLabel")

    if isinstance(data, datasets.DatasetDict):
        return datasets.DatasetDict({name: encode(split) for name, split in data.items()})
    return encode(data)


# ----------------------------------------------------------------------------------------------------------------------
# Prior-feature cache
# ----------------------------------------------------------------------------------------------------------------------


def image_content_hash(image: Any) -> str:
    """sha256 of the decoded pixels (mode and size included), so re-encoding the same image hits the cache."""
    array = np.asarray(image.convert("RGB"))
    return hashlib.sha256(str(array.shape).encode() + array.tobytes()).hexdigest()


def prior_fingerprint(model: ETFuserPreTrainedModel, name: str) -> str:
    """Changes whenever the prior's weights, its config or its input contract (size, mean/std, ...) change."""
    base = model.base_model
    digest = hashlib.sha256(json.dumps(model.config.priors[name].to_dict(), sort_keys=True, default=str).encode())
    for key, tensor in sorted(base.priors[name].state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


class PriorFeatureCache:
    """Computes `model.etfuser.extract_prior_features` once per image and stores it as Arrow columns
    `prior__<name>` in `cache_dir`, under a file name made of the images' content hashes and the priors' fingerprints:
    a changed prior or preprocessing gets a new file, an unchanged one is read back instead of recomputed."""

    def __init__(self, model: ETFuserPreTrainedModel, processor: ETFuserImageProcessor, cache_dir: str | os.PathLike,
                 batch_size: int = 64):
        self.model, self.processor, self.batch_size = model, processor, batch_size
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.fingerprints = {name: prior_fingerprint(model, name) for name in model.config.priors}

    def key(self, dataset: datasets.Dataset, image_column: str = "image") -> str:
        digest = hashlib.sha256(json.dumps(self.fingerprints, sort_keys=True).encode())
        digest.update(json.dumps(self.processor.to_dict(), sort_keys=True, default=str).encode())
        for image in dataset[image_column]:
            digest.update(image_content_hash(image).encode())
        return digest.hexdigest()[:24]

    def __call__(self, dataset: datasets.Dataset, image_column: str = "image") -> datasets.Dataset:
        """Returns `dataset` with one `prior__<name>` column per prior ((tokens, feature_dim) float32 per row)."""
        if len(dataset) == 0:
            raise ValueError("dataset is empty: nothing to cache.")
        base = self.model.base_model
        cache_file = self.cache_dir / f"prior-features-{self.key(dataset, image_column)}.arrow"

        def extract(batch: dict[str, list]) -> dict[str, list]:
            pixel_values = self.processor(batch[image_column], return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                features = base.extract_prior_features(pixel_values)
            return {PRIOR_COLUMN_PREFIX + name: value.float().numpy() for name, value in features.items()}

        return dataset.map(extract, batched=True, batch_size=self.batch_size, cache_file_name=str(cache_file),
                           load_from_cache_file=True, desc="prior features (cached)")


# ----------------------------------------------------------------------------------------------------------------------
# Collation
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class FaceCollator:
    """Batches rows of a face dataset for ET-Fuser: `pixel_values` from `image_column`, `labels` from `label_column`
    and, where a `PriorFeatureCache` added them, `prior_features` from the `prior__<name>` columns."""

    processor: ETFuserImageProcessor
    label_column: str
    num_labels: int
    image_column: str = "image"
    use_cached_features: bool = True
    include_landmarks: bool = False  # for the landmark-based auxiliary tasks
    include_pixel_values: bool = True  # a priors_only model fed from the cache needs no pixels at all

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = self.label_batch(rows)
        if self.include_pixel_values:
            images = [row[self.image_column] for row in rows]
            batch["pixel_values"] = self.processor(images, return_tensors="pt")["pixel_values"]
        if self.include_landmarks:
            batch["landmarks"] = torch.tensor(np.stack([np.asarray(row["landmarks"], np.float32) for row in rows]))
        cached = [key for key in rows[0] if key.startswith(PRIOR_COLUMN_PREFIX)] if self.use_cached_features else []
        if cached:
            batch["prior_features"] = {
                key[len(PRIOR_COLUMN_PREFIX):]: torch.tensor(np.stack([np.asarray(row[key], np.float32) for row in rows]))
                for key in cached
            }
        return batch

    def label_batch(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"labels": class_ids(rows, self.label_column, self.num_labels)}


class MultiTaskFaceCollator(FaceCollator):
    """`FaceCollator` for `ETFuserForMultiTaskFaceAnalysis`: `<task>_labels` from each label column of `tasks`
    (`{column: number of classes}`; the Trainer's `label_names` are `model.trainer_label_names`) instead of `labels`."""

    def __init__(self, processor: ETFuserImageProcessor, tasks: Mapping[str, int], **options: Any):
        if not tasks:
            raise ValueError("tasks must name at least one label column, e.g. {'expression': 7, 'mask': 2}.")
        first = next(iter(tasks))
        super().__init__(processor, first, tasks[first], **options)
        self.tasks = dict(tasks)

    def label_batch(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {f"{column}_labels": class_ids(rows, column, num_labels) for column, num_labels in self.tasks.items()}


def class_ids(rows: Sequence[Mapping[str, Any]], column: str, num_labels: int) -> torch.Tensor:
    """(batch,) int64 class ids of `column`, or a ValueError naming the first one outside 0..num_labels-1."""
    labels = []
    for row in rows:
        label = row[column]
        if not isinstance(label, (int, np.integer)) or not 0 <= label < num_labels:
            raise ValueError(f"{column}: label {label!r} is outside id2label (0..{num_labels - 1}).")
        labels.append(int(label))
    return torch.tensor(labels)


# ----------------------------------------------------------------------------------------------------------------------
# Trainer runs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class VariantResult:
    """Everything the comparison table needs of one trained variant."""

    name: str
    description: str
    predictions: np.ndarray  # (N,) predicted class ids on the eval set
    logits: np.ndarray  # (N, num_labels)
    metrics: dict[str, float]
    log_history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


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


def fit_probe(
    name: str,
    description: str,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    hidden_size: int | None = None,
    epochs: int = 200,
    seed: int = 0,
) -> VariantResult:
    """Linear probe (`hidden_size=None`) or one-hidden-layer MLP on fixed features, full-batch AdamW with
    standardised inputs: the single-prior and concatenated-prior baselines."""
    torch.manual_seed(seed)
    x_train, x_eval = torch.tensor(train_features, dtype=torch.float32), torch.tensor(eval_features, dtype=torch.float32)
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train, x_eval = (x_train - mean) / std, (x_eval - mean) / std
    y_train = torch.tensor(train_labels, dtype=torch.long)
    num_labels = int(max(train_labels.max(), eval_labels.max())) + 1
    layers = [nn.Linear(x_train.shape[1], num_labels)] if hidden_size is None else [
        nn.Linear(x_train.shape[1], hidden_size), nn.GELU(), nn.Dropout(0.2), nn.Linear(hidden_size, num_labels)]
    probe = nn.Sequential(*layers)
    optimiser = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-2)
    start = time.perf_counter()
    for _ in range(epochs):
        optimiser.zero_grad()
        nn.functional.cross_entropy(probe(x_train), y_train).backward()
        optimiser.step()
    with torch.no_grad():
        logits = probe.eval()(x_eval).numpy()
    predictions = logits.argmax(-1)
    metrics = {"accuracy": accuracy(predictions, eval_labels), "macro_f1": macro_f1(predictions, eval_labels, num_labels)}
    return VariantResult(name, description, predictions, logits, metrics, seconds=time.perf_counter() - start)


def pooled_prior_features(dataset: datasets.Dataset, names: Iterable[str]) -> np.ndarray:
    """(N, sum of feature dims): each cached prior's tokens averaged, concatenated in `names` order."""
    columns = [np.asarray(dataset[PRIOR_COLUMN_PREFIX + name], dtype=np.float32).mean(axis=1) for name in names]
    return np.concatenate(columns, axis=1)


# ----------------------------------------------------------------------------------------------------------------------
# Significance
# ----------------------------------------------------------------------------------------------------------------------


def paired_bootstrap_pvalue(
    correct_a: np.ndarray, correct_b: np.ndarray, num_resamples: int = 5000, seed: int = 0
) -> float:
    """Two-sided paired bootstrap test of equal accuracy: resamples eval examples, recentres the accuracy difference
    under the null and returns the share of resampled differences at least as extreme as the observed one."""
    correct_a, correct_b = np.asarray(correct_a, np.float64), np.asarray(correct_b, np.float64)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError("correct_a and correct_b must be 1-D arrays over the same eval examples.")
    differences = correct_a - correct_b
    observed = differences.mean()
    if np.all(differences == 0):
        return 1.0
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(differences), (num_resamples, len(differences)))
    resampled = differences[indices].mean(axis=1) - observed
    return float((np.sum(np.abs(resampled) >= abs(observed)) + 1) / (num_resamples + 1))


def mcnemar_pvalue(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact (binomial) two-sided McNemar test on the discordant pairs."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_a, only_b) + 1)) / 2**discordant
    return float(min(1.0, 2 * tail))


# ----------------------------------------------------------------------------------------------------------------------
# Run folder
# ----------------------------------------------------------------------------------------------------------------------


def paired_pvalues(reference: VariantResult, other: VariantResult, labels: np.ndarray) -> tuple[float, float]:
    """p-values of `other` against `reference` on the same eval set, rounded to 4 places: (paired bootstrap over
    5000 resamples, two-sided; exact McNemar) on per-image correctness."""
    reference_correct, correct = reference.predictions == labels, other.predictions == labels
    return (round(paired_bootstrap_pvalue(reference_correct, correct), 4),
            round(mcnemar_pvalue(reference_correct, correct), 4))


def results_table(results: Sequence[VariantResult], main: str, labels: np.ndarray) -> list[dict[str, Any]]:
    """Rows of the comparison: metrics of each variant and its p-values against the `main` variant."""
    reference = next(result for result in results if result.name == main)
    rows = []
    for result in results:
        is_main = result.name == main
        p_bootstrap, p_mcnemar = (None, None) if is_main else paired_pvalues(reference, result, labels)
        rows.append({
            "variant": result.name,
            "description": result.description,
            "metrics": {key: round(value, 4) for key, value in result.metrics.items()},
            "p_value_vs_main": p_bootstrap,
            "mcnemar_p_vs_main": p_mcnemar,
            "test": "paired bootstrap (5000 resamples, two-sided); exact McNemar",
            "train_seconds": round(result.seconds, 1),
        })
    return rows


def render_results_markdown(rows: Sequence[Mapping[str, Any]], main: str) -> str:
    lines = [f"| variant | accuracy | macro-F1 | p (bootstrap) vs {main} | p (McNemar) vs {main} | description |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        p_boot = "—" if row["p_value_vs_main"] is None else f"{row['p_value_vs_main']:.4f}"
        p_mcnemar = "—" if row["mcnemar_p_vs_main"] is None else f"{row['mcnemar_p_vs_main']:.4f}"
        lines.append(f"| {row['variant']} | {row['metrics']['accuracy']:.4f} | {row['metrics']['macro_f1']:.4f} | "
                     f"{p_boot} | {p_mcnemar} | {row['description']} |")
    return "\n".join(lines) + "\n"


def multitask_comparison(
    single_task: Mapping[str, VariantResult],
    multi_task: Mapping[str, VariantResult],
    labels: Mapping[str, np.ndarray],
    single_task_params: Sequence[Mapping[str, int]],
    multi_task_params: Mapping[str, int],
) -> dict[str, Any]:
    """One multi-task model against one single-task model per task: per task both metrics and the p-values of the
    multi-task branch against the single-task model; parameters of the multi-task model against the single-task
    models together (`count_parameters` of each)."""
    rows = []
    for task, reference in single_task.items():
        p_bootstrap, p_mcnemar = paired_pvalues(reference, multi_task[task], labels[task])
        rows.append({
            "task": task,
            "single_task": {key: round(value, 4) for key, value in reference.metrics.items()},
            "multi_task": {key: round(value, 4) for key, value in multi_task[task].metrics.items()},
            "p_value": p_bootstrap,
            "mcnemar_p": p_mcnemar,
        })
    separate = {key: sum(params[key] for params in single_task_params) for key in ("params_total", "params_trainable")}
    return {"tasks": rows, "params": {"multi_task": {key: multi_task_params[key] for key in separate},
                                      "single_task_models": separate}}


def render_multitask_markdown(comparison: Mapping[str, Any]) -> str:
    lines = ["| task | single-task accuracy | multi-task accuracy | single-task macro-F1 | multi-task macro-F1 | "
             "p (bootstrap) | p (McNemar) |", "|---|---|---|---|---|---|---|"]
    for row in comparison["tasks"]:
        lines.append(f"| {row['task']} | {row['single_task']['accuracy']:.4f} | {row['multi_task']['accuracy']:.4f} | "
                     f"{row['single_task']['macro_f1']:.4f} | {row['multi_task']['macro_f1']:.4f} | "
                     f"{row['p_value']:.4f} | {row['mcnemar_p']:.4f} |")
    params = comparison["params"]
    lines += ["", "| parameters | one multi-task model | single-task models together |", "|---|---|---|"]
    for key, label in (("params_total", "total"), ("params_trainable", "trainable")):
        lines.append(f"| {label} | {params['multi_task'][key]:,} | {params['single_task_models'][key]:,} |")
    return "\n".join(lines) + "\n"


def mean_prior_attention(model: ETFuserPreTrainedModel, dataset: datasets.Dataset, collator: FaceCollator,
                         batch_size: int = 64) -> dict[str, float]:
    """The ensemble token's attention per prior (last fusion layer), averaged over `dataset`."""
    model.eval()
    totals, count = None, 0
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        batch.pop("labels")
        with torch.inference_mode():
            attention = model(**batch, output_attentions=True).prior_attention
        totals = attention.sum(0) if totals is None else totals + attention.sum(0)
        count += attention.shape[0]
    return {name: round(float(value) / count, 4) for name, value in zip(model.config.priors, totals)}


def save_plots(folder: Path, main: VariantResult, labels: np.ndarray, label_names: Sequence[str],
               prior_attention: Mapping[str, float]) -> list[str]:
    """Loss and metric curves, the confusion matrix and the per-prior attention bar chart of the main variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    history = main.log_history
    written = []
    figure, axis = plt.subplots(figsize=(5, 3.2))
    train = [(entry["epoch"], entry["loss"]) for entry in history if "loss" in entry]
    evaluation = [(entry["epoch"], entry["eval_loss"]) for entry in history if "eval_loss" in entry]
    for points, label in ((train, "train"), (evaluation, "eval")):
        if points:
            axis.plot(*zip(*points), marker="." if label == "eval" else None, label=label)
    axis.set(xlabel="epoch", ylabel="loss", title=f"{main.name}: loss")
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "loss_curve.png", dpi=120)
    written.append("loss_curve.png")

    figure, axis = plt.subplots(figsize=(5, 3.2))
    for key in ("eval_accuracy", "eval_macro_f1"):
        points = [(entry["epoch"], entry[key]) for entry in history if key in entry]
        if points:
            axis.plot(*zip(*points), marker="o", label=key.removeprefix("eval_"))
    axis.set(xlabel="epoch", ylabel="score", title=f"{main.name}: eval metrics", ylim=(0, 1))
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "metric_curve.png", dpi=120)
    written.append("metric_curve.png")

    matrix = np.zeros((len(label_names), len(label_names)), dtype=int)
    np.add.at(matrix, (labels, main.predictions), 1)
    figure, axis = plt.subplots(figsize=(5, 4.5))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axis.set_yticks(range(len(label_names)), label_names)
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, str(value), ha="center", va="center", fontsize=8)
    axis.set(xlabel="predicted", ylabel="true", title=f"{main.name}: confusion matrix")
    figure.tight_layout()
    figure.savefig(folder / "confusion_matrix.png", dpi=120)
    written.append("confusion_matrix.png")

    if prior_attention:
        figure, axis = plt.subplots(figsize=(5, 3))
        axis.bar(list(prior_attention), list(prior_attention.values()), color="tab:orange")
        axis.set(ylabel="share of attention", title="ensemble token attention per prior (eval mean)")
        figure.tight_layout()
        figure.savefig(folder / "prior_attention.png", dpi=120)
        written.append("prior_attention.png")
    plt.close("all")
    return written


def write_run_folder(folder: str | os.PathLike, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                     main: str) -> Path:
    """metrics.json (the documented schema) and results.md (with the multi-task comparison where `summary` has one
    under "multitask", from `multitask_comparison`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({**summary, "main_variant": main, "results": list(rows)}, indent=2))
    text = render_results_markdown(rows, main)
    if summary.get("multitask"):
        text += ("\n## One multi-task model against single-task models\n\n"
                 + render_multitask_markdown(summary["multitask"]))
    (folder / "results.md").write_text(text)
    return folder


def count_parameters(model: ETFuserPreTrainedModel) -> dict[str, int]:
    base = model.base_model
    total = sum(p.numel() for p in model.parameters())
    encoders = sum(p.numel() for p in base.priors.parameters())
    encoders += sum(p.numel() for p in base.backbone.parameters()) if base.backbone is not None else 0
    head = total - sum(p.numel() for p in base.parameters())
    return {"params_total": total, "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "params_fusion": total - encoders - head}


__all__ = [
    "DEFAULT_PRIORS", "VARIANTS", "FaceCollator", "MultiTaskFaceCollator", "PriorFeatureCache", "Variant",
    "VariantResult", "apply_lora", "build_etfuser_from_face_priors", "check_label_column", "class_ids",
    "count_parameters", "encode_label_column", "fit_probe", "image_content_hash", "mcnemar_pvalue",
    "mean_prior_attention", "multitask_comparison", "paired_bootstrap_pvalue", "paired_pvalues",
    "pooled_prior_features", "prior_fingerprint", "register_variant", "render_multitask_markdown", "results_table",
    "save_plots", "small_vit_backbone", "train_multitask_variant", "train_variant", "training_arguments",
    "write_run_folder",
]
