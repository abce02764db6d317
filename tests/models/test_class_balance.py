"""Imbalance inside the model's own loss (issue 34, item 2): `class_weights` and `label_smoothing` in the config, applied
by the shared loss helper to the task head and to the ensemble token's head (deep supervision) alike; soft targets
for single-label heads (mixed labels)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_etfuser_config

from etfuser_hf import ETFuserConfig, ETFuserForImageClassification
from etfuser_hf.models.losses import compute_task_loss

WEIGHTS = [0.5, 1.0, 2.0, 4.0, 1.5]


def heads_and_loss(model, pixel_values, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(task head logits, ensemble head logits, the model's loss) of one training-mode forward."""
    seen = {}
    hook = model.ensemble_head.register_forward_hook(lambda module, args, output: seen.setdefault("ensemble", output))
    try:
        outputs = model(pixel_values, labels=labels)
    finally:
        hook.remove()
    return outputs.logits, seen["ensemble"], outputs.loss


@pytest.mark.parametrize("problem_type", ["single_label_classification", "multi_label_classification"])
def test_class_weights_and_smoothing_reach_both_heads(pixel_values, problem_type):
    config = tiny_etfuser_config(problem_type=problem_type, class_weights=WEIGHTS, label_smoothing=0.2,
                                 fusion_mode="add_to_pooled", ensemble_loss_weight=0.5)
    torch.manual_seed(0)
    model = ETFuserForImageClassification(config).train()
    if problem_type == "single_label_classification":
        labels = torch.tensor([0, 3, 4])
        expected = lambda logits: F.cross_entropy(logits, labels, weight=torch.tensor(WEIGHTS), label_smoothing=0.2)
    else:
        labels = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 1, 0, 0], [1, 1, 0, 0, 1]], dtype=torch.float32)
        expected = lambda logits: F.binary_cross_entropy_with_logits(logits, labels * 0.8 + 0.1,
                                                                     pos_weight=torch.tensor(WEIGHTS))
    logits, ensemble, loss = heads_and_loss(model, pixel_values, labels)
    torch.testing.assert_close(loss, expected(logits) + 0.5 * expected(ensemble))
    # and they change the loss: the same weights and forward without them give another number
    plain = ETFuserForImageClassification(tiny_etfuser_config(
        problem_type=problem_type, fusion_mode="add_to_pooled", ensemble_loss_weight=0.5)).train()
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(heads_and_loss(plain, pixel_values, labels)[2], loss)


def test_soft_targets_of_a_single_label_head_are_cross_entropy_with_probabilities(pixel_values):
    """Mixed labels (mixup, cutmix) are class probabilities; one-hot probabilities give the class-id loss."""
    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_etfuser_config(problem_type="single_label_classification")).eval()
    ids = torch.tensor([1, 2, 4])
    one_hot = F.one_hot(ids, 5).float()
    torch.testing.assert_close(model(pixel_values, labels=one_hot).loss, model(pixel_values, labels=ids).loss)
    mixed = 0.7 * one_hot + 0.3 * F.one_hot(torch.tensor([0, 0, 3]), 5).float()
    logits = model(pixel_values).logits
    torch.testing.assert_close(model(pixel_values, labels=mixed).loss,
                               -(mixed * logits.log_softmax(-1)).sum(-1).mean())


def test_class_balance_round_trips_through_a_saved_folder(tmp_path):
    config = tiny_etfuser_config(problem_type="single_label_classification", class_weights=WEIGHTS, label_smoothing=0.1)
    config.save_pretrained(tmp_path)
    reloaded = ETFuserConfig.from_pretrained(tmp_path)
    assert reloaded.class_weights == WEIGHTS and reloaded.label_smoothing == 0.1


@pytest.mark.parametrize("overrides, message", [
    (dict(class_weights=[1.0, -1.0, 1.0, 1.0, 1.0]), "positive finite numbers"),
    (dict(class_weights=[1.0, float("nan"), 1.0, 1.0, 1.0]), "positive finite numbers"),
    (dict(class_weights=[1.0, 2.0]), r"one weight per class: 5 \(num_labels\), got 2"),
    (dict(class_weights=[1.0], problem_type="regression", num_labels=1), "need a classification problem_type"),
    (dict(label_smoothing=1.0), r"label_smoothing must be a number in \[0, 1\)"),
    (dict(label_smoothing=-0.1), r"label_smoothing must be a number in \[0, 1\)"),
    (dict(label_smoothing=0.1, problem_type="regression", num_labels=1), "need a classification problem_type, got .regression"),
])
def test_class_balance_bad_config_is_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_etfuser_config(**overrides)


def test_class_weights_of_the_wrong_length_are_refused_by_the_loss():
    with pytest.raises(ValueError, match="class_weights: expected 3 weights"):
        compute_task_loss(torch.zeros(2, 3), torch.tensor([0, 1]), "single_label_classification",
                          class_weights=[1.0, 2.0])
