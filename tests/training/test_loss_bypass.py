"""The Trainer's own label smoothing and loss function would replace the model's loss (and its deep supervision):
`ETFuserTrainer` refuses both, naming the model's own options (issue 34, item 2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_etfuser_config

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.training.run.trainer import ETFuserTrainer, training_arguments


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ETFuserForImageClassification(tiny_etfuser_config(ensemble_loss_weight=0.5))


def test_loss_bypass_label_smoothing_factor_is_refused_naming_the_models_option(model, tmp_path):
    arguments = training_arguments(tmp_path, label_smoothing_factor=0.1, eval_strategy="no",
                                   load_best_model_at_end=False)
    with pytest.raises(ValueError, match=r"label_smoothing_factor=0.1: .*`config.label_smoothing` instead"):
        ETFuserTrainer(model=model, args=arguments)


def test_loss_bypass_compute_loss_func_is_refused(model, tmp_path):
    arguments = training_arguments(tmp_path, eval_strategy="no", load_best_model_at_end=False)
    with pytest.raises(ValueError, match=r"compute_loss_func: .*`config.class_weights`"):
        ETFuserTrainer(model=model, args=arguments,
                       compute_loss_func=lambda outputs, labels, **kwargs: F.cross_entropy(outputs.logits, labels))
    assert ETFuserTrainer(model=model, args=arguments).compute_loss_func is None  # the default passes
