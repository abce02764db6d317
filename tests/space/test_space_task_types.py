"""The Space's photo and video answers for a multi-label, a regression and a landmark model (issue 33, item 2):
the fixed-head models of `tests/analysis/task_type_models.py` on the astronaut photo, through `analyze_photo` and
`analyze_video` as the page calls them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import space_fixtures  # noqa: F401 (puts the Space's folder, spaces/et-fuser, on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
from task_type_models import write_task_type_models  # noqa: E402

from app import time_course_plot  # noqa: E402
from etfuser_hf.analysis.media import write_video  # noqa: E402
from face_report import MODEL_LANDMARK_COLOUR, analyze_photo, analyze_video  # noqa: E402
from space_model import load_space_model  # noqa: E402

KINDS = ("multi_label_classification", "regression", "landmarks")


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    folders = write_task_type_models(tmp_path_factory.mktemp("task-types"))
    return {kind: load_space_model(str(folders[kind])) for kind in KINDS}


@pytest.fixture(scope="module")
def photos(spaces, astronaut_path):  # noqa: F811
    return {kind: analyze_photo(str(astronaut_path), space) for kind, space in spaces.items()}


def _model_reading(result) -> str:
    readings = result.readings.set_index("who")["reading"]
    return readings["ET-Fuser (this model, fine-tuned)"]


def test_task_type_space_multi_label_shows_attributes(photos):
    result = photos["multi_label_classification"]
    assert result.message == "1 face found."
    assert list(result.faces.columns) == ["face", "label", "attr_Smiling", "attr_Eyeglasses", "attr_Young",
                                          "attr_prob_Smiling", "attr_prob_Eyeglasses", "attr_prob_Young", "score"]
    assert result.faces.loc[0, "label"] == "Smiling|Young"
    probabilities = result.faces.loc[0, ["attr_prob_Smiling", "attr_prob_Eyeglasses", "attr_prob_Young"]]
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert _model_reading(result) == "Smiling|Young 0.95"


def test_task_type_space_regression_shows_the_value(photos):
    result = photos["regression"]
    assert list(result.faces.columns) == ["face", "value_age", "score"]
    assert result.faces.loc[0, "value_age"] == pytest.approx(40.0, abs=1e-3)
    assert _model_reading(result) == "age=40.00"


def test_task_type_space_landmarks_drawn_on_the_face(photos):
    result = photos["landmarks"]
    assert list(result.faces.columns) == ["face", "score"]
    assert _model_reading(result) == "5 landmarks (drawn in magenta)"
    row = result.table[result.table["status"] == "ok"].iloc[0]
    drawn = np.asarray(result.annotated)
    for index in range(5):
        x, y = int(round(row[f"landmark_x{index:02d}"])), int(round(row[f"landmark_y{index:02d}"]))
        assert tuple(drawn[y, x]) == MODEL_LANDMARK_COLOUR, (index, x, y)


def test_task_type_space_video_time_course_per_type(spaces, tmp_path):
    crop = skimage.data.astronaut()[:256, 100:356]
    video = write_video(tmp_path / "clip.mp4", [np.roll(crop, 4 * index, axis=1) for index in range(3)], fps=5)
    course = analyze_video(str(video), spaces["regression"], every_n_frames=1).time_course
    assert sorted(course["class"].unique()) == ["age"] and len(course) == 3
    np.testing.assert_allclose(course["value"], 40.0, atol=1e-3)
    assert time_course_plot(course).y == "value"
    attributes = analyze_video(str(video), spaces["multi_label_classification"], every_n_frames=1).time_course
    assert sorted(attributes["class"].unique()) == ["Eyeglasses", "Smiling", "Young"]
    assert time_course_plot(attributes).y == "probability"
    points = analyze_video(str(video), spaces["landmarks"], every_n_frames=1)
    assert points.time_course.empty and (points.table["status"] == "ok").sum() == 3
