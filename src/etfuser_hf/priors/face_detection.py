"""Face detection and alignment for in-the-wild photos: MTCNN (Zhang et al. 2016) with the weights shipped in PyPI
`facenet-pytorch` 2.6.0 (MIT), re-implemented in plain PyTorch (no torchvision, no OpenCV).

`detect_and_align(images)` returns, per image, a `FaceDetections` with the face boxes, scores, five landmarks (left
eye, right eye, nose, left mouth corner, right mouth corner, as seen in the image) and face crops aligned by a
similarity transform of the five points onto the standard ArcFace/InsightFace 112x112 template. An image without a
face gives a `FaceDetections` of length 0 (`detections.found` is False) with empty arrays of the usual shapes.

The weights are fetched and converted once by `ensure_face_priors(names=["mtcnn"])` (convert_face_priors.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .convert_face_priors import ensure_face_priors
from .mtcnn import MTCNN, MTCNNONet, MTCNNPNet, MTCNNRNet, nms, size_groups
from .mtcnn_onnx import OnnxMTCNN

# The five-point template of ArcFace/InsightFace for a 112x112 crop (x, y in pixels).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


# ---------------------------------------------------------------------------------------------------------------------
# The three networks (parameter names follow facenet-pytorch's state dicts, so conversion is a plain copy)
# ---------------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------------
# Box utilities
# ---------------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------------
# The cascade
# ---------------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------------
# Alignment and the public entry point
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class FaceDetections:
    """Faces found in one image, best score first. Length 0 (and `found` False) when there is no face; the arrays then
    have a leading dimension of 0.

    boxes (`np.ndarray` float32 `(num_faces, 4)`): x1, y1, x2, y2 in image pixels.
    scores (`np.ndarray` float32 `(num_faces,)`): ONet's face probability.
    landmarks (`np.ndarray` float32 `(num_faces, 5, 2)`): (x, y) of left eye, right eye, nose, left and right mouth
        corner, as seen in the image.
    faces (`np.ndarray` uint8 `(num_faces, output_size, output_size, 3)`): RGB crops aligned to the ArcFace template.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    faces: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def found(self) -> bool:
        """Whether at least one face was detected."""
        return len(self) > 0

    def face_images(self) -> list[Image.Image]:
        """The aligned crops as PIL images (an empty list when no face was found)."""
        return [Image.fromarray(face) for face in self.faces]


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping `source` points (N, 2)
    onto `target` points (N, 2). Returns the 2x3 matrix `[[a, -b, tx], [b, a, ty]]`."""
    x, y = source[:, 0], source[:, 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    # Unknowns (a, b, tx, ty): u = a x - b y + tx, v = b x + a y + ty.
    design = np.concatenate([np.stack([x, -y, ones, zeros], 1), np.stack([y, x, zeros, ones], 1)])
    a, b, tx, ty = np.linalg.lstsq(design, np.concatenate([target[:, 0], target[:, 1]]), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def similarity_transforms(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`similarity_transform` for many point sets at once: `source` and `target` (N, K, 2) (either may be one (K, 2)
    set shared by all) -> (N, 2, 3). The least-squares solution in closed form: centre both sets, then
    a = sum(s . t) / sum(|s|^2), b = sum(s x t) / sum(|s|^2), and the translation maps one centroid onto the other."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    source, target = np.broadcast_arrays(source, target)
    source_mean, target_mean = source.mean(axis=-2, keepdims=True), target.mean(axis=-2, keepdims=True)
    s, t = source - source_mean, target - target_mean
    norm = (s ** 2).sum(axis=(-2, -1))
    a = (s * t).sum(axis=(-2, -1)) / norm
    b = (s[..., 0] * t[..., 1] - s[..., 1] * t[..., 0]).sum(axis=-1) / norm
    rotation = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2)  # (N, 2, 2)
    shift = target_mean[..., 0, :] - np.einsum("nij,nj->ni", rotation, source_mean[..., 0, :])
    return np.concatenate([rotation, shift[..., None]], axis=-1)


def align_faces(images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], output_size: int = 112,
                max_pixels: int = 1 << 22) -> list[np.ndarray]:
    """`align_face` for every face of every image at once: `images` uint8 (H, W, 3), `landmarks[i]` (faces, 5, 2) of
    image i -> one uint8 (faces, output_size, output_size, 3) array per image.

    Same-sized images are stacked (at most `max_pixels` pixels per stack) and sampled in one `grid_sample` call, with
    PIL's conventions so the crops equal `align_face`'s up to a rare off-by-one from float rounding: output pixel
    centres map through the template->image similarity, points outside the image are black, inside ones are bilinear
    with edge clamping, and the value is truncated to uint8."""
    template = ARCFACE_TEMPLATE_112 * (output_size / 112.0)
    results = [np.zeros((len(points), output_size, output_size, 3), np.uint8) for points in landmarks]
    centres = np.arange(output_size, dtype=np.float64) + 0.5
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    pixel_centres = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # (S, S, 3)
    for group in size_groups(images, max_pixels):
        group = [index for index in group if len(landmarks[index])]
        if not group:
            continue
        height, width = images[group[0]].shape[:2]
        most = max(len(landmarks[index]) for index in group)
        # every face's sampling positions in image pixels, (images, most faces, S, S, 2); missing faces stay outside
        positions = np.full((len(group), most, output_size, output_size, 2), -1.0)
        for row, index in enumerate(group):
            inverse = similarity_transforms(template, np.asarray(landmarks[index], np.float64))
            positions[row, : len(inverse)] = np.einsum("fij,yxj->fyxi", inverse, pixel_centres)
        inside = ((positions >= 0) & (positions < np.array([width, height]))).all(-1)
        grid = positions / np.array([width, height]) * 2 - 1  # align_corners=False: pixel u sits at 2u / W - 1
        grid = torch.from_numpy(grid.reshape(len(group), most * output_size, output_size, 2)).float()
        stack = torch.from_numpy(np.stack([images[index] for index in group])).permute(0, 3, 1, 2).float()
        sampled = F.grid_sample(stack, grid, mode="bilinear", padding_mode="border", align_corners=False)
        sampled = sampled.reshape(len(group), 3, most, output_size, output_size).permute(0, 2, 3, 4, 1).numpy()
        # PIL truncates; the epsilon absorbs float32 landing just under an integer PIL computes exactly
        crops = np.floor(sampled + 1e-4).clip(0, 255).astype(np.uint8) * inside[..., None]
        for row, index in enumerate(group):
            results[index] = crops[row, : len(landmarks[index])]
    return results


def align_face(image: Image.Image, landmarks: np.ndarray, output_size: int = 112) -> np.ndarray:
    """Warps `image` so the five `landmarks` (5, 2) land on the ArcFace template scaled to `output_size`; returns
    (output_size, output_size, 3) uint8."""
    template = ARCFACE_TEMPLATE_112 * (output_size / 112.0)
    # PIL's affine transform maps each output pixel back to the input, so fit template -> image directly.
    inverse = similarity_transform(template, np.asarray(landmarks, dtype=np.float64))
    warped = image.transform(
        (output_size, output_size), Image.Transform.AFFINE, data=tuple(inverse.reshape(-1)), resample=Image.BILINEAR
    )
    return np.asarray(warped, dtype=np.uint8)


def _as_rgb_uint8(image, index: int) -> np.ndarray:
    where = f"images[{index}]"
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"{where}: expected a uint8 array (0..255), got dtype {image.dtype}.")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        elif image.ndim == 3 and image.shape[2] in (1, 4):
            image = image[:, :, :3] if image.shape[2] == 4 else np.repeat(image, 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{where}: expected an (H, W, 3) RGB or (H, W) grey array, got shape {image.shape}.")
        if min(image.shape[:2]) < 12:
            raise ValueError(f"{where}: the image must be at least 12x12 pixels, got {image.shape[:2]}.")
        return image
    raise TypeError(
        f"{where}: expected a PIL.Image.Image or a numpy uint8 array (H, W, 3), got {type(image).__name__}."
    )


@lru_cache(maxsize=4)
def _default_detector(cache_dir: str | None) -> MTCNN:
    return MTCNN.from_pretrained(ensure_face_priors(cache_dir, names=["mtcnn"])["mtcnn"])


def detect_faces(
    images,
    detector: MTCNN | OnnxMTCNN | None = None,
    cache_dir: str | Path | None = None,
    max_faces: int | None = None,
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """`detect_and_align` without the alignment: (the images as uint8 (H, W, 3) RGB arrays, one `(boxes (N, 4),
    scores (N,), landmarks (N, 5, 2))` float32 tuple per image, best score first). Arguments as `detect_and_align`'s;
    for callers that cut their own crops of the faces (`analyze`'s canonical crops)."""
    if isinstance(images, (Image.Image, np.ndarray)):
        images = [images]
    if not isinstance(images, (list, tuple)):
        raise TypeError(
            f"images: expected a PIL image, a numpy uint8 array or a list/tuple of them, got {type(images).__name__}."
        )
    if max_faces is not None and (not isinstance(max_faces, int) or max_faces < 1):
        raise ValueError(f"max_faces: expected None or an int >= 1, got {max_faces!r}.")
    arrays = [_as_rgb_uint8(image, index) for index, image in enumerate(images)]
    if detector is None:
        detector = _default_detector(None if cache_dir is None else str(cache_dir))

    if hasattr(detector, "detect_batch"):
        found = detector.detect_batch(arrays)
    else:  # any object with MTCNN's one-image `detect` (a stand-in, an older detector) still works
        found = [detector.detect(array) for array in arrays]
    if max_faces is not None:
        found = [(boxes[:max_faces], scores[:max_faces], points[:max_faces]) for boxes, scores, points in found]
    return arrays, found


def detect_and_align(
    images,
    output_size: int = 112,
    detector: MTCNN | OnnxMTCNN | None = None,
    cache_dir: str | Path | None = None,
    max_faces: int | None = None,
) -> list[FaceDetections]:
    """Detects faces with MTCNN and aligns each to the ArcFace template.

    Args:
        images: one image or a list/tuple of images; each a `PIL.Image.Image` or a numpy uint8 array (H, W, 3) RGB
            (or (H, W) grey).
        output_size: side of the aligned square crops (the template is scaled from 112).
        detector: an `MTCNN` (or an `OnnxMTCNN`); by default the converted facenet-pytorch weights from the prior
            cache. All images are detected together (`detect_batch`; a detector with only MTCNN's one-image
            `detect` is called image by image) and all faces aligned together (`align_faces`).
        cache_dir: prior cache (default `$ETFUSER_CACHE` or `~/.cache/etfuser_hf`) used when `detector` is None.
        max_faces: keep at most this many faces per image (highest scores first); None keeps all.

    Returns:
        One `FaceDetections` per input image (a list even for a single image). An image without faces gives an
        empty `FaceDetections`: `len(result) == 0`, `result.found` is False.
    """
    if not isinstance(output_size, int) or output_size < 16:
        raise ValueError(f"output_size: expected an int >= 16, got {output_size!r}.")
    arrays, found = detect_faces(images, detector, cache_dir, max_faces)
    faces = align_faces(arrays, [points for _, _, points in found], output_size)
    return [FaceDetections(boxes=boxes, scores=scores, landmarks=points, faces=crops)
            for (boxes, scores, points), crops in zip(found, faces)]


__all__ = [
    "ARCFACE_TEMPLATE_112",
    "MTCNN",
    "FaceDetections",
    "MTCNNONet",
    "MTCNNPNet",
    "MTCNNRNet",
    "OnnxMTCNN",
    "align_face",
    "align_faces",
    "detect_and_align",
    "detect_faces",
    "nms",
    "similarity_transform",
    "similarity_transforms",
]
