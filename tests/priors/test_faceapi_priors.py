"""face-api priors (recognition + 68-point landmarks): conversion from the npm package, equivalence with the original
TF.js runtime (fixtures from tests/priors/fixtures/generate/faceapi_reference.mjs), Auto loading, bad inputs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, AutoModel

from etfuser_hf.models.configuration_face_priors import (
    FACE_PRIOR_CONFIG_CLASSES as FACEAPI_CONFIG_CLASSES,
)
from etfuser_hf.models.configuration_face_priors import (
    FACEAPI_MEAN_RGB,
    FaceApiLandmarkConfig,
    FaceApiRecognitionConfig,
)
from etfuser_hf.models.modeling_face_priors import (
    FACE_PRIOR_MODEL_CLASSES as FACEAPI_MODEL_CLASSES,
)
from etfuser_hf.models.modeling_face_priors import (
    FaceApiLandmarkModel,
    FaceApiRecognitionModel,
)
from etfuser_hf.priors.convert_faceapi import (
    FACEAPI_NPM_PACKAGE,
    FACEAPI_TARBALL_SHA256,
    FACEAPI_VERSION,
    RECOGNITION_MANIFEST,
    FaceApiWeightsError,
    convert_faceapi_landmarks,
    convert_faceapi_recognition,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "faceapi"
TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures: the npm package (fetched once, sha256-checked, cached) and its converted folders
# ---------------------------------------------------------------------------------------------------------------------


def _downloads_dir() -> Path:
    return Path(os.environ.get("ETFUSER_CACHE", "~/.cache/etfuser_hf")).expanduser() / "downloads"


@pytest.fixture(scope="session")
def faceapi_model_dir() -> Path:
    """face-api's extracted `package/model/` (plus `package/LICENSE`), from `npm pack` into the download cache."""
    downloads = _downloads_dir()
    extracted = downloads / f"vladmandic-face-api-{FACEAPI_VERSION}"
    if (extracted / "package" / "model" / RECOGNITION_MANIFEST).is_file():
        return extracted / "package" / "model"
    downloads.mkdir(parents=True, exist_ok=True)
    tarball = downloads / f"vladmandic-face-api-{FACEAPI_VERSION}.tgz"
    if not tarball.is_file():
        result = subprocess.run(
            ["npm", "pack", f"{FACEAPI_NPM_PACKAGE}@{FACEAPI_VERSION}", "--pack-destination", str(downloads)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            pytest.fail(
                f"npm pack {FACEAPI_NPM_PACKAGE}@{FACEAPI_VERSION} failed (the npm registry is needed once): "
                f"{result.stderr}"
            )
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != FACEAPI_TARBALL_SHA256:
        tarball.unlink()
        pytest.fail(f"{tarball}: sha256 {digest} != expected {FACEAPI_TARBALL_SHA256}; removed, rerun to refetch.")
    staging = Path(tempfile.mkdtemp(dir=downloads))
    with tarfile.open(tarball) as archive:
        members = [
            member for member in archive.getmembers()
            if member.name.startswith("package/model/") or member.name == "package/LICENSE"
        ]
        archive.extractall(staging, members=members, filter="data")
    shutil.rmtree(extracted, ignore_errors=True)
    staging.rename(extracted)
    return extracted / "package" / "model"


@pytest.fixture(scope="session")
def converted(faceapi_model_dir, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("faceapi_converted")
    return {
        "recognition": convert_faceapi_recognition(faceapi_model_dir, out / "recognition"),
        "landmarks": convert_faceapi_landmarks(faceapi_model_dir, out / "landmarks"),
        "landmarks_tiny": convert_faceapi_landmarks(faceapi_model_dir, out / "landmarks_tiny", tiny=True),
    }


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads((FIXTURES / "reference.json").read_text())


def preprocess(pixels: np.ndarray, config) -> torch.Tensor:
    """uint8 RGB (B, H, W, 3) -> the prior input contract: [0, 1] * pixel_scale, then (x - mean) / std."""
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(config.image_mean).view(1, -1, 1, 1)
    std = torch.tensor(config.image_std).view(1, -1, 1, 1)
    return (images * config.pixel_scale - mean) / std


def load_inputs(size: int) -> np.ndarray:
    return np.load(FIXTURES / f"inputs_{size}.npy")


# ---------------------------------------------------------------------------------------------------------------------
# Equivalence with the original TF.js runtime
# ---------------------------------------------------------------------------------------------------------------------


def test_reference_inputs_are_reproducible():
    spec = importlib.util.spec_from_file_location(
        "faceapi_inputs", REPO_ROOT / "tests" / "priors" / "fixtures" / "generate" / "faceapi_inputs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(module.SEED)
    for size in module.SIZES:
        np.testing.assert_array_equal(module.make_inputs(size, rng), load_inputs(size))


@pytest.mark.parametrize(
    ("name", "model_class", "size", "outputs"),
    [
        ("recognition", FaceApiRecognitionModel, 150, ("logits",)),
        ("landmarks", FaceApiLandmarkModel, 112, ("logits", "pooler_output")),
        ("landmarks_tiny", FaceApiLandmarkModel, 112, ("logits", "pooler_output")),
    ],
)
def test_converted_model_matches_faceapi(converted, reference, name, model_class, size, outputs):
    model = model_class.from_pretrained(converted[name], dtype=torch.float32).eval()
    with torch.no_grad():
        result = model(preprocess(load_inputs(size), model.config))
    for output in outputs:
        expected = torch.tensor(reference[name][output], dtype=torch.float32)
        actual = getattr(result, output)
        assert actual.shape == expected.shape
        max_abs = (actual - expected).abs().max().item()
        assert max_abs <= TOLERANCE, f"{name}.{output}: max abs diff {max_abs:.3g} > {TOLERANCE}"


def test_descriptor_separates_same_face_from_noise(converted):
    model = FaceApiRecognitionModel.from_pretrained(converted["recognition"], dtype=torch.float32).eval()
    face, noise = preprocess(load_inputs(150), model.config)
    with torch.no_grad():
        descriptors = model(torch.stack([face, face.flip(-1), noise])).logits
    # face-api's documented rule: same identity below 0.6 Euclidean distance.
    assert torch.dist(descriptors[0], descriptors[1]) < 0.6
    assert torch.dist(descriptors[0], descriptors[2]) > 0.6


def test_landmarks_fall_on_the_face(converted):
    model = FaceApiLandmarkModel.from_pretrained(converted["landmarks"], dtype=torch.float32).eval()
    with torch.no_grad():
        points = model(preprocess(load_inputs(112)[:1], model.config)).logits.view(68, 2)
    assert points.min() >= 0 and points.max() <= 1
    # iBUG-68 order: 36-47 eyes, 27-35 nose, 48-67 mouth, top to bottom; 36-41 is the image-left eye.
    eyes_y, nose_y, mouth_y = points[36:48, 1].mean(), points[27:36, 1].mean(), points[48:68, 1].mean()
    assert eyes_y < nose_y < mouth_y
    assert points[36:42, 0].mean() < points[42:48, 0].mean()


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face integration
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["recognition", "landmarks"])
def test_automodel_loads_converted_folder(converted, name):
    for model_type, config_class in FACEAPI_CONFIG_CLASSES.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, FACEAPI_MODEL_CLASSES[model_type], exist_ok=True)
    folder = converted[name]
    assert sorted(path.name for path in folder.iterdir()) == ["NOTICE", "config.json", "model.safetensors"]
    assert "Vladimir Mandic" in (folder / "NOTICE").read_text()
    model = AutoModel.from_pretrained(folder, dtype=torch.float32)
    expected_class = FaceApiRecognitionModel if name == "recognition" else FaceApiLandmarkModel
    assert type(model) is expected_class
    config = model.config
    assert (config.pixel_scale, config.color_mode, config.image_mean) == (255.0, "rgb", FACEAPI_MEAN_RGB)
    with torch.no_grad():
        output = model(torch.zeros(1, 3, config.image_size, config.image_size))
    assert output.pooler_output.shape == (1, config.hidden_size)


@pytest.mark.parametrize(
    ("config", "image_size", "logits_dim", "map_side"),
    [
        (FaceApiRecognitionConfig(), 150, 128, 2),
        (FaceApiLandmarkConfig(), 112, 136, 7),
        (FaceApiLandmarkConfig(hidden_size=128, hidden_sizes=[32, 64, 128], layers_per_block=3), 112, 136, 14),
    ],
)
def test_random_model_contract(tmp_path, config, image_size, logits_dim, map_side):
    model = FACEAPI_MODEL_CLASSES[config.model_type](config).eval()
    pixel_values = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = model(pixel_values, output_hidden_states=True)
        as_tuple = model(pixel_values, return_dict=False)
    assert output.logits.shape == (2, logits_dim)
    assert output.pooler_output.shape == (2, config.hidden_size)
    assert output.last_hidden_state.shape == (2, config.hidden_size, map_side, map_side)
    assert output.hidden_states[-1] is not None and output.hidden_states[-1].shape == output.last_hidden_state.shape
    torch.testing.assert_close(as_tuple[2], output.logits)

    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values).logits, output.logits)

    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert torch.isfinite(model(pixel_values).logits.float()).all()

    exported = torch.export.export(model, (pixel_values,))
    torch.testing.assert_close(exported.module()(pixel_values).logits, output.logits)


# ---------------------------------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_class", "kwargs", "message"),
    [
        (FaceApiRecognitionConfig, {"hidden_size": 128}, "hidden_size: must equal hidden_sizes"),
        (FaceApiRecognitionConfig, {"depths": [1, 1]}, "hidden_sizes and depths"),
        (FaceApiRecognitionConfig, {"hidden_sizes": [64, 32], "depths": [1, 1], "hidden_size": 32}, "non-decreasing"),
        (FaceApiLandmarkConfig, {"color_mode": "bgr"}, "color_mode"),
        (FaceApiLandmarkConfig, {"image_mean": [0.0, 0.0]}, "image_mean: expected 3 values"),
        (FaceApiLandmarkConfig, {"image_std": [1.0, 0.0, 1.0]}, "image_std"),
        (FaceApiLandmarkConfig, {"layers_per_block": 0}, "layers_per_block"),
    ],
)
def test_config_rejects_bad_values(config_class, kwargs, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        config_class(**kwargs)


def test_wrong_pixel_values_shape_is_named():
    model = FaceApiLandmarkModel(FaceApiLandmarkConfig()).eval()
    with pytest.raises(ValueError, match=r"pixel_values: expected a tensor of shape \(batch_size, 3, 112, 112\)"):
        model(torch.zeros(1, 3, 150, 150))


@pytest.fixture
def recognition_copy(faceapi_model_dir, tmp_path) -> Path:
    """A writable copy of the recognition manifest + shard, to damage."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(faceapi_model_dir / RECOGNITION_MANIFEST, model_dir)
    shutil.copy(faceapi_model_dir / "face_recognition_model.bin", model_dir)
    return model_dir


def _assert_nothing_written(out_parent: Path, allowed: set[str]) -> None:
    assert {path.name for path in out_parent.iterdir()} == allowed


def test_truncated_shard_fails_clearly_and_writes_nothing(recognition_copy, tmp_path):
    shard = recognition_copy / "face_recognition_model.bin"
    shard.write_bytes(shard.read_bytes()[:-1000])
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    with pytest.raises(FaceApiWeightsError, match=r"face_recognition_model\.bin.*truncated or corrupt"):
        convert_faceapi_recognition(recognition_copy, out_parent / "face_recognition")
    _assert_nothing_written(out_parent, set())


def test_corrupt_shard_keeps_previous_output(recognition_copy, tmp_path):
    shard = recognition_copy / "face_recognition_model.bin"
    shard.write_bytes(shard.read_bytes() + b"\0" * 7)
    out_dir = tmp_path / "face_recognition"
    out_dir.mkdir()
    (out_dir / "config.json").write_text("{}")
    with pytest.raises(FaceApiWeightsError, match="need 6444032"):
        convert_faceapi_recognition(recognition_copy, out_dir)
    assert [path.name for path in out_dir.iterdir()] == ["config.json"]
    _assert_nothing_written(tmp_path, {"model", "face_recognition"})


def test_missing_shard_is_named(recognition_copy, tmp_path):
    (recognition_copy / "face_recognition_model.bin").unlink()
    with pytest.raises(FaceApiWeightsError, match=r"shard\(s\) .*face_recognition_model\.bin.* not found"):
        convert_faceapi_recognition(recognition_copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_malformed_manifest_and_missing_model_dir(recognition_copy, tmp_path):
    (recognition_copy / RECOGNITION_MANIFEST).write_text("{not json")
    with pytest.raises(FaceApiWeightsError, match="not a TF.js weights manifest"):
        convert_faceapi_recognition(recognition_copy, tmp_path / "out")
    with pytest.raises(FaceApiWeightsError, match="model_dir: .* is not a directory"):
        convert_faceapi_landmarks(tmp_path / "absent", tmp_path / "out")
    with pytest.raises(FaceApiWeightsError, match=r"model_dir: weights manifest .*face_landmark_68_model.* not found"):
        convert_faceapi_landmarks(recognition_copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_landmark_net_runs_channels_last_with_the_same_outputs_and_gradients():
    """The landmark net computes in channels-last memory (faster on CPU) and still returns contiguous tensors with the
    values and gradients of the plain NCHW computation."""
    config = FaceApiLandmarkConfig(hidden_size=64, hidden_sizes=[16, 32, 64], layers_per_block=2)
    assert FaceApiLandmarkModel._channels_last_input
    model = FaceApiLandmarkModel(config).train()
    pixel_values = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))

    def run(channels_last: bool):
        model._channels_last_input = channels_last
        model.zero_grad()
        output = model(pixel_values, output_hidden_states=True)
        output.logits.square().sum().backward()
        return output, [parameter.grad.clone() for parameter in model.parameters()]

    fast, fast_grads = run(True)
    plain, plain_grads = run(False)
    assert fast.last_hidden_state.is_contiguous() and all(state.is_contiguous() for state in fast.hidden_states)
    torch.testing.assert_close(fast.logits, plain.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.last_hidden_state, plain.last_hidden_state, rtol=1e-5, atol=1e-5)
    for fast_grad, plain_grad in zip(fast_grads, plain_grads):
        torch.testing.assert_close(fast_grad, plain_grad, rtol=1e-4, atol=1e-5)
