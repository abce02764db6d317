"""The one loss helper every ET-Fuser head shares, chosen by `problem_type`, and the landmark error metric."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def wing_loss(prediction: torch.Tensor, target: torch.Tensor, width: float = 0.1, curvature: float = 0.02) -> torch.Tensor:
    """Wing loss (Feng et al., CVPR 2018) on normalised coordinates: log-shaped for small errors, L1 for large."""
    error = (prediction - target).abs()
    offset = width - width * torch.log1p(torch.tensor(width / curvature, dtype=error.dtype, device=error.device))
    return torch.where(error < width, width * torch.log1p(error / curvature), error - offset).mean()


def infer_problem_type(num_labels: int, labels: torch.Tensor) -> str:
    """transformers' rule: one output -> regression; integer labels -> single-label; otherwise multi-label."""
    if num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
        return "single_label_classification"
    return "multi_label_classification"


def compute_task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem_type: str,
    loss_name: str | None = None,
    class_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """One loss for every head, chosen by `problem_type`.

    Args:
        logits: (batch, num_outputs) head output (for landmarks: (batch, K, 2) coordinates).
        labels: class ids (batch,) or class probabilities (batch, num_outputs) (soft targets, e.g. mixed by mixup)
            for single-label; multi-hot (batch, num_labels) for multi-label; targets of the logits' shape for
            regression and landmarks.
        problem_type: `"single_label_classification"`, `"multi_label_classification"`, `"regression"` or `"landmarks"`.
        loss_name: for regression `"mse" | "l1" | "smooth_l1"`; for landmarks also `"wing"`.
        class_weights: classification only: one weight per class (cross-entropy's `weight`) or per label
            (multi-label: `pos_weight`).
        label_smoothing: classification only, in [0, 1): single-label as cross-entropy's `label_smoothing`,
            multi-label targets pulled toward 1/2 by the same amount.
    """
    num_outputs = logits.shape[-1]
    weights = None
    if class_weights is not None:
        weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if problem_type not in ("single_label_classification", "multi_label_classification") or weights.shape != (
                num_outputs,):
            raise ValueError(f"class_weights: expected {num_outputs} weights, one per class of a classification head "
                             f"({problem_type}), got {len(weights)}.")
    if problem_type == "single_label_classification":
        if labels.is_floating_point() and labels.shape == logits.shape:  # soft targets
            return F.cross_entropy(logits, labels.to(logits.dtype), weight=weights, label_smoothing=label_smoothing)
        if labels.dim() != 1 or labels.is_floating_point():
            raise ValueError(f"labels for single-label classification must be integer class ids (batch,) or class "
                             f"probabilities {tuple(logits.shape)}, got {labels.dtype} of shape {tuple(labels.shape)}.")
        invalid = ((labels < 0) & (labels != -100)) | (labels >= num_outputs)
        if invalid.any():
            raise ValueError(f"labels must be class ids in [0, {num_outputs}) (or -100 to ignore), got "
                             f"{labels[invalid].tolist()}.")
        return F.cross_entropy(logits.view(-1, num_outputs), labels.view(-1), weight=weights,
                               label_smoothing=label_smoothing)
    if problem_type == "multi_label_classification":
        if labels.shape != logits.shape:
            raise ValueError(f"multi-label labels must be multi-hot of shape {tuple(logits.shape)}, got {tuple(labels.shape)}.")
        targets = labels.to(logits.dtype) * (1 - label_smoothing) + label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weights)
    if problem_type in ("regression", "landmarks"):
        target = labels.to(logits.dtype)
        if num_outputs == 1 and problem_type == "regression" and target.dim() == 1:
            target = target.unsqueeze(-1)
        if target.shape != logits.shape:
            raise ValueError(f"{problem_type} labels must have shape {tuple(logits.shape)}, got {tuple(labels.shape)}.")
        losses = {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss, "wing": wing_loss}
        return losses[loss_name or "mse"](logits, target)
    raise ValueError(f"unknown problem_type {problem_type!r}.")


def normalized_mean_error(
    landmarks: torch.Tensor, target: torch.Tensor, interocular_indices: tuple[int, int] | list[int]
) -> torch.Tensor:
    """Per-image NME: mean point-to-point error (batch, K, 2) divided by the target's inter-ocular distance. (batch,)"""
    left, right = interocular_indices
    interocular = (target[:, left] - target[:, right]).norm(dim=-1).clamp_min(1e-6)
    return (landmarks - target).norm(dim=-1).mean(dim=-1) / interocular


__all__ = ["compute_task_loss", "infer_problem_type", "normalized_mean_error", "wing_loss"]
