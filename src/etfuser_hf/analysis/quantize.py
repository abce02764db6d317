"""The int8 copy of the analysis graph (`analyze(backend="onnx-int8")`): which nets are quantised, the calibration
faces (SYNTHETIC faces from `data.synthetic_faces`, never evaluation faces) and onnxruntime's static QDQ quantisation.
`backends.OnnxBackend(int8=True)` makes the copy once and caches it beside the fp32 export (`int8_onnx_path`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..priors.crop_geometry import CANONICAL_CROP_SIZE

if TYPE_CHECKING:
    from ..models.modeling_etfuser import ETFuserForImageClassification
    from .extras import Companion

# Nets the int8 backend quantises, by model type. Each net quantised alone (then per-channel int8 weights, uint8
# activations, min-max calibration on 32 synthetic faces), against fp32 on 64 held-out synthetic faces (seed 5000),
# only face-api's recognition net stayed within the bounds (descriptor moved by <= 0.06 of the 0.6 identity
# threshold); kept fp32 because they lost too much: the dlib age net (81-bin argmax agreement 93.8 %), the face-api
# landmark net (NME 0.037 > 0.005), the FER expression net and the fusion (argmax agreement 96.9 %) and the dlib
# gender net (96.9 %). MTCNN stays fp32 too.
INT8_MODEL_TYPES = ("etfuser_faceapi_recognition",)
# Bump when the quantisation recipe changes: it names the cached int8 copy.
INT8_VERSION = "3"  # 3: calibrated on canonical crops (issue 32)
CALIBRATION_FACES = 32
CALIBRATION_SEED = 1000  # synthetic faces; the evaluation in tests/analysis uses other seeds


def int8_onnx_path(path: Path) -> Path:
    """Where the int8 copy of the export at `path` is cached."""
    return path.with_name(f"{path.stem}.int8-v{INT8_VERSION}.onnx")


def calibration_faces(image_size: int, count: int = CALIBRATION_FACES, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """`count` SYNTHETIC faces (`make_synthetic_faces`, no masks) as float32 `(count, 3, S, S)` RGB in [0, 1]."""
    from ..data.synthetic_faces import make_synthetic_faces

    faces = make_synthetic_faces(count, image_size, seed=seed, mask_probability=0.0)["image"]
    return np.stack([np.asarray(face.convert("RGB"), np.float32) / 255 for face in faces]).transpose(0, 3, 1, 2).copy()


def as_canonical_crops(faces: np.ndarray, size: int = CANONICAL_CROP_SIZE) -> np.ndarray:
    """Aligned faces `(n, 3, s, s)` (the ArcFace field, e.g. `calibration_faces(size // 2)`) as canonical crops
    `(n, 3, size, size)`: centred, their edges continued outwards (the field spans 1 / CANONICAL_CROP_MARGIN of a
    canonical crop, so `FaceGeometry.of_canonical_crops` describes them)."""
    pad = (size - faces.shape[-1]) // 2
    return np.pad(faces, ((0, 0), (0, 0), (pad, size - faces.shape[-1] - pad), (pad, size - faces.shape[-1] - pad)),
                  mode="edge")


def int8_weight_prefixes(model: ETFuserForImageClassification, companions: tuple[Companion, ...] = ()) -> list[str]:
    """Name prefixes of the exported weights of the nets to quantise (`INT8_MODEL_TYPES`), fused priors and
    companions alike."""
    prefixes = [f"model.etfuser.priors.{name}." for name, prior in model.etfuser.priors.items()
                if prior.config.model_type in INT8_MODEL_TYPES]
    return prefixes + [f"companion_priors.{companion.extra}." for companion in companions
                       if companion.prior is not None and companion.config.model_type in INT8_MODEL_TYPES]


def quantize_analysis_onnx(fp32_path: str | os.PathLike, output_path: str | os.PathLike, weight_prefixes: list[str],
                           calibration: dict[str, np.ndarray]) -> Path:
    """Writes (atomically) an int8 copy of the exported graph `fp32_path`: the Conv, MatMul and Gemm nodes whose weight
    name starts with one of `weight_prefixes` are quantised (QDQ, per-channel 8-bit weights and activations,
    calibrated on `calibration`, input name -> `(faces, ...)` array, every input of the graph); every other node
    stays fp32.

    Weights are uint8, like the activations: on x86 CPUs without VNNI, onnxruntime's uint8 x int8 kernel (VPMADDUBSW)
    sums pairs of products in int16 and saturates, and the recognition net's descriptors moved by up to 0.29 there (CI)
    against 0.086 on a VNNI machine; uint8 x uint8 has no such path (0.083 max here), and 7-bit int8 weights
    (`reduce_range`) lost precision (0.093)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            faces = len(next(iter(calibration.values())))
            self.batches = iter([{name: value[start:start + 8] for name, value in calibration.items()}
                                 for start in range(0, faces, 8)])

        def get_next(self):
            return next(self.batches, None)

    output_path = Path(output_path)
    partial = output_path.with_name(f"{output_path.name}.{os.getpid()}.partial")
    prepared = output_path.with_name(f"{output_path.name}.{os.getpid()}.prepared")
    try:
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared), load_external_data=False).graph
        nodes = [node.name for node in graph.node if node.op_type in ("Conv", "MatMul", "Gemm") and len(node.input) > 1
                 and node.input[1].startswith(tuple(weight_prefixes))]
        if not nodes:
            raise ValueError(f"backend: 'onnx-int8' found no net to quantise (model types {INT8_MODEL_TYPES}) in "
                             f"{fp32_path}; use backend='onnx'.")
        quantize_static(str(prepared), str(partial), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                        nodes_to_quantize=nodes,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"])
        os.replace(partial, output_path)
    finally:
        for path in (partial, prepared):
            path.unlink(missing_ok=True)
    return output_path


__all__ = ["CALIBRATION_FACES", "CALIBRATION_SEED", "INT8_MODEL_TYPES", "INT8_VERSION", "as_canonical_crops",
           "calibration_faces", "int8_onnx_path", "int8_weight_prefixes", "quantize_analysis_onnx"]
