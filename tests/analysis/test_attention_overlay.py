"""Where the ensemble token looks, outside the run folder: `FaceAnalyzer.attention_maps`, `analyze(...,
attention_maps=folder)` and `etfuser analyze --attention-maps` on real faces (scikit-image's astronaut, public domain)
through models that read real priors as 2 x 2 grids: the maps come from the table's own forward (canonical crops and
every network's crop, the landmark stage's points placing the dlib chip), and each grid is drawn over its own
network's crop. Select with `-k "grid or spatial or attention"`."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch
from conftest import tiny_vit_config

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.analysis import pipeline
from etfuser_hf.analysis.attention_maps import CANONICAL, attention_grids, attention_strip, grid_attention
from etfuser_hf.analysis.media import iter_media, write_video
from etfuser_hf.analysis.pipeline import FaceAnalyzer, analyze
from etfuser_hf.hub.cli import main as cli_main
from etfuser_hf.priors import crop_geometry, crop_rules
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.crop_plan import READS_68_LANDMARKS


def save_model(folder, feature: dict, priors: tuple[str, ...] = ("expression",), **settings) -> str:
    """A saved ET-Fuser over real priors each read as `feature` (random fusion, tiny ViT canonical model)."""
    dirs = ensure_face_priors(names=list(priors) + ["mtcnn"])
    torch.manual_seed(0)
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={name: {"model": dirs[name], **feature} for name in priors},
        backbone=tiny_vit_config(image_size=112, patch_size=16), image_size=112, hidden_size=32,
        num_attention_heads=4, intermediate_size=64, num_labels=3, **settings)
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 112, "width": 112}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def grid_model(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("grid-model"), {"feature": "grid", "grid_size": 2})


@pytest.fixture(scope="module")
def chip_model(tmp_path_factory):
    """The dlib age net (its chip placed by face-api's 68 landmarks, run first) and the FER net as 2 x 2 grids, and the
    canonical model's own 2 x 2 tokens."""
    return save_model(tmp_path_factory.mktemp("chip-model"), {"feature": "grid", "grid_size": 2},
                      priors=("age", "expression"), fusion_mode="canonical_tokens")


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


def table_run(analyzer: FaceAnalyzer, detected) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the grids of the fusion attention in the forward that filled the table, the backend's outputs)."""
    model, captured = analyzer.loaded.model, []
    hook = model.register_forward_hook(lambda module, args, output: captured.append(output.attentions[-1]))
    try:
        analyzer.predict(detected)
    finally:
        hook.remove()
    assert len(captured) == 1  # one forward per batch of faces, the table's
    pixel_values = np.ascontiguousarray(detected.canonical.transpose(0, 3, 1, 2), np.float32) / np.float32(255)
    return attention_grids(captured[0], model), analyzer.run(pixel_values, detected.geometry())


@pytest.mark.parametrize("name", ["grid_model", "chip_model"])
def test_attention_maps_are_those_of_the_tables_forward_and_each_grid_is_drawn_over_its_own_crop(name, request,
                                                                                                photos):
    analyzer = FaceAnalyzer(request.getfixturevalue(name), extras=())
    model = analyzer.loaded.model
    photo = np.asarray(PIL.Image.open(photos / "astronaut.png").convert("RGB"))
    detected = analyzer.detect(list(iter_media([str(photos / "astronaut.png")])))
    expected, outputs = table_run(analyzer, detected)
    panels = analyzer.attention(detected)
    grids = ["expression"] if name == "grid_model" else ["age", "expression", CANONICAL]
    assert list(panels.maps) == grids and all(grid.shape == (1, 2, 2) for grid in panels.maps.values())
    for grid in grids:
        np.testing.assert_allclose(panels.maps[grid], expected[grid], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(panels.maps[grid].sum(axis=(1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(analyzer.attention_maps(detected)["expression"], panels.maps["expression"])
    # not the maps of the ArcFace crop without prior_crops (what the figures showed before): with random fusion
    # weights every map is near 0.25 a cell, yet they differ several times beyond the tolerance the equality allows
    arcface = torch.from_numpy(detected.crops).permute(0, 3, 1, 2).float() / 255
    assert np.abs(grid_attention(model, arcface)["expression"] - panels.maps["expression"]).max() > 2e-4

    # each overlay's base image is that network's own crop of the face, cut from the photo by its rule (the dlib chip
    # by dlib's five points, the others by the landmarks the table reports), in colour, at the panels' 112 px
    faces = detected.geometry()
    for grid in grids:
        config = model.config.backbone.config if grid == CANONICAL else model.etfuser.priors[grid].config
        geometry = crop_rules.crop_geometry_of(config)
        reads_68 = geometry["name"] in READS_68_LANDMARKS
        # dlib's chip is placed by dlib's five points (its 5-point predictor on the photo), as analyze places it
        points = outputs["image_landmarks"].astype(np.float64) if reads_68 else faces.points
        if geometry["name"] == "dlib_chip":
            assert faces.dlib_points is not None
            points = faces.dlib_points
        affines = crop_rules.crop_affines(
            geometry, landmarks=points,
            boxes=faces.boxes, image_sizes=faces.image_sizes)
        spec = model.config.backbone if grid == CANONICAL else model.config.priors[grid]
        affines = affines * (112 / np.asarray(spec.image_size[::-1], np.float64))[None, :, None]
        photo_crop = crop_geometry.cut_crops(torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float(), affines,
                                             112, antialias=True)[0].permute(1, 2, 0).numpy()
        error = np.abs(panels.crops[grid][0].astype(np.float64) - photo_crop)
        assert error.mean() < 4 and panels.crops[grid].shape == (1, 112, 112, 3), (grid, error.mean())
    for first, second in zip(grids, grids[1:]):  # three rules, three different crops
        assert np.abs(panels.crops[first].astype(int) - panels.crops[second]).mean() > 10, (first, second)
    # the first panel is the model's own input, the canonical crop
    canonical = np.asarray(PIL.Image.fromarray(detected.canonical[0]).resize((112, 112), PIL.Image.Resampling.BOX))
    assert np.abs(panels.faces[0].astype(int) - canonical).mean() < 3
    row = panels.face(0, "face 0")
    strip = attention_strip(row.face, row.grids, row.crops)
    assert strip.size == ((1 + len(grids)) * 112 + len(grids) * 4, 112)  # the face, then one overlay per grid
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
