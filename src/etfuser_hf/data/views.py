"""Augmented training with cached priors: the view cache, and the sampler that draws one view per image per epoch
(issue 34, item 1).

On a CPU the priors cost far more than the canonical model, so running them on every augmented batch (`online`)
is slow. The view cache renders each training image's K fixed augmented views once, before the caches: view 0 the
image itself, view 1 its mirror, views 2..K-1 drawn from the level's policy with a recorded seed
(`data.augmentation`). Each view is a row of its own, with its moved landmarks, so the prior-feature cache computes
every prior's features from that very view's crops, and the canonical model reads that view's pixels: the same face
for everyone. `EpochSampler` then draws, each epoch, every image once (or, balanced, by class) and one of its views.

    --augment standard --augment-mode views --views 4    # 4 views per training image, cached
    --augment strong --augment-mode online               # the priors run on every augmented batch (GPU)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

from .augmentation import AugmentPolicy, FaceAugmentation, augment_face
from .image_decoding import decode_encoded

VIEW_COLUMN = "view_of"  # the training image a view row was rendered from (its index in the unaugmented split)
MODES = ("auto", "online", "views")  # auto: views where the runs train on a CPU, else online


@dataclass(frozen=True)
class Augmentation:
    """A run's augmentation: the level's policy, online or by cached views, K views, and the seed of the views."""

    level: str = "none"
    mode: str = "views"
    views: int = 1
    seed: int = 0

    @property
    def policy(self) -> AugmentPolicy:
        return AugmentPolicy.of_level(self.level)

    def policy_for(self, problem_type: str) -> AugmentPolicy:
        """The policy a task of `problem_type` trains with: mixup and CutMix mix class labels, so only single-label
        tasks get them."""
        if problem_type == "single_label_classification":
            return self.policy
        return dataclasses.replace(self.policy, mixup_alpha=0.0, cutmix_alpha=0.0)

    @property
    def online(self) -> bool:
        return self.level != "none" and self.mode == "online"

    @property
    def renders_views(self) -> bool:
        return self.level != "none" and self.mode == "views" and self.views > 1

    def record(self) -> dict[str, Any]:
        return {"level": self.level, "mode": self.mode if self.level != "none" else None,
                "views": self.views if self.renders_views else None, "seed": self.seed}


def render_views(train: datasets.Dataset, augmentation: Augmentation, image_column: str,
                 point_columns: Sequence[str]) -> datasets.Dataset:
    """`train` with each image replaced by its K views (`augmentation.views` rows per image, in order): view 0 the
    image, view 1 its mirror, the others drawn from the policy by a generator seeded with (seed, image, view), each
    with its `point_columns` ((K, 2) in [0, 1]) moved alike and `VIEW_COLUMN` naming its image."""
    policy, count = augmentation.policy, augmentation.views
    images = train.cast_column(image_column, datasets.Image(decode=False)) if isinstance(
        train.features[image_column], datasets.Image) else train

    def expand(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {key: [] for key in batch}
        out[VIEW_COLUMN] = []
        for row, index in enumerate(indices):
            image = as_rgb(batch[image_column][row])
            points = {name: np.asarray(batch[name][row], np.float64) for name in point_columns}
            for view in range(count):
                if view < 2:
                    draw = FaceAugmentation.mirror(image.shape[1]) if view else FaceAugmentation.identity()
                else:
                    draw = policy.sample(np.random.default_rng([augmentation.seed, index, view]), image.shape[:2])
                pixels, moved = augment_face(image, points, draw)
                for key in batch:
                    value = moved[key].tolist() if key in moved else batch[key][row]
                    out[key].append(Image.fromarray(pixels) if key == image_column else value)
                out[VIEW_COLUMN].append(index)
        return out

    features = images.features.copy()
    features[image_column] = datasets.Image()
    features[VIEW_COLUMN] = datasets.Value("int64")
    return images.map(expand, batched=True, batch_size=64, with_indices=True, features=features,
                      desc=f"rendering {count} views per training image")


def as_rgb(image: Any) -> np.ndarray:
    """An encoded (`datasets.Image(decode=False)` dict) or PIL image as uint8 (H, W, 3): the views are RGB, as the
    processor makes every image."""
    picture = decode_encoded(image) if isinstance(image, dict) else image
    return np.asarray(picture.convert("RGB"))


class EpochSampler(torch.utils.data.Sampler):
    """Each epoch, every training image once in a fresh random order (or, with `weights`, as many draws with
    replacement, each image in proportion to its weight: the class-balanced sampler) and, for each draw, one of its
    views at random. `groups` (rows,) the image each row shows (`VIEW_COLUMN`; rows without views: each its own).
    The order is fixed by `seed` and advances from epoch to epoch."""

    def __init__(self, groups: Sequence[int], seed: int, weights: Sequence[float] | None = None):
        groups = np.asarray(groups, np.int64)
        self.images, inverse = np.unique(groups, return_inverse=True)
        self.rows = [np.flatnonzero(inverse == index) for index in range(len(self.images))]
        if weights is not None and len(weights) != len(self.images):
            raise ValueError(f"weights: one per training image expected ({len(self.images)}), got {len(weights)}.")
        self.weights = None if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
        self.generator = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[int]:
        count = len(self.images)
        if self.weights is None:
            order = self.generator.permutation(count)
        else:
            order = self.generator.choice(count, count, replace=True, p=self.weights)
        return iter(int(self.rows[image][self.generator.integers(len(self.rows[image]))]) for image in order)


def image_groups(train: datasets.Dataset) -> np.ndarray:
    """(rows,) the image each training row shows: `VIEW_COLUMN` where views were rendered, else each row itself."""
    if VIEW_COLUMN in train.column_names:
        return np.asarray(train[VIEW_COLUMN], np.int64)
    return np.arange(len(train))


def first_view_rows(train: datasets.Dataset) -> np.ndarray:
    """The index of one row per training image (its first view), in image order: where per-image statistics (class
    counts) are read."""
    _, first = np.unique(image_groups(train), return_index=True)
    return first


__all__ = ["MODES", "VIEW_COLUMN", "Augmentation", "EpochSampler", "first_view_rows", "image_groups", "render_views"]
