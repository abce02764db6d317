"""MTCNN detection + ArcFace alignment on a real photo (scikit-image's public-domain astronaut), the explicit
no-face result, and clear errors for bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.face_detection import (
    ARCFACE_TEMPLATE_112,
    MTCNN,
    FaceDetections,
    detect_and_align,
    similarity_transform,
)
from etfuser_hf.priors.mtcnn import nms


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    cache = Path(os.environ.get("ETFUSER_CACHE") or Path.home() / ".cache" / "etfuser_hf")
    return MTCNN.from_pretrained(ensure_face_priors(cache, names=["mtcnn"])["mtcnn"])


def test_finds_the_astronauts_face_with_plausible_landmarks(detector):
    (result,) = detect_and_align(data.astronaut(), detector=detector)
    assert result.found and len(result) == 1
    assert result.scores[0] > 0.99
    x1, y1, x2, y2 = result.boxes[0]
    # Her face lies around x 180..265, y 60..175 in the 512x512 photo.
    assert 160 < x1 < 200 and 240 < x2 < 290 and 40 < y1 < 80 and 150 < y2 < 195
    left_eye, right_eye, nose, mouth_left, mouth_right = result.landmarks[0]
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert abs(left_eye[1] - right_eye[1]) < 10  # upright face
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert 35 < right_eye[0] - left_eye[0] < 55
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in result.landmarks[0])

    assert result.faces.shape == (1, 112, 112, 3) and result.faces.dtype == np.uint8
    assert 60 < result.faces[0].mean() < 200  # a face, not padding
    # Re-detected inside the aligned crop (pasted on a grey canvas), the five points sit on the ArcFace template.
    canvas = np.full((224, 224, 3), 127, np.uint8)
    canvas[56:168, 56:168] = result.faces[0]
    (again,) = detect_and_align(canvas, detector=detector)
    assert again.found
    assert np.abs(again.landmarks[0] - 56 - ARCFACE_TEMPLATE_112).max() < 6


def test_inputs_as_pil_numpy_and_lists_agree(detector):
    photo = data.astronaut()
    from_numpy, from_pil = detect_and_align([photo, Image.fromarray(photo)], detector=detector, output_size=64)
    np.testing.assert_allclose(from_numpy.boxes, from_pil.boxes)
    assert from_pil.faces.shape == (1, 64, 64, 3)
    assert len(detect_and_align(Image.fromarray(photo).convert("L"), detector=detector)) == 1


@pytest.mark.parametrize("image", [np.zeros((200, 300, 3), np.uint8), np.full((128, 128, 3), 127, np.uint8)])
def test_no_face_gives_an_explicit_empty_result(detector, image):
    (result,) = detect_and_align(image, detector=detector)
    assert isinstance(result, FaceDetections)
    assert not result.found and len(result) == 0
    assert result.boxes.shape == (0, 4) and result.scores.shape == (0,) and result.landmarks.shape == (0, 5, 2)
    assert result.faces.shape == (0, 112, 112, 3)
    assert result.face_images() == []


def test_bad_inputs_are_clear_errors(detector):
    with pytest.raises(TypeError, match=r"images\[0\]: expected a uint8 array"):
        detect_and_align(np.zeros((64, 64, 3), np.float32), detector=detector)
    with pytest.raises(TypeError, match=r"images\[1\]: expected a PIL.Image.Image or a numpy uint8 array"):
        detect_and_align([data.astronaut(), "face.png"], detector=detector)
    with pytest.raises(TypeError, match="images: expected a PIL image"):
        detect_and_align("face.png", detector=detector)
    with pytest.raises(ValueError, match=r"images\[0\]: expected an \(H, W, 3\)"):
        detect_and_align(np.zeros((64, 64, 5), np.uint8), detector=detector)
    with pytest.raises(ValueError, match="at least 12x12"):
        detect_and_align(np.zeros((8, 64, 3), np.uint8), detector=detector)
    with pytest.raises(ValueError, match="output_size"):
        detect_and_align(data.astronaut(), detector=detector, output_size=8)
    with pytest.raises(ValueError, match="max_faces"):
        detect_and_align(data.astronaut(), detector=detector, max_faces=0)


def test_nms_and_similarity_transform():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]  # box 1 overlaps box 0 (IoU 0.68)
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [3, 2]  # box 0 contains box 3 entirely
    assert nms(boxes[:0], scores[:0], 0.5).numel() == 0

    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = ARCFACE_TEMPLATE_112 @ rotation.T + shift
    np.testing.assert_allclose(similarity_transform(ARCFACE_TEMPLATE_112, target), np.c_[rotation, shift], atol=1e-9)
