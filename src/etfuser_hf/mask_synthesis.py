"""Masked-face synthesis from 68 iBUG landmarks, as the mask-wearing datasets (MaskedFace-Net, RMFD's simulated
part) were built: a mask polygon is fitted to the lower face — jaw line from ear to ear, up to the nose bridge — and
drawn with a style (surgical pleats, cloth, N95) and soft shading. Deterministic for a given seed.

    masked = apply_face_mask(image, landmarks_px, style="surgical", seed=0)
    dataset = dataset.map(MaskAugmentation(probability=0.5, seed=0))   # adds / overwrites a "mask" label
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFilter

MASK_STYLES = ("surgical", "cloth", "n95")
_SURGICAL_COLOURS = ((168, 200, 225), (235, 238, 240), (150, 190, 170), (40, 40, 45))
_CLOTH_COLOURS = ((30, 30, 35), (120, 20, 30), (40, 60, 120), (200, 170, 120), (90, 110, 60), (210, 120, 150))
_N95_COLOURS = ((245, 245, 240), (225, 225, 215))

JAW = slice(0, 17)
NOSE_BRIDGE = slice(27, 31)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def mask_polygon(landmarks: np.ndarray, style: str = "surgical") -> np.ndarray:
    """Outline (N, 2) in pixel coordinates covering nose, mouth and chin: the jaw from point 1 to 15, pushed slightly
    outwards and below the chin, closed over the nose bridge between points 28 and 29."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    centre = landmarks[JAW].mean(axis=0)
    jaw = landmarks[1:16]
    jaw = centre + (jaw - centre) * 1.06  # masks stand a little off the skin
    chin_drop = (landmarks[8] - landmarks[33]) * (0.08 if style != "n95" else 0.12)
    jaw = jaw + np.sin(np.linspace(0.0, np.pi, len(jaw)))[:, None] * chin_drop  # sag most below the chin
    bridge = landmarks[28] + (landmarks[29] - landmarks[28]) * (0.2 if style == "n95" else 0.5)
    half_width = np.linalg.norm(landmarks[15] - landmarks[1]) / 2
    across = (landmarks[15] - landmarks[1]) / max(np.linalg.norm(landmarks[15] - landmarks[1]), 1e-6)
    top = [bridge + across * half_width * 0.45, bridge, bridge - across * half_width * 0.45]
    return np.vstack([jaw, top])


def apply_face_mask(
    image: PIL.Image.Image,
    landmarks: np.ndarray,
    style: str = "surgical",
    seed: int | np.random.Generator | None = None,
) -> PIL.Image.Image:
    """Draws a face mask on a copy of `image`.

    Args:
        image: the face image (any PIL mode; RGB is returned).
        landmarks: (68, 2) iBUG-68 points in pixel coordinates of `image`.
        style: one of `MASK_STYLES`.
        seed: int or `np.random.Generator` for the colour and pleat choice (same seed, same mask).
    """
    if style not in MASK_STYLES:
        raise ValueError(f"style must be one of {MASK_STYLES}, got {style!r}.")
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2) (iBUG-68, pixel coordinates), got {landmarks.shape}.")
    rng = _rng(seed)
    palette = {"surgical": _SURGICAL_COLOURS, "cloth": _CLOTH_COLOURS, "n95": _N95_COLOURS}[style]
    colour = np.array(palette[rng.integers(len(palette))], dtype=np.float64)
    polygon = mask_polygon(landmarks, style)

    image = image.convert("RGB")
    layer = PIL.Image.new("RGB", image.size, tuple(int(c) for c in colour))
    alpha = PIL.Image.new("L", image.size, 0)
    PIL.ImageDraw.Draw(alpha).polygon([tuple(p) for p in polygon], fill=255)
    draw = PIL.ImageDraw.Draw(layer)
    face_width = float(np.linalg.norm(landmarks[15] - landmarks[1]))
    line = max(1, int(round(face_width / 60)))
    left, right = landmarks[2], landmarks[14]
    if style == "surgical":  # three horizontal pleats between nose and chin
        for fraction in (0.3, 0.5, 0.7):
            y_offset = (landmarks[8] - landmarks[29]) * fraction
            start, end = left + y_offset * 0.6 + (landmarks[29] - left) * 0.05, right + y_offset * 0.6
            draw.line([tuple(start), tuple(end)], fill=tuple(int(c * 0.82) for c in colour), width=line)
        for ear, tip in ((landmarks[0], landmarks[2]), (landmarks[16], landmarks[14])):  # ear loops
            PIL.ImageDraw.Draw(image).line([tuple(ear), tuple(tip)], fill=(235, 235, 235), width=line)
    elif style == "cloth":  # a woven texture
        noise = rng.normal(0.0, 12.0, (image.size[1], image.size[0], 1))
        layer = PIL.Image.fromarray(np.clip(np.asarray(layer, np.float64) + noise, 0, 255).astype(np.uint8))
    else:  # n95: a central seam and a valve
        draw.line([tuple(landmarks[29]), tuple(landmarks[8])], fill=tuple(int(c * 0.85) for c in colour), width=line)
        centre = landmarks[[48, 54]].mean(axis=0) + (landmarks[4] - landmarks[12]) * 0.15
        radius = face_width * 0.07
        draw.ellipse([*(centre - radius), *(centre + radius)], fill=(190, 190, 185))

    # shading: darker towards the jaw, as the mask curves away from the light
    shade = np.linspace(1.0, 0.8, image.size[1])[:, None, None]
    layer = PIL.Image.fromarray((np.asarray(layer, np.float64) * shade).clip(0, 255).astype(np.uint8))
    alpha = alpha.filter(PIL.ImageFilter.GaussianBlur(radius=max(0.5, face_width / 150)))
    return PIL.Image.composite(layer, image, alpha)


class MaskAugmentation:
    """`datasets.map`-friendly augmentation: with probability `probability`, draws a mask (style drawn from `styles`)
    on `example[image_column]` using `example[landmarks_column]` ((68, 2) in [0, 1] or pixels) and sets
    `example[label_column]` to 1 (mask) or 0 (no mask). Deterministic: each example's draw depends only on `seed`
    and its index (pass `with_indices=True` to `datasets.map`)."""

    def __init__(
        self,
        probability: float = 0.5,
        styles: Sequence[str] = MASK_STYLES,
        seed: int = 0,
        image_column: str = "image",
        landmarks_column: str = "landmarks",
        label_column: str = "mask",
    ):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}.")
        unknown = [style for style in styles if style not in MASK_STYLES]
        if unknown or not styles:
            raise ValueError(f"styles must be a non-empty subset of {MASK_STYLES}, got {list(styles)}.")
        self.probability, self.styles, self.seed = probability, tuple(styles), seed
        self.image_column, self.landmarks_column, self.label_column = image_column, landmarks_column, label_column

    def __call__(self, example: dict[str, Any], index: int = 0) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index])
        image = example[self.image_column]
        if rng.random() >= self.probability:
            return {**example, self.label_column: 0}
        landmarks = np.asarray(example[self.landmarks_column], dtype=np.float64).reshape(68, 2)
        if landmarks.max() <= 1.5:  # normalised coordinates
            landmarks = landmarks * np.array(image.size, dtype=np.float64)
        style = self.styles[rng.integers(len(self.styles))]
        return {**example, self.image_column: apply_face_mask(image, landmarks, style, rng), self.label_column: 1}


__all__ = ["MASK_STYLES", "apply_face_mask", "mask_polygon", "MaskAugmentation"]
