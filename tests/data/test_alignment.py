"""The faces stage (`data.alignment`, issue 33 item 3): each image's face found once, as `analyze` finds it, under
its layout's policy, cached by the images' keys, with the detector's misses counted."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from full_frames import photos, write_full_frames  # noqa: E402
from layouts import write_affectnet, write_fer2013_folders, write_rafdb  # noqa: E402

import etfuser_hf.data.alignment as alignment  # noqa: E402
from etfuser_hf.data.alignment import (  # noqa: E402
    ALIGNMENT_COLUMN,
    FaceAligner,
    align_dataset,
    face_counts,
    faces_of_rows,
    mean_face_in_boxes,
    parse_policy,
)
from etfuser_hf.data.face_datasets import load_face_dataset, source_report  # noqa: E402
from etfuser_hf.priors.crop_plan import detector_boxes_from_landmarks  # noqa: E402


class CountingDetector:
    """MTCNN behind a counter of the images it was asked to look at."""

    def __init__(self, detector):
        self.detector, self.images = detector, 0

    def detect_batch(self, images):
        self.images += len(images)
        return self.detector.detect_batch(images)


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner()


def _counting(aligner: FaceAligner) -> tuple[FaceAligner, CountingDetector]:
    counter = CountingDetector(aligner.detector)
    return FaceAligner(counter, aligner.landmarks), counter


def test_alignment_each_layout_declares_its_face_policy(tmp_path):
    cases = {"imagefolder": (write_full_frames(tmp_path / "frames", with_miss=False), "detect"),
             "rafdb": (write_rafdb(tmp_path), "whole_image"),
             "fer2013": (write_fer2013_folders(tmp_path), "whole_image"),
             "affectnet": (write_affectnet(tmp_path), "box:face_box")}
    for name, (path, policy) in cases.items():
        assert source_report(load_face_dataset(path)).faces == policy, name


def test_alignment_detects_full_frames_and_counts_a_detector_miss(tmp_path, aligner):
    data = load_face_dataset(write_full_frames(tmp_path / "frames"))["train"]
    aligned = align_dataset(data, "detect", aligner, tmp_path / "cache")
    assert face_counts(aligned) == {"detected": 8, "missed": 1}
    cat = aligned.filter(lambda row: row["image"].filename.endswith("cat.png"))
    assert cat[0]["face_found"] == "missed"
    # a miss is taken whole: the detector's box is the image
    np.testing.assert_allclose(cat[0]["face_box"], [0, 0, 451, 300])
    whole = aligned.filter(lambda row: row["image"].filename.endswith("astronaut_whole.png"))[0]
    box = np.asarray(whole["face_box"])
    # the astronaut's face: MTCNN's box about 90 px wide around (220, 115) of the 512 px frame
    assert 60 < box[2] - box[0] < 130 and 150 < (box[0] + box[2]) / 2 < 290 and 60 < (box[1] + box[3]) / 2 < 170
    # the landmark net's points lie inside the face's box (nose tip), stored in [0, 1] of the image
    nose = np.asarray(whole[ALIGNMENT_COLUMN])[30] * 512
    assert box[0] < nose[0] < box[2] and box[1] < nose[1] < box[3]


def test_alignment_mirrored_frame_gives_the_mirrored_face(tmp_path, aligner):
    frame = photos()["astronaut"]
    found = aligner.align([frame, np.ascontiguousarray(frame[:, ::-1])], "detect")
    assert found["face_found"] == ["detected", "detected"]
    box, mirrored = found["face_box"]
    # MTCNN is not exactly mirror-symmetric: within 8 of the box's ~90 px
    np.testing.assert_allclose([512 - mirrored[2], 512 - mirrored[0]], box[[0, 2]], atol=8)


def test_alignment_warm_start_runs_no_detector_and_decodes_no_image(tmp_path, aligner, monkeypatch):
    data = load_face_dataset(write_full_frames(tmp_path / "frames"))["train"]
    cold, counter = _counting(aligner)
    first = align_dataset(data, "detect", cold, tmp_path / "cache")
    assert counter.images == len(data) == 9
    warm, counter = _counting(aligner)
    decoded = []
    monkeypatch.setattr(alignment, "decode_encoded", lambda encoded: decoded.append(encoded) or 1 / 0)
    again = align_dataset(data, "detect", warm, tmp_path / "cache")
    assert counter.images == 0 and decoded == []
    for column in alignment.ALIGNMENT_COLUMNS:
        assert again[column] == first[column]
    # a file changed on disk (its mtime) is a new key: found again, not read from the stale cache
    monkeypatch.undo()
    touched = Path(data[0]["image"].filename)
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 10))
    changed, counter = _counting(aligner)
    align_dataset(data, "detect", changed, tmp_path / "cache")
    assert counter.images == len(data)


def _refuse(*args, **kwargs):
    raise AssertionError("a warm start built a network or opened an image")


def test_alignment_warm_start_builds_no_network_and_opens_no_image(tmp_path, aligner, monkeypatch):
    """The default aligner's cache key comes from the converted priors' sha256 manifests (`SHA256SUMS`): a warm start
    with a fresh default aligner reads its faces back without building MTCNN or the landmark net or opening a file."""
    from etfuser_hf.models.modeling_face_priors import FaceApiLandmarkModel
    from etfuser_hf.priors import landmark_stage
    from etfuser_hf.priors.mtcnn import MTCNN

    data = load_face_dataset(write_full_frames(tmp_path / "frames"))["train"]
    first = align_dataset(data, "detect", aligner, tmp_path / "cache")
    for owner, name in ((MTCNN, "__init__"), (FaceApiLandmarkModel, "__init__"), (PIL.Image, "open"),
                        (alignment, "decode_encoded"), (landmark_stage, "converted_landmark_stage")):
        monkeypatch.setattr(owner, name, _refuse)
    warm = FaceAligner()
    again = align_dataset(data, "detect", warm, tmp_path / "cache")
    assert warm.fingerprint() == aligner.fingerprint()
    for column in alignment.ALIGNMENT_COLUMNS:
        assert again[column] == first[column]
    with pytest.raises(AssertionError, match="built a network"):  # the patches bite where a network is needed
        FaceAligner().detector


def test_alignment_fingerprint_follows_the_priors_manifests(tmp_path, aligner):
    """Same manifests, same key, wherever the prior cache lives; a detector setting changed in the converted folder
    (its config.json, so its manifest) is a new key, and so is a detector given by hand."""
    from etfuser_hf.priors.convert_face_priors import ensure_face_priors, write_manifest

    for name, folder in ensure_face_priors(names=["mtcnn", "face_landmarks"]).items():
        shutil.copytree(folder, tmp_path / "priors" / name)
    assert FaceAligner(cache_dir=tmp_path).fingerprint() == aligner.fingerprint()
    config = tmp_path / "priors" / "mtcnn" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "min_face_size": 40.0}))
    write_manifest(config.parent)
    assert FaceAligner(cache_dir=tmp_path).fingerprint() != aligner.fingerprint()
    assert FaceAligner(CountingDetector(aligner.detector)).fingerprint() != aligner.fingerprint()


def test_alignment_whole_image_and_box_policies_place_the_mean_face(tmp_path, aligner):
    boxes = np.array([[10.0, 20.0, 110.0, 150.0], [0.0, 0.0, 48.0, 48.0]])
    faces = mean_face_in_boxes(boxes)
    np.testing.assert_allclose(detector_boxes_from_landmarks(faces), boxes, atol=1e-9)
    data = load_face_dataset(write_affectnet(tmp_path))["train"]
    counter = CountingDetector(aligner.detector)
    aligned = align_dataset(data, "box:face_box", FaceAligner(counter, aligner.landmarks), tmp_path / "cache")
    assert counter.images == 0 and set(face_counts(aligned)) <= {"box", "undecodable"}
    row = aligned[0]
    x, y, width, height = data[0]["face_box"]
    np.testing.assert_allclose(row["face_box"], [x, y, x + width, y + height], rtol=1e-6)
    grey = load_face_dataset(write_fer2013_folders(tmp_path))["train"]
    whole = align_dataset(grey, "whole_image", FaceAligner(counter, aligner.landmarks), tmp_path / "cache")
    assert counter.images == 0 and face_counts(whole) == {"whole_image": len(grey)}
    faces, landmarks = faces_of_rows([whole[0]])
    np.testing.assert_allclose(faces.boxes[0], [0, 0, 48, 48])
    assert landmarks.shape == (1, 68, 2) and np.isfinite(landmarks).all()


def test_alignment_undecodable_image_is_marked_not_fatal(tmp_path, aligner):
    root = write_full_frames(tmp_path / "frames", with_miss=False)
    (root / "a" / "broken.png").write_bytes(b"not a png")
    data = load_face_dataset(root)["train"]
    aligned = align_dataset(data, "detect", aligner, tmp_path / "cache")
    assert face_counts(aligned) == {"detected": 8, "undecodable": 1}


@pytest.mark.parametrize("policy", ["", "find", "box:", "box", "whole_image:x", None])
def test_alignment_bad_policy_is_refused_naming_the_policies(policy):
    with pytest.raises(ValueError, match=r"faces: expected a face policy, one of \['detect', 'whole_image'"):
        parse_policy(policy)


def test_alignment_bad_input_is_refused_naming_the_argument(tmp_path, aligner):
    data = datasets.Dataset.from_dict({"image": [PIL.Image.new("RGB", (64, 64))]})
    with pytest.raises(ValueError, match=r"faces: policy 'box:face_box' reads each face's box from column "
                                         r"'face_box', which the dataset lacks"):
        align_dataset(data, "box:face_box", aligner, tmp_path)
    with pytest.raises(ValueError, match=r"image_column: the dataset has no column 'photo'"):
        align_dataset(data, "detect", aligner, tmp_path, image_column="photo")
    with pytest.raises(ValueError, match=r"boxes: a 'box:b' policy needs one \[x, y, width, height\] box per image"):
        aligner.align([np.zeros((64, 64, 3), np.uint8)], "box:b")
