"""The pixels stage's entry for the Trainer: any face dataset as lazily computed model inputs."""

from __future__ import annotations

from typing import Any

import datasets


def with_face_transform(
    dataset: datasets.Dataset,
    image_processor: Any | None = None,
    label_column: str | None = "label",
    image_column: str = "image",
) -> datasets.Dataset:
    """A view of `dataset` whose rows are model inputs, computed lazily on access (`Dataset.with_transform`, the
    non-mutating `set_transform`): `pixel_values` (3, H, W) float in [0, 1] from `image_processor` (default: an
    `ETFuserImageProcessor` at 224x224) and `labels` from `label_column` — int64 for a `ClassLabel`, float32 otherwise
    (multi-hot attributes, ages, landmarks). `label_column=None` gives pixels only. Rows batch with
    `transformers.default_data_collator`.
    """
    if image_column not in dataset.column_names:
        raise ValueError(f"image_column: {image_column!r} is not a column of the dataset {dataset.column_names}.")
    if label_column is not None and label_column not in dataset.column_names:
        raise ValueError(f"label_column: {label_column!r} is not a column of the dataset {dataset.column_names}.")
    if image_processor is None:
        from ..models.image_processing_etfuser import ETFuserImageProcessor

        image_processor = ETFuserImageProcessor()
    import torch

    integer_labels = label_column is not None and isinstance(dataset.features[label_column], datasets.ClassLabel)

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        images = [image.convert("RGB") for image in batch[image_column]]
        inputs = {"pixel_values": image_processor(images, return_tensors="pt")["pixel_values"]}
        if label_column is not None:
            inputs["labels"] = torch.tensor(batch[label_column], dtype=torch.long if integer_labels else torch.float32)
        return inputs

    return dataset.with_transform(transform, columns=[image_column] + ([label_column] if label_column else []))
