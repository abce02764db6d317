"""Alignment of many faces at once (`align_faces`, `similarity_transforms`) gives the one-face-at-a-time crops and
transforms (`align_face`, `similarity_transform`, PIL), on scikit-image's public-domain astronaut."""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage import data

from etfuser_hf.priors.face_detection import (
    align_face,
    align_faces,
    similarity_transform,
    similarity_transforms,
)

FIVE = np.array([[200.3, 110.2], [245.1, 108.7], [222.4, 135.9], [205.2, 160.1], [240.8, 158.3]])


def test_similarity_transforms_equal_the_least_squares_fit_face_by_face():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(20, 5, 2)) * 50, rng.normal(size=(20, 5, 2)) * 30
    batched = similarity_transforms(source, target)
    assert batched.shape == (20, 2, 3)
    for index in range(20):
        np.testing.assert_allclose(batched[index], similarity_transform(source[index], target[index]), atol=1e-9)
    np.testing.assert_allclose(similarity_transforms(FIVE, target[:3]),
                               [similarity_transform(FIVE, points) for points in target[:3]], atol=1e-9)


def test_align_faces_matches_pil_face_by_face():
    rng = np.random.default_rng(1)
    photo = data.astronaut()
    crop = np.ascontiguousarray(photo[:256, 100:356])
    images = [photo, crop, np.full((80, 90, 3), 7, np.uint8), photo]
    landmarks = [FIVE + rng.normal(size=(3, 5, 2)) * 5, FIVE[None] - 100, np.zeros((0, 5, 2)),
                 np.array([[[5, 5], [30, 8], [15, 20], [8, 35], [28, 33]]], float)]  # near a corner: black outside
    for size in (112, 64):
        aligned = align_faces(images, landmarks, size)
        assert [faces.shape for faces in aligned] == [(3, size, size, 3), (1, size, size, 3), (0, size, size, 3),
                                                      (1, size, size, 3)]
        for image, points, faces in zip(images, landmarks, aligned):
            assert faces.dtype == np.uint8
            if not len(points):
                continue
            expected = np.stack([align_face(Image.fromarray(image), five, size) for five in points]).astype(int)
            difference = np.abs(faces.astype(int) - expected)
            assert difference.max() <= 1 and (difference > 0).mean() < 1e-3  # float32 rounding at integer levels
    corner = align_faces([photo], [landmarks[3]], 112)[0][0]
    assert (corner[:10, :10] == 0).all() and corner.mean() > 20
