"""The fused model's own columns in `analyze`'s table, one set per task type (`TaskColumns`):

| task type | columns | dtype | meaning |
|---|---|---|---|
| single-label | `label`, `prob_<label>` | string, float32 | argmax class; softmax probability of each class |
| multi-label | `label`, `attr_<label>`, `attr_prob_<label>` | string, float32, float32 | the labels present (probability >= 0.5) joined by `|`; 1.0 present / 0.0 absent; its sigmoid probability |
| regression | `value_<target>` | float32 | the predicted value of each output, e.g. `value_age` in years (a binned age head's expectation over its bins), `value_valence` |
| landmarks | `landmark_x00`, `landmark_y00`, ... | float32 | each predicted point in IMAGE pixels (the readouts' convention, `<prior>_x00`) |

The 0/1 attribute columns are float32, not bool, so that rows without a face hold NaN like every other float column.
A landmark model predicts (x, y) in [0, 1] of the frame its labels were given in training
(`data.face_crops.landmark_labels_in_frame`, `CropPlan.label_frame`): its canonical model's own crop of the face
where it has one, else the ArcFace crop of the face; `model_frames` gives that frame's image -> frame affine for each
face from the same `CropPlan` that cut the crops, and `values` maps the points back through it.

Prior readouts are named `<prior>_...` (`table.py`), so no prior may be named like one of these prefixes
(`TASK_PREFIXES`): such a model is refused with the prior's name, and the two sets can never clash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from ..priors.crop_geometry import compose_affines, invert_affines
from ..priors.crop_plan import CropPlan, FaceGeometry
from .extras import softmax
from .saved_model import TaskModel, task_type_of

# every column of the fused model's own outputs starts with one of these ("attr_prob_" starts with "attr_")
TASK_PREFIXES = ("prob_", "attr_", "value_", "landmark_")
LANDMARK_COLUMN = re.compile(r"landmark_[xy]\d+")


def task_output_columns(columns: Iterable[str]) -> list[str]:
    """The fused model's own output columns among `columns` (the `label` column aside), in their order."""
    return [name for name in columns if name.startswith(TASK_PREFIXES)]


def landmark_columns(columns: Iterable[str]) -> list[str]:
    """The fused model's landmark columns among `columns`: `landmark_x00`, `landmark_y00`, ... in their order."""
    return [name for name in columns if LANDMARK_COLUMN.fullmatch(name)]


def _label_names(config) -> list[str]:
    return [str(config.id2label[index]) for index in range(config.num_labels)]


def _check_prior_names(model: TaskModel) -> None:
    words = tuple(prefix.rstrip("_") for prefix in TASK_PREFIXES)
    for name in model.etfuser.priors:
        if name in words or name.startswith(TASK_PREFIXES):
            raise ValueError(f"model: prior {name!r} would name its readout columns {name}_..., which read as the "
                             f"model's own output columns (prefixes {list(TASK_PREFIXES)}); rename the prior.")


class TaskColumns:
    """The task columns of one model: `label` (whether the table has a `label` column), `names` (the float32
    columns, in order) and `values`, which turns the head's raw output into them."""

    def __init__(self, model: TaskModel, task_type: str | None = None):
        _check_prior_names(model)
        self.task_type = task_type or ("landmarks" if hasattr(model, "landmark_head") else task_type_of(model.config))
        config = model.config
        self.labels = np.asarray(_label_names(config), dtype=object) if self.task_type != "landmarks" else None
        self.label = self.task_type in ("single_label_classification", "multi_label_classification")
        if self.task_type == "single_label_classification":
            self.names = [f"prob_{name}" for name in self.labels]
        elif self.task_type == "multi_label_classification":
            self.names = [f"attr_{name}" for name in self.labels] + [f"attr_prob_{name}" for name in self.labels]
        elif self.task_type == "regression":
            self.names = [f"value_{name}" for name in self.labels]
        else:
            self.names = [f"landmark_{axis}{index:02d}" for index in range(config.num_landmarks) for axis in "xy"]
    @property
    def needs_frames(self) -> bool:
        """Whether `values` needs each face's image -> model frame affine (landmarks)."""
        return self.task_type == "landmarks"

    def model_frames(self, plan: CropPlan, faces: FaceGeometry, image_landmarks: np.ndarray | None,
                     canonical_size: int) -> tuple[np.ndarray, tuple[int, int]]:
        """((faces, 2, 3) image -> frame affines, the frame's (height, width)) of the frame the head predicts in, as
        training placed it (`CropPlan.label_frame`: the canonical model's crop, else the ArcFace crop of the face),
        from the faces' geometry and `image_landmarks` (faces, 68, 2) where a rule reads them. `canonical_size` is
        kept for callers; the frame's side is its geometry's."""
        in_canonical, side = plan.label_frame(faces, image_landmarks)
        return compose_affines(in_canonical, faces.canonical), (side, side)

    def values(self, raw: np.ndarray, frames: np.ndarray | None = None,
               frame_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(values (faces, len(names)) float, labels (faces,) or None) from the head's raw output (faces, outputs):
        logits, or the landmark head's points flattened (faces, 2 * K) in [0, 1] of the model's frame, mapped to image
        pixels through `frames` (faces, 2, 3) image -> frame affines of a frame of `frame_size` (height, width)."""
        if self.task_type == "single_label_classification":
            probabilities = softmax(raw)
            return probabilities, self.labels[probabilities.argmax(-1)]
        if self.task_type == "multi_label_classification":
            probabilities = 1.0 / (1.0 + np.exp(-raw.astype(np.float64)))
            present = probabilities >= 0.5
            labels = np.array(["|".join(self.labels[row]) for row in present], dtype=object)
            return np.concatenate([present.astype(np.float64), probabilities], axis=1), labels
        if self.task_type == "regression":
            return raw, None
        if frames is None or frame_size is None:
            raise ValueError("frames: a landmark model's points need each face's image -> model frame affine.")
        height, width = frame_size
        points = raw.reshape(len(raw), -1, 2).astype(np.float64) * (width, height)
        to_image = invert_affines(frames)
        in_image = np.einsum("fpj,fij->fpi", points, to_image[:, :, :2]) + to_image[:, None, :, 2]
        return in_image.reshape(len(raw), -1), None


__all__ = ["LANDMARK_COLUMN", "TASK_PREFIXES", "TaskColumns", "landmark_columns", "task_output_columns"]
