"""Fixtures shared by the tests of per-network crops in training (test_training_crops.py, test_augmentation.py): ET-Fuser
over three real converted priors with the real FER net as canonical model, a few synthetic faces and their processor."""

from __future__ import annotations

import pytest
import torch

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.priors.convert_face_priors import ensure_face_priors

PRIORS = ("face_recognition", "face_landmarks", "age")
SIZE = 112


@pytest.fixture(scope="module")
def prior_dirs():
    return ensure_face_priors(names=PRIORS + ("expression", "mtcnn"))


@pytest.fixture(scope="module")
def model(prior_dirs):
    """ET-Fuser over three real priors with the real FER net as canonical model (its crop: fer's box)."""
    torch.manual_seed(0)
    return ETFuserForImageClassification.from_priors_pretrained(
        priors={name: prior_dirs[name] for name in PRIORS}, backbone=prior_dirs["expression"], image_size=SIZE,
        fusion_mode="add_to_pooled", hidden_size=32, num_attention_heads=4, intermediate_size=64,
        num_labels=7).eval()


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(4, SIZE, seed=3)


@pytest.fixture(scope="module")
def processor():
    return ETFuserImageProcessor(size={"height": SIZE, "width": SIZE})
