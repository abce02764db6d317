"""Masked-face synthesis from facial landmarks, as the mask-wearing datasets (MaskedFace-Net, RMFD's simulated part)
were built: a mask outline is fitted to the lower face — the jaw line from point 1 to 15 of the iBUG-68 scheme, the
chin (8) and the nose bridge (27..30) — and drawn in one of four styles with soft, face-shaped shading:

- `"surgical"`: light blue / white / green / pink / black, three horizontal pleats, a nose wire and ear loops;
- `"cloth"`: plain, striped, checked or dotted fabric in a random colour pair, with a woven texture;
- `"n95"`: a rounded cup, a centre seam and (sometimes) an exhalation valve;
- `"kn95"`: the folded "fish" shape, pointed at the nose bridge and below the chin, with a vertical crease.

Everything random comes from `seed`, so the same (image, landmarks, style, seed) always gives the same bytes.

    masked = apply_face_mask(image, landmarks_px, style="surgical", seed=0)          # (68, 2) or (5, 2) points
    dataset = dataset.map(MaskAugmentation(probability=0.5, seed=0), with_indices=True)  # adds a "mask" label

Where only the five detector points exist (eyes, nose tip, mouth corners — `face_detection.detect_and_align`), the
68 points are approximated by a similarity fit of a mean frontal face onto them (`landmarks_from_five_points`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFilter

from .face_geometry import face_landmarks

MASK_STYLES = ("surgical", "cloth", "n95", "kn95")
CLOTH_PATTERNS = ("plain", "stripes", "checks", "dots")
_SURGICAL_COLOURS = ((168, 200, 225), (235, 238, 240), (150, 190, 170), (230, 185, 200), (40, 40, 45))
_CLOTH_COLOURS = ((30, 30, 35), (120, 20, 30), (40, 60, 120), (200, 170, 120), (90, 110, 60), (210, 120, 150),
                  (235, 235, 230))
_N95_COLOURS = ((245, 245, 240), (225, 225, 215))
_KN95_COLOURS = ((245, 245, 245), (30, 30, 35), (215, 220, 230))

JAW = slice(0, 17)
NOSE_BRIDGE = slice(27, 31)
CHIN = 8
# iBUG-68 points that correspond to the detector's five: eye centres (means of 36..41 and 42..47), nose tip (30),
# mouth corners (48, 54); left/right as seen in the image.
FIVE_POINT_SOURCES = (range(36, 42), range(42, 48), (30,), (48,), (54,))


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _points(array: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in array]


def _shade(colour: Sequence[float], factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


@lru_cache(maxsize=1)
def mean_face_landmarks() -> np.ndarray:
    """(68, 2) mean frontal neutral face in a unit square (the synthetic generator's geometry, averaged over 64 fixed
    identities): the template `landmarks_from_five_points` fits onto detections."""
    rng = np.random.default_rng(0)
    mean = np.mean([face_landmarks("neutral", 1, rng) for _ in range(64)], axis=0)
    mean.setflags(write=False)
    return mean


def landmarks_from_five_points(points: np.ndarray) -> np.ndarray:
    """Approximates the 68 iBUG points (68, 2) from five detector points (5, 2) — left eye, right eye, nose tip, left
    and right mouth corner, in pixels — by the least-squares similarity transform of `mean_face_landmarks()`."""
    from ..priors.face_detection import similarity_transform

    points = np.asarray(points, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"points must have shape (5, 2) (eyes, nose, mouth corners), got {points.shape}.")
    if np.linalg.norm(points[1] - points[0]) < 1e-6 or not np.isfinite(points).all():
        raise ValueError(f"points must be finite with distinct eyes (points[0] != points[1]), got {points.tolist()}.")
    template = mean_face_landmarks()
    anchors = np.stack([template[list(indices)].mean(axis=0) for indices in FIVE_POINT_SOURCES])
    matrix = similarity_transform(anchors, points)
    return template @ matrix[:, :2].T + matrix[:, 2]


def _as_68_points(landmarks: np.ndarray) -> np.ndarray:
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape == (5, 2):
        return landmarks_from_five_points(landmarks)
    if landmarks.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2) (iBUG-68, pixel coordinates) or (5, 2) (detector "
                         f"points), got {landmarks.shape}.")
    if not np.isfinite(landmarks).all():
        raise ValueError("landmarks must be finite (no NaN/inf).")
    return landmarks


def mask_polygon(landmarks: np.ndarray, style: str = "surgical") -> np.ndarray:
    """Outline (N, 2) in pixel coordinates covering nose, mouth and chin for `style`.

    The lower edge follows the jaw from point 1 to 15, pushed slightly off the skin and sagging below the chin (8);
    the upper edge crosses the nose bridge (27..30): straight for surgical and cloth masks, a rounded cup for N95, a
    peak at the bridge for KN95 (whose lower edge also comes to a point under the chin)."""
    if style not in MASK_STYLES:
        raise ValueError(f"style must be one of {MASK_STYLES}, got {style!r}.")
    landmarks = _as_68_points(landmarks)
    centre = landmarks[JAW].mean(axis=0)
    down = landmarks[CHIN] - landmarks[33]  # nose base -> chin, the mask's vertical axis
    jaw = centre + (landmarks[1:16] - centre) * 1.06  # masks stand a little off the skin
    profile = np.sin(np.linspace(0.0, np.pi, len(jaw)))
    if style == "kn95":  # a pointed lower edge: the fold meets below the chin
        profile = 1.0 - np.abs(np.linspace(-1.0, 1.0, len(jaw)))
    jaw = jaw + profile[:, None] * down * {"n95": 0.12, "kn95": 0.18}.get(style, 0.08)
    left, right = jaw[0], jaw[-1]
    across = right - left
    bridge = landmarks[28] + (landmarks[29] - landmarks[28]) * {"n95": 0.2, "kn95": 0.25}.get(style, 0.5)
    if style == "n95":  # a smooth arc from cheek to cheek through the bridge
        t = np.linspace(1.0, -1.0, 9)[1:-1]
        mid = (left + right) / 2
        top = mid + np.outer(t, across / 2) + np.outer(1.0 - t**2, bridge - mid)
    elif style == "kn95":  # straight from the cheeks up to a peak on the bridge
        top = np.stack([right + (bridge - right) * 0.55 - down * 0.05, bridge, left + (bridge - left) * 0.55 - down * 0.05])
    else:
        cheeks = landmarks[15] - landmarks[1]  # the skin line, not the pushed-out jaw: keeps the edge off the eyes
        top = np.stack([bridge + cheeks * 0.225, bridge, bridge - cheeks * 0.225])
    return _below_the_eyes(np.vstack([jaw, top]), landmarks)


def _below_the_eyes(polygon: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Moves outline points that reach within a margin of the lower eyelids down along the face's vertical axis
    (27 -> 8): on faces with a high nose bridge or a rolled head the bridge line would otherwise touch the eyes."""
    down = landmarks[CHIN] - landmarks[27]
    length = max(float(np.linalg.norm(down)), 1e-6)
    down = down / length
    lowest_eye = float((landmarks[36:48] @ down).max())
    margin = 0.07 * length + 2.0  # + the soft edge's blur
    depth = polygon @ down
    return polygon + np.clip(lowest_eye + margin - depth, 0.0, None)[:, None] * down


def _cloth_texture(size: tuple[int, int], colour: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """(H, W, 3) float fabric: a pattern in a second colour over the base colour, plus a woven-noise texture."""
    width, height = size
    base = np.broadcast_to(colour, (height, width, 3)).astype(np.float64)
    second = np.asarray(_CLOTH_COLOURS[rng.integers(len(_CLOTH_COLOURS))], np.float64)
    pattern = CLOTH_PATTERNS[rng.integers(len(CLOTH_PATTERNS))]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    period = max(3.0, scale * rng.uniform(0.08, 0.16))
    if pattern == "stripes":
        angle = rng.uniform(0, np.pi)
        weight = (np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period) > 0.3).astype(np.float64)
    elif pattern == "checks":  # gingham: half-tone where one set of bands crosses, full where both do
        weight = ((np.floor(xs / period) % 2) + (np.floor(ys / period) % 2)) / 2
    elif pattern == "dots":
        phase = rng.uniform(0, period, 2)
        dx, dy = (xs + phase[0]) % period - period / 2, (ys + phase[1]) % period - period / 2
        weight = (dx**2 + dy**2 < (period * 0.25) ** 2).astype(np.float64)
    else:
        weight = np.zeros((height, width))
    fabric = base * (1 - weight[..., None]) + second * weight[..., None]
    weave = 6.0 * (np.sin(xs * 2.2) * np.sin(ys * 2.2))[..., None]
    return fabric + weave + rng.normal(0.0, 8.0, (height, width, 1))


def _shading(size: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W, 1) multiplicative light: the mask curves away from the camera towards the cheeks and under the chin."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    top, chin = landmarks[29], landmarks[CHIN]
    axis = chin - top
    length = max(float(np.linalg.norm(axis)), 1e-6)
    axis = axis / length
    half_width = max(float(np.linalg.norm(landmarks[15] - landmarks[1])) / 2, 1e-6)
    offset_x, offset_y = xs - top[0], ys - top[1]
    along = (offset_x * axis[0] + offset_y * axis[1]) / length  # 0 at the bridge, 1 at the chin
    sideways = (offset_x * -axis[1] + offset_y * axis[0]) / half_width  # 0 on the midline, +-1 at the jaw
    light = (1.0 - 0.25 * np.clip(np.abs(sideways), 0, 1.3) ** 2) * (1.0 - 0.12 * np.clip(along, 0, 1.3))
    return light[..., None]


def apply_face_mask(
    image: PIL.Image.Image,
    landmarks: np.ndarray,
    style: str = "surgical",
    seed: int | np.random.Generator | None = None,
) -> PIL.Image.Image:
    """Draws a face mask on a copy of `image`.

    Args:
        image: the face image (any PIL mode; RGB is returned).
        landmarks: (68, 2) iBUG-68 points in pixel coordinates of `image`, or the five detector points (5, 2) (eyes,
            nose tip, mouth corners), from which the 68 are approximated.
        style: one of `MASK_STYLES`.
        seed: int or `np.random.Generator` for colours, pattern and details (same seed, same mask).

    Returns:
        The masked RGB image, same size as `image`.
    """
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}.")
    polygon = mask_polygon(landmarks, style)  # validates style and landmarks
    landmarks = _as_68_points(landmarks)
    rng = _rng(seed)
    palette = {"surgical": _SURGICAL_COLOURS, "cloth": _CLOTH_COLOURS, "n95": _N95_COLOURS, "kn95": _KN95_COLOURS}[style]
    colour = np.array(palette[rng.integers(len(palette))], dtype=np.float64)

    image = image.convert("RGB")
    face_width = float(np.linalg.norm(landmarks[15] - landmarks[1]))
    line = max(1, int(round(face_width / 60)))
    if style == "cloth":
        fabric = _cloth_texture(image.size, colour, rng, face_width)
        layer = PIL.Image.fromarray(np.clip(fabric, 0, 255).astype(np.uint8))
    else:
        layer = PIL.Image.new("RGB", image.size, _shade(colour, 1.0))
    draw = PIL.ImageDraw.Draw(layer)
    seam = _shade(colour, 0.82)
    top_edge = polygon[15:]  # mask_polygon: 15 jaw points, then the upper edge from right to left
    top, chin = top_edge[len(top_edge) // 2], polygon[7]
    if style in ("surgical", "kn95") or (style == "cloth" and rng.random() < 0.5):  # ear loops
        loops = _shade((235, 235, 235) if style != "kn95" or colour.mean() > 100 else colour, 1.0)
        for ear, cheek in ((landmarks[0], polygon[0]), (landmarks[16], polygon[14])):
            PIL.ImageDraw.Draw(image).line(_points([ear, cheek]), fill=loops, width=line)
    if style == "surgical":  # three horizontal pleats between nose and chin, and the nose wire along the top edge
        for fraction in (0.3, 0.5, 0.7):
            drop = (chin - top) * (fraction - 0.35)
            draw.line(_points([polygon[0] + drop, polygon[14] + drop]), fill=seam, width=line)
        draw.line(_points(top_edge), fill=_shade(colour, 0.9), width=line)
    elif style == "n95":  # a centre seam and, half the time, an exhalation valve on one cheek
        draw.line(_points([top, chin]), fill=seam, width=line)
        if rng.random() < 0.5:
            side = landmarks[4] if rng.random() < 0.5 else landmarks[12]
            centre = landmarks[[48, 54]].mean(axis=0) + (side - landmarks[[48, 54]].mean(axis=0)) * 0.45
            radius = face_width * 0.07
            draw.ellipse([*(centre - radius), *(centre + radius)], fill=(190, 190, 185), outline=seam)
    elif style == "kn95":  # the vertical fold and a welded edge
        draw.line(_points([top, chin]), fill=seam, width=line)
        draw.line(_points(np.vstack([polygon, polygon[:1]])), fill=_shade(colour, 0.9), width=line)

    layer = PIL.Image.fromarray((np.asarray(layer, np.float64) * _shading(image.size, landmarks)).clip(0, 255)
                                .astype(np.uint8))
    alpha = PIL.Image.new("L", image.size, 0)
    PIL.ImageDraw.Draw(alpha).polygon(_points(polygon), fill=255)
    alpha = alpha.filter(PIL.ImageFilter.GaussianBlur(radius=max(0.5, face_width / 150)))  # soft edge, no aliasing
    return PIL.Image.composite(layer, image, alpha)


class MaskAugmentation:
    """`datasets.map`-friendly augmentation giving mask-wearing labels to any face dataset.

    With probability `probability` it draws a mask (style drawn from `styles`) on `example[image_column]` and sets
    `example[label_column]` to 1, else leaves the image and sets 0. Landmarks come from `example[landmarks_column]`
    ((68, 2) or (5, 2), in [0, 1] or in pixels); where the dataset has none, pass `detector` (an
    `face_detection.MTCNN`, e.g. `MTCNN.from_pretrained(...)`) to take the five points of the best face found by
    `detect_and_align`. An image where no face is found keeps its pixels and gets label 0 — check
    `example[label_column]` rather than assuming `probability` of the rows are masked.

    Deterministic: each example's draw depends only on `seed` and its index (`dataset.map(aug, with_indices=True)`;
    without indices every row uses index 0, i.e. the same random stream).
    """

    def __init__(
        self,
        probability: float = 0.5,
        styles: Sequence[str] = MASK_STYLES,
        seed: int = 0,
        image_column: str = "image",
        landmarks_column: str = "landmarks",
        label_column: str = "mask",
        detector: Any | None = None,
    ):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}.")
        if isinstance(styles, str) or not styles or any(style not in MASK_STYLES for style in styles):
            raise ValueError(f"styles must be a non-empty list drawn from {MASK_STYLES}, got {styles!r}.")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}.")
        self.probability, self.styles, self.seed = probability, tuple(styles), seed
        self.image_column, self.landmarks_column, self.label_column = image_column, landmarks_column, label_column
        self.detector = detector

    def landmarks(self, example: dict[str, Any]) -> np.ndarray | None:
        """(68, 2) or (5, 2) pixel landmarks of the example's face, or None where no face is found."""
        image = example[self.image_column]
        if example.get(self.landmarks_column) is not None:
            points = np.asarray(example[self.landmarks_column], dtype=np.float64)
            points = points.reshape(-1, 2) if points.size in (10, 136) else points
            if points.shape not in ((68, 2), (5, 2)):
                raise ValueError(f"example[{self.landmarks_column!r}] must hold 68 or 5 (x, y) points, got shape "
                                 f"{points.shape}.")
            if points.max() <= 1.5:  # normalised coordinates
                points = points * np.array(image.size, dtype=np.float64)
            return points
        if self.detector is None:
            raise ValueError(f"example has no {self.landmarks_column!r} landmarks; pass landmarks_column= naming them "
                             f"or detector= (a face_detection.MTCNN) to find them.")
        from ..priors.face_detection import detect_and_align

        found = detect_and_align(image.convert("RGB"), detector=self.detector, max_faces=1)[0]
        return found.landmarks[0].astype(np.float64) if found.found else None

    def __call__(self, example: dict[str, Any], index: int = 0) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index])
        if rng.random() >= self.probability:
            return {**example, self.label_column: 0}
        style = self.styles[rng.integers(len(self.styles))]
        points = self.landmarks(example)
        if points is None:
            return {**example, self.label_column: 0}
        image = apply_face_mask(example[self.image_column], points, style, rng)
        return {**example, self.image_column: image, self.label_column: 1}


__all__ = [
    "CLOTH_PATTERNS",
    "MASK_STYLES",
    "MaskAugmentation",
    "apply_face_mask",
    "landmarks_from_five_points",
    "mask_polygon",
    "mean_face_landmarks",
]
