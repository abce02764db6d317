"""Every network's own crop of a training face: a dataset row's 68 landmarks place, through the model's `CropPlan`,
the crop each network's authors cut (`priors/crop_geometry.py`), as `prior_crops` affines from the image the model is
fed. The same rules place them behind MTCNN in `analyze`, so a network reads a face the same way in training and in
use; the priors' feature cache runs them on the same crops.

A dataset aligned by `data.alignment` (a real dataset's faces, found as `analyze` finds them) is fed as `analyze`
feeds a model: each face's loose canonical crop cut from the original file (`aligned_inputs`), every network's crop
placed in it by the same `CropPlan` from the stored detection and landmarks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from ..models.input_checks import BACKBONE_CROP_KEY
from ..priors.crop_geometry import compose_affines
from ..priors.crop_plan import CropPlan, FaceGeometry, image_bottom_grey
from ..priors.crop_warp import crops_as_pixel_values, cut_canonical_crops
from .alignment import VIEW_GREY_COLUMN, faces_of_rows, view_canonical


def face_crops(landmarks: np.ndarray, plan: CropPlan, frame_size: tuple[int, int], skip: Iterable[str] = (),
               pixel_values: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """`prior_crops` of a batch: `landmarks` (batch, 68, 2) iBUG points in [0, 1] of each image, the image fed whole
    at `frame_size` (height, width) -> network name -> (batch, 2, 3) float32 affines onto that network's crop and,
    where its authors' pipeline bars or pads the crop, name + `WINDOW_SUFFIX` -> (batch, 17) its window rows in the
    frame, for every network of `plan` but the priors named in `skip` (read from a feature cache, so they do not
    run). `pixel_values` (batch, 3, H, W), the frames themselves, give fer's padding grey (their bottom rows); a plan
    with a fer crop needs them."""
    grey = None if pixel_values is None else image_bottom_grey(pixel_values)
    faces, points = _faces_in_frame(landmarks, frame_size, grey)
    return _prior_crops(plan, faces, points, skip)


def _prior_crops(plan: CropPlan, faces: FaceGeometry, landmarks: np.ndarray,
                 skip: Iterable[str]) -> dict[str, torch.Tensor]:
    skip = set(skip) - {BACKBONE_CROP_KEY}
    networks = [name for name in plan.networks if name not in skip]
    return {name: torch.from_numpy(affines) for name, affines in plan.prior_crops(faces, landmarks, networks).items()}


def aligned_inputs(images: Sequence, rows: Sequence[Mapping], plan: CropPlan | None,
                   skip: Iterable[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What `analyze` feeds a model for faces of an aligned dataset (`data.alignment`): `images` the rows' decoded
    photos (PIL or uint8 (H, W, 3) RGB), `rows` their alignment columns -> (pixel_values (batch, 3, S, S) float32 in
    [0, 1], each face's loose canonical crop cut from the photo with analyze's code; `prior_crops`, network name ->
    (batch, 2, 3) canonical crop -> network crop affines and the window rows (canonical crop -> photo affine, boxes
    in photo pixels, fer's grey from the photo) for every network of `plan` but the priors in `skip`, {} without a
    plan). A row of an augmented view (`data.aligned_augmentation`) holds its augmented canonical crop: fed as it is,
    its networks' crops and windows placed by its moved geometry in photo pixels through its own canonical affine."""
    faces, landmarks = faces_of_rows(rows)
    photos = [np.ascontiguousarray(np.asarray(image)) for image in images]
    # an augmented view's image is its canonical crop already, and its row holds its photo's fill grey
    views = [view_canonical(row) is not None for row in rows]
    grey = image_bottom_grey(photos)
    grey = np.where(views, [float(row[VIEW_GREY_COLUMN]) if view else 0.0 for row, view in zip(rows, views)], grey)
    # the windows live in photo pixels: the canonical crop -> photo affine places them in the model's input
    faces = dataclasses.replace(faces, bottom_grey=grey)
    crops = [photo[None] if view else cut_canonical_crops([photo], [points[None]])[0]
             for photo, points, view in zip(photos, faces.points, views)]
    pixels = torch.from_numpy(crops_as_pixel_values(np.concatenate(crops)))
    return pixels, ({} if plan is None else _prior_crops(plan, faces, landmarks, skip))


def aligned_landmark_labels(labels: torch.Tensor, rows: Sequence[Mapping], plan: CropPlan) -> torch.Tensor:
    """A landmarks task's `labels` (batch, K, 2) in [0, 1] of each image -> [0, 1] of the crop the model predicts in
    (`CropPlan.label_frame`), for faces of an aligned dataset fed as their canonical crops (`aligned_inputs`)."""
    faces, landmarks = faces_of_rows(rows)
    affines, side = plan.label_frame(faces, landmarks)
    image_affines = torch.from_numpy(compose_affines(affines, faces.canonical))  # image -> label crop
    sizes = torch.from_numpy(faces.image_sizes[:, ::-1].copy())  # width, height
    pixels = labels.double() * sizes[:, None]
    in_crop = pixels @ image_affines[:, :, :2].transpose(1, 2) + image_affines[:, None, :, 2]
    return (in_crop / side).to(labels.dtype)


def landmark_labels_in_frame(labels: torch.Tensor, landmarks: np.ndarray, plan: CropPlan,
                             frame_size: tuple[int, int]) -> torch.Tensor:
    """A landmarks task's `labels` (batch, K, 2) in [0, 1] of each image -> [0, 1] of the crop the model predicts in
    (`CropPlan.label_frame`: the canonical model's crop, else the ArcFace template crop), its faces placed by their
    (batch, 68, 2) `landmarks` in [0, 1] of the image fed whole at `frame_size` (height, width). The inter-ocular NME
    is the same in either frame: each crop is a similarity of the image."""
    faces, points = _faces_in_frame(landmarks, frame_size)
    affines, side = plan.label_frame(faces, points)
    return landmarks_in_crop(labels, torch.from_numpy(affines), frame_size, (side, side))


def _faces_in_frame(landmarks: np.ndarray, frame_size: tuple[int, int],
                    bottom_grey: np.ndarray | None = None) -> tuple[FaceGeometry, np.ndarray]:
    """(batch, 68, 2) points in [0, 1] of each image -> their `FaceGeometry` (the frame taken as the image) and the
    points in frame pixels."""
    height, width = frame_size
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks: expected finite (batch, 68, 2) points in [0, 1] of the image, got shape "
                         f"{landmarks.shape}.")
    points = landmarks * (width, height)
    return FaceGeometry.from_landmarks(points, (height, width), frame_size, bottom_grey), points


def landmarks_in_crop(landmarks: torch.Tensor, affines: torch.Tensor, image_size: tuple[int, int],
                      crop_size: tuple[int, int]) -> torch.Tensor:
    """(batch, K, 2) points in [0, 1] of images of `image_size` (height, width) -> [0, 1] of the crops the (batch, 2, 3)
    image -> crop `affines` cut at `crop_size` (height, width)."""
    pixels = landmarks * landmarks.new_tensor([image_size[1], image_size[0]])
    in_crop = pixels @ affines[:, :, :2].transpose(1, 2).to(pixels.dtype) + affines[:, None, :, 2].to(pixels.dtype)
    return in_crop / in_crop.new_tensor([crop_size[1], crop_size[0]])


__all__ = ["aligned_inputs", "aligned_landmark_labels", "face_crops", "landmark_labels_in_frame",
           "landmarks_in_crop"]
