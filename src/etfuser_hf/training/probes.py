"""Probes on fixed (cached) prior features: the single-prior and concatenated-prior baselines."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..metrics import accuracy, macro_f1
from .variants import VariantResult


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
