"""Every network's own crop of a training face: a dataset row's 68 landmarks place, through the model's `CropPlan`,
the crop each network's authors cut (`priors/crop_geometry.py`), as `prior_crops` affines from the image the model is
fed. The same rules place them behind MTCNN in `analyze`, so a network reads a face the same way in training and in
use; the priors' feature cache runs them on the same crops.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..models.input_checks import BACKBONE_CROP_KEY
from ..priors.crop_plan import CropPlan, FaceGeometry


def face_crops(landmarks: np.ndarray, plan: CropPlan, frame_size: tuple[int, int],
               skip: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """`prior_crops` of a batch: `landmarks` (batch, 68, 2) iBUG points in [0, 1] of each image, the image fed whole
    at `frame_size` (height, width) -> network name -> (batch, 2, 3) float32 affines onto that network's crop, for
    every network of `plan` but the priors named in `skip` (read from a feature cache, so they do not run)."""
    faces, points = _faces_in_frame(landmarks, frame_size)
    skip = set(skip) - {BACKBONE_CROP_KEY}
    networks = [name for name in plan.networks if name not in skip]
    return {name: torch.from_numpy(affines) for name, affines in plan.prior_crops(faces, points, networks).items()}


def landmark_labels_in_frame(labels: torch.Tensor, landmarks: np.ndarray, plan: CropPlan,
                             frame_size: tuple[int, int]) -> torch.Tensor:
    """A landmarks task's `labels` (batch, K, 2) in [0, 1] of each image -> [0, 1] of the crop the model predicts in
    (`CropPlan.label_frame`: the canonical model's crop, else the ArcFace template crop), its faces placed by their
    (batch, 68, 2) `landmarks` in [0, 1] of the image fed whole at `frame_size` (height, width). The inter-ocular NME
    is the same in either frame: each crop is a similarity of the image."""
    faces, points = _faces_in_frame(landmarks, frame_size)
    affines, side = plan.label_frame(faces, points)
    return landmarks_in_crop(labels, torch.from_numpy(affines), frame_size, (side, side))


def _faces_in_frame(landmarks: np.ndarray, frame_size: tuple[int, int]) -> tuple[FaceGeometry, np.ndarray]:
    """(batch, 68, 2) points in [0, 1] of each image -> their `FaceGeometry` and the points in frame pixels."""
    height, width = frame_size
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks: expected finite (batch, 68, 2) points in [0, 1] of the image, got shape "
                         f"{landmarks.shape}.")
    points = landmarks * (width, height)
    return FaceGeometry.from_landmarks(points, (height, width), frame_size), points


def landmarks_in_crop(landmarks: torch.Tensor, affines: torch.Tensor, image_size: tuple[int, int],
                      crop_size: tuple[int, int]) -> torch.Tensor:
    """(batch, K, 2) points in [0, 1] of images of `image_size` (height, width) -> [0, 1] of the crops the (batch, 2, 3)
    image -> crop `affines` cut at `crop_size` (height, width)."""
    pixels = landmarks * landmarks.new_tensor([image_size[1], image_size[0]])
    in_crop = pixels @ affines[:, :, :2].transpose(1, 2).to(pixels.dtype) + affines[:, None, :, 2].to(pixels.dtype)
    return in_crop / in_crop.new_tensor([crop_size[1], crop_size[0]])


__all__ = ["face_crops", "landmark_labels_in_frame", "landmarks_in_crop"]
