"""Label columns of face datasets: validation (`check_label_column`) and ClassLabel encoding (`encode_label_column`)."""

from __future__ import annotations

import datasets
import numpy as np


def check_label_column(dataset: datasets.Dataset, column: str, num_labels: int, split: str = "dataset") -> None:
    """Raises a ValueError naming the first rows whose `column` is not a class id in 0..num_labels-1 (a corrupt
    manifest or a label set that changed), before any training time is spent."""
    if len(dataset) == 0:
        raise ValueError(f"{split}: dataset is empty.")
    if column not in dataset.column_names:
        raise ValueError(f"{split}: no column {column!r}; columns: {dataset.column_names}.")
    values = dataset[column]
    bad = [index for index, value in enumerate(values)
           if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < num_labels]
    if bad:
        shown = ", ".join(f"row {index}: {values[index]!r}" for index in bad[:5])
        raise ValueError(f"{split}: {len(bad)} label(s) in {column!r} outside id2label (0..{num_labels - 1}): {shown}.")


def encode_label_column(data: datasets.Dataset | datasets.DatasetDict, column: str
                        ) -> datasets.Dataset | datasets.DatasetDict:
    """Makes `column` a `ClassLabel` (a manifest's plain integer or string labels), with one label set shared by all
    splits: names are the distinct values, sorted (numerically for integers). A ClassLabel column is left alone."""
    splits = data if isinstance(data, datasets.DatasetDict) else {"data": data}
    for name, split in splits.items():
        if column not in split.features:
            raise ValueError(f"{name} split: no column {column!r}; columns: {list(split.features)}.")
    feature = next(iter(splits.values())).features[column]
    if isinstance(feature, datasets.ClassLabel):
        return data
    if not isinstance(feature, datasets.Value) or not (feature.dtype == "string" or "int" in feature.dtype):
        raise ValueError(f"column {column!r} must hold class labels (ClassLabel, integers or strings), got {feature}.")
    values = sorted({value for split in splits.values() for value in split[column]})
    index = {value: position for position, value in enumerate(values)}
    class_label = datasets.ClassLabel(names=[str(value) for value in values])

    def encode(split: datasets.Dataset) -> datasets.Dataset:
        features = split.features.copy()
        features[column] = class_label
        return split.map(lambda batch: {column: [index[value] for value in batch[column]]}, batched=True,
                         features=features, desc=f"encoding {column!r} as ClassLabel")

    if isinstance(data, datasets.DatasetDict):
        return datasets.DatasetDict({name: encode(split) for name, split in data.items()})
    return encode(data)
