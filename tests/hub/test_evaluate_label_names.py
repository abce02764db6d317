"""`etfuser evaluate` matches a dataset's classes to the model's by name (RAF-DB's ids are not FER2013's), refuses
classes the model lacks with both label sets, and passes reader options (`--image-root`, `--dataset-option`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_etfuser_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from layouts import RAFDB_ROWS, save_face, write_affectnet, write_rafdb, write_utkface  # noqa: E402

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor  # noqa: E402
from evaluate_cli import evaluate, refused  # noqa: E402
from etfuser_hf.metrics import macro_f1  # noqa: E402

FER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
RAF_TO_FER = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral"}  # by hand


@pytest.fixture(scope="module")
def disgust_model(tmp_path_factory) -> Path:
    """A tiny FER-ordered model that answers "disgust" (FER id 1; RAF-DB's id 1 is fear) whatever the face."""
    folder = tmp_path_factory.mktemp("fer-model")
    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_etfuser_config(
        num_labels=7, id2label=dict(enumerate(FER)), label2id={name: i for i, name in enumerate(FER)}))
    with torch.no_grad():
        model.classifier.dense.weight.zero_()
        model.classifier.dense.bias.fill_(-50.0)
        model.classifier.dense.bias[FER.index("disgust")] = 50.0
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_rafdb_is_scored_against_the_fer_models_classes_by_name(disgust_model, tmp_path, capsys):
    root = write_rafdb(tmp_path)
    summary = evaluate([str(disgust_model), "--dataset", str(root), "--split", "test"], capsys)
    truth = [FER.index(RAF_TO_FER[label]) for name, label in RAFDB_ROWS if name.startswith("test_")]
    predictions = [FER.index("disgust")] * len(truth)
    assert truth == [1, 3, 6]  # disgust, happy, neutral: RAF-DB ids 2, 3, 6 compared by id would score 0
    assert summary["num_samples"] == 3 and summary["num_skipped"] == 0
    assert summary["accuracy"] == pytest.approx(1 / 3)
    assert summary["macro_f1"] == pytest.approx(macro_f1(predictions, truth, 7))
    # the same model on the train split (no disgust there) scores 0, as its names say
    assert evaluate([str(disgust_model), "--dataset", str(root), "--split", "train"], capsys)["accuracy"] == 0.0


def test_a_dataset_with_classes_the_model_lacks_is_refused_naming_both_label_sets(disgust_model, tmp_path, capsys):
    for index, name in enumerate(("contempt", "happy")):
        save_face(tmp_path / "faces" / name / f"{index}.png", index, (32, 32))
    error = refused([str(disgust_model), "--dataset", str(tmp_path / "faces"), "--split", "train"], capsys)
    assert "dataset classes ['contempt'] have no counterpart" in error
    assert "dataset labels ['contempt', 'happy']" in error and f"model labels {FER}" in error


def test_affectnet_csv_with_its_images_elsewhere_and_seven_classes(disgust_model, tmp_path, capsys):
    root = write_affectnet(tmp_path)
    csv = tmp_path / "lists" / "validation.csv"
    csv.parent.mkdir()
    shutil.copy(root / "Manually_Annotated_file_lists" / "validation.csv", csv)
    images = ["--image-root", str(root / "Manually_Annotated_Images")]
    error = refused([str(disgust_model), "--dataset", str(csv), *images], capsys)  # 8 classes: contempt
    assert "['contempt'] have no counterpart" in error and "classes=7" in error
    summary = evaluate([str(disgust_model), "--dataset", str(csv), *images, "--dataset-option", "classes=7"], capsys)
    assert summary["num_samples"] == 7  # validation.csv's 0..6; contempt (7) left out
    assert summary["accuracy"] == pytest.approx(1 / 7)  # AffectNet's disgust (5) is the FER model's disgust
    error = refused([str(disgust_model), "--dataset", str(csv)], capsys)  # images looked for beside the CSV
    assert "no examples found" in error and f"{csv.parent}/600/" in error and "does not exist" in error


def test_reader_options_are_checked_and_named(disgust_model, tmp_path, capsys):
    root = write_rafdb(tmp_path)
    error = refused([str(disgust_model), "--dataset", str(root), "--image-root", str(tmp_path)], capsys)
    assert "the rafdb reader" in error and "takes the options ['images']" in error and "not ['images_dir']" in error
    error = refused([str(disgust_model), "--dataset", str(root), "--dataset-option", "classes"], capsys)
    assert "--dataset-option: expected KEY=VALUE (e.g. classes=7), got 'classes'" in error
    error = refused([str(disgust_model), "--dataset", str(root), "--task", "mood"], capsys)
    assert "has no column 'mood'; columns: ['image', 'label']" in error
    error = refused([str(disgust_model), "--dataset", str(root), "--split", "validation"], capsys)
    assert "has no split 'validation'; splits: ['train', 'test']" in error
    assert "need a --dataset" in refused([str(disgust_model), "--dataset-option", "classes=7"], capsys)


def test_a_column_without_class_names_is_refused(disgust_model, tmp_path, capsys):
    root = write_utkface(tmp_path)
    error = refused([str(disgust_model), "--dataset", str(root), "--task", "age"], capsys)
    assert "column 'age' of" in error and "not class labels with names" in error


def test_the_synthetic_default_is_scored_by_name_too(disgust_model, capsys):
    from etfuser_hf.data.synthetic_faces import make_synthetic_faces

    summary = evaluate([str(disgust_model), "--num-eval", "12", "--seed", "3"], capsys)
    truth = make_synthetic_faces(12, 32, seed=3)["expression"]  # FER2013's names and order
    assert summary["num_samples"] == 12
    assert summary["accuracy"] == pytest.approx(truth.count(FER.index("disgust")) / 12)
