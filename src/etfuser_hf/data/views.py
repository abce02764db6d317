"""Augmented training with cached priors: the view cache, and the sampler that draws one view per image per epoch
(issue 34, item 1).

On a CPU the priors cost far more than the canonical model, so running them on every augmented batch (`online`)
is slow. The view cache renders each training image's K fixed augmented views once, before the caches: view 0 the
image itself, view 1 its mirror, views 2..K-1 drawn from the level's policy with a recorded seed
(`data.augmentation`). Each view is a row of its own, with its moved landmarks, so the prior-feature cache computes
every prior's features from that very view's crops, and the canonical model reads that view's pixels: the same face
for everyone. A face of an aligned dataset (`--dataset`) is augmented as the canonical crop the model receives
(`data.aligned_augmentation`): view 0 is its photo's row as it is, every other view holds its augmented canonical
crop with the geometry moved. `EpochSampler` then draws, each epoch, every image once (or, balanced, by class) and one
of its views.

    --augment standard --augment-mode views --views 4    # 4 views per training image, cached
    --augment strong --augment-mode online               # the priors run on every augmented batch (GPU)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

from .aligned_augmentation import CROP_SIZE, augment_aligned_face
from .alignment import ALIGNMENT_COLUMN, VIEW_CANONICAL_COLUMN, VIEW_GEOMETRY_COLUMNS, VIEW_GREY_COLUMN
from .augmentation import LEVELS, AugmentPolicy, FaceAugmentation, augment_face
from .image_decoding import BadImage, decode_encoded

VIEW_COLUMN = "view_of"  # the training image a view row was rendered from (its index in the unaugmented split)
VIEW_INDEX_COLUMN = "view"  # the view's number: 0 the image, 1 its mirror, 2.. drawn from its level's policy
VIEW_LEVEL_COLUMN = "view_level"  # the level views 2.. were drawn from; "" for the image and its mirror (shared)
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

    @property
    def label(self) -> str:
        """In words, for a table: "none", "light, 2 views" or "strong, online"."""
        if self.level == "none":
            return "none"
        return f"{self.level}, online" if self.online else f"{self.level}, {self.views} views"

    def record(self) -> dict[str, Any]:
        return {"level": self.level, "mode": self.mode if self.level != "none" else None,
                "views": self.views if self.renders_views else None, "seed": self.seed}


def render_views(train: datasets.Dataset, augmentations: Augmentation | Sequence[Augmentation], image_column: str,
                 point_columns: Sequence[str]) -> datasets.Dataset:
    """`train` with each image replaced by the views every setting of `augmentations` draws from (`views_for`), in
    order per image: view 0 the image, view 1 its mirror (both shared by every level), then per level the views 2..K-1
    of its largest K, drawn from that level's policy by a generator seeded with (seed, image, view, level). Each view
    has its `point_columns` ((K, 2) in [0, 1]) moved alike, `VIEW_COLUMN` naming its image, `VIEW_INDEX_COLUMN` its
    number and `VIEW_LEVEL_COLUMN` its level ("" for the shared two). Several settings (a sweep's candidates) share
    one rendering and one prior-feature cache."""
    settings = [augmentations] if isinstance(augmentations, Augmentation) else list(augmentations)
    rendered = [setting for setting in settings if setting.renders_views]
    if not rendered:
        raise ValueError(f"augmentations: no setting renders views (level other than 'none', mode 'views', views >= 2),"
                         f" got {settings}.")
    if len({setting.seed for setting in rendered}) > 1:
        raise ValueError(f"augmentations: one job renders its views with one seed, got {sorted({s.seed for s in rendered})}.")
    seed = rendered[0].seed
    drawn = {level: max(setting.views for setting in rendered if setting.level == level)
             for level in LEVELS if any(setting.level == level for setting in rendered)}
    plan = [(0, ""), (1, "")] + [(view, level) for level, count in drawn.items() for view in range(2, count)]
    images = train.cast_column(image_column, datasets.Image(decode=False)) if isinstance(
        train.features[image_column], datasets.Image) else train

    aligned = ALIGNMENT_COLUMN in images.column_names
    view_geometry = list(VIEW_GEOMETRY_COLUMNS) if aligned else []
    added = [VIEW_COLUMN, VIEW_INDEX_COLUMN, VIEW_LEVEL_COLUMN, *view_geometry]
    photo_row = {VIEW_CANONICAL_COLUMN: np.zeros((2, 3)).tolist(), VIEW_GREY_COLUMN: 0.0}  # `alignment.view_canonical`

    def expand(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {key: [] for key in [*batch, *added]}
        for row, index in enumerate(indices):
            values = {key: batch[key][row] for key in batch}
            views = (aligned_views if aligned else image_views)(values, image_column, point_columns)
            size, render = views if views is not None else ((0, 0), lambda draw: {})
            for view, level in plan if views is not None else plan[:1]:
                if view < 2:
                    draw = FaceAugmentation.mirror(size[1]) if view else None
                else:
                    generator = np.random.default_rng([seed, index, view, LEVELS.index(level)])
                    draw = AugmentPolicy.of_level(level).sample(generator, size)
                rendered = render(draw)
                for key in batch:
                    out[key].append(rendered.get(key, values[key]))
                out[VIEW_COLUMN].append(index)
                out[VIEW_INDEX_COLUMN].append(view)
                out[VIEW_LEVEL_COLUMN].append(level)
                for key in view_geometry:  # an aligned view's own canonical affine and fill; zeros for the photo's row
                    out[key].append(rendered.get(key, photo_row[key]))
        return out

    features = images.features.copy()
    features[image_column] = datasets.Image()
    features[VIEW_COLUMN] = datasets.Value("int64")
    features[VIEW_INDEX_COLUMN] = datasets.Value("int64")
    features[VIEW_LEVEL_COLUMN] = datasets.Value("string")
    if aligned:
        features[VIEW_CANONICAL_COLUMN] = datasets.Array2D((2, 3), "float64")
        features[VIEW_GREY_COLUMN] = datasets.Value("float64")
    return images.map(expand, batched=True, batch_size=64, with_indices=True, features=features,
                      desc=f"rendering {len(plan)} views per training image")


# One image's views for `render_views`: the (height, width) its draws are for, and a draw (None: view 0, the image)
# -> the view's changed columns (its image as a PIL image, its moved points as lists).
ImageViews = tuple[tuple[int, int], Callable[[FaceAugmentation | None], dict[str, Any]]]


def image_views(values: Mapping[str, Any], image_column: str, point_columns: Sequence[str]) -> ImageViews:
    """Views of an image fed whole (the synthetic faces): the image and its `point_columns` augmented alike."""
    image = as_rgb(values[image_column])
    points = {name: np.asarray(values[name], np.float64) for name in point_columns}

    def render(draw: FaceAugmentation | None) -> dict[str, Any]:
        pixels, moved = augment_face(image, points, draw or FaceAugmentation.identity())
        return {image_column: Image.fromarray(pixels), **{name: value.tolist() for name, value in moved.items()}}

    return image.shape[:2], render


def aligned_views(values: Mapping[str, Any], image_column: str, point_columns: Sequence[str]) -> ImageViews | None:
    """Views of a face of an aligned dataset (`data.aligned_augmentation`): view 0 its row as it is (the photo, fed as
    without augmentation), every other its augmented canonical crop with the geometry moved into it; None where the
    photo cannot be decoded (its one row stays, for the prior features stage to drop and count)."""
    try:
        photo = as_rgb(values[image_column])
    except BadImage:
        return None

    def render(draw: FaceAugmentation | None) -> dict[str, Any]:
        if draw is None:
            return {}
        pixels, columns = augment_aligned_face(photo, values, draw, point_columns)
        return {image_column: Image.fromarray(pixels),
                **{name: value.tolist() if isinstance(value, np.ndarray) else value for name, value in columns.items()}}

    return CROP_SIZE, render


def views_for(train: datasets.Dataset, augmentation: Augmentation) -> datasets.Dataset:
    """The rows of a training split with rendered views (`render_views`) that a run with `augmentation` draws from:
    the image and, where it renders views, its mirror and its level's views 2..K-1; `train` itself where no views
    were rendered. A setting the split holds no views for is refused, naming what it holds."""
    if VIEW_INDEX_COLUMN not in train.column_names:
        return train
    index = np.asarray(train[VIEW_INDEX_COLUMN], np.int64)
    level = np.asarray(train[VIEW_LEVEL_COLUMN], object)
    if not augmentation.renders_views:
        keep = index == 0
    else:
        # level -> its K: the image and its mirror are every level's first two views
        held = {name: 2 + len(set(index[level == name])) for name in set(level) if name}
        if held.get(augmentation.level, 2) < augmentation.views:
            raise ValueError(f"augmentation: {augmentation.level} with {augmentation.views} views, but the training "
                             f"split holds views of {held or 'no level'} (level: K) only.")
        keep = (index < augmentation.views) & ((level == "") | (level == augmentation.level))
    return train.select(np.flatnonzero(keep))


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


__all__ = ["MODES", "VIEW_COLUMN", "VIEW_INDEX_COLUMN", "VIEW_LEVEL_COLUMN", "Augmentation", "EpochSampler",
           "first_view_rows", "image_groups", "render_views", "views_for"]
