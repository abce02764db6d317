"""Batching face datasets for the Trainer: images -> `pixel_values`, label columns -> labels, cached prior columns
-> `prior_features`, the faces' landmarks -> each network's crop (`prior_crops`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch

from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..priors.crop_plan import CropPlan
from .aligned_augmentation import CROP_SIZE, augment_aligned_face
from .alignment import ALIGNMENT_COLUMN, aligned_columns
from .augmentation import AugmentPolicy, augment_face, mix_batch
from .face_crops import aligned_inputs, aligned_landmark_labels, face_crops, landmark_labels_in_frame
from .feature_cache import PRIOR_COLUMN_PREFIX, VIEW_SEPARATOR
from .feature_rows import FIXED_SHAPE_FEATURES, CachedFeatureRows
from .image_cache import rgb_array
from .image_decoding import BadImage, decode_encoded

logger = logging.getLogger(__name__)


def pixel_values(images: Sequence[Any], processor: ETFuserImageProcessor) -> torch.Tensor:
    """(batch, 3, H, W) RGB in [0, 1], exactly what `processor(images)` returns. Images already RGB at the processor's
    size (the synthetic faces, aligned crops, a decoded `image_cache.PIXEL_COLUMN`) skip the processor's per-image
    conversions: in a training loop of a small canonical model those cost more than the model itself."""
    height, width = processor.size["height"], processor.size["width"]
    if processor.do_rescale and not processor.do_normalize:
        arrays = [rgb_array(image, height, width) for image in images]
        if all(array is not None for array in arrays):
            return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(1.0 / processor.rescale_factor)
    return processor(list(images), return_tensors="pt")["pixel_values"]


def face_inputs(images: Sequence[Any], rows: Sequence[Mapping[str, Any]], processor: ETFuserImageProcessor,
                crop_plan: CropPlan | None, geometry_column: str | None, skip: Iterable[str] = ()
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What a batch feeds the model for decoded `images` and their `rows`: (pixel_values (batch, 3, S, S), prior_crops,
    network name -> (batch, 2, 3) affines, and window rows where a network's pipeline bars or pads its crop). For an
    aligned dataset's faces (`geometry_column` the alignment's) each face's canonical crop cut from its photo
    (`aligned_inputs`, as `analyze` feeds it), else the image resized by `processor`; each network's crop placed by
    the faces in `geometry_column` through `crop_plan` (but the priors in `skip`; {} without a plan or a geometry
    column)."""
    if geometry_column == ALIGNMENT_COLUMN:
        return aligned_inputs(images, rows, crop_plan, skip=skip)
    pixels = pixel_values(images, processor)
    if crop_plan is None or geometry_column is None:
        return pixels, {}
    return pixels, face_crops(row_landmarks(rows, geometry_column), crop_plan, tuple(pixels.shape[-2:]), skip=skip,
                              pixel_values=pixels)


def row_landmarks(rows: Sequence[Mapping[str, Any]], column: str) -> np.ndarray:
    """(batch, 68, 2) float64: the faces' landmarks in [0, 1] of each image, from `column`."""
    return np.stack([np.asarray(row[column], np.float64) for row in rows])


@dataclass
class FaceCollator:
    """Batches rows of a face dataset for ET-Fuser: `pixel_values` from `image_column`, `labels` from `label_column`
    and, where a `PriorFeatureCache` added them, `prior_features` from the `prior__<name>` columns (those of
    `feature_view`, the model's way of reading the priors, where it is not the recipe's)."""

    processor: ETFuserImageProcessor
    label_column: str
    num_labels: int
    image_column: str = "image"
    use_cached_features: bool = True
    include_landmarks: bool = False  # for the landmark-based auxiliary tasks
    include_pixel_values: bool = True  # a priors_only model fed from the cache needs no pixels at all
    feature_view: str = ""  # feature_cache.feature_view of the model's prior_feature

    # what `labels` holds: class ids (single-label), (batch, num_labels) multi-hot floats (multi-label), (batch,)
    # floats (regression) or (batch, K, 2) landmarks (`label_batch`)
    problem_type: str = "single_label_classification"
    # Each network's own crop of the face (`prior_crops`), placed by the (68, 2) landmarks in [0, 1] of the image in
    # `geometry_column` through the model's `crop_plan` (`CropPlan.for_model`); without either, every network sees
    # the whole image resized. A landmarks task's labels are mapped into the crop the model predicts in
    # (`CropPlan.label_frame`). With `geometry_column` the alignment's (`data.alignment.ALIGNMENT_COLUMN`: a real
    # dataset's faces, found as `analyze` finds them) `pixel_values` are each face's loose canonical crop cut from the
    # original image, as `analyze` feeds them (`data.face_crops.aligned_inputs`), not the image resized.
    crop_plan: CropPlan | None = None
    geometry_column: str | None = None
    # Online augmentation (training batches only): each row's image and its `point_columns` ((K, 2) in [0, 1]: the
    # faces' landmarks, a landmarks task's labels) augmented alike before anything else, so that every network's
    # crop is placed on the augmented face (an aligned dataset's face as its augmented canonical crop,
    # `data.aligned_augmentation`); mixup / CutMix then mix the batch's pixels and class targets.
    augmentation: AugmentPolicy | None = None
    point_columns: tuple[str, ...] = ()

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if self.include_pixel_values:
            rows = decoded_rows(rows, self.image_column)
        rng = None
        if self.augmentation is not None:  # seeded from torch's generator: the Trainer seeds it per run and worker
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
            rows = self.augmented_rows(rows, rng)
        batch: dict[str, Any] = self.label_batch(rows)
        cached = self.cached_columns(rows[0])
        size = (self.processor.size["height"], self.processor.size["width"])
        if self.reads_geometry and self.problem_type == "landmarks":  # labels in the frame the model predicts in
            batch["labels"] = (aligned_landmark_labels(batch["labels"], rows, self.crop_plan) if self.aligned else
                               landmark_labels_in_frame(batch["labels"], row_landmarks(rows, self.geometry_column),
                                                        self.crop_plan, size))
        if self.include_pixel_values:
            batch["pixel_values"], crops = face_inputs([row[self.image_column] for row in rows], rows, self.processor,
                                                       self.crop_plan if self.reads_geometry or self.aligned else None,
                                                       self.geometry_column, skip=cached)
            if crops:
                batch["prior_crops"] = crops
        if self.augmentation is not None and self.augmentation.mixes_rows:
            batch["pixel_values"], batch["labels"] = self.mixed(batch["pixel_values"], batch["labels"], rng)
        if self.include_landmarks:
            batch["landmarks"] = torch.tensor(np.stack([np.asarray(row["landmarks"], np.float32) for row in rows]))
        if cached:
            batch["prior_features"] = {
                name: torch.from_numpy(np.stack([np.asarray(row[key], np.float32) for row in rows]))
                for name, key in cached.items()
            }
        return batch

    def augmented_rows(self, rows: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
        """`rows` with each image and its point columns augmented by one draw of the policy; an aligned dataset's
        faces as their augmented canonical crops, the geometry moved into them (`augment_aligned_face`)."""
        size = (self.processor.size["height"], self.processor.size["width"])
        augmented = []
        for row in rows:
            image = row[self.image_column]
            if self.aligned:
                pixels, moved = augment_aligned_face(np.asarray(image.convert("RGB")), row,
                                                     self.augmentation.sample(rng, CROP_SIZE), self.point_columns)
                augmented.append({**row, self.image_column: pixels, **moved})
                continue
            pixels = rgb_array(image, *size) if isinstance(image, bytes) else np.asarray(image.convert("RGB"))
            points = {name: np.asarray(row[name], np.float64) for name in self.point_columns}
            pixels, moved = augment_face(pixels, points, self.augmentation.sample(rng, pixels.shape[:2]))
            augmented.append({**row, self.image_column: pixels, **moved})
        return augmented

    def mixed(self, pixel_values: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixup / CutMix of a single-label batch: the labels become (batch, num_labels) class probabilities, which
        the model's loss takes as soft targets."""
        if self.problem_type != "single_label_classification":
            raise ValueError(f"augmentation: mixup and CutMix mix class labels; a {self.problem_type} task cannot "
                             f"take them (use a level without them).")
        targets = torch.nn.functional.one_hot(labels, self.num_labels).float()
        return mix_batch(pixel_values, targets, self.augmentation, rng)

    @property
    def aligned(self) -> bool:
        """Whether the rows are faces of an aligned dataset (`data.alignment`), fed as `analyze` feeds them."""
        return self.geometry_column == ALIGNMENT_COLUMN

    @property
    def reads_crops(self) -> bool:
        return self.crop_plan is not None and self.geometry_column is not None

    @property
    def reads_geometry(self) -> bool:
        """Whether a batch needs the faces' landmarks: to cut the networks' crops from the pixels, or to map a
        landmarks task's labels into the model's frame (also when the priors come from the cache)."""
        return self.reads_crops and (self.include_pixel_values or self.problem_type == "landmarks")

    def cached_columns(self, column_names: Iterable[str]) -> dict[str, str]:
        """Prior name -> the cached feature column this collator reads (those of its `feature_view`)."""
        cached = {}
        for key in column_names if self.use_cached_features else ():
            name, _, view = key.removeprefix(PRIOR_COLUMN_PREFIX).partition(VIEW_SEPARATOR)
            if key.startswith(PRIOR_COLUMN_PREFIX) and view == self.feature_view:
                cached[name] = key
        return cached

    def view(self, dataset: datasets.Dataset) -> datasets.Dataset | CachedFeatureRows:
        """`dataset` narrowed to the columns this collator reads, its arrays served as numpy: the same rows and
        values, but fetching a batch no longer formats every other view's cached grids into nested Python lists (a
        third of a training run's time with grid tokens cached for three tasks), and the cached features it reads
        come as views of the cache's own memory (`feature_rows.CachedFeatureRows`), not through `datasets`'
        per-row formatting."""
        if dataset.format["type"] == "custom":
            raise ValueError("dataset: has a transform (set_transform / with_transform), which the collator's view "
                             "would replace; bake it in with dataset.map(...) or use --augment, whose augmentation "
                             "the priors see too.")
        label_columns = self.label_columns()
        cached = list(self.cached_columns(dataset.column_names).values())
        # fixed-shape columns (how feature_cache writes them) are served from the cache's memory; any other (a
        # user's nested lists) through `datasets`' numpy formatting
        features = [column for column in cached if isinstance(dataset.features[column], FIXED_SHAPE_FEATURES)]
        arrays = [column for column in cached if column not in features]
        arrays += [column for column in label_columns
                   if column == "landmarks" or (column == self.label_column and self.problem_type != "single_label_classification")]
        if self.aligned and (self.reads_geometry or self.include_pixel_values):  # canonical crops need them too
            arrays += aligned_columns(dataset.column_names)
        elif self.reads_geometry:
            arrays.append(self.geometry_column)
        columns = [self.image_column] if self.include_pixel_values else []
        columns += [column for column in label_columns if column not in columns] + arrays + features
        missing = [column for column in columns if column not in dataset.column_names]
        if missing:
            raise ValueError(f"dataset: has no column {missing} (columns: {dataset.column_names}).")
        narrowed = dataset.select_columns(list(dict.fromkeys(columns)))
        if self.include_pixel_values and isinstance(narrowed.features[self.image_column], datasets.Image):
            # decoded in `__call__`, where an image that cannot be decoded costs its row, not the run
            narrowed = narrowed.cast_column(self.image_column, datasets.Image(decode=False))
        narrowed = narrowed.with_format("numpy", columns=list(dict.fromkeys(arrays)), output_all_columns=True)
        return CachedFeatureRows(narrowed, features) if features else narrowed

    def label_columns(self) -> list[str]:
        """The dataset columns `label_batch` reads."""
        return [self.label_column] + (["landmarks"] if self.include_landmarks else [])

    def label_batch(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        targets = {"single_label_classification": lambda: class_ids(rows, self.label_column, self.num_labels),
                   "multi_label_classification": lambda: multi_hot_targets(rows, self.label_column, self.num_labels),
                   "regression": lambda: regression_targets(rows, self.label_column),
                   "landmarks": lambda: landmark_targets(rows, self.label_column)}
        if self.problem_type not in targets:
            raise ValueError(f"problem_type must be one of {list(targets)}, got {self.problem_type!r}.")
        return {"labels": targets[self.problem_type]()}


class MultiTaskFaceCollator(FaceCollator):
    """`FaceCollator` for `ETFuserForMultiTaskFaceAnalysis`: `<task>_labels` from each label column of `tasks`
    (`{column: number of classes}`; the Trainer's `label_names` are `model.trainer_label_names`) instead of `labels`."""

    def __init__(self, processor: ETFuserImageProcessor, tasks: Mapping[str, int], **options: Any):
        if not tasks:
            raise ValueError("tasks must name at least one label column, e.g. {'expression': 7, 'mask': 2}.")
        first = next(iter(tasks))
        super().__init__(processor, first, tasks[first], **options)
        self.tasks = dict(tasks)

    def label_columns(self) -> list[str]:
        return list(self.tasks) + (["landmarks"] if self.include_landmarks else [])

    def label_batch(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {f"{column}_labels": class_ids(rows, column, num_labels) for column, num_labels in self.tasks.items()}


def decoded_rows(rows: list[dict[str, Any]], image_column: str) -> list[dict[str, Any]]:
    """`rows` with their undecoded images (`datasets.Image(decode=False)` values, as `FaceCollator.view` serves them)
    decoded; a row whose image cannot be decoded is dropped with a warning naming the file and why."""
    if not rows or not isinstance(rows[0][image_column], dict):
        return rows
    kept = []
    for row in rows:
        try:
            kept.append({**row, image_column: decode_encoded(row[image_column])})
        except BadImage as error:
            logger.warning("skipped %s: %s", row[image_column].get("path") or "an image of this batch", error)
    if not kept:
        raise ValueError(f"{image_column}: no image of this batch of {len(rows)} could be decoded (see the warnings "
                         "above); check the dataset's files.")
    return kept


def landmark_targets(rows: Sequence[Mapping[str, Any]], column: str) -> torch.Tensor:
    """(batch, K, 2) float32 landmark targets in [0, 1], or a ValueError naming the first malformed row."""
    targets = [np.asarray(row[column], np.float32) for row in rows]
    for index, target in enumerate(targets):
        if target.ndim != 2 or target.shape[1] != 2 or not np.isfinite(target).all():
            raise ValueError(f"{column}: row {index} must hold finite (K, 2) landmarks, got shape {target.shape}.")
    return torch.from_numpy(np.stack(targets))


def multi_hot_targets(rows: Sequence[Mapping[str, Any]], column: str, num_labels: int) -> torch.Tensor:
    """(batch, num_labels) float32 multi-hot targets, or a ValueError naming the first row that is not a 0/1 vector
    of `num_labels` entries."""
    targets = [np.asarray(row[column]) for row in rows]
    for index, target in enumerate(targets):
        if target.shape != (num_labels,) or not np.isin(target, (0, 1)).all():
            raise ValueError(f"{column}: row {index} must hold a 0/1 vector of {num_labels} labels, got shape "
                             f"{target.shape}.")
    return torch.from_numpy(np.stack(targets).astype(np.float32))


def regression_targets(rows: Sequence[Mapping[str, Any]], column: str) -> torch.Tensor:
    """(batch,) float32 regression targets, or a ValueError naming the first one that is not a finite number."""
    values = np.asarray([np.asarray(row[column], np.float64) for row in rows])
    bad = np.flatnonzero(~np.isfinite(values)) if values.ndim == 1 else [0]
    if len(bad):
        raise ValueError(f"{column}: row {int(bad[0])} must hold one finite number, got {rows[int(bad[0])][column]!r}.")
    return torch.from_numpy(values.astype(np.float32))


def class_ids(rows: Sequence[Mapping[str, Any]], column: str, num_labels: int) -> torch.Tensor:
    """(batch,) int64 class ids of `column`, or a ValueError naming the first one outside 0..num_labels-1."""
    labels = []
    for row in rows:
        label = row[column]
        if not isinstance(label, (int, np.integer)) or not 0 <= label < num_labels:
            raise ValueError(f"{column}: label {label!r} is outside id2label (0..{num_labels - 1}).")
        labels.append(int(label))
    return torch.tensor(labels)
