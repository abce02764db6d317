"""Augmenting a face of an aligned dataset (issue 34, item 1, for `--dataset`): the augmentation acts on the one face
image the model receives, the loose canonical crop cut from the photo (`data.alignment`), and the face's geometry
moves with it.

A real dataset's face is fed as its canonical crop, every network's crop placed in it from the photo's detection (box,
MTCNN's five points, face-api's 68 landmarks: `data.face_crops.aligned_inputs`). An augmentation A of the canonical
crop (`data.augmentation.augment_face`: warp, colour, erasing) is, in the photo, the affine P = C^-1 A C (C the photo
-> canonical crop affine): the augmented crop is the canonical crop, by C, of the photo moved by P. So the view's row
keeps its photo's frame: the box, the five points, the landmarks (and a landmarks task's labels) moved by P (a mirror
renumbering left and right points), the photo's size, and C as its own canonical affine (`VIEW_CANONICAL_COLUMN`: its
image is that crop, nothing is cut from it). Each network's crop and window is then the one its authors' pipeline
cuts from the moved photo at the photo's own scale (fer's fixed pixel offsets, face-api's bars at the photo's border,
fer's padding the photo's grey, `VIEW_GREY_COLUMN`), cut from the augmented crop: the canonical model and every prior
read the same augmented face, in the view cache and online alike, and an unaugmented row stays as it was.

    pixels, columns = augment_aligned_face(photo, row, policy.sample(rng, CROP_SIZE))
    augmented_row = {**row, "image": pixels, **columns}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..priors.crop_geometry import CANONICAL_CROP_SIZE
from ..priors.crop_plan import image_bottom_grey
from ..priors.crop_warp import cut_canonical_crops
from .alignment import (
    ALIGNMENT_COLUMN,
    BOX_COLUMN,
    DLIB_POINTS_COLUMN,
    POINTS_COLUMN,
    VIEW_CANONICAL_COLUMN,
    VIEW_GREY_COLUMN,
    faces_of_rows,
    view_canonical,
)
from .augmentation import DLIB_5_FLIP, FaceAugmentation, augment_face, move_box, move_pixels

CROP_SIZE = (CANONICAL_CROP_SIZE, CANONICAL_CROP_SIZE)  # what an augmentation of an aligned face is drawn for


def augment_aligned_face(photo: np.ndarray, row: Mapping[str, Any], augmentation: FaceAugmentation,
                         point_columns: Sequence[str] = ()) -> tuple[np.ndarray, dict[str, Any]]:
    """One aligned face augmented: `photo` uint8 (H, W, 3) RGB, `row` its alignment columns (and `point_columns`,
    (K, 2) points in [0, 1] of the photo, e.g. a landmarks task's labels), `augmentation` drawn for `CROP_SIZE` ->
    (its augmented canonical crop, uint8 (S, S, 3); the row's columns of the view: the landmarks and `point_columns`
    moved, in [0, 1] of the photo, the box, five points and dlib's points moved, in its pixels, float32 as the
    alignment stores them, `VIEW_CANONICAL_COLUMN` (2, 3) and `VIEW_GREY_COLUMN`)."""
    if view_canonical(row) is not None:
        raise ValueError("row: its image is an augmented canonical crop already; augment the photo's row.")
    faces, _ = faces_of_rows([row])
    crop = cut_canonical_crops([photo], [faces.points])[0][0]
    pixels, _ = augment_face(crop, {}, augmentation)
    canonical = np.vstack([faces.canonical[0], [0.0, 0.0, 1.0]])
    photo_move = (np.linalg.inv(canonical) @ np.vstack([augmentation.affine, [0.0, 0.0, 1.0]]) @ canonical)[:2]

    def moved(points: np.ndarray) -> np.ndarray:
        return move_pixels(points, photo_move, augmentation.mirrored)

    size = faces.image_sizes[0, ::-1]  # width, height
    columns = {column: (moved(np.asarray(row[column], np.float64) * size) / size).astype(np.float32)
               for column in dict.fromkeys([ALIGNMENT_COLUMN, *point_columns])}
    if faces.dlib_points is not None:  # dlib's five points place its chips; a mirror swaps them eye for eye
        columns[DLIB_POINTS_COLUMN] = move_pixels(faces.dlib_points[0], photo_move, augmentation.mirrored,
                                                  DLIB_5_FLIP).astype(np.float32)
    return pixels, {**columns, POINTS_COLUMN: moved(faces.points[0]).astype(np.float32),
                    BOX_COLUMN: move_box(faces.boxes[0], photo_move).astype(np.float32),
                    VIEW_CANONICAL_COLUMN: faces.canonical[0], VIEW_GREY_COLUMN: float(image_bottom_grey([photo])[0])}


__all__ = ["CROP_SIZE", "augment_aligned_face"]
