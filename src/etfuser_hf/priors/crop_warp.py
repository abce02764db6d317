"""Cutting crops out of photos (issue 32), shared by `analyze` and training: one warp per face (`warp_crops`, the
sampling of `crop_geometry.cut_crops` with OpenCV), each face's loose canonical crop (`cut_canonical_crops`, what the
model is fed as `pixel_values`) and the ArcFace-aligned centre of it (`arcface_crops`). Training cuts its faces with
these very functions (`data.alignment`), so a model sees in training the pixels `analyze` feeds it."""

from __future__ import annotations

import numpy as np

from .crop_geometry import CANONICAL_CROP_MARGIN, CANONICAL_CROP_SIZE, antialias_samples, canonical_crop_affines


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


def crops_as_pixel_values(crops: np.ndarray) -> np.ndarray:
    """uint8 (faces, S, S, 3) RGB crops -> the model's float32 (faces, 3, S, S) in [0, 1], contiguous."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


__all__ = ["arcface_crops", "crops_as_pixel_values", "cut_canonical_crops", "warp_crops"]
