"""SYNTHETIC face images with exact labels: the embedded offline default dataset.

No labelled real face dataset ships in any package registry, so the main job trains on faces drawn here. They are
NOT real faces and results on them say nothing about real-world accuracy; they exist so that the whole pipeline —
real priors, detector, ET-Fuser, Trainer, baselines — runs offline and deterministically.

Every image is drawn from its 68 iBUG landmarks, so the labels are exact:
- expression (7 basic: angry, disgust, fear, happy, sad, surprise, neutral): mouth curvature / opening / width,
  brow height / tilt, eye opening — with per-sample jitter large enough that neighbouring classes overlap (angry /
  disgust, fear / surprise, sad / neutral), so a linear probe on one prior does not saturate the task;
- mask (no_mask, mask): `mask_synthesis.apply_face_mask` over the lower face (which hides the mouth cues);
- age_group (child, young, middle, senior): face proportions and eye size, wrinkles, greying / receding hair;
- head_pose (yaw, pitch, roll in degrees) and landmarks (68 x (x, y) in [0, 1] of the image, iBUG-68 order).
Identity varies (face shape, skin tone, hair style and colour, eye colour, lips), as do background clutter,
lighting, blur and noise. Faces are drawn at twice the size and downsampled (antialiasing).
Same (num_samples, image_size, seed, mask_probability) -> byte-identical images; each sample depends only on
(index, image_size, seed, mask_probability), so any slice can be regenerated on its own.
"""

from __future__ import annotations

import functools
import math

import datasets
import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFilter

from .face_geometry import apply_head_pose, face_landmarks
from .mask_synthesis import MASK_STYLES, apply_face_mask

EXPRESSIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
AGE_GROUPS = ["child", "young", "middle", "senior"]
MASK_LABELS = ["no_mask", "mask"]
_SUPERSAMPLE = 2
_CHUNK = 256  # images encoded per Arrow batch: bounds the memory held as PIL images

_SKIN_TONES = np.array([[255, 224, 196], [241, 194, 155], [224, 172, 125], [198, 134, 66], [141, 85, 36], [92, 56, 30]])
_HAIR_COLOURS = np.array([[20, 15, 10], [70, 45, 25], [140, 95, 50], [215, 180, 110], [120, 40, 20]])
_IRIS_COLOURS = np.array([[70, 45, 25], [40, 80, 140], [60, 110, 60], [90, 70, 40]])
_COS, _SIN = np.cos(np.linspace(0, 2 * np.pi, 24, endpoint=False)), np.sin(np.linspace(0, 2 * np.pi, 24, endpoint=False))


def _rgb(colour: np.ndarray, factor: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(np.asarray(colour, np.float64) * factor, 0, 255))


def _xy(points: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points]


@functools.lru_cache(maxsize=4)
def _pixel_grid(size: int) -> np.ndarray:
    """(size, size, 2) float32 (x, y) pixel coordinates."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([xs, ys], axis=-1)


def _background(size: int, rng: np.random.Generator) -> PIL.Image.Image:
    """A lit wall with a few soft out-of-focus shapes, so the face is not the only structure in the frame. Drawn and
    blurred at a quarter of the size (cheap), then upsampled."""
    small = max(8, size // 4)
    colour = rng.integers(30, 230, 3)
    gradient = np.linspace(rng.uniform(0.6, 0.9), rng.uniform(1.0, 1.3), small)[:, None, None] * rng.uniform(0.8, 1.2, 3)
    canvas = np.clip(np.broadcast_to(colour, (small, small, 3)) * gradient, 0, 255).astype(np.uint8)
    image = PIL.Image.fromarray(canvas)
    draw = PIL.ImageDraw.Draw(image)
    for _ in range(rng.integers(0, 5)):
        x, y, w, h = rng.uniform(0, small, 2).tolist() + rng.uniform(small * 0.1, small * 0.5, 2).tolist()
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x - w / 2, y - h / 2, x + w / 2, y + h / 2], fill=_rgb(rng.integers(20, 235, 3)))
    image = image.filter(PIL.ImageFilter.GaussianBlur(radius=small / 30))
    return image.resize((size, size), PIL.Image.Resampling.BICUBIC)


def render_face(points: np.ndarray, age_group: int, image_size: int, rng: np.random.Generator) -> PIL.Image.Image:
    """Draws a face from its (posed) landmarks (68, 2) in the unit frame; returns an RGB image of `image_size`."""
    size = image_size * _SUPERSAMPLE
    px = points * size
    image = _background(size, rng)
    draw = PIL.ImageDraw.Draw(image)

    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.integers(-12, 13, 3)
    grey = {0: 0.0, 1: 0.0, 2: rng.uniform(0.1, 0.45), 3: rng.uniform(0.6, 0.95)}[age_group]
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * (1 - grey) + np.array([205, 205, 205]) * grey
    if np.abs(hair - skin).sum() < 90:  # hair the colour of the skin would erase the head outline
        hair = hair * 0.45
    jaw = px[0:17]
    width = max(float(np.linalg.norm(jaw[16] - jaw[0])), 1e-6)
    centre_top = (jaw[0] + jaw[16]) / 2
    across = (jaw[16] - centre_top) / (width / 2)  # unit vector from the face's left to right ear
    up = np.array([across[1], -across[0]])  # unit vector towards the top of the head
    ellipse = lambda centre, rx, ry: _xy(centre + np.outer(_COS, across * rx) + np.outer(_SIN, up * ry))  # noqa: E731

    # behind the face: shoulders, neck, long hair, ears
    chin, shirt = px[8], rng.integers(20, 235, 3)
    shoulder_y = chin - up * width * 0.35
    draw.polygon(_xy([shoulder_y - across * width * 1.3, shoulder_y + across * width * 1.3,
                      shoulder_y + across * width * 1.6 - up * size, shoulder_y - across * width * 1.6 - up * size]),
                 fill=_rgb(shirt))
    draw.polygon(_xy([jaw[4], jaw[12], shoulder_y + across * width * 0.28, shoulder_y - across * width * 0.28]),
                 fill=_rgb(skin, 0.75))
    long_hair = age_group < 3 and rng.random() < 0.45
    crown = centre_top + up * width * 0.1
    if long_hair:
        draw.polygon(ellipse(crown - up * width * 0.35, width * 0.62, width * 0.95), fill=_rgb(hair, 0.85))
    for corner, side in ((jaw[1], -1), (jaw[15], 1)):
        ear = corner + across * side * width * 0.03 + up * width * 0.06
        draw.polygon(ellipse(ear, width * 0.07, width * 0.13), fill=_rgb(skin, 0.88))

    # head: hair cap (receding for seniors), face oval from the jaw and a forehead arc
    bald = age_group == 3 and rng.random() < 0.35
    if not bald:
        draw.polygon(ellipse(crown, width * 0.56, width * 0.72), fill=_rgb(hair))
    forehead = [centre_top + across * width / 2 * math.cos(a) + up * width * 0.62 * math.sin(a)
                for a in np.linspace(0, math.pi, 12)]
    face_outline = _xy(np.vstack([jaw, np.array(forehead)]))
    draw.polygon(face_outline, fill=_rgb(skin))
    face_mask = PIL.Image.new("L", (size, size), 0)
    PIL.ImageDraw.Draw(face_mask).polygon(face_outline, fill=255)
    if not bald and rng.random() < 0.7:  # fringe over the upper forehead
        hairline = 0.42 if age_group < 3 else 0.52
        fringe = [centre_top + across * width / 2 * 1.02 * math.cos(a) + up * width * 0.64 * math.sin(a)
                  for a in np.linspace(0, math.pi, 12)]
        lower = [centre_top + across * width / 2 * 0.95 * math.cos(a) + up * width * (0.64 - hairline * 0.5 * math.sin(a) ** 0.5) * math.sin(a)
                 for a in np.linspace(math.pi, 0, 12)]
        draw.polygon(_xy(np.vstack([fringe, lower])), fill=_rgb(hair))

    line = max(1, size // 90)
    shadow = _rgb(skin, 0.78)
    if rng.random() < 0.5:  # blush
        for cheek in (px[2] * 0.45 + px[31] * 0.55, px[14] * 0.45 + px[35] * 0.55):
            radius = width * 0.07
            draw.ellipse([*(cheek - radius), *(cheek + radius)], fill=_rgb(skin * [1.02, 0.9, 0.88]))
    # eyes: socket shadow, white, iris + pupil clipped by the lids, lash line
    eye_layer, eye_mask = image.copy(), PIL.Image.new("L", (size, size), 0)
    eye_draw, mask_draw = PIL.ImageDraw.Draw(eye_layer), PIL.ImageDraw.Draw(eye_mask)
    iris_colour = _rgb(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))])
    gaze = rng.normal(0, 0.08, 2)
    for first in (36, 42):
        eye = px[first : first + 6]
        centre, eye_width = eye.mean(axis=0), float(np.linalg.norm(eye[3] - eye[0]))
        socket = centre - up * eye_width * 0.08
        draw.polygon(ellipse(socket, eye_width * 0.62, eye_width * 0.38), fill=_rgb(skin, 0.9))
        eye_draw.polygon(_xy(eye), fill=(238, 236, 230))
        iris_centre, radius = centre + across * gaze[0] * eye_width + up * gaze[1] * eye_width, eye_width * 0.23
        eye_draw.ellipse([*(iris_centre - radius), *(iris_centre + radius)], fill=iris_colour)
        eye_draw.ellipse([*(iris_centre - radius * 0.45), *(iris_centre + radius * 0.45)], fill=(12, 10, 10))
        glint = iris_centre + (across - up) * radius * 0.35
        eye_draw.ellipse([*(glint - radius * 0.15), *(glint + radius * 0.15)], fill=(250, 250, 250))
        mask_draw.polygon(_xy(eye), fill=255)
    image.paste(eye_layer, mask=eye_mask)
    for first in (36, 42):
        draw.line(_xy(px[first : first + 4]), fill=(35, 25, 20), width=line * 2, joint="curve")
        draw.line(_xy(np.vstack([px[first + 3 : first + 6], px[first : first + 1]])), fill=_rgb(skin, 0.6), width=line)
    brow = _rgb(hair * 0.5 + 15) if grey < 0.5 else _rgb(hair * 0.8)
    for first in (17, 22):
        draw.line(_xy(px[first : first + 5]), fill=brow, width=int(line * rng.uniform(2.0, 3.5)), joint="curve")
    # nose: bridge shadow, tip, nostrils
    draw.line(_xy(px[27:31] + across * width * 0.025), fill=shadow, width=line)
    draw.line(_xy(px[31:36]), fill=_rgb(skin, 0.7), width=line)
    for nostril in (px[32], px[34]):
        radius = width * 0.018
        draw.ellipse([*(nostril - radius), *(nostril + radius * np.array([1, 0.6]))], fill=_rgb(skin, 0.4))
    # mouth: inner mouth, teeth when open, lips (upper a little darker)
    lips = skin * [0.85, 0.55, 0.55] + np.array([40, 10, 15]) + rng.integers(-15, 15, 3)
    inner = px[60:68]
    draw.polygon(_xy(inner), fill=(70, 20, 25))
    opening = float(np.linalg.norm(px[66] - px[62]))
    if opening > size * 0.015:
        teeth = np.vstack([px[60:65], px[64:59:-1] - up * opening * 0.35])
        draw.polygon(_xy(teeth), fill=(235, 230, 215))
    draw.polygon(_xy(np.vstack([px[48:55], px[64:59:-1]])), fill=_rgb(lips, 0.88))
    draw.polygon(_xy(np.vstack([px[54:60], px[48:49], px[60:61], px[67:64:-1], px[64:65]])), fill=_rgb(lips))
    if age_group >= 2:  # wrinkles: forehead lines, nasolabial folds, crow's feet
        thin = max(1, line // 2 + (age_group == 3))
        for k in range(2 if age_group == 2 else 4):
            shift = up * width * (0.12 + 0.06 * k)
            draw.line(_xy([px[19] + shift, px[24] + shift]), fill=shadow, width=thin)
        for nose, mouth in ((px[31], px[48]), (px[35], px[54])):
            draw.line(_xy([nose + (nose - px[33]) * 0.4, mouth + (mouth - px[51]) * 0.2]), fill=shadow, width=line)
        if age_group == 3:
            for corner, side in ((px[36], -1), (px[45], 1)):
                for angle in (-0.4, 0.0, 0.4):
                    direction = across * side * math.cos(angle) + up * math.sin(angle)
                    draw.line(_xy([corner + direction * width * 0.03, corner + direction * width * 0.09]), fill=shadow, width=thin)

    # shading: the face oval darkens towards its rim (a rounded surface), light comes from one side
    grid = _pixel_grid(size)
    offset = grid - px[29].astype(np.float32)
    along, vertical = offset @ (across / (width * 0.55)).astype(np.float32), offset @ (up / (width * 0.8)).astype(np.float32)
    rim = 1.0 - 0.28 * np.minimum(along**2 + vertical**2, 1.5) ** 1.5
    inside = np.asarray(face_mask, dtype=np.float32) / 255.0
    light = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.3), size, dtype=np.float32)
    factor = (inside * rim + (1.0 - inside)) * (light if rng.random() < 0.5 else light[::-1])[None, :]
    array = np.asarray(image, dtype=np.float32) * factor[..., None]
    image = PIL.Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    # the camera: defocus, downsampling, sensor noise
    image = image.resize((image_size, image_size), PIL.Image.Resampling.LANCZOS)
    image = image.filter(PIL.ImageFilter.GaussianBlur(radius=rng.uniform(0.2, 0.9)))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(2, 8), (image_size, image_size, 3))
    return PIL.Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def synthetic_face(index: int, image_size: int = 112, seed: int = 0, mask_probability: float = 0.3) -> dict:
    """One sample (a row of `make_synthetic_faces`); depends only on (index, image_size, seed, mask_probability)."""
    rng = np.random.default_rng([seed, index])
    expression = int(rng.integers(len(EXPRESSIONS)))
    age_group = int(rng.integers(len(AGE_GROUPS)))
    yaw, pitch, roll = rng.normal(0, 14), rng.normal(0, 8), rng.normal(0, 7)
    frontal = face_landmarks(EXPRESSIONS[expression], age_group, rng)
    # framing: scale and shift the face inside the crop like a loose detector box
    scale, shift = rng.uniform(0.85, 1.05), rng.normal(0, 0.025, 2)
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
    num_samples: int, image_size: int = 112, seed: int = 0, mask_probability: float = 0.3, first_index: int = 0
) -> datasets.Dataset:
    """The SYNTHETIC default dataset: `num_samples` drawn faces as a `datasets.Dataset` with `SYNTHETIC_FEATURES`
    (image, expression, mask, age_group, head_pose (yaw, pitch, roll in degrees), landmarks (68, 2) in [0, 1]):
    sample indices `first_index .. first_index + num_samples - 1` (a slice far along costs no more than the first).

    Built in memory, never through the `datasets` cache: a cache keyed on the arguments would hand back stale images
    after the renderer changes.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32, got {image_size!r}.")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}.")
    if isinstance(first_index, bool) or not isinstance(first_index, int) or first_index < 0:
        raise ValueError(f"first_index must be a non-negative int, got {first_index!r}.")
    chunks = []
    for start in range(first_index, first_index + num_samples, _CHUNK):
        rows = [synthetic_face(index, image_size, seed, mask_probability)
                for index in range(start, min(start + _CHUNK, first_index + num_samples))]
        chunks.append(datasets.Dataset.from_list(rows, features=SYNTHETIC_FEATURES))
    dataset = chunks[0] if len(chunks) == 1 else datasets.concatenate_datasets(chunks)
    dataset.info.description = (f"SYNTHETIC faces drawn by etfuser_hf.data.synthetic_faces (seed {seed}, {image_size}px, "
                                f"mask probability {mask_probability}); not real photographs.")
    return dataset


__all__ = ["AGE_GROUPS", "EXPRESSIONS", "MASK_LABELS", "SYNTHETIC_FEATURES", "apply_head_pose", "face_landmarks",
           "make_synthetic_faces", "render_face", "synthetic_face"]
