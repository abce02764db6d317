"""Augmentation of training faces that every network sees alike (issue 34, item 1).

The unit of augmentation is one row: the face image the model receives and the points that place each network's
crop of it (the faces' 68 landmarks, and any landmark labels). A geometric change is one affine of the image (mirror,
rotation about the centre, a RandomResizedCrop window), applied to the pixels by the package's own crop sampler
(`priors.crop_geometry.cut_crops`) and to the points by the same matrix, a mirror also swapping left and right points
(`FLIP_PERMUTATIONS`); each network's crop is then placed by the moved points, so the canonical model and every prior
read the same augmented face, and a mirrored face's dlib chip is the mirror of its chip. The augmented image stands
in for the photo: each crop's window (face-api's bars, fer's padding grey from its bottom rows) is the one its
authors' pipeline would cut from it (`data.face_crops.face_crops` on the view's pixels and moved points). Photometric changes (colour
jitter, one TrivialAugment-style PIL operation, random erasing) act on those pixels after the warp. Mixup and CutMix
mix two rows' pixels and labels and act on a batch (`mix_batch`).

torchvision.transforms.v2 offers each of these operations, but its wheels do not install beside the CPU build of
torch this project pins (PyPI's torchvision fails to import next to it, and the torchvision that does pulls a 5.5 GB
CUDA torch), and the crops need the geometric change as a matrix anyway: the operations here are small, one affine
sampler and PIL's ImageEnhance / ImageOps.

    policy = AugmentPolicy.of_level("standard")
    augmented = augment_face(image, {"landmarks": points}, policy.sample(rng, image.shape[:2]))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from ..priors.crop_geometry import DLIB_5_FROM_IBUG_68, cut_crops

LEVELS = ("none", "light", "standard", "strong")

# iBUG-68 point i of a face is point FLIP_PERMUTATIONS[68][i] of its mirror image: the jaw, brows, nose base, eyes
# and mouth read right to left (the nose bridge stays); CelebA's five points swap the eyes and the mouth corners.
FLIP_PERMUTATIONS = {
    68: (list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
         + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40] + list(range(54, 47, -1)) + list(range(59, 54, -1))
         + list(range(64, 59, -1)) + [67, 66, 65]),
    5: [1, 0, 2, 4, 3],
}
# dlib's five points (iBUG 45, 42, 36, 39, 33: two corners of each eye, the nose's base) swap eye for eye in a mirror;
# not `FLIP_PERMUTATIONS[5]`, whose five points are MTCNN's and CelebA's (eye centres, nose tip, mouth corners)
DLIB_5_FLIP = [DLIB_5_FROM_IBUG_68.index(FLIP_PERMUTATIONS[68][point]) for point in DLIB_5_FROM_IBUG_68]

# TrivialAugment's photometric operations (Muller & Hutter, ICCV 2021), magnitude m in [0, 1]; its geometric ones
# (shear, translate, rotate) are the affine's business here, so that the points follow.
PHOTOMETRIC_OPERATIONS = ("identity", "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
                          "autocontrast", "equalize")


@dataclass(frozen=True)
class AugmentPolicy:
    """What a level draws from, per image (`sample`) and per batch (`mixup_alpha`, `cutmix_alpha`).

    Args:
        flip: probability of a horizontal mirror.
        area: the RandomResizedCrop window's share of the image area, drawn uniformly from this range.
        aspect: the window's width / height ratio, drawn log-uniformly from this range.
        rotation: the largest rotation about the image centre, in degrees (either way).
        jitter: colour jitter: brightness, contrast and saturation factors drawn from [1 - jitter, 1 + jitter].
        trivial: probability of one TrivialAugment photometric operation at a uniform magnitude.
        erase: probability of erasing one rectangle (2-15% of the image, aspect 0.3-3.3) to black.
        mixup_alpha, cutmix_alpha: Beta(alpha, alpha) of the batch-level mixes (0: off); at most one per batch, each
            with probability one half where both are on. They mix pixels of two rows, so they run online only.
    """

    flip: float = 0.0
    area: tuple[float, float] = (1.0, 1.0)
    aspect: tuple[float, float] = (1.0, 1.0)
    rotation: float = 0.0
    jitter: float = 0.0
    trivial: float = 0.0
    erase: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0

    @classmethod
    def of_level(cls, level: str) -> AugmentPolicy:
        """`none`, `light` (mirror, a 90-100% window, mild colour), `standard` (+ rotation, colour, erasing) or
        `strong` (wider ranges, TrivialAugment, mixup / CutMix)."""
        if level not in LEVELS:
            raise ValueError(f"augment: expected one of {LEVELS}, got {level!r}.")
        return {
            "none": cls(),
            "light": cls(flip=0.5, area=(0.9, 1.0), jitter=0.1),
            "standard": cls(flip=0.5, area=(0.75, 1.0), aspect=(0.9, 1.1), rotation=10.0, jitter=0.2, erase=0.25),
            "strong": cls(flip=0.5, area=(0.6, 1.0), aspect=(0.8, 1.25), rotation=15.0, jitter=0.3, trivial=0.5,
                          erase=0.5, mixup_alpha=0.2, cutmix_alpha=1.0),
        }[level]

    @property
    def mixes_rows(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def sample(self, rng: np.random.Generator, size: tuple[int, int]) -> FaceAugmentation:
        """One image's draw for an image of `size` (height, width)."""
        height, width = size
        flipped = bool(rng.random() < self.flip)
        area = rng.uniform(*self.area) * height * width
        aspect = math.exp(rng.uniform(math.log(self.aspect[0]), math.log(self.aspect[1])))
        window_w, window_h = min(width, math.sqrt(area * aspect)), min(height, math.sqrt(area / aspect))
        left, top = rng.uniform(0, width - window_w), rng.uniform(0, height - window_h)
        angle = rng.uniform(-self.rotation, self.rotation)
        affine = window_affine(size, (left, top, window_w, window_h)) @ rotation_affine(size, angle) @ (
            mirror_affine(width) if flipped else np.eye(3))
        jitter = rng.uniform(1 - self.jitter, 1 + self.jitter, 3) if self.jitter else np.ones(3)
        operation = (PHOTOMETRIC_OPERATIONS[rng.integers(len(PHOTOMETRIC_OPERATIONS))], float(rng.random())) if (
            rng.random() < self.trivial) else ("identity", 0.0)
        erased = erase_box(rng, size) if rng.random() < self.erase else None
        return FaceAugmentation(affine[:2], flipped, tuple(float(value) for value in jitter), operation, erased)


@dataclass(frozen=True)
class FaceAugmentation:
    """One image's augmentation: `affine` (2, 3) image -> augmented image in `crop_geometry`'s convention (pixel
    centres at +0.5), whether it mirrors, colour factors (brightness, contrast, saturation), a photometric operation
    and its magnitude, and the erased rectangle (left, top, width, height) in pixels of the augmented image."""

    affine: np.ndarray
    mirrored: bool = False
    jitter: tuple[float, float, float] = (1.0, 1.0, 1.0)
    operation: tuple[str, float] = ("identity", 0.0)
    erased: tuple[int, int, int, int] | None = None

    @classmethod
    def identity(cls) -> FaceAugmentation:
        return cls(np.eye(3)[:2])

    @classmethod
    def mirror(cls, width: int) -> FaceAugmentation:
        """The plain mirror image of an image `width` pixels wide."""
        return cls(mirror_affine(width)[:2], True)


def mirror_affine(width: int) -> np.ndarray:
    """(3, 3) x -> width - x."""
    return np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def rotation_affine(size: tuple[int, int], degrees: float) -> np.ndarray:
    """(3, 3) rotation by `degrees` (counter-clockwise on screen) about the centre of an image of `size`."""
    height, width = size
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    centre = np.array([width / 2, height / 2])
    linear = np.array([[cos, sin], [-sin, cos]])
    matrix = np.eye(3)
    matrix[:2, :2], matrix[:2, 2] = linear, centre - linear @ centre
    return matrix


def window_affine(size: tuple[int, int], window: tuple[float, float, float, float]) -> np.ndarray:
    """(3, 3) the (left, top, width, height) window stretched onto an image of `size`: RandomResizedCrop."""
    height, width = size
    left, top, window_w, window_h = window
    return np.array([[width / window_w, 0.0, -left * width / window_w],
                     [0.0, height / window_h, -top * height / window_h], [0.0, 0.0, 1.0]])


def erase_box(rng: np.random.Generator, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """RandomErasing's rectangle: 2-15% of the area, aspect log-uniform in [0.3, 3.3], inside the image."""
    height, width = size
    area = rng.uniform(0.02, 0.15) * height * width
    aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
    box_w = min(width, max(1, round(math.sqrt(area * aspect))))
    box_h = min(height, max(1, round(math.sqrt(area / aspect))))
    return int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1)), box_w, box_h


def augment_face(image: np.ndarray, points: Mapping[str, np.ndarray], augmentation: FaceAugmentation
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`image` uint8 (H, W, C) and `points` (name -> (K, 2) in [0, 1] of the image) augmented alike: the warped,
    recoloured, erased image (same size) and each point set moved by the affine (and, mirrored, renumbered), still
    in [0, 1] of the image. K must have a mirror permutation (`FLIP_PERMUTATIONS`) where the augmentation mirrors."""
    height, width = image.shape[:2]
    warped = warp_image(image, augmentation.affine)
    recoloured = photometric(warped, augmentation)
    moved = {name: move_points(np.asarray(value, np.float64), augmentation, (height, width))
             for name, value in points.items()}
    return recoloured, moved


def warp_image(image: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) through the (2, 3) affine onto the same size, bilinear, black outside (`cut_crops`)."""
    if np.allclose(affine, np.eye(3)[:2]):
        return image
    height, width = image.shape[:2]
    channels_last = image if image.ndim == 3 else image[..., None]
    tensor = torch.from_numpy(np.array(channels_last)).permute(2, 0, 1)[None].float()
    if height != width:  # cut_crops cuts squares: cut the longer side's square, keep the image's part
        side = max(height, width)
        warped = cut_crops(tensor, np.asarray(affine)[None], side)[..., :height, :width]
    else:
        warped = cut_crops(tensor, np.asarray(affine)[None], height)
    out = warped[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return out if image.ndim == 3 else out[..., 0]


def move_points(points: np.ndarray, augmentation: FaceAugmentation, size: tuple[int, int]) -> np.ndarray:
    """(K, 2) points in [0, 1] of an image of `size` -> where the augmentation puts them, in [0, 1] of the result;
    mirrored, point i becomes the mirror of point `FLIP_PERMUTATIONS[K][i]` (a left eye stays a left eye)."""
    height, width = size
    return move_pixels(points * (width, height), augmentation.affine, augmentation.mirrored) / (width, height)


def move_pixels(points: np.ndarray, affine: np.ndarray, mirrored: bool,
                flip: Sequence[int] | None = None) -> np.ndarray:
    """(K, 2) points in pixels through the (2, 3) `affine`, renumbered where it mirrors by `flip` (a point set's own
    left/right permutation, e.g. `DLIB_5_FLIP`), by default `FLIP_PERMUTATIONS[K]`."""
    moved = np.asarray(points, np.float64) @ affine[:, :2].T + affine[:, 2]
    if mirrored:
        if flip is None and len(points) not in FLIP_PERMUTATIONS:
            raise ValueError(f"points: a mirror needs a left/right permutation, known for {sorted(FLIP_PERMUTATIONS)} "
                             f"points, got {len(points)}.")
        moved = moved[list(FLIP_PERMUTATIONS[len(points)] if flip is None else flip)]
    return moved


def move_box(box: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A detector's (4,) x1, y1, x2, y2 box in pixels through the (2, 3) `affine`: its centre moved, its width and
    height scaled by how much the affine stretches each output axis (the norms of its rows). A mirror or a
    RandomResizedCrop window moves the box exactly; under a rotation this is the box a detector draws around the
    turned face (the same size), not the larger box around the turned corners."""
    box = np.asarray(box, np.float64)
    centre = affine[:, :2] @ ((box[:2] + box[2:]) / 2) + affine[:, 2]
    half = np.linalg.norm(affine[:, :2], axis=1) * (box[2:] - box[:2]) / 2
    return np.concatenate([centre - half, centre + half])


def photometric(image: np.ndarray, augmentation: FaceAugmentation) -> np.ndarray:
    """Colour jitter, the photometric operation, then erasing, on uint8 (H, W, C)."""
    brightness, contrast, saturation = augmentation.jitter
    name, magnitude = augmentation.operation
    if (brightness, contrast, saturation) == (1.0, 1.0, 1.0) and name == "identity" and augmentation.erased is None:
        return image
    picture = Image.fromarray(image)
    for enhancer, factor in ((ImageEnhance.Brightness, brightness), (ImageEnhance.Contrast, contrast),
                             (ImageEnhance.Color, saturation)):
        if factor != 1.0 and (enhancer is not ImageEnhance.Color or picture.mode == "RGB"):
            picture = enhancer(picture).enhance(factor)
    picture = trivial_operation(picture, name, magnitude)
    out = np.array(picture)
    if augmentation.erased is not None:
        left, top, box_w, box_h = augmentation.erased
        out[top: top + box_h, left: left + box_w] = 0
    return out


def trivial_operation(picture: Image.Image, name: str, magnitude: float) -> Image.Image:
    """One TrivialAugment photometric operation at `magnitude` in [0, 1] (its wide ranges: enhance factors 0.01-1.99,
    posterize 2-8 bits, solarize threshold 256 down to 0)."""
    factor = 0.01 + 1.98 * magnitude
    if name == "identity":
        return picture
    if name in ("brightness", "color", "contrast", "sharpness"):
        if name == "color" and picture.mode != "RGB":
            return picture
        return {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
                "sharpness": ImageEnhance.Sharpness}[name](picture).enhance(factor)
    if name == "posterize":
        return ImageOps.posterize(picture, int(round(8 - 6 * magnitude)))
    if name == "solarize":
        return ImageOps.solarize(picture, int(round(256 * (1 - magnitude))))
    if name == "autocontrast":
        return ImageOps.autocontrast(picture)
    if name == "equalize":
        return ImageOps.equalize(picture)
    raise ValueError(f"operation: expected one of {PHOTOMETRIC_OPERATIONS}, got {name!r}.")


def mix_batch(pixel_values: torch.Tensor, targets: torch.Tensor, policy: AugmentPolicy, rng: np.random.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a batch: `pixel_values` (B, C, H, W), `targets` (B, num_classes) class probabilities ->
    the mixed pixels and targets (lam of each row, 1 - lam of a shuffled partner; CutMix's lam is the pasted box's
    share). One of the two per batch, as `policy` allows; the batch unchanged where neither is on."""
    modes = [mode for mode, alpha in (("mixup", policy.mixup_alpha), ("cutmix", policy.cutmix_alpha)) if alpha > 0]
    if not modes or len(pixel_values) < 2:
        return pixel_values, targets
    mode = modes[rng.integers(len(modes))]
    alpha = policy.mixup_alpha if mode == "mixup" else policy.cutmix_alpha
    lam = float(rng.beta(alpha, alpha))
    partner = torch.from_numpy(rng.permutation(len(pixel_values)))
    if mode == "mixup":
        mixed = lam * pixel_values + (1 - lam) * pixel_values[partner]
    else:
        height, width = pixel_values.shape[-2:]
        box_h, box_w = int(round(height * math.sqrt(1 - lam))), int(round(width * math.sqrt(1 - lam)))
        top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
        mixed = pixel_values.clone()
        box = (..., slice(top, top + box_h), slice(left, left + box_w))
        mixed[box] = pixel_values[partner][box]
        lam = 1 - box_h * box_w / (height * width)
    return mixed, lam * targets + (1 - lam) * targets[partner]


__all__ = ["DLIB_5_FLIP", "FLIP_PERMUTATIONS", "LEVELS", "AugmentPolicy", "FaceAugmentation", "augment_face", "mix_batch",
           "move_box", "move_pixels", "move_points", "warp_image"]
