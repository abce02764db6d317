"""Probes on fixed (cached) prior features: the single-prior and concatenated-prior baselines."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ...metrics import DEFAULT_METRICS, per_example_scores, predictions_from_outputs, score_outputs
from .trainer import RunResult


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
    problem_type: str = "single_label_classification",
    test_features: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    num_labels: int | None = None,
    metric_names: Sequence[str] | None = None,
    interocular_indices: Sequence[int] = (36, 45),
) -> RunResult:
    """A probe on fixed features with standardised inputs: for classification a linear layer (`hidden_size=None`)
    or a one-hidden-layer MLP, full-batch AdamW (cross-entropy over `num_labels` classes, default as many as the
    train and validation labels need, never sized from test; multi-label: binary cross-entropy per label); for
    regression and landmarks ridge regression onto the targets.

    `eval_*` is the validation split; with `test_*` the result reports test (`split="test"`) and keeps the
    validation metrics in `validation_metrics`, otherwise it reports the validation split. The metrics are
    `metric_names` (default: the problem type's), scored as the Trainer's runs are (`metrics.score_outputs`)."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    keys = tuple(metric_names or DEFAULT_METRICS[problem_type])
    x_train = torch.tensor(train_features, dtype=torch.float32)
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)

    def standardise(features: np.ndarray) -> torch.Tensor:
        return (torch.tensor(features, dtype=torch.float32) - mean) / std

    if problem_type in ("regression", "landmarks"):
        predict = _ridge(standardise(train_features), np.asarray(train_labels, np.float32))
    elif problem_type == "multi_label_classification":
        predict = _classifier(standardise(train_features), np.asarray(train_labels), np.asarray(train_labels).shape[1],
                              hidden_size, epochs, multi_label=True)
    else:
        if num_labels is None:
            num_labels = int(max(np.max(train_labels), np.max(eval_labels))) + 1
        predict = _classifier(standardise(train_features), np.asarray(train_labels), num_labels, hidden_size, epochs)

    def evaluate(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float], np.ndarray]:
        outputs = predict(standardise(features))
        classes = outputs.shape[-1] if problem_type == "single_label_classification" else None
        scored = score_outputs(problem_type, outputs, labels, classes, interocular_indices)
        metrics = {key: scored[key] for key in keys}
        scores = per_example_scores(keys[0], problem_type, outputs, labels, interocular_indices)
        return predictions_from_outputs(problem_type, outputs), outputs, metrics, scores

    validation = evaluate(eval_features, eval_labels)
    reported = validation if test_features is None else evaluate(test_features, test_labels)
    predictions, outputs, metrics, scores = reported
    return RunResult(name, description, predictions, outputs, metrics, seconds=time.perf_counter() - start,
                     validation_metrics=validation[2], scores=scores,
                     split="validation" if test_features is None else "test")


def _classifier(x_train: torch.Tensor, labels: np.ndarray, num_labels: int, hidden_size: int | None, epochs: int,
                multi_label: bool = False) -> Callable[[torch.Tensor], np.ndarray]:
    layers = [nn.Linear(x_train.shape[1], num_labels)] if hidden_size is None else [
        nn.Linear(x_train.shape[1], hidden_size), nn.GELU(), nn.Dropout(0.2), nn.Linear(hidden_size, num_labels)]
    probe = nn.Sequential(*layers)
    optimiser = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-2)
    if multi_label:
        y_train, loss = torch.tensor(labels, dtype=torch.float32), nn.functional.binary_cross_entropy_with_logits
    else:
        y_train, loss = torch.tensor(labels, dtype=torch.long), nn.functional.cross_entropy
    for _ in range(epochs):
        optimiser.zero_grad()
        loss(probe(x_train), y_train).backward()
        optimiser.step()
    probe.eval()

    def predict(features: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return probe(features).numpy()

    return predict


def _ridge(x_train: torch.Tensor, targets: np.ndarray, ridge: float = 1.0) -> Callable[[torch.Tensor], np.ndarray]:
    """Closed-form ridge regression (features + bias -> flattened targets: (N,) values come back as (N, 1), (K, 2)
    points as (K, 2)); landmarks are not clipped: in a face's crop frame the jaw may lie outside [0, 1]."""
    x = np.concatenate([x_train.numpy().astype(np.float64), np.ones((len(x_train), 1))], axis=1)
    y = targets.reshape(len(targets), -1).astype(np.float64)
    penalty = ridge * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    weights = np.linalg.solve(x.T @ x + penalty, x.T @ y)
    shape = targets.shape[1:] or (1,)

    def predict(features: torch.Tensor) -> np.ndarray:
        x = np.concatenate([features.numpy().astype(np.float64), np.ones((len(features), 1))], axis=1)
        outputs = x @ weights
        return outputs.reshape(len(features), *shape).astype(np.float32)

    return predict
