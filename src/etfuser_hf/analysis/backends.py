"""The graph `etfuser_hf.analyze` runs on batches of aligned faces, and its two backends.

`AnalysisGraph` runs every prior once, keeps both the tokens ET-Fuser fuses and the prior's own output (its "readout":
age bins, expression scores, 68 landmarks), and feeds the tokens to the fused model as `prior_features`, so nothing
runs twice. The torch backend calls it directly; the ONNX backend exports it once per model folder (cached under
`<cache>/analysis_onnx/<hash of the folder>.onnx`) and runs it with onnxruntime; with `int8=True` ("onnx-int8") it
runs a copy whose nets of `INT8_MODEL_TYPES` are quantised to int8 (onnxruntime's static QDQ quantisation,
calibrated on SYNTHETIC faces from `data.synthetic_faces`, never on evaluation faces), cached beside it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.utils import ModelOutput

from ..models.configuration_etfuser import EncoderSpec
from ..models.encoders import prepare_encoder_inputs
from ..models.modeling_etfuser import ETFuserForImageClassification
from ..priors.fetch import default_cache_dir
from .extras import Companion

# Prior model types whose own output the table reports, and what that output is.
READOUT_KINDS = {
    "etfuser_dlib_age": "age",
    "etfuser_fer_mini_xception": "expression",
    "etfuser_faceapi_landmarks": "landmarks",
}
# Bump when AnalysisGraph's inputs or outputs change: it is part of the ONNX cache key.
GRAPH_VERSION = "2"

# Nets the int8 backend quantises, by model type. Each net quantised alone (then per-channel int8 weights, uint8
# activations, min-max calibration on 32 synthetic faces), against fp32 on 64 held-out synthetic faces (seed 5000),
# only face-api's recognition net stayed within the bounds (descriptor moved by <= 0.06 of the 0.6 identity
# threshold); kept fp32 because they lost too much: the dlib age net (81-bin argmax agreement 93.8 %), the face-api
# landmark net (NME 0.037 > 0.005), the FER expression net and the fusion (argmax agreement 96.9 %) and the dlib
# gender net (96.9 %). MTCNN stays fp32 too.
INT8_MODEL_TYPES = ("etfuser_faceapi_recognition",)
# Bump when the quantisation recipe changes: it names the cached int8 copy.
INT8_VERSION = "2"
CALIBRATION_FACES = 32
CALIBRATION_SEED = 1000  # synthetic faces; the evaluation in tests/analysis uses other seeds


def readout_priors(model: ETFuserForImageClassification) -> dict[str, str]:
    """Prior name -> readout kind, for the fused priors that have a head the table reports."""
    return {name: READOUT_KINDS[prior.config.model_type] for name, prior in model.etfuser.priors.items()
            if prior.config.model_type in READOUT_KINDS}


class AnalysisGraph(nn.Module):
    """`pixel_values (batch, 3, S, S)` RGB in [0, 1] -> `(logits (batch, num_labels), prior_attention (batch,
    num_priors) when the model fuses priors, then one readout per `readout_priors` entry and one per companion (see
    `extras.py`): that prior's raw `logits`)`, named as `output_names`."""

    def __init__(self, model: ETFuserForImageClassification, companions: tuple[Companion, ...] = ()):
        super().__init__()
        self.model = model.eval()
        self.readouts = readout_priors(model)
        self.has_attention = bool(model.etfuser.priors)
        self.companions = tuple(companions)
        self.companion_priors = nn.ModuleDict({c.extra: c.prior for c in self.companions if c.prior is not None})
        self.companion_specs = {c.extra: EncoderSpec(config=c.prior.config) for c in self.companions
                                if c.prior is not None}

    @property
    def output_names(self) -> list[str]:
        return (["logits"] + (["prior_attention"] if self.has_attention else [])
                + [f"readout.{name}" for name in self.readouts]
                + [f"companion.{companion.extra}" for companion in self.companions])

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # each prior runs once, for its fusion tokens and its own head; the readouts come back with the call's
        # features, so threads sharing one model never see each other's
        features, prior_outputs = self.model.etfuser.extract_prior_features(pixel_values, return_prior_outputs=True)
        outputs = self.model(pixel_values=pixel_values, prior_features=features or None,
                             output_attentions=self.has_attention, return_dict=True)
        head = (outputs.logits,) + ((outputs.prior_attention,) if self.has_attention else ())
        readouts = tuple(prior_outputs[name].logits for name in self.readouts)
        return head + readouts + tuple(self._companion_logits(companion, pixel_values, prior_outputs)
                                       for companion in self.companions)

    def _companion_logits(self, companion: Companion, pixel_values: torch.Tensor,
                          prior_outputs: dict[str, ModelOutput]) -> torch.Tensor:
        """A companion's raw logits: its fused prior's output from this call, or its own net on its own view."""
        if companion.fused_name:
            return prior_outputs[companion.fused_name].logits
        inputs = prepare_encoder_inputs(pixel_values, self.companion_specs[companion.extra])
        return self.companion_priors[companion.extra](pixel_values=inputs, return_dict=True).logits


class TorchBackend:
    """Runs `AnalysisGraph` in PyTorch under `torch.inference_mode`."""

    def __init__(self, model: ETFuserForImageClassification, companions: tuple[Companion, ...] = ()):
        self.graph = AnalysisGraph(model, companions)

    def __call__(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        """`pixel_values` float32 `(batch, 3, S, S)` -> output name -> float32 array (batch, ...)."""
        with torch.inference_mode():
            outputs = self.graph(torch.from_numpy(pixel_values))
        return {name: value.float().numpy() for name, value in zip(self.graph.output_names, outputs)}


def folder_hash(model_dir: str | os.PathLike, companions: tuple[Companion, ...] = ()) -> str:
    """sha256 over the folder's config and weights, GRAPH_VERSION and the companions' weights: the ONNX cache key."""
    digest = hashlib.sha256(GRAPH_VERSION.encode())
    for companion in companions:
        digest.update(f"{companion.extra}\n{companion.key}\n".encode())
    folder = Path(model_dir)
    files = sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix in (".json", ".safetensors")))
    if not files:
        raise FileNotFoundError(f"model: {folder} holds no config.json / *.safetensors to hash.")
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:32]


def export_analysis_onnx(model: ETFuserForImageClassification, output_path: str | os.PathLike, image_size: int,
                         companions: tuple[Companion, ...] = ()) -> Path:
    """Exports `AnalysisGraph(model, companions)` with a dynamic batch axis to `output_path` (written atomically)."""
    graph = AnalysisGraph(model, companions).eval()
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    program = torch.onnx.export(graph, (example,), dynamo=True, input_names=["pixel_values"], verbose=False,
                                output_names=graph.output_names,
                                dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1)}})
    # a process killed mid-write must not leave a truncated model in the cache
    partial = output_path.with_name(f"{output_path.name}.{os.getpid()}.partial")
    program.save(str(partial))
    os.replace(partial, output_path)
    return output_path


def cached_onnx_path(model_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                     companions: tuple[Companion, ...] = ()) -> Path:
    return Path(cache_dir or default_cache_dir()) / "analysis_onnx" / f"{folder_hash(model_dir, companions)}.onnx"


def ensure_analysis_onnx(model: ETFuserForImageClassification, model_dir: str | os.PathLike, image_size: int,
                         cache_dir: str | os.PathLike | None = None,
                         companions: tuple[Companion, ...] = ()) -> tuple[Path, bool]:
    """The cached export of `model` (loaded from `model_dir`) with `companions`, and whether this call wrote it."""
    path = cached_onnx_path(model_dir, cache_dir, companions)
    if path.is_file():
        return path, False
    return export_analysis_onnx(model, path, image_size, companions), True


def calibration_faces(image_size: int, count: int = CALIBRATION_FACES, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """`count` SYNTHETIC faces (`make_synthetic_faces`, no masks) as float32 `(count, 3, S, S)` RGB in [0, 1]."""
    from ..data.synthetic_faces import make_synthetic_faces

    faces = make_synthetic_faces(count, image_size, seed=seed, mask_probability=0.0)["image"]
    return np.stack([np.asarray(face.convert("RGB"), np.float32) / 255 for face in faces]).transpose(0, 3, 1, 2).copy()


def int8_weight_prefixes(model: ETFuserForImageClassification, companions: tuple[Companion, ...] = ()) -> list[str]:
    """Name prefixes of the exported weights of the nets to quantise (`INT8_MODEL_TYPES`), fused priors and
    companions alike."""
    prefixes = [f"model.etfuser.priors.{name}." for name, prior in model.etfuser.priors.items()
                if prior.config.model_type in INT8_MODEL_TYPES]
    return prefixes + [f"companion_priors.{companion.extra}." for companion in companions
                       if companion.prior is not None and companion.config.model_type in INT8_MODEL_TYPES]


def quantize_analysis_onnx(fp32_path: str | os.PathLike, output_path: str | os.PathLike, weight_prefixes: list[str],
                           calibration: np.ndarray) -> Path:
    """Writes (atomically) an int8 copy of the exported graph `fp32_path`: the Conv, MatMul and Gemm nodes whose weight
    name starts with one of `weight_prefixes` are quantised (QDQ, per-channel 8-bit weights and activations,
    calibrated on `calibration` `(faces, 3, S, S)`); every other node stays fp32.

    Weights are uint8, like the activations: on x86 CPUs without VNNI, onnxruntime's uint8 x int8 kernel (VPMADDUBSW)
    sums pairs of products in int16 and saturates, and the recognition net's descriptors moved by up to 0.29 there (CI)
    against 0.086 on a VNNI machine; uint8 x uint8 has no such path (0.083 max here), and 7-bit int8 weights
    (`reduce_range`) lost precision (0.093)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"pixel_values": calibration[start:start + 8]}
                                 for start in range(0, len(calibration), 8)])

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


class OnnxBackend:
    """Runs the exported `AnalysisGraph` with onnxruntime; exports it first when the cache has no copy for this
    model folder. `int8=True`: runs its int8 copy (`quantize_analysis_onnx`, made once and cached beside it)."""

    def __init__(self, model: ETFuserForImageClassification, model_dir: str | os.PathLike, image_size: int,
                 cache_dir: str | os.PathLike | None = None, companions: tuple[Companion, ...] = (),
                 int8: bool = False):
        import onnxruntime

        self.path, self.exported = ensure_analysis_onnx(model, model_dir, image_size, cache_dir, companions)
        if int8:
            quantized = self.path.with_name(f"{self.path.stem}.int8-v{INT8_VERSION}.onnx")
            if not quantized.is_file():
                quantize_analysis_onnx(self.path, quantized, int8_weight_prefixes(model, companions),
                                       calibration_faces(image_size))
            self.path = quantized
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle onnxruntime threads spin by default, stealing the cores detection needs between two batches
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.output_names = [output.name for output in self.session.get_outputs()]

    def __call__(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        """`pixel_values` float32 `(batch, 3, S, S)` -> output name -> float32 array (batch, ...)."""
        return dict(zip(self.output_names, self.session.run(None, {"pixel_values": pixel_values})))


__all__ = ["INT8_MODEL_TYPES", "READOUT_KINDS", "AnalysisGraph", "OnnxBackend", "TorchBackend", "cached_onnx_path",
           "calibration_faces", "ensure_analysis_onnx", "export_analysis_onnx", "folder_hash", "int8_weight_prefixes",
           "quantize_analysis_onnx", "readout_priors"]
