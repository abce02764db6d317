"""Offline metrics: numpy functions against hand-computed values, the local `evaluate` modules, the Trainer hook."""

from __future__ import annotations

from pathlib import Path

import evaluate
import numpy as np
import pytest
from transformers import EvalPrediction

import etfuser_hf.metrics
from etfuser_hf.metrics import (
    METRIC_NAMES,
    accuracy,
    load_metric,
    macro_f1,
    mae,
    make_compute_metrics,
    multilabel_f1,
    nme,
    per_class_f1,
)


def test_values_computed_by_hand():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    # class 0: F1 1; class 1: P 1 R 1/2 -> 2/3; class 2: P 1/2 R 1 -> 2/3
    assert macro_f1([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert macro_f1([0, 0], [0, 0], num_labels=2) == pytest.approx(0.5)  # absent class 1 scores 0
    assert mae([20.0, 30.0], [25.0, 28.0]) == 3.5
    reference = np.zeros((1, 3, 2)); reference[0, 1] = [2.0, 0.0]  # eyes (0, 1) are 2 apart
    prediction = reference.copy(); prediction[0, 2] = [0.0, 3.0]  # one of three points off by 3
    assert nme(prediction, reference, (0, 1)) == pytest.approx(3 / 3 / 2)
    predicted, true = np.array([[1, 0, 1], [0, 1, 0]]), np.array([[1, 0, 0], [0, 1, 1]])
    assert multilabel_f1(predicted, true, "micro") == pytest.approx(2 * 2 / (3 + 3))
    assert multilabel_f1(predicted, true, "macro") == pytest.approx((1 + 1 + 0) / 3)


def test_local_evaluate_modules_load_offline_and_agree():
    assert load_metric("accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"] == pytest.approx(2 / 3)
    assert load_metric("macro_f1").compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2])["macro_f1"] == pytest.approx(
        macro_f1([0, 1, 2, 2], [0, 1, 1, 2]))
    assert load_metric("mae").compute(predictions=[1.0, 3.0], references=[2.0, 2.0])["mae"] == 1.0
    flat = [[0.0, 0.0, 2.0, 0.0, 0.0, 3.0]]
    assert load_metric("nme").compute(predictions=flat, references=[[0.0, 0.0, 2.0, 0.0, 0.0, 0.0]],
                                      interocular_indices=(0, 1))["nme"] == pytest.approx(0.5)
    assert load_metric("multilabel_f1").compute(predictions=[[1, 0]], references=[[1, 1]])["multilabel_f1"] == 0.5
    with pytest.raises(ValueError, match="name must be one of"):
        load_metric("bleu")


def test_trainer_hook_for_each_problem_type():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    single = make_compute_metrics("single_label_classification", 2)(EvalPrediction(logits, np.array([0, 1, 1])))
    assert single["accuracy"] == pytest.approx(2 / 3)
    multi = make_compute_metrics("multi_label_classification")(EvalPrediction(logits - 1, np.array([[1, 0], [0, 0], [1, 0]])))
    assert multi["multilabel_f1_micro"] == pytest.approx(1.0)
    regression = make_compute_metrics("regression")(EvalPrediction(np.array([[1.0], [2.0]]), np.array([1.5, 2.0])))
    assert regression["mae"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="problem_type must be one of"):
        make_compute_metrics("ranking")


def test_trainer_hook_with_label_names_and_landmarks():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    hook = make_compute_metrics("single_label_classification", ["happy", "sad", "angry"])
    metrics = hook(EvalPrediction((logits, np.zeros(4)), np.array([0, 1, 1, 2])))  # extra outputs are ignored
    # happy: P 1/2 R 1 -> 2/3; sad: P 1 R 1/2 -> 2/3; angry: 1
    assert metrics["f1_happy"] == pytest.approx(2 / 3) and metrics["f1_sad"] == pytest.approx(2 / 3)
    assert metrics["f1_angry"] == 1.0 and metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    with pytest.raises(ValueError, match="label_names: 2 labels given, but the logits have 3"):
        make_compute_metrics("single_label_classification", ["a", "b"])(EvalPrediction(logits, np.array([0, 1, 1, 2])))
    reference = np.zeros((2, 68, 2)); reference[:, 45] = [4.0, 0.0]  # inter-ocular distance 4
    prediction = reference.copy(); prediction[0, :] += [0.0, 2.0]  # image 0: every point 2 off -> 0.5; image 1: 0
    assert make_compute_metrics("landmarks")(EvalPrediction(prediction, reference))["nme"] == pytest.approx(0.25)


def test_every_module_loads_from_its_folder_with_info():
    for name in METRIC_NAMES:
        module = evaluate.load(str(Path(etfuser_hf.metrics.__file__).parent / name))
        assert type(module).__name__ == "".join(part.capitalize() for part in name.split("_"))
        assert "@" in module.citation and "offline" in module.description
    nested = [[[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]]]  # (N, K, 2) nested lists are accepted as well as flattened
    assert load_metric("nme").compute(predictions=nested, references=[[[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]]],
                                      interocular_indices=(0, 1))["nme"] == pytest.approx(0.5)
    assert load_metric("multilabel_f1").compute(predictions=[[1, 0, 1], [0, 1, 0]], references=[[1, 0, 0], [0, 1, 1]],
                                                average="micro")["multilabel_f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"unknown arguments \['beta'\]"):
        load_metric("accuracy").compute(predictions=[0], references=[0], beta=2)


@pytest.mark.parametrize("call, message", [
    (lambda: accuracy([0, 1], [0]), "same length, got 2 and 1"),
    (lambda: accuracy([], []), "at least one example"),
    (lambda: mae([[1.0, 2.0]], [[1.0]]), "same shape"),
    (lambda: nme(np.zeros((1, 68, 2)), np.zeros((1, 5, 2))), r"\(N, K, 2\) or \(N, 2K\) with the same K"),
    (lambda: nme(np.zeros((1, 5, 2)), np.zeros((1, 5, 2))), "interocular_indices .* out of range for 5 points"),
    (lambda: multilabel_f1([1, 0], [1, 0]), r"multi-hot \(N, L\)"),
    (lambda: multilabel_f1([[1]], [[1]], average="weighted"), "average must be 'macro' or 'micro'"),
])
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_per_class_f1_by_hand():
    assert per_class_f1([0, 0, 1], [0, 1, 1], [0, 1, 2]).tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])


def test_task_type_regression_and_multi_label_metrics_by_hand():
    from etfuser_hf.metrics import ccc, multilabel_accuracy, rmse

    assert rmse([1.0, 3.0], [2.0, 2.0]) == 1.0 and rmse([[0.0, 0.0]], [[3.0, 4.0]]) == pytest.approx(np.sqrt(12.5))
    # p = (1, 2, 3), r = (2, 4, 6): var_p 2/3, var_r 8/3, cov 4/3, means 2 and 4 -> 2 (4/3) / (2/3 + 8/3 + 4) = 4/11
    assert ccc([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(4 / 11)
    assert ccc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert ccc([0.5, 0.5], [0.1, 0.9]) == 0.0 and ccc([0.5, 0.5], [0.5, 0.5]) == 1.0  # constants: none / exact
    assert ccc([[1.0, 1.0], [2.0, 3.0]], [[1.0, 3.0], [2.0, 1.0]]) == pytest.approx((1.0 - 1.0) / 2)  # per column
    assert multilabel_accuracy([[1, 0, 1], [0, 1, 0]], [[1, 0, 0], [0, 1, 1]]) == pytest.approx(4 / 6)
    assert load_metric("ccc").compute(predictions=[1.0, 2.0, 3.0], references=[2.0, 4.0, 6.0])["ccc"] == \
        pytest.approx(4 / 11)
    assert load_metric("rmse").compute(predictions=[1.0, 3.0], references=[2.0, 2.0])["rmse"] == 1.0
    assert load_metric("multilabel_accuracy").compute(predictions=[[1, 0]], references=[[1, 1]])[
        "multilabel_accuracy"] == 0.5


def test_task_type_hook_and_per_example_scores_for_every_problem_type():
    from etfuser_hf.metrics import per_example_scores, score_outputs

    regression = make_compute_metrics("regression")(EvalPrediction(np.array([[1.0], [3.0]]), np.array([2.0, 2.0])))
    assert regression == {"mae": 1.0, "rmse": 1.0, "ccc": 0.0}
    logits = np.array([[2.0, -1.0, 3.0], [-2.0, 1.0, -3.0]])  # positives: (1, 0, 1), (0, 1, 0)
    references = np.array([[1, 0, 0], [0, 1, 1]])
    multi = make_compute_metrics("multi_label_classification", 3)(EvalPrediction(logits, references))
    assert multi["multilabel_accuracy"] == pytest.approx(4 / 6) and multi["multilabel_f1"] == pytest.approx(2 / 3)
    assert per_example_scores("multilabel_accuracy", "multi_label_classification", logits, references).tolist() == \
        pytest.approx([2 / 3, 2 / 3])
    assert per_example_scores("mae", "regression", np.array([[1.0], [5.0]]), np.array([2.0, 2.0])).tolist() == [1, 3]
    assert per_example_scores("rmse", "regression", np.array([[1.0], [5.0]]), np.array([2.0, 2.0])).tolist() == [1, 9]
    assert per_example_scores("accuracy", "single_label_classification", logits, np.array([2, 0])).tolist() == [1, 0]
    reference = np.zeros((2, 5, 2)); reference[:, 1] = [2.0, 0.0]  # CelebA's 5 points: eyes 0 and 1, 2 apart
    prediction = reference.copy(); prediction[1] += [0.0, 1.0]  # image 1: every point 1 off -> NME 1 / 2
    assert per_example_scores("nme", "landmarks", prediction, reference, (0, 1)).tolist() == [0.0, 0.5]
    assert score_outputs("landmarks", prediction, reference, interocular_indices=(0, 1)) == {"nme": 0.25}
    with pytest.raises(ValueError, match="'ccc' is not a mean over examples"):
        per_example_scores("ccc", "regression", np.zeros((2, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="problem_type must be one of"):
        score_outputs("ranking", logits, references)
