"""A validation split carved from train, seeded and recorded, for datasets that ship none (RAF-DB, FER2013's image
release, AffectNet, whose official validation set serves as test). Never carved from test."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import datasets


@dataclass
class CarveRecord:
    """What `carve_validation` did, for `splits.json` and the model card."""

    seed: int
    fraction: float
    stratify_column: str | None
    counts: dict[str, int]  # train (what is left) and validation

    def to_dict(self) -> dict:
        return asdict(self)


def split_off(split: datasets.Dataset, fraction: float, seed: int, stratify_column: str | None = None
              ) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(rest, the carved `fraction`) of `split`, seeded; stratified by `stratify_column` when it is a ClassLabel."""
    stratify = stratify_column if (stratify_column and isinstance(split.features.get(stratify_column),
                                                                   datasets.ClassLabel)) else None
    parts = split.train_test_split(test_size=fraction, seed=seed, stratify_by_column=stratify)
    return parts["train"], parts["test"]


def carve_validation(data: datasets.DatasetDict, fraction: float = 0.15, seed: int = 0,
                     stratify_column: str | None = "label") -> tuple[datasets.DatasetDict, CarveRecord]:
    """`data` with a `validation` split of `fraction` of its train split (the rest stays train), and the record."""
    if "validation" in data:
        raise ValueError(f"data already has a validation split (splits: {list(data)}); nothing to carve.")
    if "train" not in data:
        raise ValueError(f"data has no train split to carve validation from (splits: {list(data)}).")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}.")
    train, validation = split_off(data["train"], fraction, seed, stratify_column)
    stratified = stratify_column if isinstance(data["train"].features.get(stratify_column or ""),
                                               datasets.ClassLabel) else None
    carved = datasets.DatasetDict({**data, "train": train, "validation": validation})
    return carved, CarveRecord(seed, fraction, stratified, {"train": len(train), "validation": len(validation)})
