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

METRIC_NAMES = ("accuracy", "macro_f1", "mean_class_accuracy", "mae", "rmse", "ccc", "nme", "multilabel_f1",
                "multilabel_accuracy")
# Which way each metric improves: the Trainer's `greater_is_better` and the sign of every "gain" in the tables.
GREATER_IS_BETTER = {"accuracy": True, "macro_f1": True, "mean_class_accuracy": True, "multilabel_accuracy": True,
                     "multilabel_f1": True, "ccc": True, "mae": False, "rmse": False, "nme": False}


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


def mean_class_accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Unweighted mean over the classes present in `references` of each class's recall (the share of its examples
    predicted as it): "mean class accuracy" / balanced accuracy, as RAF-DB and AffectNet results are often reported;
    on a test set with one class in ten images, always predicting the majority scores 1 / C, not 0.9."""
    predictions, references = _paired(predictions, references)
    return float(np.mean([np.mean(predictions[references == label] == label) for label in np.unique(references)]))


def mae(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Mean absolute error."""
    predictions, references = _same_shape(predictions, references)
    return float(np.abs(predictions - references).mean())


def _same_shape(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    predictions, references = _paired(predictions, references, np.float64)
    if predictions.shape != references.shape:
        raise ValueError(f"predictions and references must have the same shape, got {predictions.shape} and "
                         f"{references.shape}.")
    return predictions, references


def rmse(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Root mean squared error (over every example and output)."""
    predictions, references = _same_shape(predictions, references)
    return float(np.sqrt(np.square(predictions - references).mean()))


def ccc(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Lin's concordance correlation coefficient of scalar predictions (valence, arousal): 2 cov / (var_p + var_r +
    (mean_p - mean_r)^2), population moments; 1 is perfect agreement, 0 none (a constant prediction scores 0 unless
    it equals constant references). Vector outputs are scored per output and averaged."""
    predictions, references = _same_shape(predictions, references)
    predictions = predictions.reshape(len(predictions), -1)
    references = references.reshape(len(references), -1)
    scores = []
    for column in range(predictions.shape[1]):
        p, r = predictions[:, column], references[:, column]
        denominator = p.var() + r.var() + (p.mean() - r.mean()) ** 2
        # zero only when both are the same constant: they agree exactly
        scores.append(2 * np.mean((p - p.mean()) * (r - r.mean())) / denominator if denominator > 0 else 1.0)
    return float(np.mean(scores))


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


def _multi_hot(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    predictions, references = _paired(predictions, references)
    if predictions.shape != references.shape or predictions.ndim != 2:
        raise ValueError(f"predictions and references must both be multi-hot (N, L), got shapes {predictions.shape} "
                         f"and {references.shape}.")
    return predictions.astype(bool), references.astype(bool)


def multilabel_accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Mean over labels of each label's accuracy, for multi-hot (N, L) 0/1 arrays: CelebA's "mean accuracy" over its
    40 attributes."""
    predictions, references = _multi_hot(predictions, references)
    return float((predictions == references).mean())


def multilabel_f1(predictions: np.ndarray, references: np.ndarray, average: str = "macro") -> float:
    """F1 for multi-hot (N, L) 0/1 arrays; `average` is "macro" (mean over labels) or "micro" (pooled counts)."""
    predictions, references = _multi_hot(predictions, references)
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
_CCC_CITATION = """@article{lin1989concordance,
  title={A Concordance Correlation Coefficient to Evaluate Reproducibility}, author={Lin, Lawrence I-Kuei},
  journal={Biometrics}, volume={45}, number={1}, pages={255--268}, year={1989}}"""
_CELEBA_CITATION = """@inproceedings{liu2015faceattributes,
  title={Deep Learning Face Attributes in the Wild}, author={Liu, Ziwei and Luo, Ping and Wang, Xiaogang and Tang, Xiaoou},
  booktitle={ICCV}, year={2015}}"""


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
        "mean_class_accuracy": _MetricSpec(mean_class_accuracy, (pair(_value("int64")),), {},
                                           "Mean class accuracy (balanced accuracy): the unweighted mean of each "
                                           "reference class's recall.", _SKLEARN_CITATION),
        "mae": _MetricSpec(mae, (pair(_value("float64")), pair(sequence("float64"))), {},
                           "Mean absolute error of scalar or vector regression targets (e.g. age in years).",
                           _SKLEARN_CITATION),
        "rmse": _MetricSpec(rmse, (pair(_value("float64")), pair(sequence("float64"))), {},
                            "Root mean squared error of scalar or vector regression targets (e.g. valence and arousal).",
                            _SKLEARN_CITATION),
        "ccc": _MetricSpec(ccc, (pair(_value("float64")), pair(sequence("float64"))), {},
                           "Lin's concordance correlation coefficient (agreement of predictions with references in "
                           "correlation, scale and location; 1 is perfect), e.g. valence and arousal; vector targets "
                           "are scored per output and averaged.", _CCC_CITATION),
        "nme": _MetricSpec(nme, (pair(nested), pair(sequence("float64"))), {"interocular_indices": (36, 45)},
                           "Inter-ocular normalised mean error of facial landmarks: per image the mean point error "
                           "over the distance between the reference outer eye corners (iBUG-68 points 36 and 45). "
                           "Each example is (K, 2) nested or (2K,) flattened (x, y) coordinates.", _NME_CITATION),
        "multilabel_f1": _MetricSpec(multilabel_f1, (pair(sequence("int64")),), {"average": "macro"},
                                     "Multi-label F1 of multi-hot 0/1 vectors (e.g. CelebA attributes, action units): "
                                     "`average='macro'` (mean over labels) or 'micro' (pooled counts).",
                                     _SKLEARN_CITATION),
        "multilabel_accuracy": _MetricSpec(multilabel_accuracy, (pair(sequence("int64")),), {},
                                           "Mean accuracy over labels of multi-hot 0/1 vectors (CelebA's mean accuracy "
                                           "over its 40 attributes).", _CELEBA_CITATION),
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
# What each problem type reports, the first being the headline a model is selected on by default; a task may pick
# its own (age: MAE; valence and arousal: RMSE and CCC).
DEFAULT_METRICS = {"single_label_classification": ("accuracy", "macro_f1"),
                   "multi_label_classification": ("multilabel_accuracy", "multilabel_f1"),
                   "regression": ("mae", "rmse", "ccc"), "landmarks": ("nme",)}
# Every metric of `METRIC_NAMES` that `score_outputs` reports for each problem type: what a task can be selected on
# (`--select-on`) or put at the head of its table.
SCORED_METRICS = {"single_label_classification": ("accuracy", "macro_f1", "mean_class_accuracy"),
                  "multi_label_classification": ("multilabel_accuracy", "multilabel_f1"),
                  "regression": ("mae", "rmse", "ccc"), "landmarks": ("nme",)}


def _check_problem_type(problem_type: str) -> None:
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}.")


def predictions_from_outputs(problem_type: str, outputs: np.ndarray) -> np.ndarray:
    """A head's outputs as predictions: class ids (argmax) for single-label, multi-hot (logit > 0) for multi-label,
    the outputs themselves for regression and landmarks."""
    _check_problem_type(problem_type)
    outputs = np.asarray(outputs)
    if problem_type == "single_label_classification":
        return outputs.argmax(-1)
    if problem_type == "multi_label_classification":
        return (outputs > 0).astype(np.int64)
    return outputs


def score_outputs(problem_type: str, outputs: np.ndarray, references: np.ndarray, num_labels: int | None = None,
                  interocular_indices: Sequence[int] = (36, 45)) -> dict[str, float]:
    """Every metric of `problem_type` (`DEFAULT_METRICS`, plus multi-label's micro-F1) of a head's `outputs` against
    `references`: the one scoring the Trainer hook, the probes and `etfuser evaluate` share.

    Args:
        outputs: (N, num_labels) logits for classification (multi-label: a logit > 0 is a positive); (N,) or (N, 1)
            values for regression; (N, K, 2) or (N, 2K) points for landmarks.
        references: (N,) class ids, (N, L) multi-hot, (N,) or (N, 1) values, or points as `outputs`.
        num_labels: single-label: macro-F1 averages over all of them, including classes absent from `references`.
        interocular_indices: the two points whose distance normalises NME.
    """
    predicted, references = predictions_from_outputs(problem_type, outputs), np.asarray(references)
    if problem_type == "single_label_classification":
        return {"accuracy": accuracy(predicted, references),
                "macro_f1": macro_f1(predicted, references, num_labels),
                "mean_class_accuracy": mean_class_accuracy(predicted, references)}
    if problem_type == "multi_label_classification":
        return {"multilabel_accuracy": multilabel_accuracy(predicted, references),
                "multilabel_f1": multilabel_f1(predicted, references),
                "multilabel_f1_micro": multilabel_f1(predicted, references, "micro")}
    if problem_type == "regression":
        predicted, references = (np.asarray(array, np.float64).reshape(len(references), -1)
                                 for array in (predicted, references))
        return {"mae": mae(predicted, references), "rmse": rmse(predicted, references),
                "ccc": ccc(predicted, references)}
    return {"nme": nme(predicted, references, interocular_indices)}


def per_example_scores(metric: str, problem_type: str, outputs: np.ndarray, references: np.ndarray,
                       interocular_indices: Sequence[int] = (36, 45)) -> np.ndarray:
    """(N,) the per-example terms whose mean is `metric` (or, for RMSE, whose mean is its square): what the tables'
    paired per-seed tests compare between two models on the same images. Correct (1/0) for accuracy, the share of
    labels right for multi-label accuracy, the absolute (MAE) or squared (RMSE) error, and the per-image NME. F1 and
    CCC are not means over examples; a ValueError says so."""
    _check_problem_type(problem_type)
    predicted, references = predictions_from_outputs(problem_type, outputs), np.asarray(references)
    if metric == "accuracy":
        return (predicted == references).astype(np.float64)
    if metric == "multilabel_accuracy":
        return (predicted.astype(bool) == references.astype(bool)).mean(axis=1, dtype=np.float64)
    if metric in ("mae", "rmse"):
        error = (np.asarray(predicted, np.float64).reshape(len(references), -1)
                 - np.asarray(references, np.float64).reshape(len(references), -1))
        return (np.abs(error) if metric == "mae" else np.square(error)).mean(axis=1)
    if metric == "nme":
        import torch

        from ..models.modeling_etfuser import normalized_mean_error

        points = [torch.from_numpy(np.asarray(array, np.float64).reshape(len(references), -1, 2))
                  for array in (predicted, references)]
        return normalized_mean_error(*points, tuple(interocular_indices)).numpy()
    raise ValueError(f"metric {metric!r} is not a mean over examples; per-example scores exist for accuracy, "
                     f"multilabel_accuracy, mae, rmse and nme.")


def make_compute_metrics(
    problem_type: str,
    label_names: Sequence[str] | int | None = None,
    interocular_indices: Sequence[int] = (36, 45),
) -> Callable:
    """A `Trainer(compute_metrics=...)` hook: `EvalPrediction -> dict[str, float]` (`score_outputs`).

    Args:
        problem_type: "single_label_classification" (accuracy, macro_f1 and, with names, `f1_<name>` per class),
            "multi_label_classification" (multilabel_accuracy, multilabel_f1 macro and multilabel_f1_micro; a logit
            > 0 is a positive), "regression" (mae, rmse, ccc) or "landmarks" (nme, inter-ocular).
        label_names: the class names (`[config.id2label[i] for i in range(num_labels)]`), or just their number;
            macro-F1 then averages over every class, including ones absent from the eval set.
        interocular_indices: landmark indices whose distance normalises NME.
    The first array of `EvalPrediction.predictions` is taken as the head output (logits or landmarks).
    """
    _check_problem_type(problem_type)
    names = None if label_names is None or isinstance(label_names, int) else [str(name) for name in label_names]
    num_labels = len(names) if names is not None else label_names

    def compute(eval_prediction) -> dict[str, float]:
        outputs = eval_prediction.predictions
        outputs = np.asarray(outputs[0] if isinstance(outputs, (tuple, list)) else outputs)
        labels = np.asarray(eval_prediction.label_ids)
        if problem_type == "single_label_classification" and num_labels is not None and outputs.shape[-1] != num_labels:
            raise ValueError(f"label_names: {num_labels} labels given, but the logits have {outputs.shape[-1]}.")
        metrics = score_outputs(problem_type, outputs, labels, num_labels, interocular_indices)
        if problem_type == "single_label_classification" and names is not None:
            metrics.update(zip((f"f1_{name}" for name in names),
                               per_class_f1(outputs.argmax(-1), labels, range(num_labels)).tolist()))
        return metrics

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


__all__ = ["DEFAULT_METRICS", "GREATER_IS_BETTER", "METRIC_NAMES", "PROBLEM_TYPES", "SCORED_METRICS", "accuracy",
           "ccc", "evaluate_metric_class", "load_metric", "macro_f1", "mae", "make_compute_metrics",
           "make_multitask_compute_metrics", "mean_class_accuracy", "multilabel_accuracy", "multilabel_f1", "nme",
           "per_class_f1", "per_example_scores", "predictions_from_outputs", "rmse", "score_outputs"]
