"""`etfuser evaluate` for every task type: tiny models whose answer is fixed (a constant age, a constant attribute
vector, every landmark at the image centre) scored on the official layouts' fixtures against numbers worked out by
hand; a column that is not the model's type, labels the dataset lacks and a landmark count that differs are refused
in one line each."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_etfuser_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from layouts import (  # noqa: E402
    CELEBA_PARTITIONS,
    UTKFACE_NAMES,
    expected_celeba_attributes,
    write_affectnet,
    write_celeba,
    write_utkface,
)

from etfuser_hf import ETFuserForImageClassification, ETFuserForLandmarkDetection, ETFuserImageProcessor  # noqa: E402
from evaluate_cli import evaluate, refused  # noqa: E402


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _constant_head(dense: torch.nn.Linear, bias: list[float]) -> None:
    with torch.no_grad():
        dense.weight.zero_()
        dense.bias.copy_(torch.tensor(bias))


@pytest.fixture(scope="module")
def age_model(tmp_path_factory) -> Path:
    """A regression model that answers 30 (years) whatever the face."""
    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_etfuser_config(problem_type="regression", num_labels=1))
    _constant_head(model.classifier.dense, [30.0])
    return _save(model, tmp_path_factory.mktemp("age-model"))


@pytest.fixture(scope="module")
def attribute_model(tmp_path_factory) -> Path:
    """A multi-label model over two CelebA attributes, in an order of its own: Young always, no 5 o'clock shadow."""
    torch.manual_seed(0)
    names = ["Young", "5_o_Clock_Shadow"]
    model = ETFuserForImageClassification(tiny_etfuser_config(
        problem_type="multi_label_classification", num_labels=2, id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)}))
    _constant_head(model.classifier.dense, [50.0, -50.0])
    return _save(model, tmp_path_factory.mktemp("attribute-model"))


@pytest.fixture(scope="module")
def centre_model(tmp_path_factory) -> Path:
    """A 68-point landmark model that puts every point at the image centre (sigmoid(0) = 0.5)."""
    torch.manual_seed(0)
    model = ETFuserForLandmarkDetection(tiny_etfuser_config(num_landmarks=68))
    _constant_head(model.landmark_head.dense, [0.0] * 136)
    return _save(model, tmp_path_factory.mktemp("landmark-model"))


def test_task_type_regression_reports_mae_rmse_and_ccc(age_model, tmp_path, capsys):
    root = write_utkface(tmp_path)
    summary = evaluate([str(age_model), "--dataset", str(root), "--task", "age", "--split", "all"], capsys)
    ages = np.asarray([int(name.split("_")[0]) for name in UTKFACE_NAMES], np.float64)  # 1, 26, 35, 54, 80
    assert summary["problem_type"] == "regression" and summary["num_samples"] == 5
    assert summary["mae"] == pytest.approx(np.abs(30 - ages).mean())  # 22.4
    assert summary["rmse"] == pytest.approx(np.sqrt(np.square(30 - ages).mean()))
    assert summary["ccc"] == pytest.approx(0.0)  # a constant answer agrees with nothing


def test_task_type_multi_label_finds_the_models_labels_by_name(attribute_model, tmp_path, capsys):
    root = write_celeba(tmp_path)
    summary = evaluate([str(attribute_model), "--dataset", str(root), "--task", "attributes"], capsys)
    test = [index for index, partition in enumerate(CELEBA_PARTITIONS) if partition == 2]
    truth = np.asarray([[expected_celeba_attributes(index)[39], expected_celeba_attributes(index)[0]]
                        for index in test])  # Young is the 40th attribute, 5_o_Clock_Shadow the 1st
    predicted = np.asarray([[1, 0]] * len(test))
    assert summary["problem_type"] == "multi_label_classification" and summary["num_samples"] == len(test)
    assert summary["multilabel_accuracy"] == pytest.approx((predicted == truth).mean())
    assert set(summary) >= {"multilabel_f1", "multilabel_f1_micro"}


def test_task_type_landmarks_are_scored_in_the_models_frame(centre_model, tmp_path, capsys):
    from etfuser_hf.data.face_datasets import read_face_source
    from etfuser_hf.metrics import nme

    from etfuser_hf.data.alignment import FaceAligner, align_dataset
    from etfuser_hf.data.face_crops import aligned_landmark_labels
    from etfuser_hf.priors.crop_plan import CropPlan

    root = write_affectnet(tmp_path)
    summary = evaluate([str(centre_model), "--dataset", str(root), "--task", "landmarks"], capsys)
    test = read_face_source(root)[0]["test"]
    points = torch.tensor(np.asarray(test["landmarks"], np.float32) / 96.0)  # 96x96 images
    # the targets in the frame the model predicts in: the crop of each face, placed in AffectNet's face box (issue 33)
    aligned = align_dataset(test, "box:face_box", FaceAligner(), tmp_path / "faces")
    model = ETFuserForLandmarkDetection.from_pretrained(centre_model)
    framed = aligned_landmark_labels(points, [aligned[index] for index in range(len(aligned))],
                                     CropPlan.for_model(model)).double().numpy()
    assert summary["problem_type"] == "landmarks" and summary["num_samples"] == 8
    assert summary["nme"] == pytest.approx(nme(np.full_like(framed, 0.5), framed), rel=1e-5)
    assert summary["nme"] != pytest.approx(nme(np.full_like(framed, 0.5), points.double().numpy()), rel=1e-3)


def test_task_type_evaluate_refuses_what_the_model_cannot_be_scored_on(age_model, attribute_model, centre_model,
                                                                       tmp_path, capsys):
    celeba = write_celeba(tmp_path)
    error = refused([str(age_model), "--dataset", str(celeba), "--task", "attributes"], capsys)
    assert "a regression model cannot be scored on it: column 'attributes' as regression: that needs one value per " \
           "image, but the column holds a vector per image" in error
    error = refused([str(centre_model), "--dataset", str(celeba), "--task", "landmarks"], capsys)
    assert "column 'landmarks' of" in error and "holds [5] points per face; the model predicts 68" in error
    error = refused([str(age_model), "--num-eval", "4"], capsys)
    assert "the synthetic faces have no regression target; pass a --dataset" in error
    names = ["Smiling_Wide", "Young"]
    other = ETFuserForImageClassification(tiny_etfuser_config(
        problem_type="multi_label_classification", num_labels=2, id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)}))
    folder = _save(other, tmp_path / "other")
    error = refused([str(folder), "--dataset", str(celeba), "--task", "attributes"], capsys)
    assert "model labels ['Smiling_Wide'] are not among the dataset labels ['5_o_Clock_Shadow'," in error
