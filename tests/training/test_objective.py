"""A task's objective and selection (issue 34, item 2): `--class-weights`, `--label-smoothing`, `--sampler balanced`
and `--select-on` reach every row's model and Trainer alike, are recorded in the run folder, and are refused by name
where they do not fit. The losses themselves are checked against torch by hand in tests/models/test_class_balance.py.
Select with `-k "class_weights or smoothing or select_on"`."""

from __future__ import annotations

import argparse
import dataclasses
import json

import datasets
import numpy as np
import pytest
import torch

from etfuser_hf.data.views import first_view_rows
from etfuser_hf.metrics import load_metric, mean_class_accuracy, score_outputs
from etfuser_hf.training.comparison import protocol
from etfuser_hf.training.comparison.objective import (
    TaskObjective,
    add_objective_arguments,
    apply_objectives,
    balanced_class_weights,
    parse_objective_arguments,
)
from etfuser_hf.training.comparison.tasks import FaceTask, resolve_tasks
from etfuser_hf.training.run.trainer import ETFuserTrainer, training_arguments

EXPRESSION = FaceTask("expression", "expression", "single_label_classification", "expression")
ATTRIBUTES = FaceTask("attributes", "attributes", "multi_label_classification", "face_recognition")
LANDMARKS = FaceTask("landmarks", "landmarks", "landmarks", "face_landmarks")


def objectives_of(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    add_objective_arguments(parser)
    return parse_objective_arguments(parser.parse_args(list(argv)))


def test_mean_class_accuracy_is_the_mean_of_per_class_recall():
    references = [0, 0, 0, 0, 0, 0, 0, 0, 1, 2]
    majority = [0] * 10
    assert mean_class_accuracy(majority, references) == pytest.approx(1 / 3)  # accuracy would say 0.8
    assert mean_class_accuracy([0, 0, 0, 0, 1, 1, 1, 1, 1, 2], references) == pytest.approx((0.5 + 1 + 1) / 3)
    logits = np.eye(3)[majority]
    assert score_outputs("single_label_classification", logits, references)["mean_class_accuracy"] == pytest.approx(1 / 3)
    assert load_metric("mean_class_accuracy").compute(predictions=majority, references=references) == {
        "mean_class_accuracy": pytest.approx(1 / 3)}


def test_balanced_class_weights_are_inverse_frequencies_of_the_training_labels():
    train = datasets.Dataset.from_dict({"expression": [0, 0, 0, 1], "attributes": [[1, 0], [0, 0], [1, 1], [1, 0]]})
    # N / (C * n_c) over the model's 3 classes; class 2 is absent from train and counts as one
    assert balanced_class_weights(EXPRESSION, train, 3) == pytest.approx([4 / 9, 4 / 3, 4 / 3])
    # multi-label: BCE's pos_weight = negatives / positives per label
    assert balanced_class_weights(ATTRIBUTES, train, 2) == pytest.approx([1 / 3, 3.0])


def test_balanced_sampler_draws_every_class_equally_often_in_a_seeded_order(tmp_path):
    labels = [0] * 90 + [1] * 9 + [2] * 1
    train = datasets.Dataset.from_dict({"expression": labels})
    weights = TaskObjective(sampler="balanced").image_weights(EXPRESSION, train)
    assert TaskObjective().image_weights(EXPRESSION, train) is None
    assert protocol.epoch_sampler(EXPRESSION, train, 0) is None  # plain shuffling: the Trainer's own

    def drawn(seed: int) -> np.ndarray:
        balanced = dataclasses.replace(EXPRESSION, objective=TaskObjective(sampler="balanced"))
        sampler = protocol.epoch_sampler(balanced, train, seed)
        trainer = ETFuserTrainer(model=torch.nn.Linear(1, 1), train_dataset=train, train_sampler=sampler,
                                 args=training_arguments(tmp_path, use_cpu=True, eval_strategy="no",
                                                         load_best_model_at_end=False))
        assert trainer._get_train_sampler() is sampler
        return np.concatenate([np.asarray(labels)[list(sampler)] for _ in range(60)])

    np.testing.assert_allclose(weights, 1 / (3 * np.bincount(labels)[labels]))
    counts = np.bincount(drawn(0), minlength=3) / (60 * len(labels))
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.03)
    np.testing.assert_array_equal(drawn(0), drawn(0))
    assert not np.array_equal(drawn(0), drawn(1))


def test_options_for_every_task_apply_where_they_fit():
    expression, attributes, landmarks = apply_objectives(
        [EXPRESSION, ATTRIBUTES, LANDMARKS],
        objectives_of("--class-weights", "balanced", "--label-smoothing", "0.1", "--sampler", "balanced",
                      "--select-on", "macro_f1", "landmarks=nme"))
    assert expression.objective == TaskObjective("balanced", 0.1, "balanced", "macro_f1")
    assert expression.selection_metric == "macro_f1" and expression.metric == "accuracy"
    assert expression.scored_metrics == ("accuracy", "macro_f1")
    assert attributes.objective == TaskObjective("balanced")  # no smoothing nor sampler for multi-label
    assert landmarks.objective == TaskObjective(select_on="nme") and landmarks.selection_metric == "nme"
    (own,) = apply_objectives([EXPRESSION], objectives_of("--class-weights", "expression=1,2,1,1,1,1,1",
                                                          "--select-on", "mean_class_accuracy"))
    assert own.objective.class_weights == (1, 2, 1, 1, 1, 1, 1)
    assert own.scored_metrics == ("accuracy", "macro_f1", "mean_class_accuracy")
    # no option: the tasks keep their own objective (a recipe file's)
    assert objectives_of() == {} and apply_objectives([EXPRESSION], {}) == [EXPRESSION]


@pytest.mark.parametrize(("argv", "message"), [
    (["--class-weights", "1,2,3"], "a list of weights belongs to one task"),
    (["--class-weights", "expression=1,-2"], "weights must be positive and finite"),
    (["--class-weights", "expression=1,a"], "expected 'balanced' or comma-separated numbers"),
    (["--class-weights", "balanced", "balanced"], "given twice for every task"),
    (["--select-on", "f1"], "unknown metric 'f1'"),
    (["--label-smoothing", "1.0"], r"--label-smoothing: expected a value in \[0, 1\)"),
])
def test_bad_objective_options_are_refused_by_name(argv, message):
    with pytest.raises(ValueError, match=message):
        objectives_of(*argv)


@pytest.mark.parametrize(("tasks", "argv", "message"), [
    ([LANDMARKS], ["--label-smoothing", "0.1"], "--label-smoothing: fits none of the tasks: landmarks"),
    ([LANDMARKS], ["--class-weights", "balanced"], "--class-weights: fits none of the tasks"),
    ([ATTRIBUTES], ["--sampler", "balanced"], "--sampler balanced: fits none of the tasks"),
    ([EXPRESSION], ["--select-on", "nme"], "--select-on: fits none of the tasks"),
    ([EXPRESSION], ["--select-on", "expression=mae"], r"--select-on: expression \(single_label_classification\) "
                                                      r"reports \['accuracy', 'macro_f1', 'mean_class_accuracy'\]"),
    ([LANDMARKS], ["--class-weights", "landmarks=balanced"], "class weights apply to classification tasks only"),
    ([EXPRESSION], ["--class-weights", "age=balanced"], r"no task named \['age'\]"),
])
def test_objectives_that_fit_no_task_are_refused(tasks, argv, message):
    with pytest.raises(ValueError, match=message):
        apply_objectives(tasks, objectives_of(*argv))


def test_wrong_number_of_class_weights_is_refused_when_the_classes_are_known():
    with pytest.raises(ValueError, match="expression has 7 classes, got 3 weights"):
        TaskObjective((1.0, 2.0, 3.0)).check(EXPRESSION, 7)
    with pytest.raises(ValueError, match="--class-weights: expression has 7 classes, got 3 weights"):
        TaskObjective((1.0, 2.0, 3.0)).config_overrides(EXPRESSION, datasets.Dataset.from_dict({}), 7)


def test_objective_reaches_every_rows_model_and_trainer_and_the_run_folder(tmp_path, monkeypatch):
    """A real (tiny) main job: the balanced weights from the training split reach each row's config, the sampler
    weights and the selection metric reach the Trainer, and metrics.json / results.md say what was used."""
    from etfuser_hf.training.main import main

    seen = []
    train_model = protocol.train_model

    def recording_train_model(name, description, model, train, *args, **kwargs):
        seen.append((name, model, train, kwargs["select_on"], kwargs["train_sampler"]))
        return train_model(name, description, model, train, *args, **kwargs)

    monkeypatch.setattr(protocol, "train_model", recording_train_model)
    output = tmp_path / "run"
    summary = main(["--tasks", "expression", "--num-train", "16", "--num-validation", "8", "--num-test", "8",
                    "--image-size", "64", "--max-steps", "1", "--batch-size", "8", "--seeds", "1", "--workers", "1",
                    "--priors", "expression", "face_recognition", "--class-weights", "balanced",
                    "--label-smoothing", "0.1", "--sampler", "balanced", "--select-on", "macro_f1",
                    "--output-dir", str(output)])
    assert {name for name, *_ in seen} >= {"canonical", "et-fuser", "concat-mlp"}
    for name, model, train, select_on, sampler in seen:
        (task,) = resolve_tasks(["expression"], synthetic=True)
        expected = balanced_class_weights(task, train, model.config.num_labels)
        assert model.config.class_weights == pytest.approx(expected), name
        assert model.config.label_smoothing == 0.1 and select_on == "macro_f1"
        labels = np.asarray(train.select(first_view_rows(train))["expression"])  # one per image, views or not
        inverse_counts = 1 / np.bincount(labels)[labels]  # each class drawn equally often
        np.testing.assert_allclose(sampler.weights, inverse_counts / inverse_counts.sum())
    record = json.loads((output / "metrics.json").read_text())["protocol"]["objective"]["expression"]
    assert record == summary["protocol"]["objective"]["expression"] == {
        "class_weights": "balanced", "label_smoothing": 0.1, "sampler": "balanced", "select_on": "macro_f1"}
    assert ("expression: class weights balanced, label smoothing 0.1, class-balanced sampler, checkpoints and "
            "candidates selected on validation macro_f1") in (output / "results.md").read_text()
