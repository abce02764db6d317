"""Three splits, fixed by seed and recorded: train (fit), validation (early stopping, best checkpoint, every choice)
and test (evaluated once per trained model, at the end).

- The synthetic default draws train, validation and test from disjoint sample indices of one seeded generator, so
  each split is reproducible on its own and no image is in two splits. Train and validation are indices 0.. in
  order; test is a range of its own from `TEST_FIRST_INDEX`, fixed whatever the other splits' sizes, which no sweep
  or run before it used (they used indices 0..1999), so nothing was ever chosen on a test image.
- `--resample-train` (off by default: every seed trains on the same images) draws each seed's training images anew
  from a fixed, larger pool: the training indices plus extra ones from `POOL_FIRST_INDEX` (`draw_train`).
- `--more-train N` adds N training images from `POOL_FIRST_INDEX` on to the same training indices, validation and
  test unchanged: a data-size curve whose points differ in nothing but the added images.
- A user dataset keeps its own `validation` and `test` splits. With only train and test, validation is carved from
  train (stratified by the first task's labels), never from test; with one split only, it is cut 70/15/15. The
  record keeps the cut (seed, fraction, counts) and the reader's `SourceReport` (files, split origin, rows skipped
  and excluded per reason), so that `splits.json` and the model card say what was left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets
import numpy as np

from ...data.sources.base import SourceReport
from ...data.synthetic_faces import make_synthetic_faces
from ...data.validation_split import CarveRecord, carve_validation, split_off
from ...data.views import first_view_rows, image_groups

SPLITS = ("train", "validation", "test")
TEST_FIRST_INDEX = 1_000_000  # the synthetic test split's first sample index
POOL_FIRST_INDEX = 2_000_000  # the extra images of a --resample-train pool
SAME_TRAIN_IMAGES = "every seed trains on the same training images (the default; --resample-train draws them anew)"


@dataclass
class SplitRecord:
    """What `splits.json` of a run folder records: enough to rebuild every split exactly."""

    source: str  # "synthetic" or the dataset path
    sizes: dict[str, int]
    seed: int
    origin: dict[str, str] = field(default_factory=dict)  # split -> where it came from
    generator: dict[str, Any] | None = None  # the synthetic generator's parameters
    train_sampling: str = SAME_TRAIN_IMAGES
    carve: dict[str, Any] | None = None  # a user dataset's validation (or 70/15/15) cut: seed, fraction, counts
    source_report: dict[str, Any] | None = None  # the reader's SourceReport: files, split origin, skips per reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FACE_KINDS = {"detected": "found by the detector", "missed": "missed by the detector, taken whole",
              "whole_image": "the whole image (the layout's faces are crops)", "box": "the dataset's face box",
              "undecodable": "image cannot be decoded"}


def render_faces_lines(record: Mapping[str, Any]) -> list[str]:
    """Markdown lines on how a run's faces were found (`record["faces"]` of `splits.json`, `data.pipeline.
    FacePipeline.faces`): the layout's face policy and, per split, the faces of each kind; [] where there is none."""
    faces = record.get("faces")
    if not faces:
        return []
    kinds = sorted({kind for counts in faces["counts"].values() for kind in counts})
    lines = ["", f"Faces found once per image, as `analyze` finds them (face policy `{faces['policy']}`; each "
             "network fed its own crop of the face's canonical crop):", "",
             "| split | " + " | ".join(FACE_KINDS.get(kind, kind) for kind in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    return lines + [f"| {name} | " + " | ".join(str(counts.get(kind, 0)) for kind in kinds) + " |"
                    for name, counts in faces["counts"].items()]


def _index_range(first: int, count: int) -> str:
    return f"synthetic sample indices {first}..{first + count - 1}"


def synthetic_splits(sizes: Mapping[str, int], image_size: int = 112, seed: int = 1234, train_pool: int | None = None,
                     more_train: int = 0) -> tuple[datasets.DatasetDict, SplitRecord]:
    """Train, validation and test SYNTHETIC faces from one generator seed (each sample depends only on its index and
    the seed): indices 0..n_train-1 are train, the next n_validation validation, and test is indices
    `TEST_FIRST_INDEX`.. whatever the other sizes. With `train_pool` (> n_train), "train" is a pool of that many
    images (the n_train training indices, then `POOL_FIRST_INDEX`..) from which each seed draws n_train. With
    `more_train`, every seed trains on the n_train images and `more_train` more from `POOL_FIRST_INDEX`.. (beyond the
    test range), while validation stays at n_train.. (what a data-size curve needs: the same validation images)."""
    missing = [name for name in SPLITS if sizes.get(name, 0) < 1]
    if missing:
        raise ValueError(f"sizes: every split needs at least one image, got {dict(sizes)} (missing {missing}).")
    n_train, n_validation, n_test = (sizes[name] for name in SPLITS)
    if n_train + n_validation > TEST_FIRST_INDEX:
        raise ValueError(f"sizes: train + validation ({n_train} + {n_validation}) would reach the synthetic test "
                         f"split, which starts at sample index {TEST_FIRST_INDEX}; use at most {TEST_FIRST_INDEX} "
                         f"train + validation images.")
    if more_train < 0 or (more_train and train_pool is not None):
        raise ValueError(f"more_train: expected a count >= 0 of added training images, not with a resampling pool; "
                         f"got {more_train} (train_pool {train_pool}).")
    extra = more_train if train_pool is None else train_pool - n_train
    if extra < 0 or (train_pool is not None and extra == 0):
        raise ValueError(f"train_pool: a pool to draw {n_train} training images from needs more than {n_train} "
                         f"images, got {train_pool}.")
    if n_test > POOL_FIRST_INDEX - TEST_FIRST_INDEX or extra > POOL_FIRST_INDEX - TEST_FIRST_INDEX:
        raise ValueError(f"sizes: the test split and the training pool's extra images hold at most "
                         f"{POOL_FIRST_INDEX - TEST_FIRST_INDEX} images each, got {n_test} and {extra}.")
    make = lambda count, first: make_synthetic_faces(count, image_size, seed, first_index=first)  # noqa: E731
    splits = {"train": make(n_train, 0), "validation": make(n_validation, n_train),
              "test": make(n_test, TEST_FIRST_INDEX)}
    origin = {"train": _index_range(0, n_train), "validation": _index_range(n_train, n_validation),
              "test": _index_range(TEST_FIRST_INDEX, n_test) + " (a range of its own: it does not move with the train "
                      "or validation sizes, and no sweep or earlier run used an index >= 2000)"}
    record_sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    sampling = SAME_TRAIN_IMAGES
    if extra:
        splits["train"] = datasets.concatenate_datasets([splits["train"], make(extra, POOL_FIRST_INDEX)])
        both = f"{_index_range(0, n_train)} and {_index_range(POOL_FIRST_INDEX, extra)}"
        origin["train"] = f"a pool of {train_pool}: {both}" if train_pool is not None else both
    if more_train:
        record_sizes["train"] = n_train + more_train
    elif extra:
        sampling = (f"--resample-train: each seed draws {n_train} of the {train_pool} pool images anew "
                    f"(numpy default_rng(model seed), without replacement)")
        record_sizes["train_pool"] = train_pool
    record = SplitRecord("synthetic", record_sizes, seed, origin,
                         {"generator": "etfuser_hf.data.synthetic_faces.make_synthetic_faces",
                          "image_size": image_size, "seed": seed, "test_first_index": TEST_FIRST_INDEX,
                          **({"pool_first_index": POOL_FIRST_INDEX} if extra else {})}, sampling)
    return datasets.DatasetDict(splits), record


def user_splits(data: datasets.Dataset | datasets.DatasetDict, source: str, stratify_column: str | None,
                seed: int = 0, validation_share: float = 0.15, report: SourceReport | None = None
                ) -> tuple[datasets.DatasetDict, SplitRecord]:
    """Train / validation / test of a user dataset (see the module doc), and the record with the cut and `report`
    (the reader's, where the data came through `data.sources`). Split names `val`/`valid`/`dev` count as
    validation; any other extra split is ignored (and named in the record)."""
    if not 0 < validation_share < 0.5:
        raise ValueError(f"validation_share must be in (0, 0.5), got {validation_share}.")
    named = dict(data) if isinstance(data, datasets.DatasetDict) else {"data": data}
    aliases = {"val": "validation", "valid": "validation", "dev": "validation"}
    named = {aliases.get(name, name): split for name, split in named.items()}
    origin = {name: f"the dataset's {name!r} split" for name in SPLITS if name in named}
    carve = None
    if "train" in named and "test" in named and "validation" not in named:
        carved, carve = carve_validation(datasets.DatasetDict({"train": named["train"]}), validation_share, seed,
                                         stratify_column)
        named["train"], named["validation"] = carved["train"], carved["validation"]
        origin["validation"] = f"{validation_share:.0%} of the dataset's 'train' split (seed {seed}), never test"
        origin["train"] = "the rest of the dataset's 'train' split"
    elif not all(name in named for name in SPLITS):
        everything = datasets.concatenate_datasets(list(named.values()))
        rest, named["test"] = split_off(everything, validation_share, seed, stratify_column)
        named["train"], named["validation"] = split_off(rest, validation_share / (1 - validation_share), seed,
                                                      stratify_column)
        origin = {name: f"70/15/15 cut of all {len(everything)} rows (seed {seed})" for name in SPLITS}
        stratified = stratify_column if isinstance(everything.features.get(stratify_column or ""),
                                                   datasets.ClassLabel) else None
        carve = CarveRecord(seed, validation_share, stratified, {name: len(named[name]) for name in SPLITS})
    ignored = sorted(set(named) - set(SPLITS))
    if ignored:
        origin["ignored"] = f"splits {ignored} are not used"
    splits = datasets.DatasetDict({name: named[name] for name in SPLITS})
    return splits, SplitRecord(source, {name: len(splits[name]) for name in SPLITS}, seed, origin,
                               carve=carve.to_dict() if carve else None,
                               source_report=report.to_dict() if report else None)


def draw_train(pool: datasets.Dataset, size: int, seed: int) -> datasets.Dataset:
    """`size` images of `pool` drawn without replacement by `seed` (--resample-train: each model seed its own), each
    with all its rendered views."""
    images = first_view_rows(pool)
    if not 0 < size <= len(images):
        raise ValueError(f"cannot draw {size} training images from a pool of {len(images)}.")
    return with_their_views(pool, images[np.random.default_rng(seed).choice(len(images), size, replace=False)])


def subsample_train(train: datasets.Dataset, fraction: float, seed: int) -> datasets.Dataset:
    """The first `fraction` of a seeded permutation of train's images (label efficiency): the same images for every
    row, with or without views, each with all its rendered views."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}.")
    images = first_view_rows(train)
    count = max(1, round(fraction * len(images)))
    if count == len(images):
        return train
    if len(images) == len(train):
        return train.shuffle(seed=seed).select(range(count))
    permutation = np.random.default_rng(seed).permutation(len(images))  # datasets' shuffle(seed=seed) of the images
    return with_their_views(train, images[permutation[:count]])


def with_their_views(train: datasets.Dataset, first_rows: np.ndarray) -> datasets.Dataset:
    """The rows of `train` that show the images whose first rows are `first_rows` (`views.first_view_rows`), image by
    image in that order, each image's views together: a draw of images never splits an image from its views."""
    if len(first_view_rows(train)) == len(train):
        return train.select(first_rows)
    groups = image_groups(train)
    rank = np.full(groups.max() + 1, -1)
    rank[groups[first_rows]] = np.arange(len(first_rows))
    rows = np.flatnonzero(rank[groups] >= 0)
    return train.select(rows[np.argsort(rank[groups[rows]], kind="stable")])
