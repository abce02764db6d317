"""The original pipelines' surroundings of a crop where the networks read it (issue 32 item 1): the forward's own cut
(`models.encoders.cut_encoder_crops` with a network's window rows, `prior_crops[name + ".window"]`) reproduces the
crops face-api and fer recorded (tests/priors/fixtures, the same recordings and tolerances as test_crop_geometry.py)
on the whole crop, bars and padding included; without the windows it misses. A loose canonical crop rotated from the
photo (what `analyze` and aligned training feed) places the bars where they fall in the photo.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from etfuser_hf.models.configuration_face_priors import (
    FaceApiLandmarkConfig,
    FaceApiRecognitionConfig,
    FerMiniXceptionConfig,
)
from etfuser_hf.models.encoders import CROP_SPAN_OF_INPUT, cut_encoder_crops
from etfuser_hf.priors.crop_geometry import compose_affines, cut_crops, invert_affines
from etfuser_hf.priors.crop_rules import crop_affines, crop_windows
from etfuser_hf.priors.crop_sampling import fill_values, window_rows

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    spec = importlib.util.spec_from_file_location("reference_photos", FIXTURES / "generate" / "reference_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_photos()


def as_input(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1], the forward's scale."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255


def forward_crops(photo: np.ndarray, geometry: dict, size: int, **inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(with its window rows, without them): the forward's cut of `geometry`'s crop, in 0..255, (1, 3, size, size).

    The input is the part of the photo the crop reads (its `bounds` inside the image), placed by a translation, the
    simplest input -> image affine that is not the identity; the fill comes from the whole photo, at hand. Cut from
    the whole 512 px photo the forward would average 2-4 samples per crop pixel (its box filter engages on a shrink
    over 1.5x of half the input, `CROP_SPAN_OF_INPUT`) where the originals resample bilinearly: the part keeps one
    sample per pixel, asserted below, so the comparison is of the windows alone."""
    image_sizes = photo.shape[:2]
    affines = crop_affines(geometry, image_sizes=image_sizes, **inputs)
    windows = crop_windows(geometry, image_sizes=image_sizes, **inputs)
    x1, y1 = np.maximum(windows.bounds[0, :2], 0).astype(int)
    x2, y2 = np.minimum(windows.bounds[0, 2:], image_sizes[::-1]).astype(int)
    part = as_input(photo[y1:y2, x1:x2])
    assert round(CROP_SPAN_OF_INPUT * min(part.shape[-2:]) / size) <= 1
    to_image = np.array([[[1.0, 0.0, x1], [0.0, 1.0, y1]]])
    affines = torch.from_numpy(compose_affines(affines, to_image)).float()
    rows = window_rows(windows, fill_values(as_input(photo), windows.fill), to_image)
    return tuple(cut_encoder_crops(part, affines, (size, size), cut) * 255 for cut in (rows, None))


@pytest.fixture(scope="module")
def faceapi_recorded():
    recorded = np.load(FIXTURES / "faceapi" / "crops.npz")
    return {key: recorded[key] for key in recorded.files}


@pytest.mark.parametrize("face", range(4))
def test_forward_crop_with_windows_equals_faceapis_recorded_landmark_input(faceapi_recorded, photos, face):
    """face-api's 112 px landmark-net input (padToSquare's zero bars, the black beyond a clipped box) within 0.08 (its
    float16 storage) on the whole crop; every recorded box is not square, so without the windows the bars show the
    image and the crop misses by over 10."""
    recorded = faceapi_recorded
    photo = photos[str(recorded["photos"][face])]
    ours, without = forward_crops(photo, FaceApiLandmarkConfig().crop_geometry, 112,
                                  boxes=recorded["boxes"][face:face + 1])
    expected = torch.from_numpy(recorded["landmark_inputs"][face].astype(np.float32)).permute(2, 0, 1)
    torch.testing.assert_close(ours[0], expected, atol=0.08, rtol=0)
    assert float((without[0] - expected).abs().max()) > 10


@pytest.mark.parametrize("face", range(4))
def test_forward_crop_with_windows_equals_faceapis_recorded_recognition_input(faceapi_recorded, photos, face):
    """face-api's 150 px recognition-net input on alignDlib's box, within 0.08; where that box is cut by the image
    (the astronaut at the left border) only the windows give face-api's bars."""
    recorded = faceapi_recorded
    photo = photos[str(recorded["photos"][face])]
    ours, without = forward_crops(photo, FaceApiRecognitionConfig().crop_geometry, 150,
                                  landmarks=recorded["landmarks"][face:face + 1], boxes=recorded["boxes"][face:face + 1])
    expected = torch.from_numpy(recorded["recognition_inputs"][face].astype(np.float32)).permute(2, 0, 1)
    torch.testing.assert_close(ours[0], expected, atol=0.08, rtol=0)
    _, _, width, height = recorded["aligned_boxes"][face]
    if width != height:
        assert float((without[0] - expected).abs().max()) > 10


@pytest.mark.parametrize("face", [0, 2, 3])
def test_forward_crop_with_windows_equals_fers_recorded_crop(photos, face):
    """fer 25.10.3's 64 px grey crop within 1.5 grey levels (0.45 on average: fer rounds its grey to uint8 and OpenCV
    resizes in fixed point), its padding grey included on the border faces 2 and 3, which without the windows are
    black there. Face 1's 246 px box is a shrink over 1.5x of half of any input that holds it, where the forward
    averages 2 x 2 samples per pixel by design (cut_crops' tests cover its windows on the photo)."""
    recorded = np.load(FIXTURES / "fer" / "crops.npz")
    photo = photos[str(recorded["photos"][face])]
    crops = forward_crops(photo, FerMiniXceptionConfig().crop_geometry, 64, boxes=recorded["boxes"][face:face + 1])
    ours, without = ((crop * LUMA).sum(1)[0].numpy() for crop in crops)
    difference = np.abs(ours - recorded["crops"][face])
    assert difference.mean() < 0.45 and difference.max() <= 1.5, (difference.mean(), difference.max())
    assert (np.abs(without - recorded["crops"][face]).max() > 10) == (face >= 2)


def test_rotated_canonical_crop_places_the_window_bars_where_they_fall_in_the_photo(faceapi_recorded, photos):
    """The astronaut cut at the left border (face 2), fed as a 224 px loose crop rotated 12 degrees from the photo
    (as `analyze` and aligned training feed a face): the forward's landmark-net crop of it, with window rows in photo
    pixels and the crop -> photo affine, against `cut_crops` of the photo itself with the windows.

    The loose crop is itself a bilinear resample of the photo, and the mask follows its pixels, not the photo's, so
    the two agree loosely: on average within 4 grey levels, and 97% of pixels within 16 (measured: 1.6 and 98.1%);
    the misses are the bars' edges (a pixel either side) and the blur of resampling twice. Without the windows the
    bars show image."""
    photo = photos[str(faceapi_recorded["photos"][2])]
    geometry, boxes = FaceApiLandmarkConfig().crop_geometry, faceapi_recorded["boxes"][2:3]
    affines = crop_affines(geometry, boxes=boxes, image_sizes=photo.shape[:2])
    windows = crop_windows(geometry, boxes=boxes, image_sizes=photo.shape[:2])
    centre = (boxes[0, :2] + boxes[0, 2:]) / 2
    angle = np.deg2rad(12.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    # photo -> loose crop: rotate about the face's centre, put it at the crop's centre (scale 1: no resolution lost)
    canonical = np.concatenate([rotation, (112.0 - rotation @ centre)[:, None]], axis=1)[None]
    loose = cut_crops(as_input(photo), canonical, 224)  # zeros beyond the photo, as cut_canonical_crops
    to_image = invert_affines(canonical)
    rows = window_rows(windows, fill_values(as_input(photo), windows.fill), to_image)
    in_loose = torch.from_numpy(compose_affines(affines, to_image)).float()
    ours = cut_encoder_crops(loose, in_loose, (112, 112), rows)[0] * 255
    without = cut_encoder_crops(loose, in_loose, (112, 112))[0] * 255
    reference = cut_crops(as_input(photo), affines, 112, windows=windows)[0] * 255
    difference = (ours - reference).abs()
    assert float(difference.mean()) < 4 and float((difference <= 16).float().mean()) > 0.97, (
        float(difference.mean()), float((difference <= 16).float().mean()))
    bars = reference.amax(0) == 0  # face-api's bars and the black left of the image
    assert bars.float().mean() > 0.1
    assert float((without - reference).abs()[:, bars].mean()) > 5 * float(difference[:, bars].mean())


def test_crop_plan_window_rows_place_photo_windows_in_the_fed_frame_and_refuse_a_bad_grey():
    """A face fed as its canonical crop gets window rows whose affine is the canonical crop -> photo one and whose
    fer fill is the photo's bottom grey in R, G and B; a grey per face of the wrong count, or a batch that is not
    (N, 3, H, W), is refused by name."""
    from etfuser_hf.models.input_checks import WINDOW_SUFFIX
    from etfuser_hf.priors.crop_plan import CropPlan, FaceGeometry, image_bottom_grey

    photo = np.zeros((200, 160, 3), np.uint8)
    photo[-2:] = (200, 100, 50)  # the bottom rows: luma 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2
    grey = image_bottom_grey([photo])
    np.testing.assert_allclose(grey, [124.2 / 255], rtol=1e-6)
    points = np.array([[[60.0, 80.0], [100.0, 80.0], [80.0, 105.0], [65.0, 125.0], [95.0, 125.0]]])
    faces = FaceGeometry.from_detections(np.array([[40.0, 50.0, 120.0, 150.0]]), points, photo.shape[:2],
                                         bottom_grey=grey)
    plan = CropPlan({"fer": FerMiniXceptionConfig().crop_geometry}, None)
    rows = plan.window_rows(faces, None)["fer" + WINDOW_SUFFIX]
    assert rows.shape == (1, 17) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[0, :6].reshape(2, 3), invert_affines(faces.canonical)[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(rows[0, 14:], np.repeat(grey, 3), rtol=1e-6)
    with pytest.raises(ValueError, match=r"bottom_grey: expected one finite grey per face \(1,\), got shape \(2,\)"):
        FaceGeometry.from_detections(faces.boxes, points, photo.shape[:2], bottom_grey=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"images: expected a \(N, 3, H, W\) batch in \[0, 1\], got shape"):
        image_bottom_grey(np.zeros((1, 8, 8, 3), np.float32))
