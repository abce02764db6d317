"""ETFuserForMultiTaskFaceAnalysis: per-branch weights and tokens, cross-task exchange (and its ablation), pluggable
task types, Trainer labels/metrics with every option on, parameter count against separate single-task models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_etfuser_config
from transformers import Trainer, TrainingArguments

from etfuser_hf import (
    ETFuserForImageClassification,
    ETFuserForMultiTaskFaceAnalysis,
    ETFuserImageProcessor,
)
from etfuser_hf.data.collators import MultiTaskFaceCollator
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.metrics import make_multitask_compute_metrics

TASKS = {"expression": {"problem_type": "single_label_classification", "num_labels": 7},
         "mask": {"problem_type": "single_label_classification", "label_names": ["no_mask", "mask"],
                  "loss_weight": 0.5}}
EVERY_TASK_TYPE = {
    **TASKS,
    "age": {"problem_type": "regression", "num_labels": 1, "loss": "l1"},
    "attributes": {"problem_type": "multi_label_classification", "num_labels": 5, "loss_weight": 0.3},
    "landmarks": {"problem_type": "landmarks", "num_landmarks": 68, "loss_weight": 0.2},
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_task_type_gets_its_head_and_weighted_loss():
    torch.manual_seed(0)
    model = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(tasks=EVERY_TASK_TYPE, num_task_tokens=2,
                                                                num_task_layers=2)).eval()
    assert model.task_tokens.shape == (1, 5, 2, 32)
    labels = {"expression": torch.tensor([0, 6]), "mask": torch.tensor([1, 0]), "age": torch.tensor([[31.0], [7.0]]),
              "attributes": torch.tensor([[1.0, 0, 0, 1, 1], [0, 0, 1, 0, 0]]), "landmarks": torch.rand(2, 68, 2)}
    outputs = model(torch.rand(2, 3, 32, 32), labels=labels)
    shapes = {name: tuple(logits.shape) for name, logits in outputs.logits.items()}
    assert shapes == {"age": (2, 1), "attributes": (2, 5), "expression": (2, 7), "landmarks": (2, 68, 2), "mask": (2, 2)}
    assert outputs.task_tokens.shape == (2, 5, 32)
    assert ((outputs.logits["landmarks"] > 0) & (outputs.logits["landmarks"] < 1)).all()
    expected = sum(model.config.tasks[name]["loss_weight"] * loss for name, loss in outputs.task_losses.items())
    torch.testing.assert_close(outputs.loss, expected)
    torch.testing.assert_close(outputs.task_losses["age"], (outputs.logits["age"] - labels["age"]).abs().mean())
    assert model.config.tasks["mask"]["num_labels"] == 2  # from label_names


def test_each_branch_has_its_own_weights():
    model = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(tasks=TASKS))
    layer = model.cross_task_layers[0]
    assert set(layer.branches) == set(TASKS)
    expression, mask = layer.branches["expression"], layer.branches["mask"]
    assert expression.read.q_proj.weight.data_ptr() != mask.read.q_proj.weight.data_ptr()
    assert not torch.equal(expression.exchange.q_proj.weight, mask.exchange.q_proj.weight)


def test_cross_attention_exchanges_information_between_branches():
    torch.manual_seed(0)
    pixel_values = torch.rand(2, 3, 32, 32)
    model = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(tasks=TASKS)).eval()
    with torch.no_grad():
        plain = model(pixel_values).logits
        silenced = model(pixel_values, task_token_mask={"mask": 0.0}).logits
    assert not torch.allclose(plain["expression"], silenced["expression"], atol=1e-6)
    # the gradient of the expression output reaches the mask branch's token only through the exchange
    model.zero_grad()
    model(pixel_values).logits["expression"].sum().backward()
    assert model.task_tokens.grad[0, 1].abs().sum() > 0

    # ablation: without cross-task attention the branches are independent given the shared features
    torch.manual_seed(0)
    independent = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(tasks=TASKS, cross_task_attention=False)).eval()
    assert independent.cross_task_layers[0].branches["expression"].exchange is None
    with torch.no_grad():
        plain = independent(pixel_values).logits
        silenced = independent(pixel_values, task_token_mask={"mask": 0.0}).logits
    torch.testing.assert_close(plain["expression"], silenced["expression"])
    assert not torch.allclose(plain["mask"], silenced["mask"])


def test_one_multitask_model_against_two_single_task_models():
    multitask = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(tasks=TASKS))
    separate = count(ETFuserForImageClassification(tiny_etfuser_config(num_labels=7))) + count(
        ETFuserForImageClassification(tiny_etfuser_config(num_labels=2)))
    shared = count(multitask.etfuser)
    branches = count(multitask) - shared
    # priors, fusion and backbone are shared, not duplicated (tiny models: the branches weigh most here)
    assert count(multitask) < 0.75 * separate
    assert branches < shared


@pytest.mark.parametrize("call, message", [
    (lambda m, x: m(x, labels={"age": torch.tensor([1.0, 2.0])}), r"labels for unknown tasks \['age'\]"),
    (lambda m, x: m(x, age_labels=torch.tensor([1.0, 2.0])), r"unexpected arguments \['age_labels'\]"),
    (lambda m, x: m(x, task_token_mask={"pose": 0.0}), r"task_token_mask names unknown tasks \['pose'\]"),
])
def test_bad_inputs_are_explained(call, message):
    model = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(tasks=TASKS)).eval()
    with pytest.raises(ValueError, match=message):
        call(model, torch.rand(2, 3, 32, 32))


@pytest.mark.parametrize("settings, message", [
    ({"tasks": {}}, "needs config.tasks"),
    ({"tasks": TASKS, "num_task_tokens": 0}, "num_task_tokens must be a positive int"),
    ({"tasks": TASKS, "num_task_layers": 0}, "num_task_layers must be a positive int"),
])
def test_bad_settings_are_explained(settings, message):
    with pytest.raises(ValueError, match=message):
        ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(**settings))


def test_trainer_steps_with_every_option_on(tmp_path):
    faces = make_synthetic_faces(8, image_size=32, seed=5, mask_probability=0.5)
    every_auxiliary = {"jigsaw": {"grid": 3}, "inpainting": True, "masked_pixels": True, "landmark_heatmap": True,
                       "components": True}
    model = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(
        tasks=TASKS, auxiliary_tasks=every_auxiliary, num_task_tokens=2, attention_mask_strategy="ensemble_reads_priors"))
    assert model.trainer_label_names == ["expression_labels", "mask_labels"]
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, max_steps=2, per_device_train_batch_size=4,
                             per_device_eval_batch_size=4, report_to=[], save_strategy="no", disable_tqdm=True,
                             remove_unused_columns=False, label_names=model.trainer_label_names, bf16=True)
    trainer = Trainer(model=model, args=args, train_dataset=faces, eval_dataset=faces,
                      data_collator=MultiTaskFaceCollator(ETFuserImageProcessor(size={"height": 32, "width": 32}),
                                                          {"expression": 7, "mask": 2}, include_landmarks=True),
                      compute_metrics=make_multitask_compute_metrics(model.config.tasks))
    result = trainer.train()
    assert result.global_step == 2 and np.isfinite(result.training_loss)
    metrics = trainer.evaluate()
    assert {"eval_expression_accuracy", "eval_expression_macro_f1", "eval_mask_accuracy", "eval_mask_macro_f1"} <= set(metrics)
    assert 0.0 <= metrics["eval_mask_accuracy"] <= 1.0
