"""Where the ensemble token looks, outside the run folder: `FaceAnalyzer.attention_maps`, `analyze(...,
attention_maps=folder)` and `etfuser analyze --attention-maps` on real faces (scikit-image's astronaut, public domain)
through a model that reads the real FER prior as a 2 x 2 grid. Select with `-k "grid or spatial or attention"`."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch
from conftest import tiny_vit_config

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.analysis import pipeline
from etfuser_hf.analysis.attention_maps import attention_strip, grid_attention
from etfuser_hf.analysis.media import iter_media, write_video
from etfuser_hf.analysis.pipeline import FaceAnalyzer, analyze
from etfuser_hf.hub.cli import main as cli_main
from etfuser_hf.priors.convert_face_priors import ensure_face_priors


def save_model(folder, feature: dict) -> str:
    """A saved ET-Fuser over the real expression prior read as `feature` (random fusion, tiny ViT canonical model)."""
    dirs = ensure_face_priors(names=["expression", "mtcnn"])
    torch.manual_seed(0)
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={"expression": {"model": dirs["expression"], **feature}},
        backbone=tiny_vit_config(image_size=112, patch_size=16), image_size=112, hidden_size=32,
        num_attention_heads=4, intermediate_size=64, num_labels=3)
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 112, "width": 112}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def grid_model(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("grid-model"), {"feature": "grid", "grid_size": 2})


@pytest.fixture(scope="module")
def pooled_model(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("pooled-model"), {})


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The astronaut (one face) and a grey image without a face."""
    folder = tmp_path_factory.mktemp("photos")
    PIL.Image.fromarray(skimage.data.astronaut()).save(folder / "astronaut.png")
    PIL.Image.new("RGB", (200, 160), (90, 90, 90)).save(folder / "blank.png")
    return folder


def test_attention_maps_of_detected_faces_are_the_models_grid_attention_on_the_aligned_crops(grid_model, photos):
    analyzer = FaceAnalyzer(grid_model, extras=())
    detected = analyzer.detect(list(iter_media([str(photos / "astronaut.png")])))
    maps = analyzer.attention_maps(detected)
    assert list(maps) == ["expression"] and maps["expression"].shape == (1, 2, 2)
    np.testing.assert_allclose(maps["expression"].sum(axis=(1, 2)), 1.0, rtol=1e-5)
    pixels = torch.from_numpy(detected.crops).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(maps["expression"], grid_attention(analyzer.loaded.model, pixels)["expression"],
                               rtol=1e-5, atol=1e-7)
    strip = attention_strip(PIL.Image.fromarray(detected.crops[0]), {"expression": maps["expression"][0]})
    assert strip.size == (2 * 112 + 4, 112)  # the face, then its one overlay
    with pytest.raises(ValueError, match="folder: no folder given and the analyzer was made without attention_maps="):
        analyzer.save_attention_maps(detected)


def test_analyze_writes_one_figure_per_image_with_faces_and_caps_each_video(grid_model, photos, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(pipeline, "ATTENTION_FRAMES_PER_VIDEO", 2)
    astronaut = np.asarray(PIL.Image.open(photos / "astronaut.png").convert("RGB").resize((256, 256)))
    video = write_video(tmp_path / "clip.mp4", [astronaut] * 4, fps=4)
    folder = tmp_path / "maps"
    table = analyze([photos / "astronaut.png", photos / "blank.png", video], model=grid_model, batch_size=3,
                    extras=(), progress=False, attention_maps=folder)
    assert (table["status"] == "ok").sum() == 5  # the astronaut, and her face in each of the four frames
    written = sorted(path.name for path in folder.iterdir())
    astronaut_name = str(photos / "astronaut.png").replace("/", "_").strip("_")
    video_name = str(video).replace("/", "_").strip("_")
    # the face-less image has none; the video only its first two frames with faces, across detection chunks
    assert written == sorted([f"{astronaut_name}_frame000000.png", f"{video_name}_frame000000.png",
                              f"{video_name}_frame000001.png"])
    figure = PIL.Image.open(folder / written[0])
    assert figure.width > 200 and figure.height > 150


def test_attention_maps_are_refused_for_a_model_without_grid_tokens(pooled_model, tmp_path):
    folder = tmp_path / "maps"
    with pytest.raises(ValueError, match=r"attention_maps: this model's ensemble token attends over no grid .*"
                                         r"expression: pooled"):
        FaceAnalyzer(pooled_model, extras=(), attention_maps=folder)
    assert not folder.exists()
    analyzer = FaceAnalyzer(pooled_model, extras=())
    assert analyzer.attention_maps(analyzer.detect(list(iter_media([])))) == {}


def test_cli_analyze_attention_maps(grid_model, pooled_model, photos, tmp_path, capsys):
    cli_main(["analyze", str(photos / "astronaut.png"), "--model", grid_model, "--output", str(tmp_path / "t.csv"),
              "--attention-maps", str(tmp_path / "maps"), "--no-progress", "--extras"])
    assert len(list((tmp_path / "maps").glob("*astronaut.png_frame000000.png"))) == 1
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["analyze", str(photos / "astronaut.png"), "--model", pooled_model, "--output",
                  str(tmp_path / "u.csv"), "--attention-maps", str(tmp_path / "none"), "--no-progress", "--extras"])
    assert exit_info.value.code == 2
    assert "etfuser analyze: error: attention_maps: this model's ensemble token" in capsys.readouterr().err
    assert not (tmp_path / "u.csv").exists() and not (tmp_path / "none").exists()
