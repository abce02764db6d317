"""`analyze`, `etfuser predict` and the per-file summary for every task type (issue 33, item 2): multi-label,
regression (binned age) and landmark models whose answers are fixed by their heads (`task_type_models.py`) on
scikit-image's astronaut photo (public domain) with the real MTCNN; a classification model's task columns are the
ones they always were; a folder that is not an ET-Fuser task model is refused with what it holds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_etfuser_config
from task_type_models import ATTRIBUTE_LOGITS, ATTRIBUTES, write_task_type_models

from etfuser_hf import ETFuserForImageClassification, ETFuserForLandmarkDetection, ETFuserModel
from etfuser_hf.analysis.pipeline import analyze, table_schema
from etfuser_hf.analysis.report import face_predictions, read_table, summarize, write_table
from etfuser_hf.analysis.saved_model import load_model
from etfuser_hf.hub.cli import main
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.face_detection import ARCFACE_TEMPLATE_112, similarity_transforms

POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return write_task_type_models(tmp_path_factory.mktemp("task-types"))


@pytest.fixture(scope="module")
def tables(model_dirs, astronaut_path):
    return {kind: analyze(astronaut_path, model=folder, progress=False, extras=())
            for kind, folder in model_dirs.items()}


def _face(table):
    faces = table[table["status"] == "ok"]
    assert len(faces) == 1, table[["status", "error"]]
    return faces.iloc[0]


def test_task_type_load_model_picks_each_head(model_dirs):
    heads = {kind: type(load_model(folder).model) for kind, folder in model_dirs.items()}
    assert heads == {"multi_label_classification": ETFuserForImageClassification,
                     "regression": ETFuserForImageClassification, "landmarks": ETFuserForLandmarkDetection,
                     "single_label_classification": ETFuserForImageClassification}
    assert {kind: load_model(folder).task_type for kind, folder in model_dirs.items()} == {
        kind: kind for kind in model_dirs}


def test_task_type_load_model_refuses_what_is_not_a_task_model(model_dirs, tmp_path):
    with pytest.raises(ValueError, match=r"is not an ET-Fuser task model: its config.json is a 'etfuser_dlib_age' "
                                         r"model \(expected model_type 'etfuser'\)"):
        load_model(ensure_face_priors(names=["age"])["age"])
    ETFuserModel(tiny_etfuser_config()).save_pretrained(tmp_path / "base")
    with pytest.raises(ValueError, match=r"an ET-Fuser without a task head \(architectures \['ETFuserModel'\]\)"):
        load_model(tmp_path / "base")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json cannot be read as JSON"):
        load_model(tmp_path / "broken")
    with pytest.raises(TypeError, match="expected a saved ET-Fuser folder, an ETFuserForImageClassification or an "
                                        "ETFuserForLandmarkDetection, got int"):
        load_model(3)


def test_task_type_multi_label_columns_are_attributes_and_probabilities(tables, model_dirs):
    table = tables["multi_label_classification"]
    face = _face(table)
    probabilities = 1 / (1 + np.exp(-np.asarray(ATTRIBUTE_LOGITS)))
    np.testing.assert_allclose([face[f"attr_prob_{name}"] for name in ATTRIBUTES], probabilities, atol=1e-5)
    assert [face[f"attr_{name}"] for name in ATTRIBUTES] == [1.0, 0.0, 1.0]
    assert face["label"] == "Smiling|Young"
    schema = table_schema(load_model(model_dirs["multi_label_classification"]).model, ())
    assert {name: schema[name] for name in schema if name.startswith("attr_")} == {
        **{f"attr_{name}": "float32" for name in ATTRIBUTES}, **{f"attr_prob_{name}": "float32" for name in ATTRIBUTES}}
    assert not [name for name in table.columns if name.startswith(("prob_", "value_", "landmark_"))]


def test_task_type_regression_column_is_the_value_in_years(tables):
    table = tables["regression"]
    face = _face(table)
    assert face["value_age"] == pytest.approx(40.0, abs=1e-4)  # equal scores over bins 0..80
    assert str(table["value_age"].dtype) == "float32"
    assert "label" not in table and not [name for name in table.columns if name.startswith(("prob_", "attr_"))]


def test_task_type_landmarks_are_image_pixels_on_the_face(tables):
    table = tables["landmarks"]
    face = _face(table)
    points = np.asarray([[face[f"landmark_x{i:02d}"], face[f"landmark_y{i:02d}"]] for i in range(5)])
    mtcnn = np.asarray([[face[f"{name}_x"], face[f"{name}_y"]] for name in POINTS])
    # the head's points sit on the ArcFace template of the canonical model's crop, which MTCNN's five points place by
    # a least-squares similarity: mapped back to the image they are the template under that fit, near MTCNN's points
    template_to_image = similarity_transforms(ARCFACE_TEMPLATE_112, mtcnn[None].astype(np.float64))[0]
    expected = ARCFACE_TEMPLATE_112 @ template_to_image[:, :2].T + template_to_image[:, 2]
    np.testing.assert_allclose(points, expected, atol=0.05)
    assert np.abs(points - mtcnn).max() < 8.0, (points, mtcnn)  # the fit's residual, on a face ~90 px wide
    box = face[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float)
    assert (points[:, 0] > box[0]).all() and (points[:, 0] < box[2]).all()
    assert (points[:, 1] > box[1]).all() and (points[:, 1] < box[3]).all()
    assert "label" not in table and len([name for name in table.columns if name.startswith("landmark_")]) == 10
    assert all(str(table[name].dtype) == "float32" for name in table.columns if name.startswith("landmark_"))


def test_task_type_classification_columns_are_unchanged(tables):
    table = tables["single_label_classification"]
    face = _face(table)
    task = [name for name in table.columns if name.startswith(("prob_", "attr_", "value_", "landmark_"))]
    columns = list(table.columns)
    at = columns.index("mouth_right_y") + 1  # as before: the label, then its probabilities, after the five points
    assert task == ["prob_calm", "prob_happy"] and columns[at:at + 3] == ["label", "prob_calm", "prob_happy"]
    assert str(table["label"].dtype) == "string" and str(table["prob_calm"].dtype) == "float32"
    assert face["label"] in ("calm", "happy")
    assert face["prob_calm"] + face["prob_happy"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", ["multi_label_classification", "regression", "landmarks"])
def test_task_type_predict_json(kind, model_dirs, tables, astronaut_path, capsys):
    main(["predict", str(model_dirs[kind]), str(astronaut_path)])  # exits non-zero (SystemExit) on an unusable input
    (face,) = json.loads(capsys.readouterr().out)[str(astronaut_path)]
    row = _face(tables[kind])
    if kind == "multi_label_classification":
        assert face["label"] == "Smiling|Young" and face["score"] == pytest.approx(0.9526, abs=1e-4)
        assert face["outputs"] == pytest.approx({name: float(row[name]) for name in row.index
                                                 if name.startswith("attr_")}, abs=1e-4)
        assert "landmarks" not in face
    elif kind == "regression":
        assert face["label"] is None and face["score"] is None
        assert face["outputs"] == {"value_age": pytest.approx(40.0, abs=1e-3)}
    else:
        assert face["label"] is None and face["score"] is None and face["outputs"] == {}
        expected = [[row[f"landmark_x{i:02d}"], row[f"landmark_y{i:02d}"]] for i in range(5)]
        np.testing.assert_allclose(face["landmarks"], expected, atol=0.01)


def test_task_type_summary_rates_means_and_no_landmark_means(tables, tmp_path):
    attributes = summarize(tables["multi_label_classification"]).iloc[0]
    assert attributes["mean_attr_Smiling"] == 1.0 and attributes["mean_attr_Eyeglasses"] == 0.0
    assert attributes["top_label"] == "Smiling|Young"
    assert summarize(tables["regression"]).iloc[0]["mean_value_age"] == pytest.approx(40.0, abs=1e-4)
    assert not [name for name in summarize(tables["landmarks"]).columns if "landmark_" in name]
    # the CSV round trip keeps the task columns' dtypes
    written = read_table(write_table(tables["landmarks"], tmp_path / "points.csv"))
    assert str(written["landmark_x00"].dtype) == "float32"
    assert face_predictions(written)[0].caption == "5 landmarks"


def test_task_type_table_refuses_a_prior_named_like_a_task_column(tmp_path):
    priors = {"value": {"model": ensure_face_priors(names=["age"])["age"]}}
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors=priors, backbone=None, fusion_mode="priors_only", image_size=112, hidden_size=16,
        num_attention_heads=2, intermediate_size=32, num_labels=1, problem_type="regression")
    with pytest.raises(ValueError, match=r"prior 'value' would name its readout columns value_\.\.\., which read as "
                                         r"the model's own output columns"):
        table_schema(model, ())
