"""Every network's own crop of each detected face (issue 32), as `analyze` cuts it.

The model is fed one loose canonical crop per face (`crop_geometry.canonical_crop_affines`: the five MTCNN points on
the ArcFace template with room around it), and `prior_crops` tells the forward where, in that crop, each network's
authors cut their face (`crop_geometry`). Two rules read face-api's 68 landmarks (`dlib_chip`, `faceapi_aligned_box`),
so the analysis runs in two stages: face-api's landmark net first, on its own crop (`faceapi_box`, from the detector's
box), then every other network on crops placed by those landmarks; the landmark net's output is reused as that
prior's fusion tokens and readout, never run twice. Landmark readouts are mapped back to the image through the
landmark net's own crop (`faceapi_landmarks_to_image`). Where each network cuts (`CropPlan`) is shared with training
and lives in `priors/crop_plan.py`; this module cuts the canonical crops from the photos (`warp_crops`) and holds the
first stage (`LandmarkStage`, and `landmark_stage`, which picks its net); `backends.py` runs both stages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..models.configuration_etfuser import EncoderSpec
from ..models.encoders import prepare_encoder_inputs, select_feature_tokens
from ..priors.crop_geometry import CANONICAL_CROP_MARGIN, CANONICAL_CROP_SIZE, antialias_samples, canonical_crop_affines
from ..priors.crop_plan import LANDMARK_MODEL_TYPE

if TYPE_CHECKING:
    from ..models.modeling_etfuser import ETFuserForImageClassification
    from .extras import Companion


def warp_crops(image: np.ndarray, affines: np.ndarray, size: int | tuple[int, int],
               antialias: bool = False) -> np.ndarray:
    """One crop per affine from one image: `image` uint8 (H, W, C), `affines` (N, 2, 3) image -> crop in
    `crop_geometry`'s convention (pixel centres at +0.5 in both), `size` a side or (height, width) -> uint8
    (N, h, w, C).

    The sampling of `crop_geometry.cut_crops` (bilinear, zeros outside the image; with `antialias`, a face shrunk by
    over 2x is cut n times larger and area-averaged, n = `antialias_samples` of that face) with one `cv2.warpAffine`
    per face: uint8 in and out, no float copy of the frame, and no torch parallel region per call, which stalls on a
    shared machine. OpenCV's fixed-point bilinear weights (1/32 pixel) differ from `cut_crops`' by about 0.3 grey
    levels on average, well inside the interpolation error of the crops cut from the canonical crop."""
    import cv2

    height, width = (size, size) if isinstance(size, int) else size
    affines = np.asarray(affines, np.float64).reshape(-1, 2, 3)
    crops = np.zeros((len(affines), height, width) + image.shape[2:], np.uint8)
    for index, affine in enumerate(affines):
        samples = antialias_samples(affine[None]) if antialias else 1
        linear, shift = affine[:, :2] * samples, affine[:, 2] * samples
        # OpenCV puts pixel centres at integers: x_cv = x - 0.5 in the image and in the crop
        matrix = np.concatenate([linear, (shift + linear.sum(-1) * 0.5 - 0.5)[:, None]], axis=-1)
        crop = cv2.warpAffine(image, matrix, (width * samples, height * samples), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        crops[index] = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA) if samples > 1 else crop
    return crops


def cut_canonical_crops(images: list[np.ndarray], points: list[np.ndarray],
                        size: int = CANONICAL_CROP_SIZE) -> list[np.ndarray]:
    """The canonical crop of every face: `images` uint8 (H, W, 3), `points[i]` (faces, 5, 2) of image i -> one uint8
    (faces, size, size, 3) array per image (`warp_crops`: bilinear, zeros outside the image, antialiased where the
    face shrinks by more than 2x, as dlib's chips are)."""
    return [warp_crops(np.ascontiguousarray(image), canonical_crop_affines(np.asarray(face_points, np.float64), size),
                       size, antialias=True)
            if len(face_points) else np.zeros((0, size, size, 3), np.uint8)
            for image, face_points in zip(images, points)]


def arcface_crops(canonical: np.ndarray, crop_size: int, margin: float = CANONICAL_CROP_MARGIN) -> np.ndarray:
    """The faces aligned to the ArcFace template at `crop_size`, cut from their canonical crops (faces, S, S, 3)
    uint8: the template's field is the centre 1 / `margin` of a canonical crop, so this is a resize of it."""
    side = canonical.shape[1]
    scale = crop_size * margin / side
    affine = np.array([[scale, 0.0, (crop_size - scale * side) / 2], [0.0, scale, (crop_size - scale * side) / 2]])
    crops = [warp_crops(face, affine[None], crop_size, antialias=True) for face in canonical]
    return np.concatenate(crops) if crops else np.zeros((0, crop_size, crop_size, 3), np.uint8)


class LandmarkStage(nn.Module):
    """The first stage: face-api's landmark net on its own crop. `(pixel_values (batch, 3, S, S), affines (batch, 2,
    3))` -> `(logits (batch, 136),)`, plus its fusion tokens `(batch, n, d)` where it is one of the fused priors."""

    def __init__(self, prior: nn.Module, spec: EncoderSpec, fused: bool):
        super().__init__()
        self.prior, self.spec, self.fused = prior, spec, fused

    @property
    def output_names(self) -> list[str]:
        return ["logits", "features"] if self.fused else ["logits"]

    def forward(self, pixel_values: torch.Tensor, affines: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.prior(pixel_values=prepare_encoder_inputs(pixel_values, self.spec, affines), return_dict=True)
        if self.fused:
            return outputs.logits, select_feature_tokens(outputs, self.spec, "landmark stage")
        return (outputs.logits,)


def landmark_stage(model: ETFuserForImageClassification, companions: tuple[Companion, ...],
                   needs_landmarks: bool) -> tuple[str | None, LandmarkStage | None]:
    """(its name among the networks, the stage) of the landmark net the analysis runs first: the fused prior, else
    the pose companion's net, else (where a crop rule reads 68 landmarks) the converted face-api net on its own."""
    for name, prior in model.etfuser.priors.items():
        if prior.config.model_type == LANDMARK_MODEL_TYPE:
            return name, LandmarkStage(prior, model.config.priors[name], fused=True)
    for companion in companions:
        if companion.prior is not None and companion.config.model_type == LANDMARK_MODEL_TYPE:
            return f"companion.{companion.extra}", LandmarkStage(companion.prior, EncoderSpec(config=companion.config),
                                                                 fused=False)
    if not needs_landmarks:
        return None, None
    from transformers import AutoModel

    from ..priors.convert_face_priors import ensure_face_priors

    prior = AutoModel.from_pretrained(ensure_face_priors(names=["face_landmarks"])["face_landmarks"],
                                      dtype=torch.float32).eval()
    return "locator", LandmarkStage(prior, EncoderSpec(config=prior.config), fused=False)


__all__ = ["LandmarkStage", "arcface_crops", "cut_canonical_crops", "landmark_stage", "warp_crops"]
