"""Distillation toward the pretrained canonical network (training/run/distillation.py): the loss, the teacher's class
order, its place in the Trainer's training loss only, the protocol recipe key and the sweep's candidates. Select with
`-k distillation`."""

from __future__ import annotations

import datasets
import pytest
import torch
from transformers import PreTrainedConfig

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.training.comparison.protocol import ProtocolContext, train_run
from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
from etfuser_hf.training.comparison.splits import synthetic_splits
from etfuser_hf.training.comparison.tasks import FaceTask
from etfuser_hf.training.run.distillation import CanonicalTeacher, Distillation, distillation_loss
from etfuser_hf.training.validation_sweep import distillation_candidates

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
ROWS = {row.name: row for row in PROTOCOL_ROWS}
TASK = FaceTask("expression", "expression", "single_label_classification", "expression", 1e-3)


class FixedLogits(torch.nn.Module):
    """A stand-in pretrained network: fixed logits over its own class order, whatever the input."""

    def __init__(self, id2label: dict[int, str], logits: list[float]):
        super().__init__()
        self.config = PreTrainedConfig(id2label=id2label)
        self.register_buffer("fixed", torch.tensor(logits))

    def forward(self, pixel_values):
        return type("Output", (), {"logits": self.fixed.expand(len(pixel_values), -1)})()


@pytest.fixture(scope="module")
def fer_model():
    dirs = ensure_face_priors(names=["expression", "age"])
    torch.manual_seed(0)
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={"age": dirs["age"]}, backbone=dirs["expression"], fusion_mode="add_to_pooled", image_size=64,
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=7, id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)})
    return model, dirs


def test_distillation_loss_is_zero_on_the_teachers_answer_and_the_scaled_kl_otherwise():
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    assert distillation_loss(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 0.0]])
    p = (teacher / 2).softmax(-1)
    expected = 4 * (p * (p.log() - (student / 2).log_softmax(-1))).sum(-1).mean()
    assert distillation_loss(student, teacher, 2.0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distillation_loss(student, teacher, 2.0).item() > 0


def test_the_teacher_answers_in_the_tasks_class_order_and_refuses_missing_classes(fer_model):
    model, _ = fer_model
    network = FixedLogits({0: "happy", 1: "sad", 2: "angry"}, [3.0, 2.0, 1.0])
    teacher = CanonicalTeacher(network, ["angry", "happy", "sad"], model.config.backbone, Distillation(1.0))
    assert teacher.logits(torch.rand(2, 3, 64, 64)).tolist() == [[1.0, 3.0, 2.0]] * 2
    with pytest.raises(ValueError, match=r"distillation: .*\['neutral'\] have no counterpart.*dataset labels "
                                         r"\['angry', 'neutral'\]; model labels \['happy', 'sad', 'angry'\]"):
        CanonicalTeacher(network, ["angry", "neutral"], model.config.backbone, Distillation(1.0))
    # RAF-DB's names find the network's through the alias table
    raf = CanonicalTeacher(network, ["sadness", "anger", "happiness"], model.config.backbone, Distillation(1.0))
    assert raf.logits(torch.rand(1, 3, 64, 64)).tolist() == [[2.0, 1.0, 3.0]]


def test_a_distillation_setting_is_checked():
    assert Distillation.from_recipe({"weight": 2.0}) == Distillation(2.0, 2.0)
    assert Distillation.from_recipe(None) is None
    with pytest.raises(ValueError, match="weight: expected > 0"):
        Distillation(0.0)
    with pytest.raises(ValueError, match="temperature: expected > 0"):
        Distillation(1.0, temperature=-1)
    with pytest.raises(ValueError, match="distillation: expected"):
        Distillation.from_recipe({"weight": 1.0, "alpha": 3})


def test_the_trainer_adds_the_teacher_term_in_training_only(fer_model, tmp_path):
    from etfuser_hf.training.run.trainer import ETFuserTrainer, training_arguments

    model, dirs = fer_model
    teacher = CanonicalTeacher.from_pretrained(dirs["expression"], LABELS, model.config.backbone, Distillation(3.0))
    inputs = {"pixel_values": torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)),
              "labels": torch.tensor([0, 3, 6, 3])}
    plain = ETFuserTrainer(model=model, args=training_arguments(tmp_path / "a", eval_strategy="no", load_best_model_at_end=False))
    distilled = ETFuserTrainer(model=model, args=training_arguments(tmp_path / "b", eval_strategy="no",
                                                                          load_best_model_at_end=False), teacher=teacher)
    model.eval()  # no dropout, so both see the same logits
    assert distilled.compute_loss(model, dict(inputs)).item() == pytest.approx(
        plain.compute_loss(model, dict(inputs)).item())  # evaluation losses stay the task's own
    model.train()
    for module in model.modules():  # training mode, without dropout's randomness
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    task, (loss, outputs) = plain.compute_loss(model, dict(inputs)), distilled.compute_loss(model, dict(inputs), True)
    expected = 3.0 * distillation_loss(outputs["logits"], teacher.logits(inputs["pixel_values"]), 2.0)
    assert loss.item() == pytest.approx(task.item() + expected.item(), rel=1e-5) and expected.item() > 0
    model.eval()


def test_a_protocol_run_with_distillation_trains_and_saves_no_teacher(tmp_path):
    prior_dirs = ensure_face_priors(names=("face_recognition", "expression"))
    splits, _ = synthetic_splits({"train": 8, "validation": 8, "test": 4}, image_size=64, seed=3)
    context = ProtocolContext(splits, prior_dirs, ETFuserImageProcessor(size={"height": 64, "width": 64}), 64,
                              tmp_path, {"max_steps": 2, "per_device_train_batch_size": 4, "disable_tqdm": True}, None,
                              {"expression": splits["train"].features["expression"].names})
    kept = {}
    result = train_run(ROWS["canonical"], TASK, 0, context, keep_model=lambda model: kept.setdefault("model", model),
                       evaluate_test=False, distillation={"weight": 1.0, "temperature": 2.0})
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and result.real_face_agreement is not None
    assert not any("teacher" in name for name in kept["model"].state_dict())
    assert "distillation" not in kept["model"].config.to_dict()
    landmarks = FaceTask("landmarks", "landmarks", "landmarks", "face_landmarks")
    with pytest.raises(ValueError, match="distillation: landmarks needs a classification model"):
        train_run(ROWS["canonical"], landmarks, 0, ProtocolContext(
            splits, ensure_face_priors(names=("face_recognition", "face_landmarks")), context.processor, 64, tmp_path,
            context.run_settings, None, {}), evaluate_test=False, distillation={"weight": 1.0})


def test_distillation_candidates_cover_every_row_with_a_canonical_model_at_its_tuned_rate():
    rows = [ROWS["canonical"], ROWS["et-fuser"], ROWS["et-fuser-priors-only"]]
    candidates = distillation_candidates(TASK, rows, [0, 4], temperature=3.0)
    assert [(c.row.name, c.tag) for c in candidates] == [
        ("canonical", "no distillation"), ("canonical", "distillation 4 T 3"),
        ("et-fuser", "no distillation"), ("et-fuser", "distillation 4 T 3")]
    assert candidates[1].as_row().overrides["distillation"] == {"weight": 4, "temperature": 3.0}
    assert "distillation" not in candidates[0].as_row().overrides
    assert len({c.as_row().name for c in candidates}) == 4  # each keeps its own checkpoint folder
    with pytest.raises(ValueError, match="--distillation-weights must be >= 0"):
        distillation_candidates(TASK, rows, [-1])


def test_the_sweep_table_shows_each_candidates_real_face_agreement():
    from etfuser_hf.training.validation_sweep import render_sweep

    record = {"row": "canonical", "settings": "distillation 4 T 2", "learning_rate": 1e-3,
              "backbone_learning_rate_scale": 1.0, "validation": {"mean": 0.5, "std": 0.01}, "per_seed": [0.49, 0.51],
              "real_face_agreement": {"mean": 0.8125, "std": 0.02}}
    table = render_sweep(TASK, [record, {**record, "settings": "", "real_face_agreement": None}], [0, 1])
    assert "real-face agreement |" in table and "| 0.8125 ± 0.0200 |" in table and "| – |" in table


def test_the_splits_fixture_has_expression_labels():  # guards the protocol test's assumption
    splits, _ = synthetic_splits({"train": 4, "validation": 4, "test": 4}, image_size=64, seed=3)
    assert isinstance(splits["train"].features["expression"], datasets.ClassLabel)
    assert splits["train"].features["expression"].names == LABELS
