"""The graph `etfuser_hf.analyze` runs on batches of aligned faces, and its two backends.

The analysis runs on loose canonical crops in two stages (`crops.py`): `LandmarkStage`, face-api's landmark net on its
own crop, whose points place the crops that read them, then `AnalysisGraph`, fed every other network's crop
(`network_crops`, cut in PyTorch before the graph), which runs every prior once, keeps both the tokens ET-Fuser fuses
and the prior's own output (its "readout": age bins, expression scores; the landmark net's comes from the first stage),
and feeds the tokens to the fused model as `prior_features`, so nothing runs twice. The torch backend calls both
directly; the ONNX backend exports them once per model folder (cached under `<cache>/analysis_onnx/<hash of the
folder>.onnx`, the first stage beside it as `<hash>.landmarks.onnx`) and runs them with onnxruntime; with `int8=True`
("onnx-int8") it runs a copy whose nets of `INT8_MODEL_TYPES` are quantised to int8 (`quantize.py`: onnxruntime's
static QDQ quantisation, calibrated on SYNTHETIC faces, never on evaluation faces), cached beside it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.utils import ModelOutput

from ..models.configuration_etfuser import EncoderSpec
from ..models.input_checks import BACKBONE_CROP_KEY, WINDOW_SUFFIX
from ..models.encoders import crop_resampling, crop_window_rows, cut_encoder_crops, prepare_encoder_inputs
from ..models.modeling_etfuser import ETFuserForImageClassification
from ..priors.crop_geometry import CANONICAL_CROP_SIZE
from ..priors.crop_plan import CropPlan, FaceGeometry, image_bottom_grey
from ..priors.crop_rules import CROP_GEOMETRIES
from ..priors.fetch import default_cache_dir
from ..priors.onnx_sessions import cpu_session
from .crops import LandmarkStage, landmark_stage
from .extras import Companion
from .quantize import (  # the int8 backend's recipe, importable from here too
    CALIBRATION_FACES,
    CALIBRATION_SEED,
    INT8_MODEL_TYPES,
    INT8_VERSION,
    as_canonical_crops,
    calibration_faces,
    int8_onnx_path,
    int8_weight_prefixes,
    quantize_analysis_onnx,
)

# Prior model types whose own output the table reports, and what that output is.
READOUT_KINDS = {"etfuser_dlib_age": "age", "etfuser_fer_mini_xception": "expression",
                 "etfuser_faceapi_landmarks": "landmarks"}
# Bump when AnalysisGraph's inputs or outputs change: it is part of the ONNX cache key.
GRAPH_VERSION = "6"  # 3: canonical crops in, each network cut to its own crop (issue 32); 4: element-wise sampling
# grids (`encoders.affine_sampling_grid`); 5: the second stage takes each network's crop, cut before it; 6: the
# landmark stage takes its crop's window rows (face-api's zero bars)


def readout_priors(model: ETFuserForImageClassification) -> dict[str, str]:
    """Prior name -> readout kind, for the fused priors that have a head the table reports."""
    return {name: READOUT_KINDS[prior.config.model_type] for name, prior in model.etfuser.priors.items()
            if prior.config.model_type in READOUT_KINDS}


def whole_input_windows(batch: int, size: int) -> torch.Tensor:
    """(batch, 17) window rows showing the whole `size` x `size` input as the image (identity affine, zeros fill)."""
    box = torch.tensor([0.0, 0.0, float(size), float(size)]).expand(batch, 4)
    return crop_window_rows(torch.eye(2, 3).expand(batch, 2, 3), box, box, torch.zeros(batch, 3))


def _same(first: torch.Tensor | None, second: torch.Tensor | None) -> bool:
    """Whether two optional tensors are both None or equal."""
    return (first is None and second is None) or (first is not None and second is not None
                                                  and torch.equal(first, second))


def whole_input_affines(sizes: list[tuple[int, int]], batch: int, size: int) -> torch.Tensor:
    """(batch, len(sizes), 2, 3) affines cutting the whole `size` x `size` input, resized, as each (height, width)."""
    affines = torch.zeros(batch, len(sizes), 2, 3)
    for index, (height, width) in enumerate(sizes):
        affines[:, index, 0, 0], affines[:, index, 1, 1] = width / size, height / size
    return affines


class AnalysisGraph(nn.Module):
    """The second stage: `input_names` in order (`inputs` makes them): `crop.<network>` (batch, 3, h, w) each network
    of `plan.networks` on its own crop, `pixel_values` (batch, 3, S, S) canonical crops where a prior has no crop in
    the plan (one the model does not fuse: read on the whole input), `landmark_features` (batch, n, d) where the
    landmark net is a fused prior -> `(logits (batch, num_labels), prior_attention (batch, num_priors) when the model
    fuses priors, then one readout per `readout_priors` entry and one per companion (see `extras.py`): that prior's
    raw `logits`)`, named as `output_names`, leaving out what `landmark_stage` (run first, `stage_one_names`) gives.
    The crops are cut before the graph by the forward's own `cut_encoder_crops`, each with its original pipeline's
    bars or padding where its rule records them (`network_crops`, `CropPlan.window_rows`): onnxruntime's
    GridSample took 137 of the graph's 871 ms per 32 faces (ORT profile), about 2x torch's grid_sample."""

    def __init__(self, model: ETFuserForImageClassification, companions: tuple[Companion, ...] = ()):
        super().__init__()
        self.model = model.eval()
        self.readouts = readout_priors(model)
        self.has_attention = bool(model.etfuser.priors)
        self.companions = tuple(companions)
        self.companion_priors = nn.ModuleDict({c.extra: c.prior for c in self.companions if c.prior is not None})
        self.companion_specs = {c.extra: EncoderSpec(config=c.prior.config) for c in self.companions
                                if c.prior is not None}
        needs_landmarks = CropPlan.for_graph(model, self.companions).needs_landmarks
        self.landmark_name, self.landmark_stage = landmark_stage(model, self.companions, needs_landmarks)
        landmark_config = self.landmark_stage.spec.config if self.landmark_stage is not None else None
        self.plan = CropPlan.for_graph(model, self.companions, landmark_config, first=self.landmark_name)
        # outputs of the first stage: the landmark net's readout and the companions that read it (none without a
        # landmark net: a companion of its own then has no fused_name, and None must not match it)
        self.stage_one_names = [f"readout.{name}" for name in self.readouts if name == self.landmark_name] + [
            f"companion.{c.extra}" for c in self.companions
            if self.landmark_name is not None and self.landmark_name in (c.fused_name, f"companion.{c.extra}")]
        self.second_priors = [name for name in model.etfuser.priors if name != self.landmark_name]
        self.whole_input_priors = [name for name in self.second_priors if name not in self.plan.networks]

    @property
    def landmark_windowed(self) -> bool:
        """Whether the landmark stage takes its crop's window rows (its rule records them: face-api's zero bars)."""
        geometry = self.plan.landmark_geometry
        return geometry is not None and CROP_GEOMETRIES[geometry["name"]].windows is not None

    @property
    def all_output_names(self) -> list[str]:
        """Every output of the analysis, in table order (both stages)."""
        return (["logits"] + (["prior_attention"] if self.has_attention else [])
                + [f"readout.{name}" for name in self.readouts]
                + [f"companion.{companion.extra}" for companion in self.companions])

    @property
    def output_names(self) -> list[str]:
        return [name for name in self.all_output_names if name not in self.stage_one_names]

    @property
    def input_names(self) -> list[str]:
        fused = self.landmark_stage is not None and self.landmark_stage.fused
        return ([f"crop.{name}" for name in self.plan.networks] + (["pixel_values"] if self.whole_input_priors else [])
                + (["landmark_features"] if fused else []))

    def network_crops(self, pixel_values: torch.Tensor, crop_affines: torch.Tensor,
                      windows: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """(batch, 3, S, S) canonical crops, (batch, len(plan.networks), 2, 3) affines and, per network whose
        pipeline bars or pads its crop, its (batch, 17) window rows under name + `WINDOW_SUFFIX`
        (`CropPlan.window_rows`) -> name -> (batch, 3, h, w) each network's crop at its input size, as the fused
        model's forward cuts it from `prior_crops`. Networks with the same crop (same affines, windows and size: e.g.
        a FER canonical model and the FER companion, both on fer's box) share one cut: cutting is most of the
        analysis's own work beside the networks."""
        windows = windows or {}
        crops, cut = {}, []
        for index, (name, size) in enumerate(zip(self.plan.networks, self.network_sizes())):
            affines, rows = crop_affines[:, index], windows.get(name + WINDOW_SUFFIX)
            rows = None if rows is None else torch.as_tensor(rows)
            resampling = crop_resampling(self.plan.geometries[name])
            same = next((crop for other, other_rows, other_size, other_resampling, crop in cut
                         if other_size == size and other_resampling == resampling and torch.equal(other, affines)
                         and _same(other_rows, rows)), None)
            crops[name] = same if same is not None else cut_encoder_crops(pixel_values, affines, size, rows, resampling)
            cut.append((affines, rows, size, resampling, crops[name]))
        return crops

    @torch.no_grad()
    def inputs(self, pixel_values: np.ndarray | torch.Tensor, crop_affines: np.ndarray | torch.Tensor,
               landmark_features: np.ndarray | torch.Tensor | None = None,
               windows: Mapping[str, np.ndarray | torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The graph's inputs (`input_names` -> tensor) for canonical crops, their crop affines, the first stage's
        `landmark_features` (where the landmark net is fused) and the networks' window rows (`network_crops`), numpy
        arrays or tensors."""
        pixel_values = torch.as_tensor(pixel_values)
        inputs = {f"crop.{name}": crop for name, crop in
                  self.network_crops(pixel_values, torch.as_tensor(crop_affines), windows).items()}
        if self.whole_input_priors:
            inputs["pixel_values"] = pixel_values
        if "landmark_features" in self.input_names:
            inputs["landmark_features"] = torch.as_tensor(landmark_features)
        return inputs

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`inputs` in `input_names` order (what `inputs` returns)."""
        named = dict(zip(self.input_names, inputs))
        crops = {name: named[f"crop.{name}"] for name in self.plan.networks}
        # each prior runs once on its own crop, for its tokens and its head; readouts return with the call's features
        features, prior_outputs = {}, {}
        for name in self.second_priors:
            found, outputs = self.model.etfuser.extract_prior_features(
                crops.get(name, named.get("pixel_values")), return_prior_outputs=True, names=[name])
            features.update(found)
            prior_outputs.update(outputs)
        if "landmark_features" in named:
            features[self.landmark_name] = named["landmark_features"]
        # the canonical model is fed its own crop (its input size: nothing is resized), the priors their features
        outputs = self.model(pixel_values=crops.get(BACKBONE_CROP_KEY), prior_features=features or None,
                             output_attentions=self.has_attention, return_dict=True)
        # a landmark head's points (batch, K, 2) leave as one row per face, like logits
        logits = outputs.landmarks.flatten(1) if "landmarks" in outputs else outputs.logits
        head = (logits,) + ((outputs.prior_attention,) if self.has_attention else ())
        readouts = tuple(prior_outputs[name].logits for name in self.readouts if name != self.landmark_name)
        return head + readouts + tuple(self._companion_logits(companion, crops, prior_outputs)
                                       for companion in self.companions
                                       if f"companion.{companion.extra}" not in self.stage_one_names)

    def network_sizes(self) -> list[tuple[int, int]]:
        """(height, width) of each network's input, in `plan.networks` order."""
        sizes = []
        for name in self.plan.networks:
            if name.startswith("companion."):
                spec = self.companion_specs[name.split(".", 1)[1]]
            else:
                spec = self.model.config.backbone if name == BACKBONE_CROP_KEY else self.model.config.priors[name]
            sizes.append(tuple(spec.image_size))
        return sizes

    def example_inputs(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every graph input for `pixel_values` (batch, 3, S, S), each network's crop the whole input resized (the
        export's example); both stages' inputs, the landmark net's under `landmarks.`."""
        batch, size = pixel_values.shape[0], pixel_values.shape[-1]
        features, inputs = None, {}
        if self.landmark_stage is not None:
            affines = whole_input_affines([tuple(self.landmark_stage.spec.image_size)], batch, size)[:, 0]
            inputs = {"landmarks.pixel_values": pixel_values, "landmarks.affines": affines}
            if self.landmark_windowed:  # the whole input shown, a bar-free example
                inputs["landmarks.windows"] = whole_input_windows(batch, size)
            if self.landmark_stage.fused:
                with torch.no_grad():
                    features = self.landmark_stage(*inputs.values())[1]
        second = self.inputs(pixel_values, whole_input_affines(self.network_sizes(), batch, size), features)
        # the example's crops all span the whole input, so networks of one size share a tensor (`network_crops`):
        # the exporter must see one tensor per graph input, or it ties those inputs together
        return {**inputs, **{name: value.clone() for name, value in second.items()}}

    def _companion_logits(self, companion: Companion, crops: dict[str, torch.Tensor],
                          prior_outputs: dict[str, ModelOutput]) -> torch.Tensor:
        """A companion's raw logits: its fused prior's output from this call, or its own net on its own crop."""
        if companion.fused_name:
            return prior_outputs[companion.fused_name].logits
        inputs = prepare_encoder_inputs(crops[f"companion.{companion.extra}"], self.companion_specs[companion.extra])
        return self.companion_priors[companion.extra](pixel_values=inputs, return_dict=True).logits


class AnalysisBackend:
    """Runs the two stages on a batch of canonical crops: the landmark net on its crop, its points mapped to the image
    (`image_landmarks`), every other crop placed (`CropPlan`), then `AnalysisGraph`. Subclasses run the stages."""

    graph: AnalysisGraph

    def __call__(self, pixel_values: np.ndarray, faces: FaceGeometry) -> dict[str, np.ndarray]:
        """`pixel_values` float32 `(batch, 3, S, S)` canonical crops of `faces` -> output name -> float32 array
        (batch, ...), `image_landmarks` (batch, 68, 2) image pixels among them where the landmark net ran."""
        outputs, crop_affines, features, windows = self.first_stage(pixel_values, faces)
        outputs.update(self.run_graph(pixel_values, crop_affines, features, windows))
        return outputs

    def first_stage(self, pixel_values: np.ndarray, faces: FaceGeometry
                    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
        """(the first stage's outputs, the second stage's `crop_affines`, `landmark_features` (or None) and window
        rows, name + `WINDOW_SUFFIX` -> (batch, 17), `CropPlan.window_rows`)."""
        graph, outputs, landmarks, features = self.graph, {}, None, None
        if graph.landmark_stage is not None:
            first = self.run_landmarks(pixel_values, graph.plan.landmark_affines(faces),
                                       graph.plan.landmark_window_rows(faces) if graph.landmark_windowed else None)
            landmarks = graph.plan.landmarks_to_image(first["logits"], faces)
            outputs = {name: first["logits"] for name in graph.stage_one_names}
            outputs["image_landmarks"] = landmarks.astype(np.float32)
            features = first.get("features")
        windows = graph.plan.window_rows(faces, landmarks) if len(faces) else {}
        return outputs, graph.plan.affines(faces, landmarks), features, windows

    def prior_crops(self, pixel_values: np.ndarray, faces: FaceGeometry) -> dict[str, np.ndarray]:
        """The fused model's `prior_crops` of the table's run for these canonical crops: name (each fused prior, the
        landmark net's own among them, and `BACKBONE_CROP_KEY`) -> (batch, 2, 3) float32 canonical crop -> crop
        affines, and name + `WINDOW_SUFFIX` -> (batch, 17) window rows where the network's pipeline bars or pads its
        crop, placed by this backend's first stage (so by the landmarks the table reports)."""
        graph = self.graph
        _, crop_affines, _, windows = self.first_stage(pixel_values, faces)
        crops = {name: crop_affines[:, index] for index, name in enumerate(graph.plan.networks)
                 if not name.startswith("companion.")}
        crops.update({key: rows for key, rows in windows.items() if key[: -len(WINDOW_SUFFIX)] in crops})
        if graph.landmark_stage is not None and graph.landmark_stage.fused:
            crops[graph.landmark_name] = graph.plan.landmark_affines(faces)
            if graph.landmark_windowed and len(faces):
                crops[graph.landmark_name + WINDOW_SUFFIX] = graph.plan.landmark_window_rows(faces)
        return crops

    def run_landmarks(self, pixel_values: np.ndarray, affines: np.ndarray,
                      windows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def run_graph(self, pixel_values: np.ndarray, crop_affines: np.ndarray, landmark_features: np.ndarray | None,
                  windows: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError


class TorchBackend(AnalysisBackend):
    """Runs both stages in PyTorch under `torch.inference_mode`."""

    def __init__(self, model: ETFuserForImageClassification, companions: tuple[Companion, ...] = ()):
        self.graph = AnalysisGraph(model, companions)

    def run_landmarks(self, pixel_values: np.ndarray, affines: np.ndarray,
                      windows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outputs = self.graph.landmark_stage(torch.from_numpy(pixel_values), torch.from_numpy(affines),
                                                None if windows is None else torch.from_numpy(windows))
        return {name: value.float().numpy() for name, value in zip(self.graph.landmark_stage.output_names, outputs)}

    def run_graph(self, pixel_values: np.ndarray, crop_affines: np.ndarray, landmark_features: np.ndarray | None,
                  windows: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        inputs = self.graph.inputs(pixel_values, crop_affines, landmark_features, windows)
        with torch.inference_mode():
            outputs = self.graph(*inputs.values())
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


def landmark_onnx_path(path: str | os.PathLike) -> Path:
    """Where the first stage (the landmark net) of the export at `path` is saved."""
    path = Path(path)
    return path.with_name(f"{path.stem}.landmarks.onnx")


def _save_export(module: nn.Module, inputs: dict[str, torch.Tensor], output_names: list[str], path: Path,
                 variadic: bool = False) -> None:
    """Exports `module(*inputs.values())` with a dynamic batch axis on every input, written atomically; `variadic`:
    the module's forward takes `*inputs` (the export then wants the inputs' shapes as one tuple)."""
    batch = torch.export.Dim("batch", min=1)
    shapes = tuple({0: batch} for _ in inputs)
    program = torch.onnx.export(module, tuple(inputs.values()), dynamo=True, input_names=list(inputs), verbose=False,
                                output_names=output_names, dynamic_shapes=(shapes,) if variadic else shapes)
    # a process killed mid-write must not leave a truncated model in the cache
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    program.save(str(partial))
    os.replace(partial, path)


def export_analysis_onnx(model: ETFuserForImageClassification, output_path: str | os.PathLike, image_size: int,
                         companions: tuple[Companion, ...] = ()) -> Path:
    """Exports `AnalysisGraph(model, companions)` (inputs `input_names`) to `output_path` and its landmark stage, if
    any, to `landmark_onnx_path(output_path)`, with a dynamic batch axis; `image_size` is the canonical crop's side."""
    graph = AnalysisGraph(model, companions).eval()
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    example = graph.example_inputs(torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)))
    if graph.landmark_stage is not None:
        stage_inputs = {name.split(".", 1)[1]: value for name, value in example.items()
                        if name.startswith("landmarks.")}
        _save_export(graph.landmark_stage, stage_inputs, graph.landmark_stage.output_names,
                     landmark_onnx_path(output_path))
    _save_export(graph, {name: example[name] for name in graph.input_names}, graph.output_names, output_path,
                 variadic=True)
    return output_path


def cached_onnx_path(model_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                     companions: tuple[Companion, ...] = (), image_size: int = CANONICAL_CROP_SIZE) -> Path:
    """Where the export for canonical crops of side `image_size` is cached: the side is part of the name, since the
    crops' sampling is fixed at export (only the batch axis is dynamic)."""
    name = f"{folder_hash(model_dir, companions)}-{image_size}px.onnx"
    return Path(cache_dir or default_cache_dir()) / "analysis_onnx" / name


def onnx_exports_cached(model_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                        companions: tuple[Companion, ...] = (), int8: bool = False) -> bool:
    """Whether `OnnxBackend(..., int8=int8)` over this folder and these companions finds its exports (and the int8
    copy) in the cache, so that building it exports and quantises nothing."""
    path = cached_onnx_path(model_dir, cache_dir, companions)
    return path.is_file() and (not int8 or int8_onnx_path(path).is_file())


def ensure_analysis_onnx(model: ETFuserForImageClassification, model_dir: str | os.PathLike,
                         image_size: int = CANONICAL_CROP_SIZE, cache_dir: str | os.PathLike | None = None,
                         companions: tuple[Companion, ...] = ()) -> tuple[Path, bool]:
    """The cached export of `model` (loaded from `model_dir`) with `companions`, and whether this call wrote it (the
    landmark stage, written first, is beside it)."""
    path = cached_onnx_path(model_dir, cache_dir, companions, image_size)
    if path.is_file():
        return path, False
    return export_analysis_onnx(model, path, image_size, companions), True


class OnnxBackend(AnalysisBackend):
    """Runs the exported stages with onnxruntime; exports them first when the cache has no copy for this model folder.
    `int8=True`: runs the second stage's int8 copy (`quantize_analysis_onnx`, made once and cached beside it)."""

    def __init__(self, model: ETFuserForImageClassification, model_dir: str | os.PathLike, image_size: int,
                 cache_dir: str | os.PathLike | None = None, companions: tuple[Companion, ...] = (),
                 int8: bool = False):
        self.graph = AnalysisGraph(model, companions).eval()
        self.path, self.exported = ensure_analysis_onnx(model, model_dir, image_size, cache_dir, companions)
        self.landmark_session = None
        if self.graph.landmark_stage is not None:  # fp32 always, and the calibration's first stage
            self.landmark_session = cpu_session(landmark_onnx_path(self.path))
        if int8:
            quantized = int8_onnx_path(self.path)
            if not quantized.is_file():
                # calibrated on what analyze feeds: canonical crops, each net on its own crop of them
                faces = as_canonical_crops(calibration_faces(image_size // 2), image_size)
                geometry = FaceGeometry.of_canonical_crops(len(faces), image_size, image_bottom_grey(faces))
                _, crop_affines, features, windows = self.first_stage(faces, geometry)
                calibration = {name: value.numpy() for name, value in
                               self.graph.inputs(faces, crop_affines, features, windows).items()}
                quantize_analysis_onnx(self.path, quantized, int8_weight_prefixes(model, companions), calibration)
            self.path = quantized
        self.session = cpu_session(self.path)
        self.output_names = [output.name for output in self.session.get_outputs()]

    def run_landmarks(self, pixel_values: np.ndarray, affines: np.ndarray,
                      windows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        inputs = {"pixel_values": pixel_values, "affines": affines}
        if windows is not None:
            inputs["windows"] = windows
        outputs = self.landmark_session.run(None, inputs)
        return dict(zip(self.graph.landmark_stage.output_names, outputs))

    def run_graph(self, pixel_values: np.ndarray, crop_affines: np.ndarray, landmark_features: np.ndarray | None,
                  windows: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        inputs = {name: value.numpy() for name, value in
                  self.graph.inputs(pixel_values, crop_affines, landmark_features, windows).items()}
        return dict(zip(self.output_names, self.session.run(None, inputs)))


__all__ = ["CALIBRATION_FACES", "CALIBRATION_SEED", "INT8_MODEL_TYPES", "INT8_VERSION", "READOUT_KINDS",
           "AnalysisBackend", "AnalysisGraph", "LandmarkStage", "OnnxBackend", "TorchBackend", "as_canonical_crops",
           "cached_onnx_path", "landmark_onnx_path", "whole_input_affines", "calibration_faces",
           "ensure_analysis_onnx", "export_analysis_onnx", "folder_hash", "int8_onnx_path", "int8_weight_prefixes",
           "onnx_exports_cached", "quantize_analysis_onnx", "readout_priors"]
