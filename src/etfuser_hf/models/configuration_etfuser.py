"""ET-Fuser configuration: frozen task-prior encoders, a trainable task backbone, the ensemble-token fusion module
and the task head, each described by one serialisable object."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)

from .configuration_face_priors import FACE_PRIOR_CONFIG_CLASSES
from .fusion_modes import FUSION_MODES, FusionMode, fusion_mode_properties

FEATURE_CHOICES = ("pooled", "cls", "mean", "topk", "logits", "grid")
COLOR_MODES = ("rgb", "bgr", "grayscale")
ATTENTION_MASK_STRATEGIES = ("full", "ensemble_reads_priors", "isolated")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
REGRESSION_LOSSES = ("mse", "l1", "smooth_l1")
LANDMARK_LOSSES = ("l1", "mse", "smooth_l1", "wing")

# Normalisation each model family was trained with, used when a spec does not give image_mean/image_std and the
# encoder config carries none. Keys are matched as substrings of model_type, first hit wins.
_FAMILY_NORMALISATION = (
    ("clip", OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    ("siglip", IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD),
    ("vit", IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD),
)
_PRIOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def resolve_encoder_config(config: PreTrainedConfig | dict[str, Any], where: str) -> PreTrainedConfig:
    """Turns a nested encoder config (instance or dict with `model_type`) into a `PreTrainedConfig`.

    The project's own prior types are resolved without the Auto registry, so a folder loaded with
    `trust_remote_code=True` (where `etfuser_hf` was never imported) still finds them.
    """
    if isinstance(config, PreTrainedConfig):
        return config
    if not isinstance(config, dict):
        raise TypeError(f"{where}: expected a PreTrainedConfig or a dict with 'model_type', got {type(config).__name__}.")
    config = dict(config)
    model_type = config.pop("model_type", None)
    if model_type is None:
        raise ValueError(f"{where}: the encoder config dict has no 'model_type' key.")
    config.pop("transformers_version", None)
    if model_type in FACE_PRIOR_CONFIG_CLASSES:
        return FACE_PRIOR_CONFIG_CLASSES[model_type](**config)
    try:
        return AutoConfig.for_model(model_type, **config)
    except ValueError as error:
        raise ValueError(
            f"{where}: unknown encoder model_type {model_type!r}; use a vision model type known to "
            f"transformers (e.g. 'vit', 'dinov2', 'clip_vision_model', 'convnext', 'resnet', 'swin') or one of the "
            f"project's priors {sorted(FACE_PRIOR_CONFIG_CLASSES)}."
        ) from error


def infer_feature_dim(config: PreTrainedConfig) -> int:
    """Width of the feature an encoder emits: `hidden_size` for transformers and the project's priors, the last
    stage width for CNNs (ConvNeXt, ResNet)."""
    hidden_sizes = getattr(config, "hidden_sizes", None)
    if hidden_sizes:
        return int(hidden_sizes[-1])
    for attribute in ("hidden_size", "num_features", "embed_dim"):
        value = getattr(config, attribute, None)
        if isinstance(value, int):
            return value
    raise ValueError(
        f"Cannot infer the feature width of a {config.model_type!r} encoder; set `feature_dim` in its spec."
    )


def infer_logits_dim(config: PreTrainedConfig) -> int:
    """Width of an encoder's own head output (`feature="logits"`): 2 x landmarks for a landmark net, the descriptor
    size of a recognition net, one score per age bin, else one per label."""
    if getattr(config, "num_landmarks", None):
        return 2 * int(config.num_landmarks)
    if getattr(config, "descriptor_size", None):
        return int(config.descriptor_size)
    if getattr(config, "age_bins", None):
        return len(config.age_bins)
    return int(config.num_labels)


def _as_pair(size: int | list[int] | tuple[int, int], where: str) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"{where}.image_size must be a positive int or (height, width), got {size!r}.")
    return size


@dataclasses.dataclass
class EncoderSpec:
    """One encoder (a frozen prior or the trainable task backbone) and its input contract.

    Model inputs are RGB in [0, 1]; inside the forward each encoder gets its own view of them:
    resized to `image_size`, converted to `color_mode`, multiplied by `pixel_scale`, then `(x - image_mean) / image_std`.

    Args:
        config: the encoder's own config (any vision `PreTrainedConfig`, or a dict with `model_type`).
        feature: which output becomes fusion tokens: `"pooled"` (pooler output, 1 token), `"cls"` (first token),
            `"mean"` (mean over tokens or spatial positions), `"topk"` (the `num_tokens` patch tokens of largest norm),
            `"logits"` (the encoder's own head output as one token: the 68 landmark coordinates of a landmark net, the
            7 expression scores, the age-bin scores, a face descriptor), `"grid"` (the last feature map, or a
            token-sequence encoder's patch grid, adaptively average-pooled to `grid_size` x `grid_size` spatial tokens,
            row-major; each gets a learned 2-D position embedding in the fusion).
        num_tokens: number of tokens for `feature="topk"`.
        grid_size: cells per side for `feature="grid"` (1 is the mean over the map; larger than the map repeats
            its cells).
        image_size: input size of the encoder; defaults to `config.image_size` (224 where absent).
        image_mean / image_std: per-channel normalisation; default from the config or the model family.
        pixel_scale: multiplier applied to [0, 1] pixels before normalisation (255 for nets trained on 0..255).
        color_mode: `"rgb"`, `"bgr"` or `"grayscale"` (ITU-R 601 luma, 1 channel).
        frozen: frozen encoders run in eval mode under `torch.no_grad()` and never receive gradients.
        feature_dim: width of the selected feature; inferred from the config when not given.
    """

    config: PreTrainedConfig | dict[str, Any]
    feature: str = "pooled"
    num_tokens: int = 1
    grid_size: int = 1
    image_size: int | list[int] | tuple[int, int] | None = None
    image_mean: list[float] | tuple[float, ...] | None = None
    image_std: list[float] | tuple[float, ...] | None = None
    pixel_scale: float | None = None
    color_mode: str | None = None
    frozen: bool = True
    feature_dim: int | None = None
    where: dataclasses.InitVar[str] = "encoder"

    def __post_init__(self, where: str) -> None:
        self.config = resolve_encoder_config(self.config, where)
        config = self.config
        if self.feature not in FEATURE_CHOICES:
            raise ValueError(f"{where}.feature must be one of {FEATURE_CHOICES}, got {self.feature!r}.")
        if not isinstance(self.num_tokens, int) or self.num_tokens < 1:
            raise ValueError(f"{where}.num_tokens must be a positive int, got {self.num_tokens!r}.")
        if self.feature != "topk" and self.num_tokens != 1:
            raise ValueError(f"{where}.num_tokens={self.num_tokens} only applies to feature='topk'.")
        if isinstance(self.grid_size, bool) or not isinstance(self.grid_size, int) or self.grid_size < 1:
            raise ValueError(f"{where}.grid_size must be a positive int, got {self.grid_size!r}.")
        if self.feature != "grid" and self.grid_size != 1:
            raise ValueError(f"{where}.grid_size={self.grid_size} only applies to feature='grid'.")
        if self.color_mode is None:
            self.color_mode = getattr(config, "color_mode", None) or (
                "grayscale" if getattr(config, "num_channels", 3) == 1 else "rgb"
            )
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"{where}.color_mode must be one of {COLOR_MODES}, got {self.color_mode!r}.")
        if self.image_size is None:
            self.image_size = getattr(config, "image_size", None) or 224
        self.image_size = list(_as_pair(self.image_size, where))
        default_mean, default_std = self._family_normalisation()
        self.image_mean = [float(m) for m in (self.image_mean or getattr(config, "image_mean", None) or default_mean)]
        self.image_std = [float(s) for s in (self.image_std or getattr(config, "image_std", None) or default_std)]
        channels = 1 if self.color_mode == "grayscale" else 3
        for key in ("image_mean", "image_std"):
            values = getattr(self, key)
            if len(values) == 3 and channels == 1:
                # a grey prior described with RGB statistics: use their average
                setattr(self, key, [sum(values) / 3.0])
            elif len(values) not in (1, channels):
                raise ValueError(
                    f"{where}.{key} has {len(values)} values but color_mode={self.color_mode!r} gives {channels} channels."
                )
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"{where}.image_std must be positive, got {self.image_std}.")
        if self.pixel_scale is None:
            self.pixel_scale = float(getattr(config, "pixel_scale", 1.0))
        if self.pixel_scale <= 0:
            raise ValueError(f"{where}.pixel_scale must be positive, got {self.pixel_scale}.")
        if self.feature_dim is None:
            self.feature_dim = infer_logits_dim(config) if self.feature == "logits" else infer_feature_dim(config)

    def _family_normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        model_type = self.config.model_type
        for family, mean, std in _FAMILY_NORMALISATION:
            if family in model_type:
                return mean, std
        return IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    @property
    def num_output_tokens(self) -> int:
        if self.feature == "grid":
            return self.grid_size * self.grid_size
        return self.num_tokens if self.feature == "topk" else 1

    def to_dict(self) -> dict[str, Any]:
        output = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}
        # the diff keeps config.json readable; `model_type` always survives it, so the config rebuilds exactly
        config_dict = self.config.to_diff_dict()
        config_dict.pop("transformers_version", None)
        config_dict["model_type"] = self.config.model_type
        output["config"] = config_dict
        return output

    @classmethod
    def coerce(
        cls, value: EncoderSpec | PreTrainedConfig | dict[str, Any], where: str, frozen: bool = True
    ) -> EncoderSpec:
        """Accepts a spec, a bare encoder config, or the dict form written by `to_dict`; `frozen` is the default
        for forms that do not say (priors are frozen, the backbone trains)."""
        if isinstance(value, EncoderSpec):
            return value
        if isinstance(value, PreTrainedConfig):
            return cls(config=value, frozen=frozen, where=where)
        if isinstance(value, dict):
            if "config" not in value:
                if "model_type" in value:  # a bare encoder config dict
                    return cls(config=value, frozen=frozen, where=where)
                raise ValueError(f"{where}: an encoder spec dict needs a 'config' entry, got keys {sorted(value)}.")
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"{where}: unknown encoder spec keys {unknown}; expected some of {sorted(known)}.")
            return cls(**{"frozen": frozen, **value}, where=where)
        raise TypeError(f"{where}: expected an EncoderSpec, a PreTrainedConfig or a dict, got {type(value).__name__}.")


TASK_PROBLEM_TYPES = PROBLEM_TYPES + ("landmarks",)
AUXILIARY_TASKS = {
    # name: (default settings, what it is)
    "jigsaw": ({"weight": 0.1, "grid": 2}, "HMTL puzzling: tiles of a 2x2 or 3x3 grid permuted, one head per tile"),
    "inpainting": ({"weight": 0.1, "perceptual_weight": 0.1, "region": 0.4}, "HMTL in-painting of a masked region"),
    "masked_pixels": ({"weight": 0.1, "ratio": 0.4}, "pixel level: masked-patch pixel reconstruction"),
    "landmark_heatmap": ({"weight": 0.1}, "patch level: which patch holds each landmark"),
    "components": ({"weight": 0.1, "erase_probability": 0.3},
                   "component level: eye, nose and mouth presence (some erased) and boxes from landmarks"),
}


def normalise_task(name: str, task: dict[str, Any]) -> dict[str, Any]:
    """One branch of `ETFuserForMultiTaskFaceAnalysis`: problem_type, num_labels (or num_landmarks), loss weight."""
    if not isinstance(task, dict):
        raise ValueError(f"tasks[{name!r}] must be a dict, got {type(task).__name__}.")
    if not _PRIOR_NAME.match(name):
        raise ValueError(f"tasks: task name {name!r} must be a Python identifier.")
    task = {"loss_weight": 1.0, **task}
    if task.get("problem_type") not in TASK_PROBLEM_TYPES:
        raise ValueError(f"tasks[{name!r}].problem_type must be one of {TASK_PROBLEM_TYPES}, got {task.get('problem_type')!r}.")
    if task["problem_type"] == "landmarks":
        task.setdefault("num_landmarks", 68)
        task["num_labels"] = 2 * task["num_landmarks"]
    if "label_names" in task:
        task.setdefault("num_labels", len(task["label_names"]))
    if not isinstance(task.get("num_labels"), int) or task["num_labels"] < 1:
        raise ValueError(f"tasks[{name!r}].num_labels must be a positive int, got {task.get('num_labels')!r}.")
    if not isinstance(task["loss_weight"], (int, float)) or task["loss_weight"] < 0:
        raise ValueError(f"tasks[{name!r}].loss_weight must be a non-negative number, got {task['loss_weight']!r}.")
    return task


def normalise_auxiliary_tasks(tasks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Fills each switched-on auxiliary task's defaults; `True` switches one on with its defaults."""
    normalised = {}
    for name, settings in tasks.items():
        if name not in AUXILIARY_TASKS:
            raise ValueError(f"auxiliary_tasks: unknown task {name!r}; expected some of {sorted(AUXILIARY_TASKS)}.")
        settings = {} if settings is True else settings
        if not isinstance(settings, dict):
            raise ValueError(f"auxiliary_tasks[{name!r}] must be True or a dict of settings, got {settings!r}.")
        unknown = sorted(set(settings) - set(AUXILIARY_TASKS[name][0]))
        if unknown:
            raise ValueError(f"auxiliary_tasks[{name!r}]: unknown settings {unknown}; expected {sorted(AUXILIARY_TASKS[name][0])}.")
        normalised[name] = {**AUXILIARY_TASKS[name][0], **settings}
        if name == "jigsaw" and normalised[name]["grid"] not in (2, 3):
            raise ValueError(f"auxiliary_tasks['jigsaw'].grid must be 2 or 3, got {normalised[name]['grid']!r}.")
        for key, value in normalised[name].items():
            if key == "grid":
                continue
            upper = float("inf") if key.endswith("weight") else 1.0
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= upper:
                raise ValueError(f"auxiliary_tasks[{name!r}].{key} must be a number in [0, {upper}], got {value!r}.")
    return normalised


PRIOR_SUB_CONFIG_SUFFIX = "_prior_config"


class _EncoderSubConfigs:
    """`ETFuserConfig.sub_configs`: one entry per nested encoder config, as composite configs (CLIP, LLaVA) declare
    theirs, so that `attn_implementation` (given to `from_pretrained`, set with `set_attn_implementation`) and `dtype`
    reach each encoder. Keys: `"backbone_config"` and `"<name>_prior_config"` per prior; the fusion module follows the
    top-level implementation (key `""`). The priors are sub-configs only where a prior model is built (not under
    `fusion_mode="none"`). On the class, where no priors are known yet, only the backbone is listed."""

    def __get__(self, instance: ETFuserConfig | None, owner: type) -> dict[str, type]:
        if instance is None:
            return {"backbone_config": AutoConfig}
        state = instance.__dict__
        sub_configs: dict[str, type] = {}
        backbone = state.get("backbone")
        if isinstance(backbone, EncoderSpec):
            sub_configs["backbone_config"] = type(backbone.config)
        fusion = FUSION_MODES.get(state.get("fusion_mode"))  # None while the dataclass __init__ runs
        if fusion is None or fusion.runs_priors:
            for name, spec in (state.get("priors") or {}).items():
                if isinstance(spec, EncoderSpec):  # not yet coerced while the dataclass __init__ runs
                    sub_configs[f"{name}{PRIOR_SUB_CONFIG_SUFFIX}"] = type(spec.config)
        return sub_configs


@strict
class ETFuserConfig(PreTrainedConfig):
    r"""
    Configuration of an ET-Fuser model: a set of frozen task-prior encoders whose features are projected to a common
    width and fused with learnable ensemble token(s) by a small self-attention stack; the ensemble token is then fused
    into a trainable task backbone, whose fused representation feeds the task head.

    Args:
        priors (`dict[str, EncoderSpec | dict]`, *optional*):
            Named prior encoders (names must be Python identifiers), kept sorted by name. Empty by default.
        backbone (`EncoderSpec | PreTrainedConfig | dict`, *optional*):
            The canonical, trainable task model. Defaults to a ViT-Base/16 config. Ignored (must be unset) when
            `fusion_mode="priors_only"`.
        hidden_size (`int`, defaults to 256): width `d` of the fusion module.
        num_hidden_layers (`int`, defaults to 2): self-attention layers of the fusion module.
        num_attention_heads (`int`, defaults to 4): attention heads of the fusion module.
        intermediate_size (`int`, defaults to 512): MLP width of the fusion layers.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation.
        hidden_dropout_prob / attention_probs_dropout_prob (`float`, defaults to 0.0): dropout rates.
        layer_norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon.
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal init, ensemble tokens included.
        num_ensemble_tokens (`int`, defaults to 1): learnable ensemble tokens.
        attention_mask_strategy (`str`, defaults to `"full"`): who attends to whom in the fusion module:
            `"full"` everyone to everyone; `"ensemble_reads_priors"` ensemble tokens read all, prior tokens read their
            own prior and the ensemble tokens (priors exchange information only through the ensemble);
            `"isolated"` ensemble tokens read all, prior tokens only their own prior.
        read_only_priors (`bool`, defaults to `False`): the prior tokens are keys and values only: in every fusion
            layer the queries, and the MLP, are the ensemble tokens alone, which read every token (through that
            layer's own pre-norm and key/value projections), while the projected prior tokens pass through the stack
            unchanged. Under `fusion_mode="canonical_tokens"` the canonical model's tokens are read-only too (they
            reach the output only through what the ensemble tokens read, and keep their gradient path into the
            canonical model that way). The keys and values are folded into the few queries (the same function, see
            `ETFuserAttention._read_only_forward`), so a read-only token costs a layer a LayerNorm and a few dot
            products instead of a whole transformer update, most of the fusion module's cost with grid tokens.
            `False` (the default) is the full self-attention stack, where every token is updated. With `True` only
            `attention_mask_strategy="full"` applies (the strategies differ only in what prior tokens read), and
            the mode must have the ensemble-token stack (`fusion_properties.ensemble_token`).
        fusion_mode (`str`, defaults to `"prepend_token"`): how the ensemble token enters the task model:
            `"prepend_token"` inserted after the CLS token of a token-sequence backbone (ViT, DeiT, DINOv2, CLIP
            vision) so every backbone layer attends to it; `"add_to_pooled"` projected and added to the backbone's
            pooled output; `"concat_before_head"` concatenated with the pooled output; `"concat_priors"` a baseline
            without the ensemble token: the projected prior features concatenated, through an MLP, then concatenated
            with the pooled output; `"priors_only"` no backbone, the ensemble token is the representation; `"none"`
            backbone alone (a baseline, priors are not run). CNN backbones (the converted face networks, ConvNeXt,
            ResNet) take `add_to_pooled`, `concat_before_head` and `concat_priors`; token-sequence backbones all modes.
            `"canonical_tokens"` (any backbone, meant for CNNs): the canonical model's own last feature map, as
            `canonical_grid_size`² tokens with gradients into it, joins the fusion sequence beside the prior tokens,
            and the ensemble token is added, gated, to the canonical model's pooled output (as `add_to_pooled`).
            What each mode builds is its entry of `fusion_modes.FUSION_MODES` (`config.fusion_properties`).
        fusion_gate (`bool`, defaults to `True`): multiply the ensemble token fused by `add_to_pooled` or
            `prepend_token` by a learnable per-channel gate `tanh(g)`, with `g` zero at initialisation (as in gated
            cross-attention adapters), so training starts exactly from the canonical model alone.
        backbone_learning_rate_scale (`float`, defaults to 1.0): learning rate of a pretrained canonical model
            relative to the new modules; `ETFuserTrainer` builds the optimizer's parameter groups from it.
        canonical_grid_size (`int`, defaults to 2): cells per side of the canonical model's tokens under
            `fusion_mode="canonical_tokens"`.
        ensemble_loss_weight (`float`, defaults to 0.0): deep supervision of the ensemble token: during training,
            a small head on the ensemble token alone adds `weight x` the task loss, so the fusion module learns from
            the labels directly while the gate is still nearly closed. With `concat_priors` the head reads the
            concatenation MLP's output instead. Inference ignores that head.
        num_landmarks (`int`, defaults to 68): landmarks predicted by `ETFuserForLandmarkDetection`.
        interocular_indices (`list[int]`, defaults to `[36, 45]`): outer eye corners used to normalise NME.
        landmark_loss (`str`, defaults to `"l1"`): one of `"l1"`, `"mse"`, `"smooth_l1"`, `"wing"`.
        regression_loss (`str`, defaults to `"mse"`): loss for `problem_type="regression"`.
        regression_bins (`list[float]`, *optional*): regression read out as an expectation over fixed bins, as the
            dlib age net reads its age (and DEX before it): the head scores one logit per bin and the output is
            `softmax(scores) @ regression_bins`, shape `(batch, 1)`; needs `problem_type="regression"` and
            `num_labels=1`. A head of the age net's own 81 bins can start from the age net's own classifier.
        classifier_dropout (`float`, defaults to 0.0): dropout before the task heads.
        class_weights (`list[float]`, *optional*): one positive weight per class (single-label: cross-entropy's
            `weight`) or per label (multi-label: binary cross-entropy's `pos_weight`), applied by the shared loss to the
            task head and to the ensemble token's head alike, so deep supervision sees the same imbalance correction.
            `training/train.py --class-weights balanced` fills it from the training split's counts.
        label_smoothing (`float`, defaults to 0.0): in [0, 1): single-label targets become `(1 - e) one_hot + e / C`
            (cross-entropy's `label_smoothing`), multi-label ones `(1 - e) y + e / 2`; on both heads.
        tasks (`dict[str, dict]`, *optional*): branches of `ETFuserForMultiTaskFaceAnalysis`, e.g.
            `{"expression": {"problem_type": "single_label_classification", "num_labels": 7},
            "mask": {"problem_type": "single_label_classification", "num_labels": 2, "loss_weight": 0.5}}`.
        num_task_layers (`int`, defaults to 1): cross-task fusion layers of the multi-task model.
        num_task_tokens (`int`, defaults to 1): learnable tokens per task branch of the multi-task model.
        cross_task_attention (`bool`, defaults to `True`): whether the multi-task branches exchange information by
            cross-attention (`False` gives independent branches over the shared features, an ablation).
        auxiliary_tasks (`dict[str, dict | bool]`, *optional*): training-only self-supervised tasks (HMTL jigsaw and
            in-painting; multi-level masked pixels, landmark heatmap, components), e.g. `{"jigsaw": {"grid": 3}}`.

    Example:

    ```python
    >>> from transformers import ViTConfig, ConvNextConfig
    >>> from etfuser_hf import ETFuserConfig, ETFuserForImageClassification
    >>> config = ETFuserConfig(
    ...     priors={"identity": ViTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
    ...                                   intermediate_size=128, image_size=32, patch_size=8),
    ...             "texture": {"config": ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2),
    ...                         "feature": "topk", "num_tokens": 4}},
    ...     backbone=ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
    ...                        image_size=32, patch_size=8),
    ...     hidden_size=64, num_attention_heads=4, intermediate_size=128, num_labels=7,
    ... )
    >>> model = ETFuserForImageClassification(config)
    ```"""

    model_type = "etfuser"

    priors: dict | None = None
    backbone: Any = None
    image_size: int = 224
    hidden_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    qkv_bias: bool = True
    num_ensemble_tokens: int = 1
    attention_mask_strategy: str = "full"
    read_only_priors: bool = False
    fusion_mode: str = "prepend_token"
    fusion_gate: bool = True
    backbone_learning_rate_scale: float | int = 1.0
    ensemble_loss_weight: float | int = 0.0
    canonical_grid_size: int = 2
    num_landmarks: int = 68
    interocular_indices: list[int] | tuple[int, int] = (36, 45)
    landmark_loss: str = "l1"
    regression_loss: str = "mse"
    regression_bins: list[float] | tuple[float, ...] | None = None
    classifier_dropout: float | int = 0.0
    class_weights: list[float] | tuple[float, ...] | None = None
    label_smoothing: float | int = 0.0
    # companion-paper options (see auxiliary.py and modeling_multitask.py)
    tasks: dict | None = None
    num_task_layers: int = 1
    # >>> multi-task branches (modeling_multitask.py)
    num_task_tokens: int = 1
    cross_task_attention: bool = True
    # <<< multi-task branches
    auxiliary_tasks: dict | None = None

    def __post_init__(self, **kwargs):
        # sorted by name: config.json is written with sorted keys, so this is the order a reloaded model sees too
        self.priors = {
            name: EncoderSpec.coerce(spec, where=f"priors[{name!r}]") for name, spec in sorted((self.priors or {}).items())
        }
        for name in self.priors:
            if not isinstance(name, str) or not _PRIOR_NAME.match(name):
                raise ValueError(f"priors: prior name {name!r} must be a Python identifier (letters, digits, '_').")
        if not fusion_mode_properties(self.fusion_mode).canonical_model:
            if self.backbone is not None:
                raise ValueError(f"backbone must be None when fusion_mode={self.fusion_mode!r} (the fusion module is "
                                 "the model).")
        else:
            backbone = self.backbone if self.backbone is not None else {"model_type": "vit"}
            self.backbone = EncoderSpec.coerce(backbone, where="backbone", frozen=False)
        self.interocular_indices = list(self.interocular_indices)
        self._check_choices()
        self.tasks = {name: normalise_task(name, task) for name, task in sorted((self.tasks or {}).items())}
        self.auxiliary_tasks = normalise_auxiliary_tasks(self.auxiliary_tasks or {})
        # >>> multi-task branches
        for key in ("num_task_layers", "num_task_tokens"):
            if not isinstance(getattr(self, key), int) or isinstance(getattr(self, key), bool) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be a positive int, got {getattr(self, key)!r}.")
        if not isinstance(self.cross_task_attention, bool):
            raise ValueError(f"cross_task_attention must be a bool, got {self.cross_task_attention!r}.")
        # <<< multi-task branches
        super().__post_init__(**kwargs)
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES} or None, got {self.problem_type!r}.")
        self._check_regression_bins()
        self._check_class_balance()

    def _check_class_balance(self) -> None:
        if isinstance(self.label_smoothing, bool) or not isinstance(self.label_smoothing, (int, float)) or not (
                0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing must be a number in [0, 1), got {self.label_smoothing!r}.")
        if self.label_smoothing and self.problem_type in ("regression", "landmarks"):
            raise ValueError(f"label_smoothing smooths class targets, which need a classification problem_type, got "
                             f"{self.problem_type!r}.")
        if self.class_weights is None:
            return
        weights = list(self.class_weights)
        if not weights or not all(isinstance(value, (int, float)) and not isinstance(value, bool)
                                  and math.isfinite(value) and value > 0 for value in weights):
            raise ValueError(f"class_weights must be a list of positive finite numbers, one per class, got "
                             f"{self.class_weights!r}.")
        if self.problem_type in ("regression", "landmarks"):
            raise ValueError(f"class_weights weigh classes: they need a classification problem_type, got "
                             f"{self.problem_type!r}.")
        if len(weights) != self.num_labels:
            raise ValueError(f"class_weights must hold one weight per class: {self.num_labels} (num_labels), got "
                             f"{len(weights)}.")
        self.class_weights = [float(value) for value in weights]

    def _check_regression_bins(self) -> None:
        if self.regression_bins is None:
            return
        bins = list(self.regression_bins)
        if len(bins) < 2 or not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in bins):
            raise ValueError(f"regression_bins must be at least two numbers (the value of each bin), got "
                             f"{self.regression_bins!r}.")
        if self.problem_type != "regression" or self.num_labels != 1:
            raise ValueError(f"regression_bins read out one value: they need problem_type='regression' and "
                             f"num_labels=1, got problem_type={self.problem_type!r}, num_labels={self.num_labels}.")
        self.regression_bins = [float(value) for value in bins]

    def _check_choices(self) -> None:
        choices = {
            "attention_mask_strategy": ATTENTION_MASK_STRATEGIES,
            "fusion_mode": tuple(FUSION_MODES),
            "landmark_loss": LANDMARK_LOSSES,
            "regression_loss": REGRESSION_LOSSES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}.")
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "num_ensemble_tokens", "num_landmarks", "image_size", "canonical_grid_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})."
            )
        if len(self.interocular_indices) != 2 or not all(0 <= i < self.num_landmarks for i in self.interocular_indices):
            raise ValueError(
                f"interocular_indices must be two landmark indices in [0, {self.num_landmarks}), got {self.interocular_indices}."
            )
        if isinstance(self.ensemble_loss_weight, bool) or not self.ensemble_loss_weight >= 0:
            raise ValueError(f"ensemble_loss_weight must be a number >= 0, got {self.ensemble_loss_weight!r}.")
        if not isinstance(self.fusion_gate, bool):
            raise ValueError(f"fusion_gate must be a bool, got {self.fusion_gate!r}.")
        if isinstance(self.backbone_learning_rate_scale, bool) or not self.backbone_learning_rate_scale > 0:
            raise ValueError(f"backbone_learning_rate_scale must be a positive number, got "
                             f"{self.backbone_learning_rate_scale!r}.")
        self._check_read_only_priors()
        if self.fusion_properties.needs_priors and not self.priors:
            raise ValueError(f"fusion_mode={self.fusion_mode!r} needs at least one prior in `priors`.")

    def _check_read_only_priors(self) -> None:
        if not isinstance(self.read_only_priors, bool):
            raise ValueError(f"read_only_priors must be a bool, got {self.read_only_priors!r}.")
        if not self.read_only_priors:
            return
        if not self.fusion_properties.ensemble_token:
            stacked = tuple(name for name, mode in FUSION_MODES.items() if mode.ensemble_token)
            raise ValueError(f"read_only_priors=True makes the prior tokens keys and values of the ensemble-token "
                             f"stack, which fusion_mode={self.fusion_mode!r} does not have; use one of {stacked}.")
        if self.attention_mask_strategy != "full":
            raise ValueError(f"read_only_priors=True needs attention_mask_strategy='full', got "
                             f"{self.attention_mask_strategy!r}: the strategies differ only in what prior tokens read, "
                             "and read-only prior tokens read nothing.")

    sub_configs = _EncoderSubConfigs()

    def __getattr__(self, key: str) -> Any:
        # `<name>_prior_config`: prior `name`'s own config, the attribute each `sub_configs` key names
        if key.endswith(PRIOR_SUB_CONFIG_SUFFIX):
            spec = (self.__dict__.get("priors") or {}).get(key[: -len(PRIOR_SUB_CONFIG_SUFFIX)])
            if isinstance(spec, EncoderSpec):
                return spec.config
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> ETFuserConfig:
        # A saved config (it carries `transformers_version`) without `fusion_gate` predates the gate: it was trained
        # ungated, so it reloads ungated. Built in code, the default stays `True`.
        if "transformers_version" in config_dict and "fusion_gate" not in config_dict and "fusion_gate" not in kwargs:
            config_dict = {**config_dict, "fusion_gate": False}
        return super().from_dict(config_dict, **kwargs)

    @property
    def fusion_properties(self) -> FusionMode:
        """What `fusion_mode` builds and how it fuses (its entry of `fusion_modes.FUSION_MODES`)."""
        return FUSION_MODES[self.fusion_mode]

    @property
    def backbone_config(self) -> PreTrainedConfig | None:
        """The task backbone's own config (None for `fusion_mode="priors_only"`)."""
        return None if self.backbone is None else self.backbone.config

    @property
    def prior_names(self) -> list[str]:
        return list(self.priors)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["priors"] = {name: spec.to_dict() for name, spec in self.priors.items()}
        output["backbone"] = None if self.backbone is None else self.backbone.to_dict()
        return output

    def to_diff_dict(self) -> dict[str, Any]:
        # Nested encoder configs are always written whole so a folder never depends on another config's defaults.
        output = super().to_diff_dict()
        output["priors"] = {name: spec.to_dict() for name, spec in self.priors.items()}
        output["backbone"] = None if self.backbone is None else self.backbone.to_dict()
        return output


__all__ = ["ETFuserConfig", "EncoderSpec"]
