"""Three splits, fixed by seed and recorded: train (fit), validation (early stopping, best checkpoint, every choice)
and test (evaluated once per trained model, at the end).

- The synthetic default draws train, validation and test from disjoint sample indices of one seeded generator, so
  each split is reproducible on its own and no image is in two splits.
- A user dataset keeps its own `validation` and `test` splits. With only train and test, validation is carved from
  train (stratified by the first task's labels), never from test; with one split only, it is cut 70/15/15.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets

from ..data.synthetic_faces import make_synthetic_faces

SPLITS = ("train", "validation", "test")


@dataclass
class SplitRecord:
    """What `splits.json` of a run folder records: enough to rebuild every split exactly."""

    source: str  # "synthetic" or the dataset path
    sizes: dict[str, int]
    seed: int
    origin: dict[str, str] = field(default_factory=dict)  # split -> where it came from
    generator: dict[str, Any] | None = None  # the synthetic generator's parameters

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthetic_splits(sizes: Mapping[str, int], image_size: int = 112, seed: int = 1234
                     ) -> tuple[datasets.DatasetDict, SplitRecord]:
    """Train, validation and test SYNTHETIC faces from one generator seed: sample indices 0..n_train-1 are train,
    the next n_validation validation, the next n_test test (each sample depends only on its index and the seed)."""
    missing = [name for name in SPLITS if sizes.get(name, 0) < 1]
    if missing:
        raise ValueError(f"sizes: every split needs at least one image, got {dict(sizes)} (missing {missing}).")
    total = sum(sizes[name] for name in SPLITS)
    data = make_synthetic_faces(total, image_size, seed)
    splits, origin, start = {}, {}, 0
    for name in SPLITS:
        splits[name] = data.select(range(start, start + sizes[name]))
        origin[name] = f"synthetic sample indices {start}..{start + sizes[name] - 1}"
        start += sizes[name]
    record = SplitRecord("synthetic", {name: sizes[name] for name in SPLITS}, seed, origin,
                         {"generator": "etfuser_hf.data.synthetic_faces.make_synthetic_faces",
                          "num_samples": total, "image_size": image_size, "seed": seed})
    return datasets.DatasetDict(splits), record


def user_splits(data: datasets.Dataset | datasets.DatasetDict, source: str, stratify_column: str | None,
                seed: int = 0, validation_share: float = 0.15) -> tuple[datasets.DatasetDict, SplitRecord]:
    """Train / validation / test of a user dataset (see the module doc). Split names `val`/`valid`/`dev` count as
    validation; any other extra split is ignored (and named in the record)."""
    if not 0 < validation_share < 0.5:
        raise ValueError(f"validation_share must be in (0, 0.5), got {validation_share}.")
    named = dict(data) if isinstance(data, datasets.DatasetDict) else {"data": data}
    aliases = {"val": "validation", "valid": "validation", "dev": "validation"}
    named = {aliases.get(name, name): split for name, split in named.items()}
    origin = {name: f"the dataset's {name!r} split" for name in SPLITS if name in named}

    def carve(split: datasets.Dataset, share: float, what: str) -> tuple[datasets.Dataset, datasets.Dataset]:
        stratify = stratify_column if (stratify_column and isinstance(split.features.get(stratify_column),
                                                                       datasets.ClassLabel)) else None
        parts = split.train_test_split(test_size=share, seed=seed, stratify_by_column=stratify)
        return parts["train"], parts["test"]

    if "train" in named and "test" in named and "validation" not in named:
        named["train"], named["validation"] = carve(named["train"], validation_share, "validation")
        origin["validation"] = f"{validation_share:.0%} of the dataset's 'train' split (seed {seed}), never test"
        origin["train"] = f"the rest of the dataset's 'train' split"
    elif not all(name in named for name in SPLITS):
        everything = datasets.concatenate_datasets(list(named.values()))
        rest, named["test"] = carve(everything, validation_share, "test")
        named["train"], named["validation"] = carve(rest, validation_share / (1 - validation_share), "validation")
        origin = {name: f"70/15/15 cut of all {len(everything)} rows (seed {seed})" for name in SPLITS}
    ignored = sorted(set(named) - set(SPLITS))
    if ignored:
        origin["ignored"] = f"splits {ignored} are not used"
    splits = datasets.DatasetDict({name: named[name] for name in SPLITS})
    return splits, SplitRecord(source, {name: len(splits[name]) for name in SPLITS}, seed, origin)


def subsample_train(train: datasets.Dataset, fraction: float, seed: int) -> datasets.Dataset:
    """The first `fraction` of a seeded permutation of train (label efficiency): the same images for every row."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}.")
    count = max(1, round(fraction * len(train)))
    return train if count == len(train) else train.shuffle(seed=seed).select(range(count))
