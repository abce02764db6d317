"""`etfuser evaluate`'s scoring, for every task type a saved model can have: a dataset column read as the model's
targets (`evaluation_target`), the model run on each readable image, and the metrics of its type
(`metrics.score_outputs`, as in training): accuracy and macro-F1; mean accuracy and macro-F1 over labels; MAE, RMSE
and CCC; NME.

RAF-DB's id 0 is surprise, a FER2013 model's is angry: comparing ids would score four of seven classes against the
wrong ones, silently. Dataset labels are therefore mapped onto the model's class ids through the alias table
(`data.label_aliases.map_label_names`: "happiness" is "happy"), and a dataset with a class the model lacks is
refused with both label sets. A multi-label model's labels are found in the dataset's by name, and landmarks are
mapped into the frame the model predicts in (`data.targets.unit_frame`), as training maps them."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ..data.alignment import ALIGNMENT_COLUMN, GEOMETRY_COLUMNS, FaceAligner, align_dataset
from ..data.face_crops import aligned_inputs, aligned_landmark_labels, face_crops, landmark_labels_in_frame
from ..data.face_datasets import source_report
from ..data.image_decoding import BadImage, open_image
from ..data.label_aliases import id2label_names, map_label_names
from ..data.sources.base import ColumnSpec
from ..data.targets import column_task_type, in_pixel_frame, unit_frame
from ..metrics import score_outputs
from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..models.modeling_etfuser import ETFuserPreTrainedModel
from ..priors.crop_plan import CropPlan
from ..priors.fetch import default_cache_dir


def load_evaluated_model(model_dir: str | os.PathLike) -> tuple[ETFuserPreTrainedModel, ETFuserImageProcessor, str]:
    """(model in eval mode, its image processor, its task type) of a saved folder, through
    `analysis.saved_model.load_model` (the loader `analyze` and `predict` use) for every task type."""
    from ..analysis.saved_model import load_model

    loaded = load_model(Path(model_dir))
    return loaded.model, loaded.processor, loaded.task_type


@dataclass(frozen=True)
class EvaluationTarget:
    """How a dataset column is read as a model's targets: `problem_type` (the model's), `mapping` (single-label:
    dataset class id -> model class id; multi-label: for each model label, its index in the dataset's vector) and,
    for landmarks, whether the points are pixels of the image (divided by its size, `unit_frame`)."""

    column: str
    problem_type: str
    mapping: Sequence[int] = ()
    pixel_frame: bool = False

    def read(self, value: Any, image_size: tuple[int, int]) -> np.ndarray | int | float:
        """One example's target as the model's output is scored against it."""
        if self.problem_type == "single_label_classification":
            return self.mapping[value]
        if self.problem_type == "multi_label_classification":
            return np.asarray(value)[list(self.mapping)]
        if self.problem_type == "regression":
            return float(value)
        points = np.asarray(value, np.float32)
        return unit_frame(points, *image_size) if self.pixel_frame else points


def label_mapping(data: datasets.Dataset, column: str, id2label: dict, where: str) -> list[int]:
    """For each class id of `data[column]` (a ClassLabel: ids without names cannot be matched, so anything else is
    refused), the model's class id of the same expression or name; a ValueError naming `where` and both label sets
    when a dataset class has no model class."""
    if column not in data.features:
        raise ValueError(f"--task: {where} has no column {column!r}; columns: {list(data.features)}.")
    feature = data.features[column]
    if not isinstance(feature, datasets.ClassLabel):
        raise ValueError(f"--task: column {column!r} of {where} is {feature!r}, not class labels with names; "
                         f"evaluate scores a single-label model on class labels.")
    model_names = id2label_names(id2label, "the model's id2label")
    try:
        return map_label_names(feature.names, model_names)
    except ValueError as error:
        raise ValueError(f"{where}: the model cannot be scored on this dataset: {error}") from None


def attribute_mapping(names: Sequence[str] | None, id2label: dict, where: str, column: str) -> list[int]:
    """For each of a multi-label model's labels (id order), its index in the dataset's vector of `names`; a
    ValueError naming both label sets where the dataset lacks one (its extra labels are not scored)."""
    model_names = id2label_names(id2label, "the model's id2label")
    if not names:
        raise ValueError(f"--task: column {column!r} of {where} has no label names; a multi-label model's labels "
                         f"{model_names} are found in the dataset by name (the reader declares them, e.g. CelebA's).")
    missing = [name for name in model_names if name not in names]
    if missing:
        raise ValueError(f"{where}: the model cannot be scored on this dataset: model labels {missing} are not among "
                         f"the dataset labels {list(names)} (model labels {model_names}).")
    return [list(names).index(name) for name in model_names]


def evaluation_target(model: ETFuserPreTrainedModel, problem_type: str, data: datasets.Dataset, column: str,
                      spec: ColumnSpec | None, where: str) -> EvaluationTarget:
    """How `data[column]` is scored against `model` of `problem_type`: the column must hold that type's targets
    (a ValueError naming the model's type and what the column holds), classes and labels matched by name, a
    landmark count equal to the model's."""
    if column not in data.features:
        raise ValueError(f"--task: {where} has no column {column!r}; columns: {list(data.features)}.")
    try:
        column_task_type(data, column, spec, override=problem_type)
    except ValueError as error:
        raise ValueError(f"--task: {where}: a {problem_type} model cannot be scored on it: {error}") from None
    config = model.config
    if problem_type == "single_label_classification":
        return EvaluationTarget(column, problem_type, label_mapping(data, column, config.id2label, where))
    if problem_type == "multi_label_classification":
        return EvaluationTarget(column, problem_type,
                                attribute_mapping(spec.names if spec else None, config.id2label, where, column))
    if problem_type == "landmarks":
        counts = {len(points) for points in data[column][:64]}
        if counts != {config.num_landmarks}:
            raise ValueError(f"--task: column {column!r} of {where} holds {sorted(counts)} points per face; the model "
                             f"predicts {config.num_landmarks}.")
        return EvaluationTarget(column, problem_type, pixel_frame=in_pixel_frame(spec))
    return EvaluationTarget(column, problem_type)


def _head_output(model: ETFuserPreTrainedModel, problem_type: str, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        outputs = model(**inputs)
    return (outputs.landmarks if problem_type == "landmarks" else outputs.logits).float().numpy()


def score_dataset(model: ETFuserPreTrainedModel, processor: Any, data: datasets.Dataset, target: EvaluationTarget,
                  where: str, report_bad: Callable[[str, object], None], batch_size: int = 64,
                  geometry_column: str | None = None, aligner: FaceAligner | None = None,
                  cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The metrics of `model` on `data` (`metrics.score_outputs` of its task type), each target read through
    `target`; an unreadable image is reported through `report_bad` and counted, not scored. Where `geometry_column`
    holds each face's (68, 2) landmarks in [0, 1] (the synthetic faces), every network reads its own crop of the face
    and landmark targets are taken in the crop the model predicts in, as in training (`data.face_crops`). Without it
    the faces are found as training and `analyze` find them (`data.alignment`, under the reader's face policy, cached
    in `<cache_dir>/faces`) and the model is fed their canonical crops, as training fed it."""
    if geometry_column is None:
        report = source_report(data)
        data = align_dataset(data, report.faces if report is not None else "detect",
                             aligner or FaceAligner(cache_dir=cache_dir),
                             Path(cache_dir or default_cache_dir()) / "faces")
        geometry_column = ALIGNMENT_COLUMN
    data = data.cast_column("image", datasets.Image(decode=False))
    plan = CropPlan.for_model(model)
    aligned = geometry_column == ALIGNMENT_COLUMN
    outputs, targets, bad = [], [], 0
    for start in range(0, len(data), batch_size):
        batch = data[start : start + batch_size]
        images, batch_targets, geometry = [], [], []
        for offset, (encoded, value) in enumerate(zip(batch["image"], batch[target.column])):
            try:
                image = open_image(encoded["bytes"] if encoded.get("bytes") else encoded["path"])
            except BadImage as error:
                report_bad(encoded.get("path") or f"{where}[{start + offset}]", error)
                bad += 1
                continue
            images.append(image)
            batch_targets.append(target.read(value, image.size))  # (width, height)
            geometry.append({column: batch[column][offset] for column in GEOMETRY_COLUMNS} if aligned
                            else batch[geometry_column][offset])
        if not images:
            continue
        if aligned:
            pixels, crops = aligned_inputs(images, geometry, plan)
            inputs = {"pixel_values": pixels, "prior_crops": crops}
            if target.problem_type == "landmarks":
                points = torch.tensor(np.asarray(batch_targets, np.float32))
                batch_targets = list(aligned_landmark_labels(points, geometry, plan).numpy())
        else:
            inputs = processor(images, return_tensors="pt")
            size = tuple(inputs["pixel_values"].shape[-2:])
            inputs["prior_crops"] = face_crops(np.asarray(geometry, np.float64), plan, size,
                                               pixel_values=inputs["pixel_values"])
            if target.problem_type == "landmarks":
                points = torch.tensor(np.asarray(batch_targets, np.float32))
                batch_targets = list(landmark_labels_in_frame(points, np.asarray(geometry, np.float64), plan,
                                                              size).numpy())
        outputs.append(_head_output(model, target.problem_type, inputs))
        targets.extend(batch_targets)
    if not targets:
        raise ValueError(f"dataset: none of the {len(data)} images of {where} could be read; nothing to evaluate.")
    config = model.config
    metrics = score_outputs(target.problem_type, np.concatenate(outputs), np.asarray(targets),
                            num_labels=config.num_labels if target.problem_type == "single_label_classification"
                            else None,
                            interocular_indices=getattr(config, "interocular_indices", (36, 45)))
    return {"problem_type": target.problem_type, "num_samples": len(targets), "num_skipped": bad, **metrics}
