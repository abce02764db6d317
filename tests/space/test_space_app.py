"""The Space's prediction functions called directly (no browser): the astronaut photo with a main-job-shaped model
over real priors, every kind of bad upload, a video, and the model picker's messages."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import skimage.data
from space_fixtures import LABELS, astronaut_path, space_model_dir, write_run_folder  # noqa: F401 (fixtures)

import etfuser_hf
import face_report
from app import photo_outputs, video_outputs
from face_report import analyze_photo, analyze_video
from space_model import MAIN_JOB_COMMAND, ModelNotFound, load_space_model, synthetic_banner

try:  # the media helpers move to etfuser_hf.analysis (issue 18)
    from etfuser_hf.analysis.media import write_video
except ImportError:
    from etfuser_hf.hub.media import write_video


@pytest.fixture(scope="module")
def space(space_model_dir):
    return load_space_model(str(space_model_dir))


@pytest.fixture(scope="module")
def astronaut(astronaut_path, space):
    return analyze_photo(str(astronaut_path), space)


def test_space_astronaut_one_face_with_label_probabilities_landmarks_and_attention(astronaut):
    assert astronaut.message == "1 face found."
    faces = astronaut.faces
    assert len(faces) == 1 and faces.loc[0, "label"] in LABELS
    probabilities = astronaut.table[[f"prob_{label}" for label in LABELS]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    assert faces.loc[0, "label"] == LABELS[int(probabilities[0].argmax())]
    # the attention bars: one per prior, sharing the ensemble token's attention
    assert sorted(astronaut.attention["prior"]) == ["age", "face_landmarks"]
    assert astronaut.attention["share"].sum() == pytest.approx(1, abs=1e-5)
    # drawn: the 68 landmarks in cyan, inside the face box (around x 180..265, y 60..175)
    pixels = np.asarray(astronaut.annotated)
    cyan = np.argwhere(np.all(pixels == face_report.LANDMARK_COLOUR, axis=-1))
    assert astronaut.annotated.size == (512, 512) and len(cyan) >= 68
    assert 150 < cyan[:, 1].min() and cyan[:, 1].max() < 290 and 50 < cyan[:, 0].min() and cyan[:, 0].max() < 200


def test_space_table_has_the_columns_of_etfuser_analyze(astronaut, astronaut_path, space):
    direct = etfuser_hf.analyze(astronaut_path, model=space.model, progress=False)
    assert list(astronaut.table.columns)[:len(direct.columns)] == list(direct.columns)
    np.testing.assert_allclose(astronaut.table["prob_happy"], direct["prob_happy"], rtol=1e-5)
    # beyond them, only the pretrained canonical network's own readout, named as such
    extra = list(astronaut.table.columns)[len(direct.columns):]
    assert extra == [f"pretrained_expression_prob_{label}" for label in LABELS]


def test_space_shows_the_pretrained_networks_own_readings_beside_the_model(astronaut):
    readings = astronaut.readings.set_index("who")["reading"]
    assert readings["ET-Fuser (this model, fine-tuned)"].split()[0] in LABELS
    # the converted FER net the canonical model starts from reads the smiling astronaut as happy
    assert readings["pretrained expression network (the canonical model before fine-tuning)"].startswith("happy")
    age = float(readings["age prior (pretrained, frozen)"].split()[1])
    assert 18 < age < 70
    assert readings["face_landmarks prior (pretrained, frozen)"] == "68 landmarks (drawn in cyan)"


def _flat(path):
    PIL.Image.fromarray(np.full((120, 160, 3), (40, 120, 200), np.uint8)).save(path)


BAD_UPLOADS = {
    "non_image": ("notes.txt", lambda path: path.write_text("not a photo"), "unsupported file type '.txt'"),
    "text_named_jpg": ("notes.jpg", lambda path: path.write_text("not a photo"), "unreadable image"),
    "empty": ("empty.png", lambda path: path.write_bytes(b""), "The uploaded file is empty"),
    "one_pixel": ("dot.png", lambda path: PIL.Image.new("RGB", (1, 1)).save(path), "too small for face detection: 1x1"),
    "no_face": ("flat.png", _flat, "No face found"),
}


@pytest.mark.parametrize("kind", sorted(BAD_UPLOADS))
def test_space_bad_upload_is_a_message_not_an_exception(kind, tmp_path, space_model_dir):
    name, write, expected = BAD_UPLOADS[kind]
    write(tmp_path / name)
    banner, message, annotated, faces, *_ = photo_outputs(str(tmp_path / name), str(space_model_dir))
    assert expected in message and annotated is None and faces.empty
    assert banner.startswith("**SYNTHETIC training data.**")


def test_space_nothing_uploaded(space_model_dir):
    assert "No file uploaded" in photo_outputs(None, str(space_model_dir))[1]
    assert "No file uploaded" in video_outputs(None, 5, str(space_model_dir))[1]


def test_space_huge_photo_is_downscaled_and_still_answered(tmp_path, space):
    path = tmp_path / "huge.jpg"
    PIL.Image.fromarray(skimage.data.astronaut()).resize((6000, 6000), PIL.Image.Resampling.BILINEAR).save(path)
    result = analyze_photo(str(path), space)
    assert "downscaled to 1280×1280" in result.message
    assert len(result.faces) == 1 and result.annotated.size == (1280, 1280)


def test_space_video_table_per_frame_and_time_course(tmp_path, space):
    crop = skimage.data.astronaut()[:256, 100:356]
    write_video(tmp_path / "clip.mp4", [np.roll(crop, 4 * index, axis=1) for index in range(6)], fps=5)
    result = analyze_video(str(tmp_path / "clip.mp4"), space, every_n_frames=2)
    assert result.table["frame"].tolist() == [0, 2, 4] and (result.table["status"] == "ok").all()
    course = result.time_course
    assert sorted(course["class"].unique()) == sorted(LABELS)
    np.testing.assert_allclose(course.groupby("time (s)")["probability"].sum(), 1, atol=1e-5)
    np.testing.assert_allclose(sorted(course["time (s)"].unique()), [0, 0.4, 0.8], atol=1e-6)
    assert "3 of 3 sampled frames" in result.message


def test_space_unreadable_video_is_a_message(tmp_path, space_model_dir):
    (tmp_path / "broken.mp4").write_text("not a video")
    banner, message, course, table, csv = video_outputs(str(tmp_path / "broken.mp4"), 5, str(space_model_dir))
    assert "Could not read this file" in message and "unreadable video" in message and course.empty


def test_space_without_a_trained_model_says_how_to_make_one(tmp_path, astronaut_path):
    with pytest.raises(ModelNotFound, match="No trained ET-Fuser model"):
        load_space_model(str(tmp_path / "runs" / "etfuser-synthetic" / "model"))
    banner, message, *_ = photo_outputs(str(astronaut_path), str(tmp_path / "missing"))
    assert MAIN_JOB_COMMAND in message and banner == ""


def test_space_banner_is_read_from_the_run_folder_and_the_card(tmp_path, space_model_dir):
    assert "etfuser_hf.data.synthetic_faces" in synthetic_banner(space_model_dir)
    real = tmp_path / "real"
    (real / "model").mkdir(parents=True)
    (real / "metrics.json").write_text(json.dumps({"dataset": {"name": "RAF-DB", "synthetic": False}}))
    assert synthetic_banner(real / "model") is None
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- et-fuser\n- synthetic-data\n---\n# card\n")
    assert "tagged synthetic-data" in synthetic_banner(exported)
    (exported / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- et-fuser\n---\n# card\n")
    assert synthetic_banner(exported) is None
