"""Probes on fixed (cached) prior features: the single-prior and concatenated-prior baselines."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..metrics import accuracy, macro_f1
from .trainer import RunResult, per_image_nme


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
) -> RunResult:
    """A probe on fixed features with standardised inputs: for classification a linear layer (`hidden_size=None`)
    or a one-hidden-layer MLP over `num_labels` classes (default: as many as the train and validation labels
    need; never sized from test), full-batch AdamW; for landmarks ridge regression onto the (K, 2) points.

    `eval_*` is the validation split; with `test_*` the result reports test (`split="test"`) and keeps the
    validation metrics in `validation_metrics`, otherwise it reports the validation split."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    x_train = torch.tensor(train_features, dtype=torch.float32)
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)

    def standardise(features: np.ndarray) -> torch.Tensor:
        return (torch.tensor(features, dtype=torch.float32) - mean) / std

    if problem_type == "landmarks":
        predict = _ridge_landmarks(standardise(train_features), np.asarray(train_labels, np.float32))
    else:
        if num_labels is None:
            num_labels = int(max(np.max(train_labels), np.max(eval_labels))) + 1
        predict = _classifier(standardise(train_features), np.asarray(train_labels), num_labels, hidden_size, epochs)

    def evaluate(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float], np.ndarray]:
        outputs = predict(standardise(features))
        if problem_type == "landmarks":
            scores = per_image_nme(outputs, labels, (36, 45))
            return outputs, outputs, {"nme": float(scores.mean())}, scores
        predictions = outputs.argmax(-1)
        metrics = {"accuracy": accuracy(predictions, labels),
                   "macro_f1": macro_f1(predictions, labels, outputs.shape[-1])}
        return predictions, outputs, metrics, (predictions == labels).astype(np.float64)

    validation = evaluate(eval_features, eval_labels)
    reported = validation if test_features is None else evaluate(test_features, test_labels)
    predictions, outputs, metrics, scores = reported
    return RunResult(name, description, predictions, outputs, metrics, seconds=time.perf_counter() - start,
                         validation_metrics=validation[2], scores=scores,
                         split="validation" if test_features is None else "test")


def _classifier(x_train: torch.Tensor, labels: np.ndarray, num_labels: int, hidden_size: int | None, epochs: int
                ) -> Callable[[torch.Tensor], np.ndarray]:
    layers = [nn.Linear(x_train.shape[1], num_labels)] if hidden_size is None else [
        nn.Linear(x_train.shape[1], hidden_size), nn.GELU(), nn.Dropout(0.2), nn.Linear(hidden_size, num_labels)]
    probe = nn.Sequential(*layers)
    optimiser = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-2)
    y_train = torch.tensor(labels, dtype=torch.long)
    for _ in range(epochs):
        optimiser.zero_grad()
        nn.functional.cross_entropy(probe(x_train), y_train).backward()
        optimiser.step()
    probe.eval()

    def predict(features: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return probe(features).numpy()

    return predict


def _ridge_landmarks(x_train: torch.Tensor, targets: np.ndarray, ridge: float = 1.0
                     ) -> Callable[[torch.Tensor], np.ndarray]:
    """Closed-form ridge regression (features + bias -> flattened points), predictions clipped to [0, 1]."""
    x = np.concatenate([x_train.numpy().astype(np.float64), np.ones((len(x_train), 1))], axis=1)
    y = targets.reshape(len(targets), -1).astype(np.float64)
    penalty = ridge * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    weights = np.linalg.solve(x.T @ x + penalty, x.T @ y)
    shape = targets.shape[1:]

    def predict(features: torch.Tensor) -> np.ndarray:
        x = np.concatenate([features.numpy().astype(np.float64), np.ones((len(features), 1))], axis=1)
        return np.clip(x @ weights, 0.0, 1.0).reshape(len(features), *shape).astype(np.float32)

    return predict
