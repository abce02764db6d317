"""Companion-paper capabilities: HMTL jigsaw + in-painting, multi-level face-prior tasks, and the cross-task
multi-branch model (expression + mask)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_etfuser_config
from safetensors import safe_open
from transformers import Trainer

from etfuser_hf import (
    ETFuserForImageClassification,
    ETFuserForMultiTaskFaceAnalysis,
    ETFuserImageProcessor,
)
from etfuser_hf.data.collators import FaceCollator, MultiTaskFaceCollator
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.metrics import make_multitask_compute_metrics
from etfuser_hf.models.modeling_auxiliary import component_boxes, jigsaw_puzzle
from etfuser_hf.training.run.trainer import training_arguments

ALL_AUXILIARY = {"jigsaw": {"grid": 3}, "inpainting": True, "masked_pixels": True, "landmark_heatmap": True,
                 "components": True}
TASKS = {"expression": {"problem_type": "single_label_classification", "num_labels": 7},
         "mask": {"problem_type": "single_label_classification", "num_labels": 2, "loss_weight": 0.5}}


@pytest.mark.parametrize("grid", [2, 3])
def test_jigsaw_permutations_are_valid_and_labels_match_the_tiles(grid):
    images = torch.rand(3, 3, 30, 30)
    shuffled, labels = jigsaw_puzzle(images, grid, torch.Generator().manual_seed(0))
    tile = 30 // grid
    assert shuffled.shape == (3, 3, grid * tile, grid * tile) and labels.shape == (3, grid * grid)
    for permutation in labels:
        assert sorted(permutation.tolist()) == list(range(grid * grid))
    original = torch.nn.functional.interpolate(images, size=(grid * tile,) * 2, mode="bilinear", align_corners=False)
    for b in range(3):
        for position in range(grid * grid):
            source = labels[b, position].item()
            got = shuffled[b, :, (position // grid) * tile:(position // grid + 1) * tile, (position % grid) * tile:(position % grid + 1) * tile]
            want = original[b, :, (source // grid) * tile:(source // grid + 1) * tile, (source % grid) * tile:(source % grid + 1) * tile]
            torch.testing.assert_close(got, want)


def test_component_boxes_from_landmarks():
    landmarks = torch.rand(2, 68, 2)
    boxes = component_boxes(landmarks)
    assert boxes.shape == (2, 4, 4)
    torch.testing.assert_close(boxes[:, 3, :2], landmarks[:, 48:68].amin(1))  # mouth box top-left


def test_every_auxiliary_head_gives_a_finite_loss_that_trains_the_backbone():
    model = ETFuserForImageClassification(tiny_etfuser_config(num_labels=7, auxiliary_tasks=ALL_AUXILIARY)).train()
    pixel_values, landmarks = torch.rand(2, 3, 32, 32), torch.rand(2, 68, 2)
    losses = model.auxiliary(model.etfuser, pixel_values, landmarks)
    assert set(losses) == set(ALL_AUXILIARY)
    assert all(torch.isfinite(loss) and loss.ndim == 0 for loss in losses.values())
    plain = model(pixel_values, labels=torch.tensor([0, 1]), landmarks=landmarks)
    plain.loss.backward()
    assert model.auxiliary.heads["jigsaw"].weight.grad is not None
    assert model.etfuser.backbone.embeddings.cls_token.grad is not None
    assert all(p.grad is None for p in model.etfuser.priors.parameters())  # the perceptual loss leaves priors frozen
    model.eval()  # at inference the auxiliary tasks are off: loss is the task loss alone
    eval_loss = model(pixel_values, labels=torch.tensor([0, 1])).loss
    torch.testing.assert_close(eval_loss, torch.nn.functional.cross_entropy(model(pixel_values).logits,
                                                                            torch.tensor([0, 1])))


def test_landmark_tasks_explain_missing_landmarks():
    model = ETFuserForImageClassification(tiny_etfuser_config(auxiliary_tasks={"components": True})).train()
    with pytest.raises(ValueError, match=r"need `landmarks` \(batch, 68, 2\)"):
        model(torch.rand(2, 3, 32, 32), labels=torch.tensor([0, 1]))


def test_inference_save_has_no_auxiliary_weights(tmp_path):
    model = ETFuserForImageClassification(tiny_etfuser_config(auxiliary_tasks=ALL_AUXILIARY)).eval()
    model.save_pretrained(tmp_path / "inference")
    with safe_open(tmp_path / "inference" / "model.safetensors", "pt") as weights:
        assert not any(key.startswith("auxiliary.") for key in weights.keys())
    reloaded = ETFuserForImageClassification.from_pretrained(tmp_path / "inference", dtype=torch.float32).eval()
    assert reloaded.auxiliary is None and reloaded.config.auxiliary_tasks == {}
    pixel_values = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(reloaded(pixel_values).logits, model(pixel_values).logits)
    model.save_pretrained(tmp_path / "full", include_auxiliary=True)
    with safe_open(tmp_path / "full" / "model.safetensors", "pt") as weights:
        assert any(key.startswith("auxiliary.heads.jigsaw") for key in weights.keys()), sorted(weights.keys())[:5]
    assert model.config.auxiliary_tasks  # saving did not switch the tasks off on the live model


@pytest.mark.parametrize("settings, message", [
    ({"auxiliary_tasks": {"rotation": True}}, "unknown task 'rotation'"),
    ({"auxiliary_tasks": {"jigsaw": {"grid": 4}}}, "grid must be 2 or 3"),
    ({"auxiliary_tasks": {"jigsaw": {"tiles": 4}}}, "unknown settings"),
    ({"tasks": {"mask": {"problem_type": "ranking", "num_labels": 2}}}, r"tasks\['mask'\].problem_type"),
    ({"tasks": {"mask": {"problem_type": "single_label_classification"}}}, "num_labels must be a positive int"),
])
def test_bad_companion_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_etfuser_config(**settings)


def test_multitask_heads_losses_and_cross_task_exchange(tmp_path):
    torch.manual_seed(0)
    tasks = {**TASKS, "landmarks": {"problem_type": "landmarks", "num_landmarks": 68, "loss_weight": 0.2}}
    model = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(tasks=tasks)).eval()
    pixel_values = torch.rand(2, 3, 32, 32)
    outputs = model(pixel_values, expression_labels=torch.tensor([0, 6]), mask_labels=torch.tensor([1, 0]),
                    labels={"landmarks": torch.rand(2, 68, 2)})
    assert outputs.logits["expression"].shape == (2, 7) and outputs.logits["mask"].shape == (2, 2)
    assert outputs.logits["landmarks"].shape == (2, 68, 2)
    expected = (outputs.task_losses["expression"] + 0.5 * outputs.task_losses["mask"]
                + 0.2 * outputs.task_losses["landmarks"])
    torch.testing.assert_close(outputs.loss, expected)
    # silencing the mask branch's token changes the expression branch's output: the branches exchange information
    silenced = model(pixel_values, task_token_mask={"mask": 0.0})
    assert not torch.allclose(silenced.logits["expression"], outputs.logits["expression"])
    with pytest.raises(ValueError, match=r"labels for unknown tasks \['age'\]"):
        model(pixel_values, labels={"age": torch.tensor([1.0, 2.0])})
    model.save_pretrained(tmp_path)
    reloaded = ETFuserForMultiTaskFaceAnalysis.from_pretrained(tmp_path, dtype=torch.float32).eval()
    torch.testing.assert_close(reloaded(pixel_values).logits["mask"], outputs.logits["mask"])


def test_trainer_steps_with_every_option_on(tmp_path):
    faces = make_synthetic_faces(8, image_size=32, seed=2)
    processor = ETFuserImageProcessor(size={"height": 32, "width": 32})
    model = ETFuserForImageClassification(tiny_etfuser_config(num_labels=7, auxiliary_tasks=ALL_AUXILIARY,
                                                              attention_mask_strategy="ensemble_reads_priors"))
    args = training_arguments(tmp_path, max_steps=2, per_device_train_batch_size=4, eval_strategy="no",
                              save_strategy="no", load_best_model_at_end=False, disable_tqdm=True, bf16=True)
    result = Trainer(model=model, args=args, train_dataset=faces,
                     data_collator=FaceCollator(processor, "expression", 7, include_landmarks=True)).train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))

    multitask = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(tasks=TASKS))
    args = training_arguments(tmp_path / "mt", max_steps=2, per_device_train_batch_size=4, eval_strategy="no",
                              save_strategy="no", load_best_model_at_end=False, disable_tqdm=True,
                              label_names=multitask.trainer_label_names)
    trainer = Trainer(model=multitask, args=args, train_dataset=faces, eval_dataset=faces,
                      data_collator=MultiTaskFaceCollator(processor, {"expression": 7, "mask": 2}),
                      compute_metrics=make_multitask_compute_metrics(multitask.config.tasks))
    trainer.train()
    metrics = trainer.evaluate()
    assert {"eval_expression_accuracy", "eval_mask_accuracy", "eval_mask_macro_f1"} <= set(metrics)
