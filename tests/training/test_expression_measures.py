"""The measures that only mean something for expression (real-face agreement with the FER net, distillation toward
it) read class names through the alias table and run only for expression classes; other tasks skip them with one
printed line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_etfuser_config
from transformers import PreTrainedConfig

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.data.face_datasets import AFFECTNET_LABELS, RAFDB_LABELS
from etfuser_hf.data.label_aliases import id2label_names, is_expression_label_set
from etfuser_hf.training.comparison.expression_measures import announce_skipped, expression_measures_apply, skipped_line
from etfuser_hf.training.run.distillation import pretrained_class_index
from etfuser_hf.training.run.forgetting import expression_agreement, measures_forgetting

FER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
AGE_GROUPS = ["child", "young", "middle", "senior"]


class FixedFER(torch.nn.Module):
    """A stand-in FER net: FER-ordered logits that always read `answer`, whatever the face."""

    def __init__(self, answer: str):
        super().__init__()
        self.config = PreTrainedConfig(id2label=dict(enumerate(FER)))
        self.register_buffer("fixed", torch.nn.functional.one_hot(torch.tensor(FER.index(answer)), 7).float())

    def forward(self, pixel_values):
        return type("Output", (), {"logits": self.fixed.expand(len(pixel_values), -1)})()


def classifier(names: list[str], answer: str) -> ETFuserForImageClassification:
    """A tiny expression ET-Fuser (with a canonical backbone) that always answers `answer`."""
    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_etfuser_config(num_labels=len(names), id2label=dict(enumerate(names)),
                                                              label2id={n: i for i, n in enumerate(names)}))
    with torch.no_grad():
        model.classifier.dense.weight.zero_()
        model.classifier.dense.bias.fill_(-50.0)
        model.classifier.dense.bias[names.index(answer)] = 50.0
    return model.eval()


def test_expression_label_sets_through_the_alias_table():
    assert is_expression_label_set(FER) and is_expression_label_set(RAFDB_LABELS)
    assert is_expression_label_set(AFFECTNET_LABELS[:7])  # classes=7
    assert not is_expression_label_set(AFFECTNET_LABELS)  # contempt: the FER net has no such class
    assert not is_expression_label_set(AGE_GROUPS) and not is_expression_label_set(["no_mask", "mask"])
    assert not is_expression_label_set(["happy"]) and not is_expression_label_set(["happy", "joy"])  # one class
    assert id2label_names({"1": "b", "0": "a"}) == ["a", "b"]
    with pytest.raises(ValueError, match=r"config.json: class ids must be 0..1, got \[0, 2\]"):
        id2label_names({0: "a", 2: "b"}, "config.json")


def test_rafdb_names_find_the_fer_nets_classes():
    index = pretrained_class_index(dict(enumerate(FER)), RAFDB_LABELS, "distillation")
    assert [FER[i] for i in index] == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    with pytest.raises(ValueError, match=r"distillation: .*\['contempt'\] have no counterpart.*classes=7"):
        pretrained_class_index(dict(enumerate(FER)), AFFECTNET_LABELS, "distillation")


def test_agreement_matches_rafdb_happiness_with_the_fer_nets_happy():
    faces = np.zeros((3, 32, 32, 3), np.uint8)
    raf_model = classifier(list(RAFDB_LABELS), "happiness")
    report = expression_agreement(raf_model, pretrained=FixedFER("happy"), faces=faces)
    assert report["agreement"] == 1.0 and report["fine_tuned_histogram"] == {"happy": 3}
    assert expression_agreement(raf_model, pretrained=FixedFER("sad"), faces=faces)["agreement"] == 0.0
    assert measures_forgetting("expression", raf_model)


def test_agreement_is_refused_and_not_measured_for_other_classes():
    age_model = classifier(AGE_GROUPS, "young")
    assert not measures_forgetting("expression", age_model)
    with pytest.raises(ValueError, match=r"classes \['child', 'young', 'middle', 'senior'\] are not expression"):
        expression_agreement(age_model, pretrained=FixedFER("happy"), faces=np.zeros((1, 32, 32, 3), np.uint8))
    assert not measures_forgetting("expression", classifier(list(AFFECTNET_LABELS), "contempt"))


def test_other_tasks_skip_the_expression_measures_with_one_line(capsys):
    assert expression_measures_apply(RAFDB_LABELS) and not expression_measures_apply(None)
    label_names = {"expression": FER, "age_group": AGE_GROUPS, "landmarks": None}
    announce_skipped(label_names)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [skipped_line(label_names)] and len(lines) == 1
    assert lines[0] == ("real-face agreement and distillation toward the FER net skipped (not expression classes): "
                        "age_group (classes child, young, middle, senior); landmarks (not classification)")
    announce_skipped({"label": RAFDB_LABELS})
    assert capsys.readouterr().out == ""


class Stop(Exception):
    """Raised by the stubbed trainer with the teacher it was handed, so no training step runs."""


def test_a_run_distils_only_toward_expression_classes(tmp_path, monkeypatch):
    from etfuser_hf import ETFuserImageProcessor
    from etfuser_hf.priors.convert_face_priors import ensure_face_priors
    from etfuser_hf.training.comparison import protocol
    from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
    from etfuser_hf.training.comparison.splits import synthetic_splits
    from etfuser_hf.training.comparison.tasks import FaceTask

    def stop(*args, teacher=None, **kwargs):
        raise Stop(teacher)

    monkeypatch.setattr(protocol, "train_model", stop)
    splits, _ = synthetic_splits({"train": 4, "validation": 4, "test": 4}, image_size=64, seed=3)
    canonical = next(row for row in PROTOCOL_ROWS if row.name == "canonical")
    teachers = {}
    for column, names in (("expression", FER), ("age_group", AGE_GROUPS)):
        context = protocol.ProtocolContext(
            splits, ensure_face_priors(names=("face_recognition", "expression")),
            ETFuserImageProcessor(size={"height": 64, "width": 64}), 64, tmp_path, {}, None, {column: names})
        task = FaceTask(column, column, "single_label_classification", "expression", 1e-3)
        with pytest.raises(Stop) as stopped:
            protocol.train_run(canonical, task, 0, context, evaluate_test=False, distillation={"weight": 1.0})
        teachers[column] = stopped.value.args[0]
    assert teachers["expression"] is not None and teachers["age_group"] is None


def test_the_sweep_drops_distillation_candidates_on_other_classes():
    from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
    from etfuser_hf.training.comparison.tasks import FaceTask
    from etfuser_hf.training.validation_sweep import distillation_candidates, without_skipped_distillation

    rows = [row for row in PROTOCOL_ROWS if row.name in ("canonical", "et-fuser")]
    task = FaceTask("label", "label", "single_label_classification", "expression", 1e-3)
    candidates = distillation_candidates(task, rows, [0, 4])
    assert without_skipped_distillation(task, candidates, RAFDB_LABELS) == candidates
    kept = without_skipped_distillation(task, candidates, AGE_GROUPS)
    assert sorted((c.row.name, c.tag) for c in kept) == [("canonical", "no distillation"), ("et-fuser", "no distillation")]
