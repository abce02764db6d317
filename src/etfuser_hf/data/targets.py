"""Targets of a face dataset's columns: which kind of task a column is (`column_task_type`, from the reader's
`ColumnSpec`, else from the column's feature, with an explicit override), and each target prepared as the model
reads it (`prepare_targets`): class ids, floats, multi-hot 0/1 vectors, or landmarks in the model's frame.

    single_label_classification   a ClassLabel (expression, gender, race)            -> class ids
    multi_label_classification    a fixed-length 0/1 vector (CelebA's 40 attributes) -> multi-hot
    regression                    a number (UTKFace's age, AffectNet's valence)      -> float32
    landmarks                     (K, 2) points (AffectNet's 68, CelebA's 5)          -> (x, y) in [0, 1] of the image

Landmark targets are kept in [0, 1] coordinates of their image. A reader declares pixel coordinates of the image
file (`ColumnSpec.frame` starting "pixels"), so its points are divided by that file's width and height, read from the
file's header without decoding it (`unit_frame`). The model predicts in the crop it reads the face from: the batch
maps these points there through each face's alignment (`data.alignment`, `face_crops.aligned_landmark_labels`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np
import PIL.Image

from .labels import encode_label_column
from .sources.base import ColumnSpec, RowLog

TASK_TYPES = ("single_label_classification", "multi_label_classification", "regression", "landmarks")
TASK_TYPE_ALIASES = {
    **{name: name for name in TASK_TYPES},
    "single-label": "single_label_classification", "single_label": "single_label_classification",
    "classification": "single_label_classification",
    "multi-label": "multi_label_classification", "multi_label": "multi_label_classification",
}
PIXEL_FRAME = "pixels"  # a ColumnSpec.frame starting so: coordinates in pixels of the image file as distributed
# what a column must hold for each task type: a scalar per image, a vector, or (K, 2) points
SHAPE_OF_TYPE = {"single_label_classification": "scalar", "regression": "scalar",
                 "multi_label_classification": "vector", "landmarks": "points"}
SHAPE_WORDS = {"scalar": "one value per image", "vector": "a vector per image", "points": "(K, 2) points per image",
               "other": "something else"}


def parse_task_type(text: str, where: str = "--task-type") -> str:
    """The `TASK_TYPES` name of `text` (also "single-label", "multi-label", "classification"), or a ValueError
    listing them."""
    found = TASK_TYPE_ALIASES.get(text.strip().lower())
    if found is None:
        raise ValueError(f"{where}: unknown task type {text!r}; expected one of {', '.join(TASK_TYPES)} (or "
                         f"single-label, multi-label).")
    return found


def column_shape(feature: Any) -> str:
    """"scalar" (ClassLabel, a number, a string), "vector" (a sequence of numbers), "points" (a sequence of pairs)
    or "other"."""
    if isinstance(feature, (datasets.ClassLabel, datasets.Value)):
        return "scalar"
    if isinstance(feature, (datasets.Sequence, datasets.List, datasets.LargeList)):
        inner = feature.feature
        if isinstance(inner, (datasets.Sequence, datasets.List)) and isinstance(inner.feature, datasets.Value):
            # pairs, or lists of unknown length (inferred from plain lists; each is checked to be (x, y) when read)
            return "points" if getattr(inner, "length", -1) in (2, -1, None) else "other"
        if isinstance(inner, datasets.Value):
            return "vector"
    return "other"


def _features(data: datasets.Dataset | datasets.DatasetDict) -> datasets.Features:
    return next(iter(data.values())).features if isinstance(data, datasets.DatasetDict) else data.features


def column_task_type(data: datasets.Dataset | datasets.DatasetDict, column: str, spec: ColumnSpec | None = None,
                     override: str | None = None) -> str:
    """The task type of `column`: `override` (checked against what the column holds), else what the reader declared
    (`spec`), else from its feature: a ClassLabel, string or integer is single-label (integers as class ids, as
    before; `regression` must be asked for), a float is regression, a vector multi-label, (K, 2) points landmarks.
    A ValueError names the column and what it holds where it cannot be a task, or not of that type."""
    features = _features(data)
    if column not in features:
        raise ValueError(f"--tasks: the dataset has no column {column!r}; columns: {list(features)}.")
    feature, shape = features[column], column_shape(features[column])
    if override is not None:
        problem_type = parse_task_type(override)
    elif spec is not None and spec.problem_type in TASK_TYPES:
        problem_type = spec.problem_type
    elif spec is not None:
        raise ValueError(f"--tasks: column {column!r} holds a {spec.problem_type} ({spec.frame or spec.units or ''}), "
                         f"not a target this package trains; task types: {', '.join(TASK_TYPES)}.")
    elif isinstance(feature, datasets.Value) and feature.dtype.startswith("float"):
        problem_type = "regression"
    else:
        problem_type = {"scalar": "single_label_classification", "vector": "multi_label_classification",
                        "points": "landmarks"}.get(shape)
        if problem_type is None:
            raise ValueError(f"--tasks: column {column!r} holds {feature}, not a target (a class, a number, a 0/1 "
                             f"vector or (K, 2) points).")
    if SHAPE_OF_TYPE[problem_type] != shape:
        raise ValueError(f"column {column!r} as {problem_type}: that needs {SHAPE_WORDS[SHAPE_OF_TYPE[problem_type]]}, "
                         f"but the column holds {SHAPE_WORDS[shape]} ({feature}).")
    return problem_type


# ----------------------------------------------------------------------------------------------------------------------
# targets as the model reads them
# ----------------------------------------------------------------------------------------------------------------------


def unit_frame(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """(K, 2) pixel coordinates of a `width` x `height` image -> (x, y) in [0, 1] of that image, the frame
    `ETFuserForLandmarkDetection` predicts in when the model is shown the whole image."""
    return np.asarray(points, np.float32) / np.asarray([width, height], np.float32)


def encoded_image_size(encoded: Mapping[str, Any]) -> tuple[int, int]:
    """(width, height) of an undecoded `datasets.Image` value, from the file's header only (no pixel decoding)."""
    source = io.BytesIO(encoded["bytes"]) if encoded.get("bytes") else encoded["path"]
    with PIL.Image.open(source) as image:
        return image.size


def in_pixel_frame(spec: ColumnSpec | None) -> bool:
    return spec is not None and (spec.frame or "").startswith(PIXEL_FRAME)


def _unit_frame_landmarks(split: datasets.Dataset, column: str, image_column: str, log: RowLog, where: str
                          ) -> datasets.Dataset:
    """`split` with `column` in [0, 1] of each image; a row whose image header cannot be read is skipped (logged and
    counted in `log` as "unreadable_image")."""
    encoded = split.cast_column(image_column, datasets.Image(decode=False))[image_column]
    points, keep = [], []
    for index, (value, image) in enumerate(zip(split[column], encoded)):
        try:
            width, height = encoded_image_size(image)
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
            log.skip("unreadable_image", f"{where} row {index}", f"image {image.get('path')} cannot be read ({error})")
            continue
        keep.append(index)
        points.append(unit_frame(value, width, height).tolist())
    kept = split.select(keep) if len(keep) != len(split) else split
    feature = datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=2))
    return kept.remove_columns(column).add_column(column, points, feature=feature)


def _check_unit_frame(split: datasets.Dataset, column: str, where: str) -> None:
    values = np.asarray(split.with_format("numpy")[column], np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{where}: column {column!r} holds landmarks that are not finite numbers.")
    if np.abs(values).max(initial=0.0) > 2.0:
        raise ValueError(f"{where}: column {column!r} holds landmarks up to {np.abs(values).max():g}, and no reader "
                         f"declared them in pixels: give (x, y) in [0, 1] of the image.")


def _check_multi_hot(split: datasets.Dataset, column: str, where: str) -> None:
    values = np.asarray(split.with_format("numpy")[column])
    if values.ndim != 2 or not np.isin(values, (0, 1)).all():
        raise ValueError(f"{where}: column {column!r} must hold equal-length 0/1 vectors for multi-label "
                         f"classification, got values {np.unique(values)[:5].tolist()} in shape {values.shape}.")


def _check_finite(split: datasets.Dataset, column: str, where: str) -> None:
    values = np.asarray(split[column], np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(f"{where}: column {column!r} holds {len(bad)} value(s) that are not finite numbers, first at "
                         f"row {int(bad[0])}.")


def prepare_targets(data: datasets.Dataset | datasets.DatasetDict, column: str, problem_type: str,
                    spec: ColumnSpec | None = None, image_column: str = "image", log: RowLog | None = None
                    ) -> datasets.Dataset | datasets.DatasetDict:
    """`data` with `column` as the model of `problem_type` reads it: a ClassLabel shared by all splits
    (`encode_label_column`), float32 values (finite), checked 0/1 vectors, or landmarks in [0, 1] of the image
    (divided by each image's size where `spec` says pixels; a row whose image header cannot be read is then skipped
    into `log`). A ValueError names the split and column of anything else."""
    if problem_type not in TASK_TYPES:
        raise ValueError(f"problem_type must be one of {TASK_TYPES}, got {problem_type!r}.")
    if problem_type == "single_label_classification":
        return encode_label_column(data, column)
    splits = dict(data) if isinstance(data, datasets.DatasetDict) else {"data": data}
    prepared = {}
    for name, split in splits.items():
        where = f"{name} split"
        if problem_type == "regression":
            split = split.cast_column(column, datasets.Value("float32"))
            _check_finite(split, column, where)
        elif problem_type == "multi_label_classification":
            _check_multi_hot(split, column, where)
        elif in_pixel_frame(spec):
            split = _unit_frame_landmarks(split, column, image_column, log or RowLog(), where)
        else:
            _check_unit_frame(split, column, where)
        prepared[name] = split
    return datasets.DatasetDict(prepared) if isinstance(data, datasets.DatasetDict) else prepared["data"]


__all__ = ["TASK_TYPES", "column_task_type", "encoded_image_size", "parse_task_type", "prepare_targets",
           "unit_frame"]
