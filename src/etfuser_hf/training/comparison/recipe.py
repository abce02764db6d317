"""The default recipe: a pretrained canonical task model, fine-tuned, with the other converted face networks as
frozen priors fused in through the ensemble token (`build_task_model`, `build_etfuser_from_face_priors`).

Every choice below was made on the validation split of the synthetic default (the sweep and its numbers are in the
closing note of the paper-protocol issue and in docs/recipe.md); none was looked up on test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...models.configuration_etfuser import EncoderSpec
from ...models.encoders import feature_map, load_pretrained_encoder, prepare_encoder_inputs
from ...models.fusion_modes import fusion_mode_properties
from ...models.modeling_etfuser import (
    ETFuserForImageClassification,
    ETFuserForLandmarkDetection,
    ETFuserPreTrainedModel,
)
from ...models.modeling_multitask import ETFuserForMultiTaskFaceAnalysis
from .tasks import DEFAULT_PRIORS, SCRATCH_CANONICAL, FaceTask, canonical_source, task_priors

# The fusion module and how its token enters the canonical model.
# Found on validation (docs/recipe.md): without the zero-initialised gate the fused token costs the canonical model
# accuracy; deep supervision of the ensemble token (`ensemble_loss_weight`) trains the fusion module while the gate is
# still nearly closed; a lower learning rate for the canonical model (backbone_learning_rate_scale < 1) only hurt.
DEFAULT_RECIPE: dict[str, Any] = dict(
    hidden_size=128, num_attention_heads=4, intermediate_size=256, num_hidden_layers=2,
    attention_mask_strategy="full", fusion_mode="add_to_pooled", fusion_gate=True, ensemble_loss_weight=1.0,
    backbone_learning_rate_scale=1.0,
)
# The fusion module's attention on CPU is the eager product, not SDPA: at fusion lengths (tens of tokens) torch's CPU
# SDPA backward under bf16 autocast is slow, so a training step of the fusion module takes 2.5x as long with it (fp32:
# the same; `benchmarks/fusion_attention.py`). The same function either way (test_conformance compares them); GPUs keep
# SDPA. Not saved in the config: a reloaded model uses transformers' default.
def fusion_attention_implementation() -> str:
    """The fusion module's `attn_implementation` for training on this machine: "sdpa" on a GPU, "eager" on CPU."""
    return "sdpa" if torch.cuda.is_available() else "eager"


def _attending_as_recipe(model: ETFuserPreTrainedModel) -> ETFuserPreTrainedModel:
    """`model` with its fusion attention (the config's own key, `""`) set to `fusion_attention_implementation()`."""
    model.set_attn_implementation({"": fusion_attention_implementation()})
    return model


# How each converted prior is read, where not by its pooled feature. The landmark net's own 68 points
# (`{"face_landmarks": {"feature": "logits"}}`) were tried and did no better on validation than its pooled feature.
PRIOR_FEATURES: dict[str, dict[str, Any]] = {}


def prior_feature_for(prior_feature: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """The `EncoderSpec` fields `prior_feature` sets for prior `name`: `prior_feature` is either fields for every
    prior (`{"feature": "grid", "grid_size": 2}`) or `{prior name: fields}` (each prior's own grid size)."""
    if not prior_feature:
        return {}
    if all(isinstance(value, Mapping) for value in prior_feature.values()):
        return dict(prior_feature.get(name, {}))
    return dict(prior_feature)


def prior_entries(prior_dirs: Mapping[str, str | os.PathLike], names: Sequence[str],
                  prior_feature: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`from_priors_pretrained(priors=...)` entries for the converted priors `names`, read as `prior_feature` says
    (see `prior_feature_for`), else as `PRIOR_FEATURES` says."""
    return {name: {"model": prior_dirs[name], **(prior_feature_for(prior_feature, name) or PRIOR_FEATURES.get(name, {}))}
            for name in names}


def native_grid_feature(prior_dirs: Mapping[str, str | os.PathLike], limit: int) -> dict[str, dict[str, Any]]:
    """`prior_feature` reading each prior of `prior_dirs` as grid tokens at its own last map's size (a side of at most
    `limit`): the finest grid it has, found by running it once on a blank face."""
    sides = {}
    for name, folder in prior_dirs.items():
        model, contract = load_pretrained_encoder(folder, f"priors[{name!r}]")
        spec = EncoderSpec(config=model.config, **contract)
        with torch.no_grad():
            outputs = model(pixel_values=prepare_encoder_inputs(torch.zeros(1, 3, *spec.image_size), spec),
                            return_dict=True)
        sides[name] = min(max(feature_map(outputs, spec, name).shape[-2:]), limit)
    return {name: {"feature": "grid", "grid_size": side} for name, side in sides.items()}


def build_task_model(
    task: FaceTask,
    prior_dirs: Mapping[str, str | os.PathLike],
    label_names: Sequence[str] | None,
    image_size: int = 112,
    priors: Sequence[str] | None = None,
    prior_feature: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> ETFuserPreTrainedModel:
    """ET-Fuser for `task`: its canonical model (`task.canonical`) made trainable, the other selected face networks
    (`priors`, default all of `prior_dirs`) frozen and read as `prior_feature` says (e.g. `{"feature": "grid",
    "grid_size": 2}`; default `PRIOR_FEATURES`), `DEFAULT_RECIPE` with `overrides` (any `ETFuserConfig` field;
    `fusion_mode="none"` is the canonical model alone, `"priors_only"` drops it). Its fusion attention is
    `fusion_attention_implementation()`."""
    settings: dict[str, Any] = {**DEFAULT_RECIPE, "image_size": image_size}
    settings.update(overrides)
    if not fusion_mode_properties(settings["fusion_mode"]).canonical_model:
        settings["backbone"] = None
    elif "backbone" not in settings:
        settings["backbone"] = canonical_source(task.canonical, prior_dirs, image_size)
    if task.canonical == SCRATCH_CANONICAL or settings["backbone"] is None:
        settings.pop("backbone_learning_rate_scale")  # nothing pretrained to protect
    names = task_priors(task, list(priors) if priors is not None else list(prior_dirs))
    settings = {**task.head_settings(), **settings}
    if task.problem_type in ("single_label_classification", "multi_label_classification"):
        names_of_labels = list(label_names or ())
        if not names_of_labels:
            raise ValueError(f"{task.name}: a {task.problem_type} task needs its label names, got none.")
        settings.update(id2label=dict(enumerate(names_of_labels)),
                        label2id={name: i for i, name in enumerate(names_of_labels)}, problem_type=task.problem_type)
    elif task.problem_type == "regression":
        settings.update(problem_type="regression", id2label={0: task.name}, label2id={task.name: 0})
        if task.binned_readout:  # every row of the task, with or without the canonical model: the same readout
            settings["regression_bins"] = canonical_age_bins(prior_dirs, task.canonical)
    model_class = task_model_class(task.problem_type)
    model = model_class.from_priors_pretrained(priors=prior_entries(prior_dirs, names, prior_feature), **settings)
    if task.binned_readout and model.config.backbone is not None:
        start_from_canonical_age_readout(model)
    return _attending_as_recipe(model)


def canonical_age_bins(prior_dirs: Mapping[str, str | os.PathLike], canonical: str) -> list[float]:
    """The age bins of the converted age net `canonical` (its config's `age_bins`, 81 values 0..80 for dlib's), which
    a binned regression head reads its expectation over."""
    from transformers import AutoConfig

    bins = getattr(AutoConfig.from_pretrained(prior_dirs[canonical]), "age_bins", None) if canonical in prior_dirs \
        else None
    if not bins:
        raise ValueError(f"binned readout: the canonical model {canonical!r} is not a converted age net with age bins "
                         f"(converted priors: {list(prior_dirs)}).")
    return [float(value) for value in bins]


def task_model_class(problem_type: str) -> type[ETFuserPreTrainedModel]:
    """The head class of a problem type: `ETFuserForLandmarkDetection` for landmarks, else
    `ETFuserForImageClassification` (single-label, multi-label and regression, by `config.problem_type`)."""
    return ETFuserForLandmarkDetection if problem_type == "landmarks" else ETFuserForImageClassification


def start_from_canonical_age_readout(model: ETFuserForImageClassification) -> None:
    """Makes the binned regression head (`config.regression_bins`: the age bins) of a model over the dlib age net
    start as that net's own classifier over the canonical model's part of the fused feature, zero over the rest: with
    the fusion gate closed the untrained model predicts exactly the pretrained net's expected age, and fine-tuning
    starts from it rather than from a random readout of its pooled feature. A ValueError where the canonical model is
    not such a net read by its pooled feature."""
    backbone = model.base_model.backbone
    own, head = getattr(backbone, "classifier", None), model.classifier.dense
    if (not isinstance(own, torch.nn.Linear) or model.config.backbone.feature != "pooled"
            or own.out_features != head.out_features or own.in_features > head.in_features):
        raise ValueError(f"binned readout: the canonical model must be an age net with a linear classifier over its "
                         f"pooled feature, one output per bin ({head.out_features}), got {type(backbone).__name__} "
                         f"read by {model.config.backbone.feature!r}.")
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:, : own.in_features] = own.weight  # the fused feature starts with the canonical model's pooled one
        head.bias.copy_(own.bias)


def build_etfuser_from_face_priors(
    prior_dirs: Mapping[str, str | os.PathLike],
    label_names: Sequence[str] | Mapping[str, Sequence[str]],
    image_size: int = 112,
    canonical: str = "expression",
    **config_overrides: Any,
) -> ETFuserForImageClassification | ETFuserForMultiTaskFaceAnalysis:
    """ET-Fuser from converted prior folders (`ensure_face_priors()`) on the default recipe: classification over
    `label_names`, or, given a mapping `{task: label names}`, an `ETFuserForMultiTaskFaceAnalysis` with one
    single-label branch per task. `canonical` is the pretrained canonical model (a converted prior's name, a model
    folder, or `scratch-vit`); the other folders of `prior_dirs` are the frozen priors."""
    if isinstance(label_names, Mapping):
        names = task_priors(FaceTask("multitask", "", "single_label_classification", canonical), list(prior_dirs))
        settings = {**DEFAULT_RECIPE, "image_size": image_size,
                    "backbone": canonical_source(canonical, prior_dirs, image_size),
                    "tasks": {task: {"problem_type": "single_label_classification", "label_names": list(labels)}
                              for task, labels in label_names.items()}}
        settings.update(config_overrides)
        return _attending_as_recipe(
            ETFuserForMultiTaskFaceAnalysis.from_priors_pretrained(priors=prior_entries(prior_dirs, names), **settings))
    task = FaceTask("classification", "", "single_label_classification", canonical)
    return build_task_model(task, prior_dirs, label_names, image_size, **config_overrides)


__all__ = ["DEFAULT_PRIORS", "DEFAULT_RECIPE", "PRIOR_FEATURES", "build_etfuser_from_face_priors", "build_task_model",
           "fusion_attention_implementation", "native_grid_feature", "prior_entries", "start_from_canonical_age_readout",
           "task_model_class"]
