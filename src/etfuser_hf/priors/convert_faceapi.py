"""Converts face-api's TF.js weights (npm `@vladmandic/face-api` 1.7.15, `package/model/`) into Hugging Face folders
(`config.json` + `model.safetensors`) for `FaceApiRecognitionModel` and `FaceApiLandmarkModel`.

Data-only: the weights manifest is JSON and the `.bin` shards are raw little-endian arrays (uint8-quantised with a
per-tensor `value = q * scale + min`, or plain float32), read with numpy. No TensorFlow, no pickle.

    python -m etfuser_hf.priors.convert_faceapi package/model out_dir
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..models.configuration_face_priors import (
    FaceApiLandmarkConfig,
    FaceApiRecognitionConfig,
)
from ..models.modeling_face_priors import (
    FaceApiLandmarkModel,
    FaceApiRecognitionModel,
    recognition_block_names,
)

FACEAPI_NPM_PACKAGE = "@vladmandic/face-api"
FACEAPI_VERSION = "1.7.15"
# sha256 of the tarball `npm pack @vladmandic/face-api@1.7.15` writes (vladmandic-face-api-1.7.15.tgz).
FACEAPI_TARBALL_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
FACEAPI_NOTICE = (
    "Converted from the npm package @vladmandic/face-api 1.7.15 (model/{manifest}),\n"
    "MIT License, Copyright (c) Vladimir Mandic. The weights derive from face-api.js by Vincent Mühler (MIT),\n"
    "whose nets follow dlib's models. Re-implemented in PyTorch by etfuser_hf.\n"
)

RECOGNITION_MANIFEST = "face_recognition_model-weights_manifest.json"
LANDMARK_MANIFEST = "face_landmark_68_model-weights_manifest.json"
LANDMARK_TINY_MANIFEST = "face_landmark_68_tiny_model-weights_manifest.json"

# Bytes per stored element, by the dtype found on disk (the quantised dtype when a tensor is quantised).
_STORED_DTYPES = {
    "uint8": np.uint8, "uint16": np.uint16, "float16": np.float16, "float32": np.float32, "int32": np.int32
}


class FaceApiWeightsError(ValueError):
    """A face-api manifest or weight shard is missing, truncated or inconsistent."""


def read_tfjs_weights(manifest_path: Path) -> dict[str, np.ndarray]:
    """Reads a TF.js `*-weights_manifest.json` and its `.bin` shards into float32 numpy arrays (dequantised).

    Raises `FaceApiWeightsError` naming the file when the manifest is malformed, a shard is missing, or the shards'
    byte length differs from what the manifest's shapes and dtypes require.
    """
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise FaceApiWeightsError(f"model_dir: weights manifest {manifest_path} not found.")
    try:
        groups = json.loads(manifest_path.read_text())
        specs = [(group["paths"], group["weights"]) for group in groups]
    except (json.JSONDecodeError, TypeError, KeyError) as error:
        raise FaceApiWeightsError(f"{manifest_path}: not a TF.js weights manifest ({error}).") from error

    weights: dict[str, np.ndarray] = {}
    for paths, entries in specs:
        shards = [manifest_path.parent / path for path in paths]
        missing = [str(shard) for shard in shards if not shard.is_file()]
        if missing:
            raise FaceApiWeightsError(f"{manifest_path}: weight shard(s) {missing} not found.")
        buffer = b"".join(shard.read_bytes() for shard in shards)
        layout = [_entry_layout(manifest_path, entry) for entry in entries]
        expected = sum(nbytes for _, nbytes in layout)
        if len(buffer) != expected:
            raise FaceApiWeightsError(
                f"{manifest_path}: shard(s) {[shard.name for shard in shards]} hold {len(buffer)} bytes but the "
                f"manifest's shapes and dtypes need {expected}; the download is truncated or corrupt."
            )
        offset = 0
        for entry, (stored_dtype, nbytes) in zip(entries, layout):
            count = nbytes // np.dtype(stored_dtype).itemsize
            raw = np.frombuffer(buffer, dtype=stored_dtype, count=count, offset=offset)
            offset += nbytes
            weights[entry["name"]] = _dequantise(raw, entry).reshape(entry["shape"])
    return weights


def _entry_layout(manifest_path: Path, entry: dict) -> tuple[type, int]:
    """(stored numpy dtype, byte length) of one manifest entry."""
    quantization = entry.get("quantization")
    dtype_name = quantization["dtype"] if quantization else entry.get("dtype", "float32")
    if dtype_name not in _STORED_DTYPES:
        raise FaceApiWeightsError(
            f"{manifest_path}: weight {entry.get('name')!r} has unsupported dtype {dtype_name!r}."
        )
    if quantization and dtype_name in ("uint8", "uint16") and not {"scale", "min"} <= quantization.keys():
        raise FaceApiWeightsError(f"{manifest_path}: weight {entry.get('name')!r} is quantised without scale/min.")
    stored_dtype = _STORED_DTYPES[dtype_name]
    return stored_dtype, math.prod(entry["shape"]) * np.dtype(stored_dtype).itemsize


def _dequantise(raw: np.ndarray, entry: dict) -> np.ndarray:
    """TF.js's rule: `q * scale + min`, evaluated in double precision and stored as float32 (as JS does)."""
    quantization = entry.get("quantization")
    if quantization and quantization["dtype"] in ("uint8", "uint16"):
        return (raw.astype(np.float64) * quantization["scale"] + quantization["min"]).astype(np.float32)
    return raw.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# TF layouts -> PyTorch layouts
# ---------------------------------------------------------------------------------------------------------------------


def _conv_weight(filters: np.ndarray) -> np.ndarray:
    """TF conv filters (kh, kw, in, out) -> PyTorch (out, in, kh, kw)."""
    return filters.transpose(3, 2, 0, 1)


def _depthwise_weight(filters: np.ndarray) -> np.ndarray:
    """TF depthwise filters (kh, kw, channels, 1) -> PyTorch grouped conv (channels, 1, kh, kw)."""
    return filters.transpose(2, 3, 0, 1)


class _WeightTaker:
    """Hands out manifest tensors by name and reports any tensor left unused, so a layout mismatch cannot pass
    silently."""

    def __init__(self, weights: dict[str, np.ndarray], source: str):
        self.weights = dict(weights)
        self.source = source

    def __call__(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise FaceApiWeightsError(f"{self.source}: expected weight {name!r} is missing from the manifest.")
        return self.weights.pop(name)

    def finish(self) -> None:
        if self.weights:
            raise FaceApiWeightsError(f"{self.source}: unexpected extra weights {sorted(self.weights)}.")


def _folded_conv(take: _WeightTaker, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """face-api's conv + bias followed by a per-channel affine `scale` layer, folded into one conv (in float64)."""
    filters = take(f"{prefix}/conv/filters").astype(np.float64)
    bias = take(f"{prefix}/conv/bias").astype(np.float64)
    gamma = take(f"{prefix}/scale/weights").astype(np.float64)
    beta = take(f"{prefix}/scale/biases").astype(np.float64)
    weight = _conv_weight(filters) * gamma[:, None, None, None]
    return weight.astype(np.float32), (bias * gamma + beta).astype(np.float32)


def recognition_state_dict(weights: dict[str, np.ndarray], config: FaceApiRecognitionConfig) -> dict[str, np.ndarray]:
    """Maps FaceRecognitionNet's manifest tensors onto `FaceApiRecognitionModel`'s parameter names."""
    take = _WeightTaker(weights, "face recognition manifest")
    state = {}
    stem = _folded_conv(take, f"conv{config.hidden_sizes[0]}_down")
    state["embeddings.conv.weight"], state["embeddings.conv.bias"] = stem
    for index, name in enumerate(recognition_block_names(config)):
        for conv in ("conv1", "conv2"):
            key = f"encoder.blocks.{index}.{conv}"
            state[f"{key}.weight"], state[f"{key}.bias"] = _folded_conv(take, f"{name}/{conv}")
    state["head.weight"] = take("fc").T
    take.finish()
    return state


def landmark_state_dict(weights: dict[str, np.ndarray], config: FaceApiLandmarkConfig) -> dict[str, np.ndarray]:
    """Maps FaceLandmark68(Tiny)Net's manifest tensors onto `FaceApiLandmarkModel`'s parameter names."""
    take = _WeightTaker(weights, "face landmark manifest")
    state = {}
    for block in range(len(config.hidden_sizes)):
        for layer in range(config.layers_per_block):
            source, target = f"dense{block}/conv{layer}", f"encoder.blocks.{block}.layers.{layer}"
            if block == 0 and layer == 0:
                state[f"{target}.weight"] = _conv_weight(take(f"{source}/filters"))
                state[f"{target}.bias"] = take(f"{source}/bias")
            else:
                state[f"{target}.depthwise.weight"] = _depthwise_weight(take(f"{source}/depthwise_filter"))
                state[f"{target}.pointwise.weight"] = _conv_weight(take(f"{source}/pointwise_filter"))
                state[f"{target}.pointwise.bias"] = take(f"{source}/bias")
    state["head.weight"] = take("fc/weights").T
    state["head.bias"] = take("fc/bias")
    take.finish()
    return state


# ---------------------------------------------------------------------------------------------------------------------
# Conversion entry points
# ---------------------------------------------------------------------------------------------------------------------


def _convert(
    model_dir: Path,
    out_dir: Path,
    manifest_name: str,
    model_class: type,
    config,
    to_state_dict: Callable[[dict[str, np.ndarray], object], dict[str, np.ndarray]],
) -> Path:
    """Reads and validates everything first, then writes into a temporary sibling folder that is renamed onto
    `out_dir` only once complete: a failure never leaves a half-written `out_dir`."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not model_dir.is_dir():
        raise FaceApiWeightsError(f"model_dir: {model_dir} is not a directory (expected face-api's package/model/).")
    weights = read_tfjs_weights(model_dir / manifest_name)
    model = model_class(config)
    state = {
        name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in to_state_dict(weights, config).items()
    }
    expected = model.state_dict()
    mismatched = [name for name, value in state.items() if name in expected and value.shape != expected[name].shape]
    if set(state) != set(expected) or mismatched:
        raise FaceApiWeightsError(
            f"{model_dir / manifest_name}: weights do not fit {model_class.__name__} (missing "
            f"{sorted(set(expected) - set(state))}, unexpected {sorted(set(state) - set(expected))}, wrong shape "
            f"{mismatched})."
        )
    model.load_state_dict(state, strict=True)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would make a shared cache unreadable to other users
        model.save_pretrained(staging, safe_serialization=True)
        notice = FACEAPI_NOTICE.format(manifest=manifest_name)
        licence = model_dir.parent / "LICENSE"
        if licence.is_file():
            notice += "\n" + licence.read_text()
        (staging / "NOTICE").write_text(notice)
        # Swap by renames so an existing out_dir is only removed once the new folder is complete.
        previous = out_dir.with_name(f"{staging.name}.previous") if out_dir.exists() else None
        if previous is not None:
            out_dir.rename(previous)
        staging.rename(out_dir)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def convert_faceapi_recognition(model_dir: Path, out_dir: Path) -> Path:
    """Converts face-api's FaceRecognitionNet from `model_dir` (the extracted `package/model/`) into `out_dir`
    (`config.json`, `model.safetensors`, `NOTICE`); returns `out_dir`."""
    return _convert(
        model_dir,
        out_dir,
        RECOGNITION_MANIFEST,
        FaceApiRecognitionModel,
        FaceApiRecognitionConfig(),
        recognition_state_dict,
    )


def convert_faceapi_landmarks(model_dir: Path, out_dir: Path, tiny: bool = False) -> Path:
    """Converts face-api's FaceLandmark68Net (or, with `tiny=True`, FaceLandmark68TinyNet) from `model_dir` (the
    extracted `package/model/`) into `out_dir` (`config.json`, `model.safetensors`, `NOTICE`); returns `out_dir`."""
    if tiny:
        config = FaceApiLandmarkConfig(hidden_size=128, hidden_sizes=[32, 64, 128], layers_per_block=3)
        manifest = LANDMARK_TINY_MANIFEST
    else:
        config, manifest = FaceApiLandmarkConfig(), LANDMARK_MANIFEST
    return _convert(model_dir, out_dir, manifest, FaceApiLandmarkModel, config, landmark_state_dict)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="face-api's extracted package/model/ folder")
    parser.add_argument("out_dir", type=Path, help="writes <out_dir>/face_recognition and <out_dir>/face_landmarks")
    parser.add_argument("--tiny-landmarks", action="store_true", help="convert FaceLandmark68TinyNet instead")
    args = parser.parse_args(argv)
    print(convert_faceapi_recognition(args.model_dir, args.out_dir / "face_recognition"))
    print(convert_faceapi_landmarks(args.model_dir, args.out_dir / "face_landmarks", tiny=args.tiny_landmarks))


if __name__ == "__main__":
    main()
