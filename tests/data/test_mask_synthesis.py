"""Masked-face synthesis: every style covers the lower face and leaves the eyes, from 68 or 5 landmarks; seeded;
MaskAugmentation labels rows, works with datasets.map and with a detector when a dataset has no landmarks."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from etfuser_hf.data.mask_synthesis import (
    MASK_STYLES,
    MaskAugmentation,
    apply_face_mask,
    landmarks_from_five_points,
    mask_polygon,
)
from etfuser_hf.data.synthetic_faces import make_synthetic_faces, synthetic_face

LOWER_FACE = [33, 8, 48, 51, 54, 57, 62, 66]  # nose base, chin, mouth corners, lips
SIZE = 112


def face(index: int):
    sample = synthetic_face(index, SIZE, seed=0, mask_probability=0.0)
    return sample["image"], np.asarray(sample["landmarks"], np.float64) * SIZE


def changed_pixels(before: PIL.Image.Image, after: PIL.Image.Image) -> np.ndarray:
    return np.abs(np.asarray(after, np.int32) - np.asarray(before, np.int32)).sum(-1) > 0


def five_points(points: np.ndarray) -> np.ndarray:
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


def assert_lower_face_covered_and_eyes_untouched(changed: np.ndarray, points: np.ndarray) -> None:
    for index in LOWER_FACE:
        x, y = np.round(points[index]).astype(int).clip(0, SIZE - 1)
        assert changed[y, x], f"landmark {index} not covered"
    for index in range(36, 48):
        x, y = np.round(points[index]).astype(int).clip(0, SIZE - 1)
        assert not changed[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].any(), f"eye landmark {index} changed"


@pytest.mark.parametrize("style", MASK_STYLES)
@pytest.mark.parametrize("index", range(6))  # varied identities, head poses and framings
def test_every_style_covers_the_lower_face_and_leaves_the_eyes(style, index):
    image, points = face(index)
    masked = apply_face_mask(image, points, style, seed=index)
    assert masked.size == image.size and masked.mode == "RGB"
    assert_lower_face_covered_and_eyes_untouched(changed_pixels(image, masked), points)


@pytest.mark.parametrize("style", MASK_STYLES)
def test_five_detector_points_are_enough(style):
    image, points = face(1)
    approximated = landmarks_from_five_points(five_points(points))
    assert approximated.shape == (68, 2)
    # the fitted mean face lands near the true lower face (within 12% of the face width)
    width = np.linalg.norm(points[15] - points[1])
    assert np.linalg.norm(approximated[[8, 33, 48, 54]] - points[[8, 33, 48, 54]], axis=1).max() < 0.12 * width
    masked = apply_face_mask(image, five_points(points), style, seed=0)
    assert_lower_face_covered_and_eyes_untouched(changed_pixels(image, masked), points)


def test_same_seed_same_mask_other_seed_other_mask():
    image, points = face(2)
    for style in MASK_STYLES:
        first = np.asarray(apply_face_mask(image, points, style, seed=3))
        assert np.array_equal(first, np.asarray(apply_face_mask(image, points, style, seed=3)))
        assert np.array_equal(first, np.asarray(apply_face_mask(image, points, style, np.random.default_rng(3))))
    cloth = {apply_face_mask(image, points, "cloth", seed=seed).tobytes() for seed in range(4)}
    assert len(cloth) == 4  # colours and patterns vary with the seed


def test_styles_have_their_own_outline():
    _, points = face(0)
    outlines = {style: mask_polygon(points, style) for style in MASK_STYLES}
    assert all(outline.ndim == 2 and outline.shape[1] == 2 for outline in outlines.values())
    down = (points[8] - points[27]) / np.linalg.norm(points[8] - points[27])
    lowest = {style: float((outline @ down).max()) for style, outline in outlines.items()}
    assert lowest["kn95"] > lowest["surgical"]  # the KN95 fold reaches furthest below the chin


def test_mask_augmentation_with_datasets_map_is_deterministic_and_labels_rows():
    faces = make_synthetic_faces(8, image_size=48, seed=4, mask_probability=0.0)
    augment = MaskAugmentation(probability=0.5, styles=["surgical", "kn95"], seed=7)
    first = faces.map(augment, with_indices=True)
    again = faces.map(augment, with_indices=True)
    labels = first["mask"]
    assert labels == again["mask"] and 0 < sum(labels) < 8
    for index, label in enumerate(labels):
        before, after = np.asarray(faces[index]["image"]), np.asarray(first[index]["image"])
        assert np.array_equal(after, np.asarray(again[index]["image"]))
        assert np.array_equal(before, after) == (label == 0)


class FakeDetector:
    """Stands in for face_detection.MTCNN: `detect` returns (boxes, scores, five landmarks)."""

    def __init__(self, points: np.ndarray | None):
        self.points = points

    def detect(self, array: np.ndarray):
        if self.points is None:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        return (np.array([[10, 10, 100, 100]], np.float32), np.array([0.99], np.float32),
                self.points[None].astype(np.float32))


def test_mask_augmentation_finds_landmarks_with_a_detector():
    image, points = face(3)
    example = {"image": image}
    masked = MaskAugmentation(probability=1.0, seed=0, detector=FakeDetector(five_points(points)))(example, 0)
    assert masked["mask"] == 1
    assert_lower_face_covered_and_eyes_untouched(changed_pixels(image, masked["image"]), points)
    no_face = MaskAugmentation(probability=1.0, seed=0, detector=FakeDetector(None))(example, 0)
    assert no_face["mask"] == 0 and no_face["image"] is image


@pytest.mark.parametrize("call, error, message", [
    (lambda: apply_face_mask(PIL.Image.new("RGB", (8, 8)), np.zeros((4, 2))), ValueError,
     r"landmarks must have shape \(68, 2\) .* or \(5, 2\)"),
    (lambda: apply_face_mask(PIL.Image.new("RGB", (8, 8)), np.full((68, 2), np.nan)), ValueError, "must be finite"),
    (lambda: apply_face_mask(PIL.Image.new("RGB", (8, 8)), np.zeros((5, 2))), ValueError, "distinct eyes"),
    (lambda: apply_face_mask(np.zeros((8, 8, 3)), np.zeros((68, 2))), TypeError, "image must be a PIL.Image.Image"),
    (lambda: mask_polygon(np.zeros((68, 2)), "scarf"), ValueError, "style must be one of"),
    (lambda: MaskAugmentation(styles="surgical"), ValueError, "styles must be a non-empty list"),
    (lambda: MaskAugmentation(styles=["scarf"]), ValueError, "styles must be a non-empty list"),
    (lambda: MaskAugmentation(seed=0.5), ValueError, "seed must be an int"),
    (lambda: MaskAugmentation(probability=1.5), ValueError, r"probability must be in \[0, 1\]"),
    (lambda: MaskAugmentation(probability=1.0)({"image": PIL.Image.new("RGB", (8, 8))}), ValueError,
     "has no 'landmarks' landmarks; pass landmarks_column= .* or detector="),
    (lambda: MaskAugmentation(probability=1.0)({"image": PIL.Image.new("RGB", (8, 8)), "landmarks": [[0.5, 0.5]] * 3}),
     ValueError, r"must hold 68 or 5 \(x, y\) points"),
])
def test_bad_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
