"""The default recipe: ET-Fuser on the real converted face priors (`build_etfuser_from_face_priors`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import ViTConfig

from ..models.modeling_etfuser import ETFuserForImageClassification
from ..models.modeling_multitask import ETFuserForMultiTaskFaceAnalysis

DEFAULT_PRIORS = ("face_recognition", "face_landmarks", "age", "expression")


def small_vit_backbone(image_size: int = 112) -> ViTConfig:
    """The canonical task backbone of the default recipe: a ViT-Tiny-width, 4-layer ViT/16 trained from scratch."""
    return ViTConfig(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=384,
                     image_size=image_size, patch_size=16)


def build_etfuser_from_face_priors(
    prior_dirs: Mapping[str, str | os.PathLike],
    label_names: Sequence[str] | Mapping[str, Sequence[str]],
    image_size: int = 112,
    **config_overrides: Any,
) -> ETFuserForImageClassification | ETFuserForMultiTaskFaceAnalysis:
    """ET-Fuser from converted prior folders (`ensure_face_priors()`): classification over `label_names`, or, given a
    mapping `{task: label names}`, an `ETFuserForMultiTaskFaceAnalysis` with one single-label branch per task on the
    same recipe.

    The default recipe adds the ensemble token to the pooled output of a ViT trained from scratch: on a few thousand
    images this learns fastest of the fusion modes (prepend_token needs more data and a lower learning rate; see
    the --ablations table)."""
    settings = dict(
        backbone=small_vit_backbone(image_size), image_size=image_size, hidden_size=192, num_attention_heads=4,
        intermediate_size=384, num_hidden_layers=2, attention_mask_strategy="full", fusion_mode="add_to_pooled",
    )
    if isinstance(label_names, Mapping):
        settings["tasks"] = {task: {"problem_type": "single_label_classification", "label_names": list(names)}
                             for task, names in label_names.items()}
        model_class = ETFuserForMultiTaskFaceAnalysis
    else:
        settings.update(id2label=dict(enumerate(label_names)), label2id={name: i for i, name in enumerate(label_names)},
                        problem_type="single_label_classification")
        model_class = ETFuserForImageClassification
    settings.update(config_overrides)
    return model_class.from_priors_pretrained(priors=dict(prior_dirs), **settings)
