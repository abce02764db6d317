"""The SYNTHETIC default dataset: features, determinism, and labels that match what is drawn."""

from __future__ import annotations

import numpy as np
import pytest

from etfuser_hf.data.face_geometry import apply_head_pose, face_landmarks
from etfuser_hf.data.synthetic_faces import (
    AGE_GROUPS,
    EXPRESSIONS,
    SYNTHETIC_FEATURES,
    make_synthetic_faces,
    synthetic_face,
)


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(8, image_size=64, seed=1)


def test_features_and_row_contents(faces):
    assert faces.features == SYNTHETIC_FEATURES
    assert faces.features["expression"].names == EXPRESSIONS and faces.features["age_group"].names == AGE_GROUPS
    assert faces.features["mask"].names == ["no_mask", "mask"]
    assert "SYNTHETIC" in faces.info.description
    row = faces[0]
    assert row["image"].size == (64, 64) and row["image"].mode == "RGB"
    landmarks = np.asarray(row["landmarks"])
    assert landmarks.shape == (68, 2) and (landmarks > 0).all() and (landmarks < 1).all()
    assert len(row["head_pose"]) == 3


def test_byte_identical_for_the_same_seed_and_rows_regenerate_alone(faces):
    again = make_synthetic_faces(8, image_size=64, seed=1)
    assert faces.data.table.equals(again.data.table)  # images are stored as PNG bytes: byte-identical
    alone = synthetic_face(5, 64, seed=1)  # row 5 without generating rows 0..4
    assert np.array_equal(np.asarray(alone["image"]), np.asarray(faces[5]["image"]))
    other = make_synthetic_faces(8, image_size=64, seed=2)
    assert not np.array_equal(np.asarray(other[0]["image"]), np.asarray(faces[0]["image"]))


def test_landmarks_sit_on_the_drawn_face():
    """Each eye's landmarks enclose white sclera and a dark pupil (high contrast) while the cheek below is smooth
    skin, so the labels line up with the pixels, whatever the skin tone."""
    for index in range(8):
        sample = synthetic_face(index, 112, seed=0, mask_probability=0.0)
        grey = np.asarray(sample["image"].convert("L"), dtype=np.float64)
        points = np.asarray(sample["landmarks"]) * 112
        for first, nostril in ((36, 31), (42, 35)):
            eye = points[first : first + 6]
            x0, y0 = np.floor(eye.min(axis=0)).astype(int)
            x1, y1 = np.ceil(eye.max(axis=0)).astype(int)
            cheek_x, cheek_y = np.round(eye.mean(axis=0) * 0.5 + points[nostril] * 0.5).astype(int)
            eye_contrast = np.ptp(grey[y0 : y1 + 1, x0 : x1 + 1])
            cheek_contrast = np.ptp(grey[cheek_y - 1 : cheek_y + 2, cheek_x - 1 : cheek_x + 2])
            assert eye_contrast > 50 and eye_contrast > 2 * cheek_contrast, f"sample {index} eye {first}"


def test_expression_geometry_overlaps_but_differs():
    """Happy mouth corners lift, sad ones drop, surprise opens the mouth; yet single samples overlap (no class is a
    clean threshold), which keeps a linear probe from saturating the task."""
    rng = np.random.default_rng(0)
    lift = {e: np.array([p[51, 1] - (p[48, 1] + p[54, 1]) / 2 for p in (face_landmarks(e, 1, rng) for _ in range(200))])
            for e in ("happy", "sad", "neutral", "surprise", "angry")}
    assert lift["happy"].mean() > 0.01 and lift["sad"].mean() < -0.01
    assert (lift["neutral"] > lift["happy"].min()).mean() > 0.2  # overlap between neighbouring classes
    opening = {e: np.mean([p[66, 1] - p[62, 1] for p in (face_landmarks(e, 1, rng) for _ in range(100))])
               for e in ("surprise", "angry")}
    assert opening["surprise"] > opening["angry"] + 0.03


def test_head_pose_moves_the_nose_towards_the_yaw_and_child_faces_are_rounder():
    frontal = face_landmarks("neutral", 1, np.random.default_rng(0))
    for yaw in (-25.0, 25.0):
        posed = apply_head_pose(frontal, yaw, 0.0, 0.0)
        nose_offset = posed[30, 0] - (posed[36, 0] + posed[45, 0]) / 2
        assert np.sign(nose_offset) == np.sign(yaw)
    rolled = apply_head_pose(frontal, 0.0, 0.0, 20.0)
    assert np.degrees(np.arctan2(*(rolled[45] - rolled[36])[::-1])) == pytest.approx(20.0, abs=3.0)
    ratio = lambda group: np.mean([np.ptp(p[0:17, 0]) / (p[8, 1] - p[27, 1])  # noqa: E731
                                   for p in (face_landmarks("neutral", group, np.random.default_rng(i)) for i in range(30))])
    assert ratio(0) > ratio(3) + 0.1


def test_mask_probability_controls_the_mask_label():
    assert all(synthetic_face(i, 32, mask_probability=1.0)["mask"] == 1 for i in range(4))
    assert all(synthetic_face(i, 32, mask_probability=0.0)["mask"] == 0 for i in range(4))


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_samples=0), "num_samples must be a positive int"),
    (dict(num_samples=2.5), "num_samples must be a positive int"),
    (dict(num_samples=2, image_size=16), "image_size must be an int >= 32"),
    (dict(num_samples=2, seed=-1), "seed must be a non-negative int"),
    (dict(num_samples=2, mask_probability=1.5), r"mask_probability must be in \[0, 1\]"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic_faces(**kwargs)
