"""Configurations of the two face-api priors the ET-Fuser paper evaluates on: the ResNet-34-style face-recognition
net (128-D descriptor) and the 68-point landmark nets, converted from npm `@vladmandic/face-api` 1.7.15 (MIT; weights
from face-api.js by Vincent Mühler, trained after dlib's models).

Both nets were trained on RGB pixels in 0..255 minus a per-channel mean, divided by 255. Under the prior input contract
(`pixel_values` in [0, 1] are multiplied by `pixel_scale`, then `(x - image_mean) / image_std`) that is
`pixel_scale=255`, `image_mean=FACEAPI_MEAN_RGB`, `image_std=[255, 255, 255]`.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


# Per-channel RGB mean face-api subtracts from 0..255 pixels (FaceRecognitionNet and FaceFeatureExtractor alike).
FACEAPI_MEAN_RGB = [122.782, 117.001, 104.298]
FACEAPI_STD_RGB = [255.0, 255.0, 255.0]


class _FaceApiInputContractMixin:
    """Checks shared by both configs: the input-contract attributes ET-Fuser reads."""

    def _validate_input_contract(self) -> None:
        if self.num_channels != 3:
            raise ValueError(f"num_channels: face-api nets take 3 RGB channels, got {self.num_channels}.")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if len(value) != self.num_channels:
                raise ValueError(f"{name}: expected {self.num_channels} values (one per channel), got {list(value)}.")
        if any(std <= 0 for std in self.image_std):
            raise ValueError(f"image_std: every value must be > 0, got {list(self.image_std)}.")
        if self.color_mode != "rgb":
            raise ValueError(f"color_mode: face-api nets were trained on RGB input, got {self.color_mode!r}.")
        if self.image_size <= 0:
            raise ValueError(f"image_size: expected a positive int, got {self.image_size}.")


@strict
class FaceApiRecognitionConfig(_FaceApiInputContractMixin, PreTrainedConfig):
    r"""
    Configuration of [`FaceApiRecognitionModel`], face-api's `FaceRecognitionNet`: a ResNet-34-like net (a 7x7/2 stem
    + 3x3/2 max-pool, residual stages whose first block halves the resolution with a stride-2 "valid" conv and an
    average-pooled, zero-channel-padded shortcut, a final extra down block) that maps a 150x150 face crop to a 128-D
    descriptor (faces of one identity lie within ~0.6 Euclidean distance).

    hidden_size (`int`, *optional*, defaults to 256):
        Width of `pooler_output`: the globally averaged feature before the descriptor projection. Must equal
        `hidden_sizes[-1]`.
    hidden_sizes (`list[int]`, *optional*, defaults to `[32, 64, 128, 256]`):
        Channels of each stage (the stem outputs `hidden_sizes[0]`).
    depths (`list[int]`, *optional*, defaults to `[3, 3, 2, 2]`):
        Number of plain residual blocks per stage, not counting the down block that opens every stage but the first.
    stem_kernel_size (`int`, *optional*, defaults to 7):
        Kernel of the stride-2 stem convolution.
    descriptor_size (`int`, *optional*, defaults to 128):
        Width of the face descriptor returned as `logits` (a bias-free linear projection of `pooler_output`).
    image_size (`int`, *optional*, defaults to 150):
        Side of the square face crop the net was trained on.
    num_channels (`int`, *optional*, defaults to 3):
        Input channels (RGB).
    image_mean (`list[float]`, *optional*, defaults to `FACEAPI_MEAN_RGB`):
        Per-channel mean, in units of `pixel_scale`.
    image_std (`list[float]`, *optional*, defaults to `[255.0, 255.0, 255.0]`):
        Per-channel divisor, in units of `pixel_scale`.
    pixel_scale (`float`, *optional*, defaults to 255.0):
        Factor mapping [0, 1] pixels to the range the net was trained on.
    color_mode (`str`, *optional*, defaults to `"rgb"`):
        Channel order the net expects.
    initializer_range (`float`, *optional*, defaults to 0.02):
        Standard deviation of the normal initialiser of the descriptor projection (random init only).

    Example:

    ```python
    >>> from etfuser_hf.configuration_faceapi import FaceApiRecognitionConfig
    >>> from etfuser_hf.modeling_faceapi import FaceApiRecognitionModel
    >>> # random weights; convert_faceapi_recognition writes the real ones
    >>> model = FaceApiRecognitionModel(FaceApiRecognitionConfig())
    ```"""

    model_type = "etfuser_faceapi_recognition"

    hidden_size: int = 256
    hidden_sizes: list[int] | tuple[int, ...] = (32, 64, 128, 256)
    depths: list[int] | tuple[int, ...] = (3, 3, 2, 2)
    stem_kernel_size: int = 7
    descriptor_size: int = 128
    image_size: int = 150
    num_channels: int = 3
    image_mean: list[float] | tuple[float, ...] = tuple(FACEAPI_MEAN_RGB)
    image_std: list[float] | tuple[float, ...] = tuple(FACEAPI_STD_RGB)
    pixel_scale: float = 255.0
    color_mode: str = "rgb"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        # Lists, not tuples, so to_dict/from_pretrained round-trips compare equal.
        self.hidden_sizes = list(self.hidden_sizes)
        self.depths = list(self.depths)
        self.image_mean = [float(value) for value in self.image_mean]
        self.image_std = [float(value) for value in self.image_std]
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Part of `@strict` validation: shapes that the re-implementation cannot build are rejected here."""
        self._validate_input_contract()
        if len(self.hidden_sizes) != len(self.depths) or not self.hidden_sizes:
            raise ValueError(
                f"hidden_sizes and depths: expected one entry per stage (same non-zero length), got "
                f"{self.hidden_sizes} and {self.depths}."
            )
        if self.hidden_size != self.hidden_sizes[-1]:
            raise ValueError(
                f"hidden_size: must equal hidden_sizes[-1] ({self.hidden_sizes[-1]}), the pooled width; got "
                f"{self.hidden_size}."
            )
        for previous, current in zip(self.hidden_sizes, self.hidden_sizes[1:]):
            if current < previous:
                raise ValueError(
                    f"hidden_sizes: the zero-padded shortcut needs non-decreasing widths, got {self.hidden_sizes}."
                )


@strict
class FaceApiLandmarkConfig(_FaceApiInputContractMixin, PreTrainedConfig):
    r"""
    Configuration of [`FaceApiLandmarkModel`], face-api's `FaceLandmark68Net` (and `FaceLandmark68TinyNet`): stride-2
    dense blocks of depthwise-separable convolutions (each layer reads the ReLU of the sum of all earlier layer
    outputs), global average pooling and one linear layer regressing 68 (x, y) points normalised to [0, 1] of the
    112x112 input.

    hidden_size (`int`, *optional*, defaults to 256):
        Width of `pooler_output`, the pooled feature before the landmark layer. Must equal `hidden_sizes[-1]`.
    hidden_sizes (`list[int]`, *optional*, defaults to `[32, 64, 128, 256]`):
        Output channels of each dense block; every block halves the resolution. The tiny net uses `[32, 64, 128]`.
    layers_per_block (`int`, *optional*, defaults to 4):
        Convolutions per dense block (4 for the full net, 3 for the tiny net).
    num_landmarks (`int`, *optional*, defaults to 68):
        Points predicted; `logits` has `2 * num_landmarks` values ordered x0, y0, x1, y1, ...
    image_size (`int`, *optional*, defaults to 112):
        Side of the square face crop the net was trained on.
    num_channels, image_mean, image_std, pixel_scale, color_mode:
        Input contract, as in [`FaceApiRecognitionConfig`].
    initializer_range (`float`, *optional*, defaults to 0.02):
        Standard deviation of the normal initialiser of the landmark layer (random init only).
    """

    model_type = "etfuser_faceapi_landmarks"

    hidden_size: int = 256
    hidden_sizes: list[int] | tuple[int, ...] = (32, 64, 128, 256)
    layers_per_block: int = 4
    num_landmarks: int = 68
    image_size: int = 112
    num_channels: int = 3
    image_mean: list[float] | tuple[float, ...] = tuple(FACEAPI_MEAN_RGB)
    image_std: list[float] | tuple[float, ...] = tuple(FACEAPI_STD_RGB)
    pixel_scale: float = 255.0
    color_mode: str = "rgb"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.hidden_sizes = list(self.hidden_sizes)
        self.image_mean = [float(value) for value in self.image_mean]
        self.image_std = [float(value) for value in self.image_std]
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Part of `@strict` validation: shapes that the re-implementation cannot build are rejected here."""
        self._validate_input_contract()
        if not self.hidden_sizes:
            raise ValueError("hidden_sizes: expected at least one dense block, got [].")
        if self.hidden_size != self.hidden_sizes[-1]:
            raise ValueError(
                f"hidden_size: must equal hidden_sizes[-1] ({self.hidden_sizes[-1]}), the pooled width; got "
                f"{self.hidden_size}."
            )
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block: expected >= 1, got {self.layers_per_block}.")
        if self.num_landmarks < 1:
            raise ValueError(f"num_landmarks: expected >= 1, got {self.num_landmarks}.")


FACEAPI_CONFIG_CLASSES: dict[str, type[PreTrainedConfig]] = {
    FaceApiRecognitionConfig.model_type: FaceApiRecognitionConfig,
    FaceApiLandmarkConfig.model_type: FaceApiLandmarkConfig,
}

__all__ = ["FACEAPI_CONFIG_CLASSES", "FACEAPI_MEAN_RGB", "FaceApiLandmarkConfig", "FaceApiRecognitionConfig"]
