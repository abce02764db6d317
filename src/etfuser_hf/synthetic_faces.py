"""SYNTHETIC face images with exact labels: the embedded offline default dataset.

No labelled real face dataset ships in any package registry, so the main job trains on faces drawn here. They are
NOT real faces and results on them say nothing about real-world accuracy; they exist so that the whole pipeline —
real priors, detector, ET-Fuser, Trainer, baselines — runs offline and deterministically.

Every image is drawn from its 68 iBUG landmarks, so the labels are exact:
- expression (7 basic: angry, disgust, fear, happy, sad, surprise, neutral): mouth curvature / opening / width,
  brow height / tilt, eye opening — with per-sample jitter so that classes overlap (a linear probe does not saturate);
- mask (no_mask, mask): `mask_synthesis.apply_face_mask` over the lower face (which hides the mouth cues);
- age_group (child, young, middle, senior): face proportions, wrinkles, greying hair;
- head_pose (yaw, pitch, roll in degrees) and landmarks (68 x (x, y) in [0, 1]).
Identity varies (face shape, skin tone, hair, eye colour), as do background, lighting, blur and noise.
Same (num_samples, image_size, seed) -> byte-identical images.
"""

from __future__ import annotations

import math

import datasets
import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFilter

from .mask_synthesis import MASK_STYLES, apply_face_mask

EXPRESSIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
AGE_GROUPS = ["child", "young", "middle", "senior"]
MASK_LABELS = ["no_mask", "mask"]
_SUPERSAMPLE = 2

# Per expression: mouth curvature (+ smile), mouth opening, mouth half-width, brow raise, brow tilt (+ inner end
# down), eye opening. Means only: every sample adds jitter.
_EXPRESSION_GEOMETRY = {
    "angry": (-0.010, 0.004, 0.080, -0.020, 0.030, 0.75),
    "disgust": (-0.018, 0.010, 0.070, -0.010, 0.015, 0.65),
    "fear": (-0.006, 0.030, 0.085, 0.020, -0.020, 1.25),
    "happy": (0.030, 0.012, 0.105, 0.004, 0.000, 0.85),
    "sad": (-0.026, 0.002, 0.085, 0.006, -0.030, 0.85),
    "surprise": (0.000, 0.070, 0.070, 0.035, -0.005, 1.35),
    "neutral": (0.000, 0.000, 0.090, 0.000, 0.000, 1.00),
}
_SKIN_TONES = np.array([[255, 224, 196], [241, 194, 155], [224, 172, 125], [198, 134, 66], [141, 85, 36], [92, 56, 30]])
_HAIR_COLOURS = np.array([[20, 15, 10], [70, 45, 25], [140, 95, 50], [215, 180, 110], [120, 40, 20]])
_IRIS_COLOURS = np.array([[70, 45, 25], [40, 80, 140], [60, 110, 60], [90, 70, 40]])


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, count: int) -> np.ndarray:
    angles = np.linspace(start, stop, count)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def face_landmarks(expression: str, age_group: int, rng: np.random.Generator) -> np.ndarray:
    """68 iBUG landmarks (68, 2) in a frontal, unit-square face frame, for one expression and age group."""
    curve, opening, half_width, brow_raise, brow_tilt, eye_open = _EXPRESSION_GEOMETRY[expression]
    jitter = lambda scale: rng.normal(0.0, scale)  # noqa: E731
    curve, opening = curve + jitter(0.012), max(0.0, opening + jitter(0.012))
    half_width, brow_raise = half_width + jitter(0.010), brow_raise + jitter(0.010)
    brow_tilt, eye_open = brow_tilt + jitter(0.012), max(0.3, eye_open + jitter(0.18))
    child = age_group == 0
    face_w = (0.34 if child else 0.31) + jitter(0.015)
    face_h = (0.40 if child else 0.44) + jitter(0.015)
    eye_y = (0.50 if child else 0.46) + jitter(0.01)
    eye_dx = 0.13 + jitter(0.008)
    eye_rx = (0.055 if child else 0.048) + jitter(0.004)
    eye_ry = 0.022 * eye_open * (1.15 if child else 1.0)

    points = np.zeros((68, 2))
    points[0:17] = _arc(0.5, 0.47, face_w, face_h, math.pi * 1.0, 0.0, 17)[:, [0, 1]] * [1, 1]
    points[0:17, 1] = 0.47 + np.abs(points[0:17, 1] - 0.47)  # lower half of the oval: jaw from ear to ear
    points[0:17] = points[0:17][::-1] if points[0, 0] > points[16, 0] else points[0:17]
    for side, first in ((-1, 17), (1, 22)):  # brows: outer -> inner on the left, inner -> outer on the right
        xs = 0.5 + side * np.linspace(0.21, 0.05, 5) if side < 0 else 0.5 + np.linspace(0.05, 0.21, 5)
        inner = (xs - 0.5) * side  # 0.05 (inner) .. 0.21 (outer)
        ys = eye_y - 0.075 - brow_raise - 0.012 * np.sin(np.pi * (inner - 0.05) / 0.16) + brow_tilt * (0.21 - inner) / 0.16
        points[first : first + 5] = np.stack([xs, ys], axis=1)
    points[27:31] = np.stack([np.full(4, 0.5), np.linspace(eye_y - 0.01, eye_y + 0.11, 4)], axis=1)
    points[31:36] = np.stack([np.linspace(0.455, 0.545, 5), eye_y + 0.135 + np.array([0, 0.008, 0.012, 0.008, 0])], 1)
    for centre_x, first in ((0.5 - eye_dx, 36), (0.5 + eye_dx, 42)):  # eyes: corner, upper lid, corner, lower lid
        upper = _arc(centre_x, eye_y, eye_rx, eye_ry, math.pi, 2 * math.pi, 4)
        lower = _arc(centre_x, eye_y, eye_rx, eye_ry * 0.8, 0.0, math.pi, 4)[1:3]
        points[first : first + 6] = np.vstack([upper, lower])
    mouth_y = eye_y + 0.23 + (0.0 if not child else -0.02)
    t = np.linspace(-1.0, 1.0, 7)
    upper_lip = np.stack([0.5 + half_width * t, mouth_y - curve * (t**2) - 0.012 * np.cos(t * np.pi / 2)], 1)
    lower_t = np.linspace(1.0, -1.0, 7)[1:-1]
    lower_lip = np.stack([0.5 + half_width * 0.9 * lower_t,
                          mouth_y - curve * lower_t**2 + opening + 0.02 * np.cos(lower_t * np.pi / 2)], 1)
    points[48:55], points[55:60] = upper_lip, lower_lip
    inner_t = np.linspace(-0.7, 0.7, 5)
    inner_upper = np.stack([0.5 + half_width * inner_t, mouth_y - curve * inner_t**2 + 0.002], 1)
    points[60:65] = inner_upper
    points[65:68] = np.stack([0.5 + half_width * np.array([0.45, 0.0, -0.45]),
                              mouth_y - curve * np.array([0.2, 0.0, 0.2]) + opening + 0.002], 1)
    return points


def apply_head_pose(points: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotates frontal landmarks (unit frame, face centre (0.5, 0.5)) by a head pose in degrees, orthographically, with
    a shallow depth profile (nose forward, jaw back) so that yaw and pitch shift features realistically."""
    centred = points - 0.5
    depth = 0.12 * np.exp(-((centred**2).sum(axis=1)) / 0.03) - 0.04 * (np.arange(68) < 17)
    xyz = np.concatenate([centred, depth[:, None]], axis=1)
    y, p, r = np.radians([yaw, pitch, roll])
    rotate_y = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rotate_x = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rotate_z = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return (xyz @ (rotate_z @ rotate_x @ rotate_y).T)[:, :2] + 0.5


def render_face(
    points: np.ndarray, age_group: int, image_size: int, rng: np.random.Generator
) -> PIL.Image.Image:
    """Draws a face from its (posed) landmarks in the unit frame; returns an RGB image of `image_size`."""
    size = image_size * _SUPERSAMPLE
    px = points * size
    background = rng.integers(30, 230, 3)
    gradient = np.linspace(0.7, 1.2, size)[:, None, None] * rng.uniform(0.8, 1.2, 3)
    canvas = np.clip(np.broadcast_to(background, (size, size, 3)) * gradient, 0, 255).astype(np.uint8)
    image = PIL.Image.fromarray(canvas)
    draw = PIL.ImageDraw.Draw(image)

    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.integers(-12, 13, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))]
    grey = {0: 0.0, 1: 0.0, 2: rng.uniform(0.1, 0.4), 3: rng.uniform(0.6, 0.95)}[age_group]
    hair = (hair * (1 - grey) + np.array([200, 200, 200]) * grey).astype(int)
    jaw = px[0:17]
    width = np.linalg.norm(jaw[16] - jaw[0])
    centre_top = (jaw[0] + jaw[16]) / 2
    up = np.array([jaw[16][1] - jaw[0][1], jaw[0][0] - jaw[16][0]]) / max(width, 1e-6)  # perpendicular to the jaw line
    forehead = [tuple(centre_top + (jaw[16] - centre_top) * math.cos(a) + up * width * 0.62 * math.sin(a))
                for a in np.linspace(0, math.pi, 12)]
    hair_outline = [tuple(centre_top + (jaw[16] - centre_top) * 1.12 * math.cos(a) + up * width * 0.78 * math.sin(a))
                    for a in np.linspace(-0.15, math.pi + 0.15, 16)]
    draw.polygon(hair_outline + [tuple(jaw[0] - up * width * 0.15)] + [tuple(jaw[16] - up * width * 0.15)][::-1],
                 fill=tuple(int(c) for c in hair))
    draw.polygon([tuple(p) for p in jaw] + forehead, fill=tuple(int(np.clip(c, 0, 255)) for c in skin))
    shadow = tuple(int(np.clip(c * 0.8, 0, 255)) for c in skin)
    line = max(1, size // 90)

    draw.line([tuple(p) for p in px[27:31]], fill=shadow, width=line)  # nose
    draw.line([tuple(p) for p in px[31:36]], fill=shadow, width=line)
    for first in (36, 42):
        eye = [tuple(p) for p in px[first : first + 6]]
        draw.polygon(eye, fill=(245, 245, 240), outline=(60, 40, 30))
        centre = px[first : first + 6].mean(axis=0)
        radius = np.linalg.norm(px[first + 3] - px[first]) * 0.22
        iris = tuple(int(c) for c in _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))])
        draw.ellipse([*(centre - radius), *(centre + radius)], fill=iris)
        draw.ellipse([*(centre - radius * 0.45), *(centre + radius * 0.45)], fill=(10, 10, 10))
    for first in (17, 22):
        draw.line([tuple(p) for p in px[first : first + 5]], fill=tuple(int(c) for c in hair // 2 + 20), width=line * 2)
    lips = (170 + rng.integers(-25, 25), 80 + rng.integers(-20, 20), 80 + rng.integers(-20, 20))
    draw.polygon([tuple(p) for p in px[48:60]], fill=tuple(int(c) for c in lips))
    draw.polygon([tuple(p) for p in px[60:68]], fill=(90, 30, 35))
    if age_group >= 2:  # wrinkles: forehead lines and nasolabial folds
        for k in range(2 if age_group == 2 else 4):
            y_shift = up * width * (0.12 + 0.06 * k)
            draw.line([tuple(px[19] + y_shift), tuple(px[24] + y_shift)], fill=shadow, width=max(1, line // 2))
        for nose, mouth in ((px[31], px[48]), (px[35], px[54])):
            draw.line([tuple(nose + (nose - px[33]) * 0.4), tuple(mouth + (mouth - px[51]) * 0.2)], fill=shadow, width=line)

    # lighting from one side, then the camera: blur, noise, downsampling
    light = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.25), size)
    array = np.asarray(image, dtype=np.float64) * (light[None, :, None] if rng.random() < 0.5 else light[::-1][None, :, None])
    image = PIL.Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    image = image.filter(PIL.ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.6)))
    image = image.resize((image_size, image_size), PIL.Image.Resampling.LANCZOS)
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, rng.uniform(2, 9), (image_size, image_size, 3))
    return PIL.Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def synthetic_face(index: int, image_size: int = 112, seed: int = 0, mask_probability: float = 0.3) -> dict:
    """One sample; depends only on (index, image_size, seed)."""
    rng = np.random.default_rng([seed, index])
    expression = int(rng.integers(len(EXPRESSIONS)))
    age_group = int(rng.integers(len(AGE_GROUPS)))
    yaw, pitch, roll = rng.normal(0, 14), rng.normal(0, 8), rng.normal(0, 7)
    frontal = face_landmarks(EXPRESSIONS[expression], age_group, rng)
    # framing: scale and shift the face inside the crop like a loose detector box
    scale, shift = rng.uniform(0.9, 1.1), rng.normal(0, 0.025, 2)
    points = (apply_head_pose(frontal, yaw, pitch, roll) - 0.5) * scale + 0.5 + shift
    image = render_face(points, age_group, image_size, rng)
    mask = int(rng.random() < mask_probability)
    if mask:
        style = MASK_STYLES[rng.integers(len(MASK_STYLES))]
        image = apply_face_mask(image, points * image_size, style, rng)
    return {
        "image": image,
        "expression": expression,
        "mask": mask,
        "age_group": age_group,
        "head_pose": [float(yaw), float(pitch), float(roll)],
        "landmarks": points.astype(np.float32).tolist(),
    }


SYNTHETIC_FEATURES = datasets.Features({
    "image": datasets.Image(),
    "expression": datasets.ClassLabel(names=EXPRESSIONS),
    "mask": datasets.ClassLabel(names=MASK_LABELS),
    "age_group": datasets.ClassLabel(names=AGE_GROUPS),
    "head_pose": datasets.Sequence(datasets.Value("float32"), length=3),
    "landmarks": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=2), length=68),
})


def make_synthetic_faces(
    num_samples: int, image_size: int = 112, seed: int = 0, mask_probability: float = 0.3
) -> datasets.Dataset:
    """The SYNTHETIC default dataset as a `datasets.Dataset` with `SYNTHETIC_FEATURES`."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}.")
    if not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32, got {image_size!r}.")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}.")

    def generate():
        for index in range(num_samples):
            yield synthetic_face(index, image_size, seed, mask_probability)

    return datasets.Dataset.from_generator(
        generate, features=SYNTHETIC_FEATURES, cache_dir=None, keep_in_memory=True,
        gen_kwargs=None, config_name=f"synthetic-{num_samples}-{image_size}-{seed}-{mask_probability}",
    )


__all__ = ["EXPRESSIONS", "AGE_GROUPS", "MASK_LABELS", "SYNTHETIC_FEATURES", "make_synthetic_faces", "synthetic_face"]
