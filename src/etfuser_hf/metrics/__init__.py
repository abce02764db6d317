"""Offline metrics for facial analysis.

`evaluate.load("accuracy")` downloads its script from the Hub, so the metrics ship here, twice over: as plain numpy
functions (used by the Trainer hook `make_compute_metrics`) and as local `evaluate` modules wrapping the same
functions (`load_metric("macro_f1")` == `evaluate.load(<package>/metrics/macro_f1)`), for users of `evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

METRIC_NAMES = ("accuracy", "macro_f1", "mae", "nme", "multilabel_f1")


def _paired(predictions, references, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Both as arrays of the same non-empty leading length, or a ValueError naming what differs."""
    predictions, references = np.asarray(predictions, dtype), np.asarray(references, dtype)
    if predictions.ndim == 0 or len(predictions) == 0:
        raise ValueError("predictions: expected at least one example, got none.")
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references must have the same length, got {len(predictions)} and "
                         f"{len(references)}.")
    return predictions, references


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Share of exact matches."""
    predictions, references = _paired(predictions, references)
    return float((predictions == references).mean())


def per_class_f1(predictions: Sequence[int], references: Sequence[int], classes: Sequence[int]) -> np.ndarray:
    """F1 of each class in `classes` (one-vs-rest); a class never predicted nor present scores 0."""
    predictions, references = _paired(predictions, references)
    scores = []
    for label in classes:
        true_positive = np.sum((predictions == label) & (references == label))
        denominator = np.sum(predictions == label) + np.sum(references == label)
        scores.append(2 * true_positive / denominator if denominator else 0.0)
    return np.asarray(scores, dtype=np.float64)


def macro_f1(predictions: Sequence[int], references: Sequence[int], num_labels: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes present in predictions or references (or all `num_labels`)."""
    classes = range(num_labels) if num_labels else np.union1d(np.asarray(predictions), np.asarray(references))
    return float(per_class_f1(predictions, references, classes).mean())


def mae(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Mean absolute error."""
    predictions, references = _paired(predictions, references, np.float64)
    if predictions.shape != references.shape:
        raise ValueError(f"predictions and references must have the same shape, got {predictions.shape} and "
                         f"{references.shape}.")
    return float(np.abs(predictions - references).mean())


def nme(predictions: np.ndarray, references: np.ndarray, interocular_indices: Sequence[int] = (36, 45)) -> float:
    """Inter-ocular normalised mean error: per image, the mean point-to-point error divided by the distance between
    the reference points `interocular_indices` (outer eye corners 36 and 45 in iBUG-68), averaged over images.
    `predictions`, `references`: (N, K, 2) or flattened (N, 2K), (x, y) per point, in any common unit."""
    import torch

    from ..models.modeling_etfuser import normalized_mean_error

    predictions, references = _paired(predictions, references, np.float64)
    if predictions.size != references.size or predictions.size % (2 * len(predictions)):
        raise ValueError(f"predictions and references must both be (N, K, 2) or (N, 2K) with the same K, got shapes "
                         f"{predictions.shape} and {references.shape}.")
    predictions = torch.from_numpy(predictions.reshape(len(predictions), -1, 2))
    references = torch.from_numpy(references.reshape(len(references), -1, 2))
    if max(interocular_indices) >= references.shape[1]:
        raise ValueError(f"interocular_indices {tuple(interocular_indices)} out of range for {references.shape[1]} points.")
    return float(normalized_mean_error(predictions, references, tuple(interocular_indices)).mean())


def multilabel_f1(predictions: np.ndarray, references: np.ndarray, average: str = "macro") -> float:
    """F1 for multi-hot (N, L) 0/1 arrays; `average` is "macro" (mean over labels) or "micro" (pooled counts)."""
    predictions, references = _paired(predictions, references)
    if predictions.shape != references.shape or predictions.ndim != 2:
        raise ValueError(f"predictions and references must both be multi-hot (N, L), got shapes {predictions.shape} "
                         f"and {references.shape}.")
    predictions, references = predictions.astype(bool), references.astype(bool)
    true_positive = (predictions & references).sum(axis=0)
    denominator = predictions.sum(axis=0) + references.sum(axis=0)
    if average == "micro":
        return float(2 * true_positive.sum() / denominator.sum()) if denominator.sum() else 0.0
    if average != "macro":
        raise ValueError(f"average must be 'macro' or 'micro', got {average!r}.")
    return float(np.mean(np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1), 0.0)))


_SKLEARN_CITATION = """@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython}, author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research}, volume={12}, pages={2825--2830}, year={2011}}"""
_NME_CITATION = """@inproceedings{sagonas2013300w,
  title={300 Faces in-the-Wild Challenge: The First Facial Landmark Localization Challenge},
  author={Sagonas, Christos and Tzimiropoulos, Georgios and Zafeiriou, Stefanos and Pantic, Maja},
  booktitle={ICCV Workshops}, year={2013}}"""


@dataclass(frozen=True)
class _MetricSpec:
    """What one packaged `evaluate` module computes and accepts."""

    function: Callable[..., float]
    features: tuple[dict, ...]  # alternatives: evaluate picks the one matching the first example
    defaults: dict[str, Any]
    description: str
    citation: str


def _value(dtype: str):
    import datasets

    return datasets.Value(dtype)


def _metric_specs() -> dict[str, _MetricSpec]:
    import datasets

    sequence = lambda dtype: datasets.Sequence(_value(dtype))  # noqa: E731
    nested = datasets.Sequence(datasets.Sequence(_value("float64")))
    pair = lambda feature: {"predictions": feature, "references": feature}  # noqa: E731
    return {
        "accuracy": _MetricSpec(accuracy, (pair(_value("int64")),), {},
                                "Accuracy: the share of predictions equal to their references.", _SKLEARN_CITATION),
        "macro_f1": _MetricSpec(macro_f1, (pair(_value("int64")),), {"num_labels": None},
                                "Macro-F1: the unweighted mean of per-class F1 over the classes present (or all "
                                "`num_labels` classes, absent ones scoring 0).", _SKLEARN_CITATION),
        "mae": _MetricSpec(mae, (pair(_value("float64")), pair(sequence("float64"))), {},
                           "Mean absolute error of scalar or vector regression targets (e.g. age in years).",
                           _SKLEARN_CITATION),
        "nme": _MetricSpec(nme, (pair(nested), pair(sequence("float64"))), {"interocular_indices": (36, 45)},
                           "Inter-ocular normalised mean error of facial landmarks: per image the mean point error "
                           "over the distance between the reference outer eye corners (iBUG-68 points 36 and 45). "
                           "Each example is (K, 2) nested or (2K,) flattened (x, y) coordinates.", _NME_CITATION),
        "multilabel_f1": _MetricSpec(multilabel_f1, (pair(sequence("int64")),), {"average": "macro"},
                                     "Multi-label F1 of multi-hot 0/1 vectors (e.g. CelebA attributes, action units): "
                                     "`average='macro'` (mean over labels) or 'micro' (pooled counts).",
                                     _SKLEARN_CITATION),
    }


def evaluate_metric_class(name: str) -> type:
    """The `evaluate.Metric` subclass of the packaged module `name`; each `metrics/<name>/<name>.py` is one line
    around it, because `evaluate.load(<folder>)` wants a script per metric."""
    import datasets
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"name must be one of {METRIC_NAMES}, got {name!r}.")
    spec = _metric_specs()[name]

    class PackagedMetric(evaluate.Metric):
        def _info(self) -> evaluate.MetricInfo:
            features = [datasets.Features(option) for option in spec.features]
            return evaluate.MetricInfo(
                module_type="metric",
                description=spec.description + " Shipped with etfuser_hf; loads offline.",
                citation=spec.citation,
                inputs_description="predictions, references: one per example. Keyword arguments: "
                + (", ".join(f"{key}={value!r}" for key, value in spec.defaults.items()) or "none") + ".",
                features=features[0] if len(features) == 1 else features,
                homepage="https://github.com/huggingface/evaluate",
            )

        def _compute(self, predictions, references, **kwargs):
            unknown = sorted(set(kwargs) - set(spec.defaults))
            if unknown:
                raise ValueError(f"{name}: unknown arguments {unknown}; expected {sorted(spec.defaults)}.")
            return {name: spec.function(predictions, references, **{**spec.defaults, **kwargs})}

    PackagedMetric.__name__ = PackagedMetric.__qualname__ = "".join(part.capitalize() for part in name.split("_"))
    return PackagedMetric


def load_metric(name: str):
    """The packaged `evaluate` module `name`, loaded offline from this folder."""
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"name must be one of {METRIC_NAMES}, got {name!r}.")
    return evaluate.load(str(Path(__file__).parent / name))


PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression", "landmarks")


def make_compute_metrics(
    problem_type: str,
    label_names: Sequence[str] | int | None = None,
    interocular_indices: Sequence[int] = (36, 45),
) -> Callable:
    """A `Trainer(compute_metrics=...)` hook: `EvalPrediction -> dict[str, float]`.

    Args:
        problem_type: "single_label_classification" (accuracy, macro_f1 and, with names, `f1_<name>` per class),
            "multi_label_classification" (multilabel_f1 macro and multilabel_f1_micro; a logit > 0 is a positive),
            "regression" (mae) or "landmarks" (nme, inter-ocular).
        label_names: the class names (`[config.id2label[i] for i in range(num_labels)]`), or just their number;
            macro-F1 then averages over every class, including ones absent from the eval set.
        interocular_indices: landmark indices whose distance normalises NME.
    The first array of `EvalPrediction.predictions` is taken as the head output (logits or landmarks).
    """
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}.")
    names = None if label_names is None or isinstance(label_names, int) else [str(name) for name in label_names]
    num_labels = len(names) if names is not None else label_names

    def compute(eval_prediction) -> dict[str, float]:
        outputs = eval_prediction.predictions
        outputs = np.asarray(outputs[0] if isinstance(outputs, (tuple, list)) else outputs)
        labels = np.asarray(eval_prediction.label_ids)
        if problem_type == "single_label_classification":
            predicted = outputs.argmax(-1)
            if num_labels is not None and outputs.shape[-1] != num_labels:
                raise ValueError(f"label_names: {num_labels} labels given, but the logits have {outputs.shape[-1]}.")
            metrics = {"accuracy": accuracy(predicted, labels), "macro_f1": macro_f1(predicted, labels, num_labels)}
            if names is not None:
                metrics.update(zip((f"f1_{name}" for name in names),
                                   per_class_f1(predicted, labels, range(num_labels)).tolist()))
            return metrics
        if problem_type == "multi_label_classification":
            predicted = outputs > 0
            return {"multilabel_f1": multilabel_f1(predicted, labels),
                    "multilabel_f1_micro": multilabel_f1(predicted, labels, "micro")}
        if problem_type == "regression":
            return {"mae": mae(outputs.reshape(len(labels), -1), labels.reshape(len(labels), -1))}
        return {"nme": nme(outputs, labels, interocular_indices)}

    return compute


def make_multitask_compute_metrics(tasks: dict[str, dict]) -> Callable:
    """Trainer hook for `ETFuserForMultiTaskFaceAnalysis`: per task `<task>_accuracy` / `<task>_macro_f1`,
    `<task>_mae` or `<task>_nme`, and `mean_accuracy` over the single-label tasks (one number to pick the best
    checkpoint by). `tasks` is `config.tasks`; the Trainer's `label_names` must be `<task>_labels` in the same
    order."""

    def compute(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        label_ids = eval_prediction.label_ids
        label_ids = label_ids if isinstance(label_ids, (tuple, list)) else (label_ids,)
        metrics = {}
        for (name, task), labels in zip(tasks.items(), label_ids):
            predicted = np.asarray(logits[name])
            if task["problem_type"] == "single_label_classification":
                metrics[f"{name}_accuracy"] = accuracy(predicted.argmax(-1), labels)
                metrics[f"{name}_macro_f1"] = macro_f1(predicted.argmax(-1), labels, task["num_labels"])
            elif task["problem_type"] == "regression":
                metrics[f"{name}_mae"] = mae(predicted.reshape(len(labels), -1), np.reshape(labels, (len(labels), -1)))
            elif task["problem_type"] == "landmarks":
                metrics[f"{name}_nme"] = nme(predicted, labels)
        accuracies = [value for key, value in metrics.items() if key.endswith("_accuracy")]
        if accuracies:
            metrics["mean_accuracy"] = float(np.mean(accuracies))
        return metrics

    return compute


__all__ = ["METRIC_NAMES", "PROBLEM_TYPES", "accuracy", "evaluate_metric_class", "load_metric", "macro_f1", "mae",
           "make_compute_metrics", "make_multitask_compute_metrics", "multilabel_f1", "nme", "per_class_f1"]
