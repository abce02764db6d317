"""Task types from the data (`data.targets`): each official layout's columns resolve to the type their reader
declares, an override is checked against what the column holds, and each target is prepared as the model reads it
(AffectNet's landmarks in pixels of the original image -> [0, 1] of that image, by its own size)."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from layouts import EXPECTED_SIZES, write_affectnet, write_celeba, write_utkface

from etfuser_hf.data.face_datasets import read_face_source
from etfuser_hf.data.sources.base import ColumnSpec, RowLog
from etfuser_hf.data.targets import column_task_type, parse_task_type, prepare_targets, unit_frame


@pytest.fixture(scope="module")
def affectnet(tmp_path_factory):
    return read_face_source(write_affectnet(tmp_path_factory.mktemp("affectnet")))


def test_task_type_of_each_layouts_columns_is_what_its_reader_declares(tmp_path, affectnet):
    data, report = affectnet
    kinds = {column: column_task_type(data, column, report.columns[column])
             for column in ("label", "valence", "arousal", "landmarks")}
    assert kinds == {"label": "single_label_classification", "valence": "regression", "arousal": "regression",
                     "landmarks": "landmarks"}
    utk, utk_report = read_face_source(write_utkface(tmp_path))
    assert column_task_type(utk, "age", utk_report.columns["age"]) == "regression"  # not ~100 classes
    assert column_task_type(utk, "gender", utk_report.columns["gender"]) == "single_label_classification"
    celeba, celeba_report = read_face_source(write_celeba(tmp_path))
    assert column_task_type(celeba, "attributes", celeba_report.columns["attributes"]) == "multi_label_classification"
    assert column_task_type(celeba, "landmarks", celeba_report.columns["landmarks"]) == "landmarks"


def test_task_type_without_a_declaration_comes_from_the_feature_and_an_override_wins():
    data = datasets.Dataset.from_dict(
        {"image": ["a.jpg"], "score": [0.5], "grade": [3], "tags": [[0, 1, 1]], "points": [[[0.1, 0.2], [0.3, 0.4]]]})
    assert [column_task_type(data, column) for column in ("score", "grade", "tags", "points")] == [
        "regression", "single_label_classification", "multi_label_classification", "landmarks"]
    assert column_task_type(data, "grade", override="regression") == "regression"
    assert column_task_type(data, "score", override="single-label") == "single_label_classification"
    assert parse_task_type("Multi-Label") == "multi_label_classification"


def test_task_type_bad_input_names_the_column_and_what_it_holds(affectnet):
    data, report = affectnet
    with pytest.raises(ValueError, match=r"column 'face_box' holds a box \(pixels of the original .*\), not a target "
                                         r"this package trains; task types: single_label_classification, "):
        column_task_type(data, "face_box", report.columns["face_box"])
    with pytest.raises(ValueError, match=r"column 'valence' as landmarks: that needs \(K, 2\) points per image, but "
                                         r"the column holds one value per image"):
        column_task_type(data, "valence", report.columns["valence"], override="landmarks")
    with pytest.raises(ValueError, match=r"column 'landmarks' as multi_label_classification: that needs a vector per "
                                         r"image, but the column holds \(K, 2\) points per image"):
        column_task_type(data, "landmarks", report.columns["landmarks"], override="multi-label")
    with pytest.raises(ValueError, match=r"--task-type: unknown task type 'ordinal'; expected one of "
                                         r"single_label_classification, multi_label_classification, regression, "
                                         r"landmarks \(or single-label, multi-label\)"):
        column_task_type(data, "label", override="ordinal")
    with pytest.raises(ValueError, match=r"the dataset has no column 'mood'; columns: \['image', 'label', "):
        column_task_type(data, "mood")


def test_task_type_landmarks_are_mapped_into_the_images_unit_frame_by_its_own_size(affectnet):
    data, report = affectnet
    prepared = prepare_targets(data, "landmarks", "landmarks", report.columns["landmarks"])
    assert {split: len(rows) for split, rows in prepared.items()} == EXPECTED_SIZES["affectnet"]
    original = np.asarray(data["train"][0]["landmarks"], np.float32)
    mapped = np.asarray(prepared["train"][0]["landmarks"], np.float32)
    assert original[0].tolist() == pytest.approx([10.0, 20.5])  # the fixture's first point, in pixels
    np.testing.assert_allclose(mapped, original / 96.0, rtol=1e-6)  # its 96x96 image
    np.testing.assert_allclose(unit_frame([[48.0, 24.0]], 96, 48), [[0.5, 0.5]])
    assert prepared["train"][0]["label"] == data["train"][0]["label"]  # the other columns are untouched


def test_task_type_targets_that_cannot_be_read_are_skipped_or_refused(tmp_path):
    data, report = read_face_source(write_affectnet(tmp_path))  # its own copy: one of its images is broken below
    train = data["train"]
    broken = train.cast_column("image", datasets.Image(decode=False))[0]["image"]["path"]
    with open(broken, "wb") as handle:
        handle.write(b"not a jpeg")
    log = RowLog()
    prepared = prepare_targets(train, "landmarks", "landmarks", report.columns["landmarks"], log=log)
    assert len(prepared) == len(train) - 1 and log.skipped == {"unreadable_image": 1}
    assert broken in log.examples["unreadable_image"][0]
    pixels = datasets.Dataset.from_dict({"image": ["a.jpg"], "points": [[[40.0, 12.0], [60.0, 12.0]]]})
    with pytest.raises(ValueError, match="holds landmarks up to 60, and no reader declared them in pixels"):
        prepare_targets(pixels, "points", "landmarks", ColumnSpec("landmarks"))
    vectors = datasets.Dataset.from_dict({"tags": [[0, 2]]})
    with pytest.raises(ValueError, match=r"'tags' must hold equal-length 0/1 vectors .* got values \[0, 2\]"):
        prepare_targets(vectors, "tags", "multi_label_classification")
    ages = datasets.Dataset.from_dict({"age": [31.0, float("nan")]})
    with pytest.raises(ValueError, match="'age' holds 1 value\\(s\\) that are not finite numbers, first at row 1"):
        prepare_targets(ages, "age", "regression")
    assert prepare_targets(datasets.Dataset.from_dict({"age": [31, 40]}), "age", "regression").features["age"] == \
        datasets.Value("float32")
