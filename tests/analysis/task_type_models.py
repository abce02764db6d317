"""Saved ET-Fuser models of every task type whose answer is fixed by their head (zero weights, chosen biases), over
the real age and 68-landmark priors and a tiny random ViT canonical model at 112 px: what `analyze`, `etfuser predict`
and the Space must show for each type, worked out by hand (`EXPECTED`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import tiny_vit_config

from etfuser_hf import ETFuserForImageClassification, ETFuserForLandmarkDetection, ETFuserImageProcessor
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.face_detection import ARCFACE_TEMPLATE_112

PRIORS = ("age", "face_landmarks")
ATTRIBUTES = ["Smiling", "Eyeglasses", "Young"]
ATTRIBUTE_LOGITS = [3.0, -3.0, 0.5]  # present (0.95), absent (0.05), present (0.62)
AGE_BINS = [float(age) for age in range(81)]  # the dlib age net's 81 bins: equal scores read out as 40 years
# the 5-point head puts its points where the ArcFace template has the eyes, nose and mouth corners in its crop (the
# tiny ViT's crop rule, at its 112 px input): mapped back, they land on MTCNN's five points
TEMPLATE_IN_CROP = ARCFACE_TEMPLATE_112 / 112.0


def _constant_head(dense: torch.nn.Linear, bias: np.ndarray) -> None:
    with torch.no_grad():
        dense.weight.zero_()
        dense.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 112, "width": 112}).save_pretrained(folder)
    return folder


def write_task_type_models(root: Path) -> dict[str, Path]:
    """{"multi_label_classification", "regression", "landmarks", "single_label_classification"} -> saved folder."""
    dirs = ensure_face_priors(names=PRIORS + ("mtcnn",))
    common = dict(priors={name: dirs[name] for name in PRIORS}, backbone=tiny_vit_config(image_size=112, patch_size=16),
                  image_size=112, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    torch.manual_seed(0)
    attributes = ETFuserForImageClassification.from_priors_pretrained(
        **common, problem_type="multi_label_classification", num_labels=3, id2label=dict(enumerate(ATTRIBUTES)),
        label2id={name: i for i, name in enumerate(ATTRIBUTES)})
    _constant_head(attributes.classifier.dense, np.asarray(ATTRIBUTE_LOGITS))
    age = ETFuserForImageClassification.from_priors_pretrained(
        **common, problem_type="regression", num_labels=1, id2label={0: "age"}, label2id={"age": 0},
        regression_bins=AGE_BINS)
    _constant_head(age.classifier.dense, np.zeros(len(AGE_BINS)))
    points = ETFuserForLandmarkDetection.from_priors_pretrained(**common, num_landmarks=5, interocular_indices=[0, 1])
    _constant_head(points.landmark_head.dense, np.log(TEMPLATE_IN_CROP / (1 - TEMPLATE_IN_CROP)).reshape(-1))
    expression = ETFuserForImageClassification.from_priors_pretrained(
        **common, problem_type="single_label_classification", num_labels=2, id2label={0: "calm", 1: "happy"},
        label2id={"calm": 0, "happy": 1})
    return {"multi_label_classification": _save(attributes, root / "attributes"),
            "regression": _save(age, root / "age"), "landmarks": _save(points, root / "landmarks"),
            "single_label_classification": _save(expression, root / "expression")}
