"""PyTorch re-implementation of face-api's face-recognition and 68-point landmark nets (npm `@vladmandic/face-api`
1.7.15, MIT), numerically matching the original TF.js graphs (see tests/test_faceapi_priors.py).

TF.js details kept on purpose:
- "same" padding is TensorFlow's: for a stride-2 conv on an even input the extra row/column goes to the bottom/right
  only, which PyTorch's symmetric `padding=` cannot express (`TFSamePadConv2d`).
- The recognition net's down blocks add an average-pooled shortcut, zero-padded in channels, and zero-pad the
  residual branch's bottom/right edge when the stride-2 "valid" conv comes out one pixel smaller than the pool.
- Each recognition conv is followed by a per-channel affine "scale" layer; the converter folds it into the conv's
  weight and bias, so here it is one `nn.Conv2d`.
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

from .configuration_faceapi import FaceApiLandmarkConfig, FaceApiRecognitionConfig


@dataclass
class FaceApiModelOutput(ModelOutput):
    """
    Output of the face-api priors.

    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, hidden_size, height, width)`):
        Feature map of the last block, before global average pooling.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        Globally averaged feature: the embedding before the net's output layer (the prior feature ET-Fuser fuses).
    logits (`torch.FloatTensor` of shape `(batch_size, descriptor_size)` or `(batch_size, 2 * num_landmarks)`):
        The net's own output: the 128-D face descriptor (recognition) or the landmark coordinates x0, y0, x1, ...
        normalised to [0, 1] of the input crop (landmarks), exactly as face-api computes them for a square input.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        Input of the first block followed by the output of every block, each `(batch_size, channels, height, width)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class TFSamePadConv2d(nn.Conv2d):
    """`nn.Conv2d` with TensorFlow's "same" padding: output side `ceil(in / stride)`, the odd pad pixel at the end."""

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        pads = []
        # F.pad takes the last dimension first: (left, right, top, bottom).
        for size, kernel, stride in zip(hidden_state.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.extend((total // 2, total - total // 2))
        return super().forward(F.pad(hidden_state, pads))


class FaceApiSeparableConv(nn.Module):
    """TF `separableConv2d` + bias: a bias-free depthwise 3x3 conv (TF "same") followed by a biased pointwise 1x1."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.depthwise = TFSamePadConv2d(in_channels, in_channels, 3, stride=stride, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(hidden_state))


# ---------------------------------------------------------------------------------------------------------------------
# Face recognition (FaceRecognitionNet)
# ---------------------------------------------------------------------------------------------------------------------


class FaceApiResidualBlock(nn.Module):
    """Basic residual block: relu(conv3x3) -> conv3x3, plus the identity, relu. Keeps channels and resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = TFSamePadConv2d(channels, channels, 3)
        self.conv2 = TFSamePadConv2d(channels, channels, 3)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(F.relu(self.conv1(hidden_state)))
        return F.relu(residual + hidden_state)


class FaceApiResidualDownBlock(nn.Module):
    """Down block: a stride-2 "valid" 3x3 conv branch plus a 2x2 average-pooled shortcut whose missing channels are
    zeros. When the branch comes out smaller than the pooled shortcut (even inputs), it is zero-padded at the
    bottom/right, as face-api does."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=2)
        self.conv2 = TFSamePadConv2d(out_channels, out_channels, 3)
        self.extra_channels = out_channels - in_channels

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(F.relu(self.conv1(hidden_state)))
        shortcut = F.avg_pool2d(hidden_state, 2, 2)
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        residual = F.pad(
            residual, (0, shortcut.shape[-1] - residual.shape[-1], 0, shortcut.shape[-2] - residual.shape[-2])
        )
        return F.relu(shortcut + residual)


class FaceApiRecognitionEmbeddings(nn.Module):
    """Stem: 7x7 stride-2 "valid" conv, relu, 3x3 stride-2 max-pool (150 -> 72 -> 35)."""

    def __init__(self, config: FaceApiRecognitionConfig):
        super().__init__()
        self.conv = nn.Conv2d(config.num_channels, config.hidden_sizes[0], config.stem_kernel_size, stride=2)
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.conv(pixel_values)))


def recognition_block_names(config: FaceApiRecognitionConfig) -> list[str]:
    """face-api's parameter prefix of every block of `FaceApiRecognitionEncoder.blocks`, in order
    (conv32_1, ..., conv64_down, conv64_1, ..., conv256_down_out)."""
    names = []
    for stage, (width, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
        if stage > 0:
            names.append(f"conv{width}_down")
        names.extend(f"conv{width}_{index + 1}" for index in range(depth))
    names.append(f"conv{config.hidden_sizes[-1]}_down_out")
    return names


class FaceApiBlockStack(nn.Module):
    """Runs `self.blocks` in order, optionally collecting the input and every block's output."""

    blocks: nn.ModuleList

    def forward(
        self, hidden_state: torch.Tensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        hidden_states = (hidden_state,) if output_hidden_states else None
        for block in self.blocks:
            hidden_state = block(hidden_state)
            if output_hidden_states:
                hidden_states += (hidden_state,)
        return hidden_state, hidden_states


class FaceApiRecognitionEncoder(FaceApiBlockStack):
    """All residual blocks in one flat list (order given by `recognition_block_names`)."""

    def __init__(self, config: FaceApiRecognitionConfig):
        super().__init__()
        blocks = []
        in_channels = config.hidden_sizes[0]
        for name in recognition_block_names(config):
            out_channels = int(name[4:].split("_")[0])
            if "_down" in name:
                blocks.append(FaceApiResidualDownBlock(in_channels, out_channels))
            else:
                blocks.append(FaceApiResidualBlock(out_channels))
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)


# ---------------------------------------------------------------------------------------------------------------------
# 68-point landmarks (FaceLandmark68Net / FaceLandmark68TinyNet)
# ---------------------------------------------------------------------------------------------------------------------


class FaceApiDenseBlock(nn.Module):
    """Stride-2 dense block: layer 0 (a plain conv in the first block, else separable) halves the resolution; every
    later separable layer reads relu(sum of all earlier layer outputs); the block returns relu of the full sum."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, is_first: bool):
        super().__init__()
        first = (
            TFSamePadConv2d(in_channels, out_channels, 3, stride=2)
            if is_first
            else FaceApiSeparableConv(in_channels, out_channels, stride=2)
        )
        self.layers = nn.ModuleList(
            [first] + [FaceApiSeparableConv(out_channels, out_channels, stride=1) for _ in range(num_layers - 1)]
        )

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        total = F.relu(self.layers[0](hidden_state))
        for layer in self.layers[1:]:
            total = total + layer(F.relu(total))
        return F.relu(total)


class FaceApiLandmarkEncoder(FaceApiBlockStack):
    """face-api's FaceFeatureExtractor: one dense block per entry of `hidden_sizes` (112 -> 7 for four blocks)."""

    def __init__(self, config: FaceApiLandmarkConfig):
        super().__init__()
        widths = [config.num_channels] + list(config.hidden_sizes)
        self.blocks = nn.ModuleList(
            FaceApiDenseBlock(widths[index], widths[index + 1], config.layers_per_block, is_first=index == 0)
            for index in range(len(config.hidden_sizes))
        )


# ---------------------------------------------------------------------------------------------------------------------
# Pretrained models
# ---------------------------------------------------------------------------------------------------------------------


class FaceApiPreTrainedModel(PreTrainedModel):
    """Shared loading/initialisation of the face-api priors (pure CNNs: no attention; SDPA flag for the contract)."""

    base_model_prefix = "faceapi"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _supports_sdpa = True
    _no_split_modules = ["FaceApiResidualDownBlock", "FaceApiDenseBlock"]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        expected = (self.config.num_channels, self.config.image_size, self.config.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values: expected shape (batch_size, {expected[0]}, {expected[1]}, {expected[2]}) "
                f"(RGB, already scaled by pixel_scale and normalised with image_mean/image_std), got "
                f"{tuple(pixel_values.shape)}."
            )

    def _pool_and_head(
        self,
        hidden_state: torch.Tensor,
        hidden_states: tuple[torch.Tensor, ...] | None,
        return_dict: bool | None,
    ) -> FaceApiModelOutput | tuple:
        # face-api averages the final map (recognition: mean; landmarks: a 7x7 "valid" avg-pool on a 7x7 map).
        pooled = hidden_state.mean(dim=(2, 3))
        logits = self.head(pooled)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(value for value in (hidden_state, pooled, logits, hidden_states) if value is not None)
        return FaceApiModelOutput(
            last_hidden_state=hidden_state, pooler_output=pooled, logits=logits, hidden_states=hidden_states
        )


class FaceApiRecognitionModel(FaceApiPreTrainedModel):
    """face-api's FaceRecognitionNet. `pooler_output` is the 256-D pooled feature before the descriptor projection;
    `logits` is face-api's 128-D face descriptor (compare faces by Euclidean distance, ~0.6 threshold)."""

    config_class = FaceApiRecognitionConfig

    def __init__(self, config: FaceApiRecognitionConfig):
        super().__init__(config)
        self.embeddings = FaceApiRecognitionEmbeddings(config)
        self.encoder = FaceApiRecognitionEncoder(config)
        self.head = nn.Linear(config.hidden_size, config.descriptor_size, bias=False)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> FaceApiModelOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, 150, 150)`):
            RGB face crops, `(255 * x - FACEAPI_MEAN_RGB) / 255` for `x` in [0, 1].
        """
        self._check_pixel_values(pixel_values)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        hidden_state, hidden_states = self.encoder(self.embeddings(pixel_values), output_hidden_states)
        return self._pool_and_head(hidden_state, hidden_states, return_dict)


class FaceApiLandmarkModel(FaceApiPreTrainedModel):
    """face-api's FaceLandmark68Net (or the tiny net). `pooler_output` is the pooled feature before the landmark
    layer; `logits` are the 68 (x, y) points normalised to the input crop, ordered x0, y0, x1, y1, ..."""

    config_class = FaceApiLandmarkConfig

    def __init__(self, config: FaceApiLandmarkConfig):
        super().__init__(config)
        self.encoder = FaceApiLandmarkEncoder(config)
        self.head = nn.Linear(config.hidden_size, 2 * config.num_landmarks)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> FaceApiModelOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, 112, 112)`):
            RGB face crops, `(255 * x - FACEAPI_MEAN_RGB) / 255` for `x` in [0, 1].
        """
        self._check_pixel_values(pixel_values)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        hidden_state, hidden_states = self.encoder(pixel_values, output_hidden_states)
        return self._pool_and_head(hidden_state, hidden_states, return_dict)


FACEAPI_MODEL_CLASSES: dict[str, type[FaceApiPreTrainedModel]] = {
    FaceApiRecognitionConfig.model_type: FaceApiRecognitionModel,
    FaceApiLandmarkConfig.model_type: FaceApiLandmarkModel,
}

__all__ = [
    "FACEAPI_MODEL_CLASSES",
    "FaceApiLandmarkModel",
    "FaceApiModelOutput",
    "FaceApiPreTrainedModel",
    "FaceApiRecognitionModel",
]
