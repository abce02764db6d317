"""Offline metrics for facial analysis.

`evaluate.load("accuracy")` downloads its script from the Hub, so the metrics ship here, twice over: as plain numpy
functions (used by the Trainer hook `make_compute_metrics`) and as local `evaluate` modules wrapping the same
functions (`load_metric("macro_f1")` == `evaluate.load(<package>/metrics/macro_f1)`), for users of `evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

METRIC_NAMES = ("accuracy", "macro_f1", "mae", "nme", "multilabel_f1")


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Share of exact matches."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    return float((predictions == references).mean())


def macro_f1(predictions: Sequence[int], references: Sequence[int], num_labels: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes present in predictions or references (or all `num_labels`)."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    classes = range(num_labels) if num_labels else np.union1d(predictions, references)
    scores = []
    for label in classes:
        true_positive = np.sum((predictions == label) & (references == label))
        denominator = np.sum(predictions == label) + np.sum(references == label)
        scores.append(2 * true_positive / denominator if denominator else 0.0)
    return float(np.mean(scores))


def mae(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Mean absolute error."""
    return float(np.abs(np.asarray(predictions, np.float64) - np.asarray(references, np.float64)).mean())


def nme(predictions: np.ndarray, references: np.ndarray, interocular_indices: Sequence[int] = (36, 45)) -> float:
    """Inter-ocular normalised mean error: mean point error / distance between the reference outer eye corners.
    `predictions`, `references`: (N, K, 2) or (N, 2K)."""
    predictions = np.asarray(predictions, np.float64).reshape(len(predictions), -1, 2)
    references = np.asarray(references, np.float64).reshape(len(references), -1, 2)
    left, right = interocular_indices
    interocular = np.maximum(np.linalg.norm(references[:, left] - references[:, right], axis=-1), 1e-6)
    return float((np.linalg.norm(predictions - references, axis=-1).mean(axis=-1) / interocular).mean())


def multilabel_f1(predictions: np.ndarray, references: np.ndarray, average: str = "macro") -> float:
    """F1 for multi-hot (N, L) 0/1 arrays; `average` is "macro" (mean over labels) or "micro" (pooled counts)."""
    predictions, references = np.asarray(predictions).astype(bool), np.asarray(references).astype(bool)
    true_positive = (predictions & references).sum(axis=0)
    denominator = predictions.sum(axis=0) + references.sum(axis=0)
    if average == "micro":
        return float(2 * true_positive.sum() / denominator.sum()) if denominator.sum() else 0.0
    if average != "macro":
        raise ValueError(f"average must be 'macro' or 'micro', got {average!r}.")
    return float(np.mean(np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1), 0.0)))


# name -> (function, prediction feature, reference feature, extra keyword arguments with defaults, description)
_EVALUATE_MODULES = {
    "accuracy": (accuracy, "int64", "int64", {}, "Accuracy: share of predictions equal to the references."),
    "macro_f1": (macro_f1, "int64", "int64", {"num_labels": None}, "Macro-F1: unweighted mean of per-class F1."),
    "mae": (mae, "float64", "float64", {}, "Mean absolute error (e.g. age in years)."),
    "nme": (nme, "sequence", "sequence", {"interocular_indices": (36, 45)},
            "Inter-ocular normalised mean error of landmarks, (N, 2K) flattened (x, y) per image."),
    "multilabel_f1": (multilabel_f1, "sequence_int", "sequence_int", {"average": "macro"},
                      "Multi-label F1 (macro or micro) of multi-hot 0/1 predictions."),
}


def evaluate_metric_class(name: str) -> type:
    """The `evaluate.Metric` subclass of the packaged module `name`; each `metrics/<name>/<name>.py` is one line
    around it, because `evaluate.load(<folder>)` wants a script per metric."""
    import datasets
    import evaluate

    function, prediction_type, reference_type, defaults, description = _EVALUATE_MODULES[name]
    feature_types = {
        "int64": datasets.Value("int64"), "float64": datasets.Value("float64"),
        "sequence": datasets.Sequence(datasets.Value("float64")), "sequence_int": datasets.Sequence(datasets.Value("int64")),
    }

    class PackagedMetric(evaluate.Metric):
        def _info(self) -> evaluate.MetricInfo:
            return evaluate.MetricInfo(
                description=description + " Shipped with etfuser_hf; loads offline.",
                citation="etfuser_hf (Apache-2.0)",
                inputs_description="predictions and references, one per example; keyword arguments: "
                + (", ".join(f"{key}={value!r}" for key, value in defaults.items()) or "none"),
                features=datasets.Features({"predictions": feature_types[prediction_type],
                                            "references": feature_types[reference_type]}),
            )

        def _compute(self, predictions, references, **kwargs):
            unknown = sorted(set(kwargs) - set(defaults))
            if unknown:
                raise ValueError(f"{name}: unknown arguments {unknown}; expected {sorted(defaults)}.")
            return {name: function(predictions, references, **{**defaults, **kwargs})}

    PackagedMetric.__name__ = PackagedMetric.__qualname__ = "".join(part.capitalize() for part in name.split("_"))
    return PackagedMetric


def load_metric(name: str):
    """The packaged `evaluate` module `name`, loaded offline from this folder."""
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"name must be one of {METRIC_NAMES}, got {name!r}.")
    return evaluate.load(str(Path(__file__).parent / name))


def make_compute_metrics(
    problem_type: str, num_labels: int | None = None, interocular_indices: Sequence[int] = (36, 45)
) -> Callable:
    """A `Trainer(compute_metrics=...)` hook for `problem_type` ("single_label_classification",
    "multi_label_classification", "regression" or "landmarks"). The first array of `predictions` is the head output."""

    def compute(eval_prediction) -> dict[str, float]:
        outputs = eval_prediction.predictions
        outputs = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        labels = eval_prediction.label_ids
        if problem_type == "single_label_classification":
            predicted = outputs.argmax(-1)
            return {"accuracy": accuracy(predicted, labels), "macro_f1": macro_f1(predicted, labels, num_labels)}
        if problem_type == "multi_label_classification":
            predicted = outputs > 0
            return {"multilabel_f1": multilabel_f1(predicted, labels),
                    "multilabel_f1_micro": multilabel_f1(predicted, labels, "micro")}
        if problem_type == "regression":
            return {"mae": mae(outputs.reshape(len(labels), -1), np.asarray(labels).reshape(len(labels), -1))}
        if problem_type == "landmarks":
            return {"nme": nme(outputs, labels, interocular_indices)}
        raise ValueError(f"unknown problem_type {problem_type!r}.")

    return compute


def make_multitask_compute_metrics(tasks: dict[str, dict]) -> Callable:
    """Trainer hook for `ETFuserForMultiTaskFaceAnalysis`: per task `<task>_accuracy` / `<task>_macro_f1`,
    `<task>_mae` or `<task>_nme`. `tasks` is `config.tasks`; the Trainer's `label_names` must be `<task>_labels` in
    the same order."""

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
        return metrics

    return compute


__all__ = ["METRIC_NAMES", "evaluate_metric_class", "make_multitask_compute_metrics", "accuracy", "macro_f1", "mae", "nme", "multilabel_f1", "load_metric", "make_compute_metrics"]
