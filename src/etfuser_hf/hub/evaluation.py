"""`etfuser evaluate`'s scoring: a dataset's classes matched to a saved model's by name, then accuracy and macro-F1.

RAF-DB's id 0 is surprise, a FER2013 model's is angry: comparing ids would score four of seven classes against the
wrong ones, silently. Dataset labels are therefore mapped onto the model's class ids through the alias table
(`data.label_aliases.map_label_names`: "happiness" is "happy"), and a dataset with a class the model lacks is
refused with both label sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import datasets
import numpy as np
import torch

from ..data.face_crops import face_crops
from ..data.image_decoding import BadImage, open_image
from ..data.label_aliases import id2label_names, map_label_names
from ..metrics import accuracy, macro_f1
from ..priors.crop_plan import CropPlan


def label_mapping(data: datasets.Dataset, column: str, id2label: dict, where: str) -> list[int]:
    """For each class id of `data[column]` (a ClassLabel: ids without names cannot be matched, so anything else is
    refused), the model's class id of the same expression or name; a ValueError naming `where` and both label sets
    when a dataset class has no model class."""
    if column not in data.features:
        raise ValueError(f"--task: {where} has no column {column!r}; columns: {list(data.features)}.")
    feature = data.features[column]
    if not isinstance(feature, datasets.ClassLabel):
        raise ValueError(f"--task: column {column!r} of {where} is {feature!r}, not class labels with names; "
                         f"evaluate scores single-label classification.")
    model_names = id2label_names(id2label, "the model's id2label")
    try:
        return map_label_names(feature.names, model_names)
    except ValueError as error:
        raise ValueError(f"{where}: the model cannot be scored on this dataset: {error}") from None


def score_dataset(model: Any, processor: Any, data: datasets.Dataset, column: str, mapping: Sequence[int],
                  where: str, report_bad: Callable[[str, object], None], batch_size: int = 64,
                  geometry_column: str | None = None) -> dict[str, Any]:
    """Accuracy and macro-F1 (over the model's classes) of `model` on `data`, each label read through `mapping`
    (dataset id -> model id); an unreadable image is reported through `report_bad` and counted, not scored. Where
    `geometry_column` holds each face's (68, 2) landmarks in [0, 1] (the synthetic faces), every network reads its own
    crop of the face, as in training (`data.face_crops`)."""
    data = data.cast_column("image", datasets.Image(decode=False))
    plan = CropPlan.for_model(model) if geometry_column is not None else None
    predictions, labels, bad = [], [], 0
    for start in range(0, len(data), batch_size):
        batch = data[start : start + batch_size]
        images, batch_labels, geometry = [], [], []
        for offset, (encoded, label) in enumerate(zip(batch["image"], batch[column])):
            try:
                images.append(open_image(encoded["bytes"] if encoded.get("bytes") else encoded["path"]))
            except BadImage as error:
                report_bad(encoded.get("path") or f"{where}[{start + offset}]", error)
                bad += 1
                continue
            batch_labels.append(mapping[label])
            if plan is not None:
                geometry.append(batch[geometry_column][offset])
        if images:
            inputs = processor(images, return_tensors="pt")
            if plan is not None:
                size = tuple(inputs["pixel_values"].shape[-2:])
                inputs["prior_crops"] = face_crops(np.asarray(geometry, np.float64), plan, size)
            with torch.no_grad():
                logits = model(**inputs).logits
            predictions.extend(logits.argmax(-1).tolist())
            labels.extend(batch_labels)
    if not labels:
        raise ValueError(f"dataset: none of the {len(data)} images of {where} could be read; nothing to evaluate.")
    labels = np.asarray(labels)
    return {"num_samples": len(labels), "num_skipped": bad, "accuracy": accuracy(predictions, labels),
            "macro_f1": macro_f1(predictions, labels, model.config.num_labels)}
