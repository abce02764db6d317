"""Every task type a face dataset carries, trained through `train.py --dataset` (issue 33): the type comes from the
reader (`--task-type COLUMN=TYPE` overrides it), each type gets its canonical network, head, loss, metrics and its own
table, and `etfuser evaluate` scores the saved model with the same metrics.

The fast tests check each piece per type; the `train.py` runs (one step, one seed, the et-fuser row) on a tiny copy
of each official layout check the whole way, one per type."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from layouts import write_affectnet, write_celeba  # noqa: E402
from test_source_record import write_utkface_like  # noqa: E402

from etfuser_hf.data.collators import FaceCollator  # noqa: E402
from etfuser_hf.data.sources.base import ColumnSpec  # noqa: E402
from etfuser_hf.models.configuration_face_priors import DLIB_AGE_BINS  # noqa: E402
from etfuser_hf.priors.convert_face_priors import ensure_face_priors  # noqa: E402
from etfuser_hf.training.comparison.dataset_source import read_dataset  # noqa: E402
from etfuser_hf.training.comparison.tasks import FaceTask, dataset_task, resolve_tasks  # noqa: E402
from etfuser_hf.training.main import parse_args  # noqa: E402
from etfuser_hf.training.report.task_tables import reading, render_task_table, task_table  # noqa: E402
from etfuser_hf.training.run.probes import fit_probe  # noqa: E402
from etfuser_hf.training.run.trainer import RunResult  # noqa: E402

FAST_RUN = ["--seeds", "1", "--max-steps", "1", "--no-baselines", "--workers", "1", "--no-cache", "--batch-size", "4",
            "--early-stopping", "0", "--precision", "fp32"]


# ----------------------------------------------------------------------------------------------------------------------
# each type's task: canonical network, metrics, loss, head
# ----------------------------------------------------------------------------------------------------------------------


def test_task_type_each_type_gets_its_canonical_network_metrics_and_loss():
    expression = dataset_task("label", "single_label_classification", label_names=["happiness", "sadness", "anger"])
    gender = dataset_task("gender", "single_label_classification", label_names=["male", "female"])
    attributes = dataset_task("attributes", "multi_label_classification",
                              ColumnSpec("multi_label_classification", ("Smiling", "Young")))
    age = dataset_task("age", "regression", ColumnSpec("regression", units="years"))
    valence = dataset_task("valence", "regression", ColumnSpec("regression", units="valence in [-1, 1]"))
    points = dataset_task("landmarks", "landmarks", ColumnSpec("landmarks", num_points=5))
    canonical = {task.name: task.canonical for task in (expression, gender, attributes, age, valence, points)}
    assert canonical == {"label": "expression", "gender": "age", "attributes": "face_recognition", "age": "age",
                         "valence": "expression", "landmarks": "face_landmarks"}
    assert (expression.metrics, attributes.metrics, age.metrics, valence.metrics, points.metrics) == (
        ("accuracy", "macro_f1"), ("multilabel_accuracy", "multilabel_f1"), ("mae",), ("rmse", "ccc"), ("nme",))
    assert [task.greater_is_better for task in (expression, attributes, age, valence, points)] == [
        True, True, False, False, False]
    assert attributes.label_names == ("Smiling", "Young")
    assert age.binned_readout and age.head_settings() == {"num_labels": 1, "regression_loss": "l1"}  # MAE's loss
    assert not valence.binned_readout and valence.head_settings() == {"num_labels": 1, "regression_loss": "mse"}
    assert points.head_settings() == {"num_landmarks": 5, "interocular_indices": [0, 1]}  # CelebA's eye centres
    assert FaceTask("landmarks", "landmarks", "landmarks", "face_landmarks").interocular_indices == (36, 45)
    # another canonical model has no age bins to read out over; one without points has no NME normaliser
    (vit_age,) = resolve_tasks(["age"], synthetic=False, canonical="scratch-vit", dataset_tasks={"age": age})
    assert vit_age.canonical == "scratch-vit" and not vit_age.binned_readout and vit_age.metrics == ("mae",)
    with pytest.raises(ValueError, match="no inter-ocular points known for 19 landmarks"):
        FaceTask("p", "p", "landmarks", "face_landmarks", num_landmarks=19).interocular_indices
    with pytest.raises(ValueError, match=r"unknown metrics \['auc'\]"):
        FaceTask("x", "x", "regression", "age", metric_names=("auc",))
    with pytest.raises(ValueError, match="problem_type must be one of"):
        FaceTask("x", "x", "box", "age")


def _args(tmp_path: Path, dataset: Path, *extra: str):
    return parse_args(["--dataset", str(dataset), "--output-dir", str(tmp_path / "run"), *extra])


def test_task_type_comes_from_each_layouts_reader_and_an_override_wins(tmp_path):
    utk = write_utkface_like(tmp_path)
    source = read_dataset(_args(tmp_path, utk, "--tasks", "age", "gender"))
    age, gender = source.tasks["age"], source.tasks["gender"]
    assert (age.problem_type, age.canonical, age.units, age.binned_readout) == ("regression", "age", "years", True)
    assert (gender.problem_type, gender.canonical) == ("single_label_classification", "age")  # not expression classes
    assert source.data.features["age"].dtype == "float32"  # a value, not ~100 classes
    overridden = read_dataset(_args(tmp_path, utk, "--tasks", "age", "--task-type", "age=single-label"))
    assert overridden.tasks["age"].problem_type == "single_label_classification"
    assert overridden.data.features["age"].names[:2] == ["20", "21"]  # the old behaviour, where asked for
    celeba = read_dataset(_args(tmp_path, write_celeba(tmp_path), "--tasks", "attributes"))
    attributes = celeba.tasks["attributes"]
    assert (attributes.problem_type, attributes.canonical) == ("multi_label_classification", "face_recognition")
    assert len(attributes.label_names) == 40 and attributes.label_names[:2] == ("5_o_Clock_Shadow", "Arched_Eyebrows")
    affectnet = read_dataset(_args(tmp_path, write_affectnet(tmp_path), "--tasks", "landmarks", "valence", "label"))
    kinds = {name: (task.problem_type, task.canonical) for name, task in affectnet.tasks.items()}
    assert kinds == {"landmarks": ("landmarks", "face_landmarks"), "valence": ("regression", "expression"),
                     "label": ("single_label_classification", "expression")}
    points = np.asarray(affectnet.data["train"][0]["landmarks"])
    assert points.shape == (68, 2) and 0.0 < points.min() and points.max() < 1.0  # in the 96x96 image's frame


@pytest.mark.parametrize("argv, message", [
    (["--task-type", "age=regression"], "--task-type age=regression: the synthetic tasks have fixed types"),
    (["--dataset", "x", "--tasks", "age", "--task-type", "age"], "--task-type: expected COLUMN=TYPE"),
    (["--dataset", "x", "--tasks", "age", "--task-type", "age=ordinal"],
     "--task-type age=ordinal: unknown task type 'ordinal'; expected one of single_label_classification, "),
    (["--dataset", "x", "--tasks", "age", "--task-type", "race=regression"],
     "--task-type race=regression: 'race' is not one of the --tasks columns ['age']"),
])
def test_task_type_override_bad_input_is_refused_before_any_work(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args([*argv, "--output-dir", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert message in error, error


def test_task_type_columns_that_are_not_that_type_are_refused_naming_them(tmp_path):
    root = write_affectnet(tmp_path)
    with pytest.raises(ValueError, match=r"column 'face_box' holds a box .* not a target this package trains"):
        read_dataset(_args(tmp_path, root, "--tasks", "face_box"))
    with pytest.raises(ValueError, match=r"column 'valence' as multi_label_classification: that needs a vector"):
        read_dataset(_args(tmp_path, root, "--tasks", "valence", "--task-type", "valence=multi-label"))
    with pytest.raises(ValueError, match=r"the dataset has no column 'mood'"):
        read_dataset(_args(tmp_path, root, "--tasks", "mood"))


# ----------------------------------------------------------------------------------------------------------------------
# heads, batches, probes, tables
# ----------------------------------------------------------------------------------------------------------------------


def test_task_type_age_regression_starts_as_the_pretrained_age_nets_expected_age():
    """The age task's head reads out over the dlib age net's 81 bins and starts as that net's classifier, so the
    untrained model (gate closed) predicts exactly the pretrained net's expected age, with an L1 loss (MAE)."""
    from transformers import AutoModel

    from etfuser_hf.models.encoders import prepare_encoder_inputs
    from etfuser_hf.training.comparison.recipe import build_task_model

    prior_dirs = ensure_face_priors(names=["age", "expression"])
    task = dataset_task("age", "regression", ColumnSpec("regression", units="years"))
    model = build_task_model(task, prior_dirs, None, 64).eval()
    assert model.config.regression_bins == pytest.approx(DLIB_AGE_BINS) and model.config.regression_loss == "l1"
    pixels = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    age_net = AutoModel.from_pretrained(prior_dirs["age"]).eval()
    with torch.no_grad():
        outputs = model(pixel_values=pixels, labels=torch.tensor([20.0, 40.0, 60.0]))
        expected = age_net.expected_age(age_net(pixel_values=prepare_encoder_inputs(pixels, model.config.backbone)).logits)
    torch.testing.assert_close(outputs.logits.squeeze(-1), expected, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(outputs.loss, (expected - torch.tensor([20.0, 40.0, 60.0])).abs().mean(), atol=1e-4,
                               rtol=1e-5)
    assert build_task_model(task, prior_dirs, None, 64, fusion_mode="priors_only").config.regression_bins  # every row


def test_task_type_collator_batches_each_kind_of_target():
    from etfuser_hf.models.image_processing_etfuser import ETFuserImageProcessor

    processor = ETFuserImageProcessor(size={"height": 32, "width": 32})

    def labels(problem_type: str, rows: list[dict], num_labels: int = 3) -> torch.Tensor:
        return FaceCollator(processor, "y", num_labels, problem_type=problem_type).label_batch(rows)["labels"]

    multi = labels("multi_label_classification", [{"y": [1, 0, 1]}, {"y": [0, 0, 1]}])
    assert multi.dtype == torch.float32 and multi.tolist() == [[1, 0, 1], [0, 0, 1]]
    assert labels("regression", [{"y": 31}, {"y": 0.5}]).tolist() == [31.0, 0.5]
    assert labels("landmarks", [{"y": [[0.1, 0.2]] * 5}]).shape == (1, 5, 2)
    with pytest.raises(ValueError, match=r"y: row 1 must hold a 0/1 vector of 3 labels, got shape \(2,\)"):
        labels("multi_label_classification", [{"y": [1, 0, 1]}, {"y": [1, 0]}])
    with pytest.raises(ValueError, match="y: row 0 must hold one finite number, got nan"):
        labels("regression", [{"y": float("nan")}])
    with pytest.raises(ValueError, match="problem_type must be one of"):
        labels("box", [{"y": 1}])


def test_task_type_probes_fit_regression_and_multi_label_targets():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 6)).astype(np.float32)
    age = 40 + 10 * features[:, 0] - 5 * features[:, 1]
    result = fit_probe("probe", "ridge", features[:80], age[:80], features[80:100], age[80:100],
                       problem_type="regression", test_features=features[100:], test_labels=age[100:],
                       metric_names=("mae",))
    assert result.metrics["mae"] < 0.5 and result.logits.shape == (20, 1) and result.scores.shape == (20,)
    tags = np.stack([features[:, 0] > 0, features[:, 2] > 0.5], axis=1).astype(np.int64)
    multi = fit_probe("probe", "linear", features[:100], tags[:100], features[100:], tags[100:],
                      problem_type="multi_label_classification")
    assert set(multi.metrics) == {"multilabel_accuracy", "multilabel_f1"} and multi.metrics["multilabel_accuracy"] > 0.85
    assert multi.predictions.shape == (20, 2) and set(np.unique(multi.predictions)) <= {0, 1}


def _runs(task: FaceTask, headline: list[float], second: float | None = None, flip: bool = False) -> list[RunResult]:
    rng = np.random.default_rng(len(headline))
    second = second if len(task.metrics) > 1 else None

    def metrics(value: float) -> dict[str, float]:
        return {task.metric: value, **({task.metrics[1]: second} if second is not None else {})}

    return [RunResult("r", "r", np.zeros(30), np.zeros((30, 1)), metrics(value), validation_metrics=metrics(value),
                      scores=rng.random(30) + (1.0 if flip else 0.0), split="test", learning_rate=3e-3)
            for value in headline]


@pytest.mark.parametrize("task, heading, column, test", [
    (dataset_task("valence", "regression", ColumnSpec("regression", units="valence in [-1, 1]")),
     "### valence (regression (valence in [-1, 1])): test-split RMSE (lower is better)", "test ccc",
     "paired permutation test of the squared error"),
    (dataset_task("age", "regression", ColumnSpec("regression", units="years")),
     "### age (regression (years)): test-split MAE (lower is better)", None, "absolute error"),
    (dataset_task("attributes", "multi_label_classification", ColumnSpec("multi_label_classification", ("a", "b"))),
     "### attributes (multi-label classification): test-split mean accuracy over labels", "test multilabel_f1",
     "share of labels right"),
    (dataset_task("landmarks", "landmarks", ColumnSpec("landmarks", num_points=68)),
     "### landmarks: test-split NME (lower is better)", None, "per-image NME"),
])
def test_task_type_gets_its_own_table(task, heading, column, test):
    lower = not task.greater_is_better
    runs = {"et-fuser": _runs(task, [0.30, 0.32, 0.31], 0.5), "canonical": _runs(task, [0.40, 0.43, 0.41], 0.4)}
    table = task_table(task, runs, [0, 1, 2], "et-fuser")
    assert table["problem_type"] == task.problem_type and table["metric"] == task.metric
    assert table["greater_is_better"] is not lower and test in table["tests"]["p_per_seed_vs_main"]
    markdown = render_task_table(table)
    assert heading in markdown and "permutation test per seed" in markdown and f"canonical model: `{task.canonical}`" \
        in markdown
    if column:
        assert f"| {column} |" in markdown and "| 0.5000 ± 0.0000 |" in markdown
    # lower error is better: et-fuser's 0.31 beats the canonical model's 0.41 (and loses where higher is better)
    assert f"{'better' if lower else 'worse'} than canonical by 0.1033 {task.metric}" in reading(table)


# ----------------------------------------------------------------------------------------------------------------------
# train.py --dataset <fixture> --tasks <task>, one per type, and etfuser evaluate on what it saved
# ----------------------------------------------------------------------------------------------------------------------


def _train(dataset: Path, run: Path, *argv: str) -> dict:
    from etfuser_hf.training.main import main

    main(["--dataset", str(dataset), *argv, *FAST_RUN, "--output-dir", str(run)])
    return json.loads((run / "metrics.json").read_text())


def _evaluate(capsys, *argv: str) -> dict:
    from etfuser_hf.hub.cli import main

    capsys.readouterr()
    main(["evaluate", *argv])
    return json.loads(capsys.readouterr().out)


def test_task_type_single_label_gender_trains_to_a_table_and_evaluates(tmp_path, capsys):
    """UTKFace's gender: single-label, not expression classes, so the age net is canonical and the expression
    measures are skipped."""
    root, run = write_utkface_like(tmp_path), tmp_path / "run"
    metrics = _train(root, run, "--tasks", "gender", "--priors", "age", "expression")
    table = metrics["protocol"]["tasks"]["gender"]
    assert (metrics["problem_type"], table["canonical"], table["metric"]) == ("single_label_classification", "age",
                                                                               "accuracy")
    assert metrics["label_names"] == ["male", "female"]
    results = (run / "results.md").read_text()
    assert "### gender (single-label classification): test-split accuracy" in results and "| test macro_f1 |" in results
    summary = _evaluate(capsys, str(run / "model"), "--dataset", str(root), "--task", "gender", "--split", "all")
    assert summary["problem_type"] == "single_label_classification" and summary["num_samples"] == 20
    assert set(summary) >= {"accuracy", "macro_f1"}


def test_task_type_regression_age_trains_to_a_table_and_evaluates(tmp_path, capsys):
    root, run = write_utkface_like(tmp_path), tmp_path / "run"
    metrics = _train(root, run, "--tasks", "age", "--priors", "age", "expression")
    table = metrics["protocol"]["tasks"]["age"]
    assert (metrics["problem_type"], metrics["units"], table["canonical"], table["metric"]) == (
        "regression", "years", "age", "mae")
    assert table["greater_is_better"] is False and table["rows"][0]["test"]["mae"]["mean"] > 0
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["regression_bins"]) == 81
    assert "### age (regression (years)): test-split MAE (lower is better)" in (run / "results.md").read_text()
    summary = _evaluate(capsys, str(run / "model"), "--dataset", str(root), "--task", "age", "--split", "all")
    assert summary["problem_type"] == "regression" and summary["num_samples"] == 20
    assert summary["mae"] > 0 and summary["rmse"] >= summary["mae"] and -1 <= summary["ccc"] <= 1


def test_task_type_multi_label_attributes_trains_to_a_table_and_evaluates(tmp_path, capsys):
    root, run = write_celeba(tmp_path), tmp_path / "run"
    metrics = _train(root, run, "--tasks", "attributes", "--priors", "face_recognition", "expression")
    table = metrics["protocol"]["tasks"]["attributes"]
    assert (metrics["problem_type"], table["canonical"], table["metric"]) == (
        "multi_label_classification", "face_recognition", "multilabel_accuracy")
    assert len(metrics["label_names"]) == 40
    test = table["rows"][0]["test"]
    assert "### attributes (multi-label classification): test-split mean accuracy over labels" in \
        (run / "results.md").read_text()
    summary = _evaluate(capsys, str(run / "model"), "--dataset", str(root), "--task", "attributes")
    assert summary["problem_type"] == "multi_label_classification" and summary["num_samples"] == 2  # CelebA's test
    # the same test images through evaluate's own reading of them: the run's numbers
    assert summary["multilabel_accuracy"] == pytest.approx(test["multilabel_accuracy"]["mean"], abs=1e-4)
    assert summary["multilabel_f1"] == pytest.approx(test["multilabel_f1"]["mean"], abs=1e-4)


def test_task_type_landmarks_trains_to_a_table_and_evaluates(tmp_path, capsys):
    root, run = write_affectnet(tmp_path), tmp_path / "run"
    metrics = _train(root, run, "--tasks", "landmarks", "--priors", "face_landmarks", "expression")
    table = metrics["protocol"]["tasks"]["landmarks"]
    assert (metrics["problem_type"], metrics["num_landmarks"], table["canonical"], table["metric"]) == (
        "landmarks", 68, "face_landmarks", "nme")
    assert "### landmarks: test-split NME (lower is better)" in (run / "results.md").read_text()
    summary = _evaluate(capsys, str(run / "model"), "--dataset", str(root), "--task", "landmarks")
    assert summary["problem_type"] == "landmarks" and summary["num_samples"] == 8  # AffectNet's validation.csv
    assert summary["nme"] == pytest.approx(table["rows"][0]["test"]["nme"]["mean"], abs=1e-4)
