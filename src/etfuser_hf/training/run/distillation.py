"""Keeping what the pretrained canonical network knew: distillation toward its own predictions on the training images
(learning without forgetting, Li & Hoiem 2016; Hinton et al. 2015's softened targets), beside the task loss.

    teacher = CanonicalTeacher.from_pretrained(folder, label_names, Distillation(weight=1.0, temperature=2.0))
    loss = task_loss + teacher.loss(student_logits, pixel_values)

The fine-tuned model's head is new, so after fine-tuning on synthetic faces nothing ties its answers on real faces to
the pretrained network's (`forgetting.py` measures how much survives); matching the pretrained network's softened
class distribution on every training image is the tie. The teacher is frozen, is never saved with the model, and
only acts in training (`ETFuserTrainer.compute_loss`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel

from ...data.label_aliases import id2label_names, map_label_names
from ...models.configuration_etfuser import EncoderSpec
from ...models.encoders import prepare_encoder_inputs


@dataclass(frozen=True)
class Distillation:
    """A recipe's distillation setting: the loss is `weight * temperature**2 * KL(teacher || student)` on class
    distributions softened by `temperature` (the square keeps its gradients on the task loss's scale)."""

    weight: float
    temperature: float = 2.0

    def __post_init__(self):
        if not self.weight > 0:
            raise ValueError(f"distillation weight: expected > 0, got {self.weight!r} (leave distillation out for none).")
        if not self.temperature > 0:
            raise ValueError(f"distillation temperature: expected > 0, got {self.temperature!r}.")

    @classmethod
    def from_recipe(cls, value: Mapping[str, Any] | Distillation | None) -> Distillation | None:
        """A recipe's `distillation` entry (`{"weight": w, "temperature": t}`) as a `Distillation`; None stays None."""
        if value is None or isinstance(value, Distillation):
            return value
        if not isinstance(value, Mapping) or not set(value) <= {"weight", "temperature"}:
            raise ValueError(f"distillation: expected {{'weight': w, 'temperature': t}}, got {value!r}.")
        return cls(**value)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """`temperature**2 * KL(softmax(teacher / T) || softmax(student / T))`, averaged over the batch; both (batch, C)."""
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return temperature ** 2 * F.kl_div(student, teacher, log_target=True, reduction="batchmean")


def pretrained_class_index(id2label: Mapping[Any, str], label_names: Sequence[str], role: str) -> torch.Tensor:
    """(len(label_names),) indices into a pretrained network's outputs (`id2label`) of the task's classes, matched
    by name through the alias table (RAF-DB's "happiness" is the FER net's "happy"), in the task's order; a
    ValueError naming `role` and both label sets where a task class is not one of the network's."""
    try:
        return torch.tensor(map_label_names(label_names, id2label_names(id2label, f"{role}: id2label")))
    except ValueError as error:
        raise ValueError(f"{role}: the task's classes cannot be read from the pretrained network's outputs: "
                         f"{error}") from None


class CanonicalTeacher(nn.Module):
    """The pretrained canonical network, frozen, answering in the task's class order.

    Args:
        network: a pretrained model whose output has `logits` over `network.config.id2label`.
        label_names: the task's classes, in the fine-tuned model's order; each must be one of the network's.
        spec: the network's input contract (the fine-tuned model's `config.backbone`).
        setting: the loss's weight and temperature.
    """

    def __init__(self, network: nn.Module, label_names: Sequence[str], spec: EncoderSpec, setting: Distillation):
        super().__init__()
        class_index = pretrained_class_index(network.config.id2label, label_names, "distillation")
        self.network = network.eval().requires_grad_(False)
        self.register_buffer("class_index", class_index, persistent=False)
        self.spec = spec
        self.setting = setting

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, label_names: Sequence[str], spec: EncoderSpec,
                        setting: Distillation) -> CanonicalTeacher:
        return cls(AutoModel.from_pretrained(source, dtype=torch.float32), label_names, spec, setting)

    @torch.no_grad()
    def logits(self, pixel_values: torch.Tensor, crop_affines: torch.Tensor | None = None,
               crop_windows: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, num_labels) pretrained class scores for model inputs `pixel_values` (batch, 3, H, W) in [0, 1],
        read on the crop `crop_affines` (batch, 2, 3) places, with its window rows `crop_windows` (the student's
        canonical model's own, `prior_crops`)."""
        self.network.eval()  # the Trainer's model.train() does not reach it: it is not a submodule of the model
        inputs = prepare_encoder_inputs(pixel_values.float(), self.spec, crop_affines, crop_windows)
        return self.network(pixel_values=inputs).logits.index_select(-1, self.class_index)

    def loss(self, student_logits: torch.Tensor, pixel_values: torch.Tensor,
             crop_affines: torch.Tensor | None = None, crop_windows: torch.Tensor | None = None) -> torch.Tensor:
        """The weighted distillation term for one batch."""
        device = self.class_index.device
        crop_affines, crop_windows = (None if value is None else value.to(device) for value in (crop_affines,
                                                                                                 crop_windows))
        teacher = self.logits(pixel_values.to(device), crop_affines, crop_windows).to(student_logits.device)
        return self.setting.weight * distillation_loss(student_logits, teacher, self.setting.temperature)

__all__ = ["CanonicalTeacher", "Distillation", "distillation_loss", "pretrained_class_index"]
