"""The SYNTHETIC default dataset and landmark-driven mask synthesis."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from etfuser_hf.mask_synthesis import MASK_STYLES, MaskAugmentation, apply_face_mask, mask_polygon
from etfuser_hf.synthetic_faces import EXPRESSIONS, SYNTHETIC_FEATURES, make_synthetic_faces, synthetic_face


def test_dataset_features_and_labels():
    data = make_synthetic_faces(6, image_size=64, seed=1)
    assert data.features == SYNTHETIC_FEATURES
    assert data.features["expression"].names == EXPRESSIONS
    row = data[0]
    assert row["image"].size == (64, 64)
    landmarks = np.asarray(row["landmarks"])
    assert landmarks.shape == (68, 2) and (landmarks > 0).all() and (landmarks < 1).all()
    assert len(row["head_pose"]) == 3


def test_same_seed_same_bytes_other_seed_other_faces():
    first, again = synthetic_face(4, 64, seed=7), synthetic_face(4, 64, seed=7)
    assert np.array_equal(np.asarray(first["image"]), np.asarray(again["image"]))
    assert first["landmarks"] == again["landmarks"]
    other = synthetic_face(4, 64, seed=8)
    assert not np.array_equal(np.asarray(first["image"]), np.asarray(other["image"]))


def test_expressions_move_the_mouth_as_labelled():
    """Happy mouth corners sit above the lip centre; sad ones below (frontal geometry, averaged over identities)."""
    from etfuser_hf.synthetic_faces import face_landmarks

    def corner_lift(expression):
        rng = np.random.default_rng(0)
        points = [face_landmarks(expression, 1, rng) for _ in range(40)]
        return np.mean([p[51, 1] - (p[48, 1] + p[54, 1]) / 2 for p in points])

    assert corner_lift("happy") > 0.01 > 0 > -0.01 > corner_lift("sad")
    rng = np.random.default_rng(0)
    opening = lambda e: np.mean([face_landmarks(e, 1, rng)[66, 1] - face_landmarks(e, 1, rng)[62, 1] for _ in range(20)])  # noqa: E731
    assert opening("surprise") > opening("angry") + 0.03


@pytest.mark.parametrize("style", MASK_STYLES)
def test_mask_covers_the_lower_face_and_leaves_the_eyes(style):
    sample = synthetic_face(2, 112, seed=0, mask_probability=0.0)
    image, points = sample["image"], np.asarray(sample["landmarks"]) * 112
    masked = np.asarray(apply_face_mask(image, points, style, seed=1)).astype(int)
    original = np.asarray(image).astype(int)
    changed = np.abs(masked - original).sum(-1) > 0
    for index in [33, 8, 51, 57, 48, 54]:  # nose tip, chin, lips, mouth corners
        x, y = np.round(points[index]).astype(int).clip(0, 111)
        assert changed[y, x], f"landmark {index} not covered"
    for index in range(36, 48):  # eyes untouched
        x, y = np.round(points[index]).astype(int).clip(0, 111)
        assert not changed[max(0, y - 1): y + 2, max(0, x - 1): x + 2].any(), f"eye landmark {index} changed"
    assert np.array_equal(masked, np.asarray(apply_face_mask(image, points, style, seed=1)).astype(int))
    assert mask_polygon(points, style).shape[1] == 2


def test_mask_augmentation_labels_and_is_deterministic():
    sample = synthetic_face(0, 64, seed=0, mask_probability=0.0)
    augment = MaskAugmentation(probability=1.0, styles=["cloth"], seed=5)
    out = augment(dict(sample), index=3)
    assert out["mask"] == 1 and np.array_equal(np.asarray(out["image"]), np.asarray(augment(dict(sample), 3)["image"]))
    assert MaskAugmentation(probability=0.0)(dict(sample), 0)["mask"] == 0


@pytest.mark.parametrize("call, message", [
    (lambda: apply_face_mask(PIL.Image.new("RGB", (8, 8)), np.zeros((4, 2))), r"landmarks must have shape \(68, 2\)"),
    (lambda: apply_face_mask(PIL.Image.new("RGB", (8, 8)), np.zeros((68, 2)), style="scarf"), "style must be one of"),
    (lambda: MaskAugmentation(probability=1.5), r"probability must be in \[0, 1\]"),
    (lambda: make_synthetic_faces(0), "num_samples must be a positive int"),
    (lambda: make_synthetic_faces(4, image_size=16), "image_size must be an int >= 32"),
])
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
