"""`etfuser_hf.analyze` and `etfuser analyze`: folders and videos in, one table out (real MTCNN, real age, expression and
landmark priors on scikit-image's astronaut photo, public domain)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import skimage.data
import torch
from conftest import REPO_ROOT, free_port, tiny_etfuser_config, tiny_vit_config

import etfuser_hf
from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.analysis.backends import OnnxBackend, landmark_onnx_path
from etfuser_hf.priors.crop_geometry import CANONICAL_CROP_SIZE
from etfuser_hf.analysis.media import write_video
from etfuser_hf.analysis.pipeline import analyze, table_schema
from etfuser_hf.analysis.report import plot_time_course, read_table, summarize
from etfuser_hf.hub.cli import main
from etfuser_hf.priors.convert_face_priors import ensure_face_priors

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
PRIORS = ("age", "expression", "face_landmarks")
SRC = str(REPO_ROOT / "src")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved ET-Fuser over three real priors (random fusion and tiny ViT backbone) with its processor."""
    folder = tmp_path_factory.mktemp("model")
    dirs = ensure_face_priors(names=PRIORS + ("mtcnn",))
    torch.manual_seed(0)
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={name: dirs[name] for name in PRIORS}, backbone=tiny_vit_config(image_size=112, patch_size=16),
        image_size=112, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=7,
        id2label=dict(enumerate(LABELS)), label2id={name: i for i, name in enumerate(LABELS)},
        problem_type="single_label_classification")
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 112, "width": 112}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A folder with a face, a flat no-face image and a text file named .jpg (in a sub-folder), and a 6-frame video
    (5 fps) of the astronaut's face sliding sideways."""
    root = tmp_path_factory.mktemp("media")
    (root / "photos" / "more").mkdir(parents=True)
    PIL.Image.fromarray(skimage.data.astronaut()).save(root / "photos" / "astronaut.png")
    PIL.Image.fromarray(np.full((120, 160, 3), (40, 120, 200), np.uint8)).save(root / "photos" / "more" / "flat.png")
    (root / "photos" / "more" / "notes.jpg").write_text("not an image")
    crop = skimage.data.astronaut()[:256, 100:356]
    write_video(root / "clip.mp4", [np.roll(crop, 4 * index, axis=1) for index in range(6)], fps=5)
    return root


@pytest.fixture(scope="module")
def table(model_dir, media):
    return analyze([media / "photos", media / "clip.mp4"], model=model_dir, batch_size=4, progress=False)


def test_analyze_folder_gives_face_no_face_and_error_rows(model_dir, media, caplog):
    with caplog.at_level(logging.WARNING, logger="etfuser_hf.analysis"):
        result = analyze(media / "photos", model=model_dir, batch_size=2, progress=False)
    by_name = {os.path.basename(source): group for source, group in result.groupby("source")}
    assert sorted(by_name) == ["astronaut.png", "flat.png", "notes.jpg"]  # recursive, by extension
    face = by_name["astronaut.png"].iloc[0]
    assert face["status"] == "ok" and face["face"] == 0 and face["score"] > 0.99
    # the astronaut's face: around x 180..265, y 60..175 in the 512x512 photo
    assert 160 < face["box_x0"] < 200 and 240 < face["box_x1"] < 290 and 40 < face["box_y0"] < 80
    assert face["label"] in LABELS and face["left_eye_x"] < face["right_eye_x"]
    flat = by_name["flat.png"]
    assert len(flat) == 1 and flat.iloc[0]["status"] == "no_face" and flat.iloc[0]["face"] == -1
    assert np.isnan(flat.iloc[0]["box_x0"]) and pd.isna(flat.iloc[0]["label"])
    bad = by_name["notes.jpg"]
    assert len(bad) == 1 and bad.iloc[0]["status"] == "error" and "not an image file" in bad.iloc[0]["error"]
    assert any("notes.jpg" in record.getMessage() for record in caplog.records)


def test_analyze_video_rows_per_frame_with_prior_readouts(table, media):
    video = table[table["source"] == str(media / "clip.mp4")]
    assert video["frame"].tolist() == [0, 1, 2, 3, 4, 5] and (video["status"] == "ok").all()
    np.testing.assert_allclose(video["timestamp"], np.arange(6) / 5, atol=1e-6)
    # the face slides right by 4 px a frame
    assert np.all(np.diff(video["box_x0"].to_numpy()) > 0)
    probabilities = video[[f"prob_{label}" for label in LABELS]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(video[[f"attention_{name}" for name in PRIORS]].sum(1), 1, atol=1e-5)
    # the priors' own heads: a smiling adult, and face-api's nose tip (point 30) beside MTCNN's nose, in image pixels
    assert video["age_age"].between(18, 70).all()
    assert (video["expression_prob_happy"] > 0.5).all()
    # the FER net's own columns: read from the fused expression prior that holds its weights (one run, its own crop)
    assert (video["fer_label"] == "happy").all()
    np.testing.assert_array_equal(video[[f"fer_probability_{label}" for label in LABELS]].to_numpy(),
                                  video[[f"expression_prob_{label}" for label in LABELS]].to_numpy())
    nose_gap = np.hypot(video["face_landmarks_x30"] - video["nose_x"], video["face_landmarks_y30"] - video["nose_y"])
    assert (nose_gap < 8).all(), nose_gap.tolist()


def test_predict_and_analyze_give_the_same_answer_for_the_astronaut(model_dir, media, table, capsys):
    photo = media / "photos" / "astronaut.png"
    main(["predict", str(model_dir), str(photo)])
    (face,) = json.loads(capsys.readouterr().out)[str(photo)]
    row = table[table["source"] == str(photo)].iloc[0]
    assert face["label"] == row["label"]
    np.testing.assert_allclose([face["outputs"][f"prob_{label}"] for label in LABELS],
                               row[[f"prob_{label}" for label in LABELS]].to_numpy(float), atol=1e-4)
    assert face["score"] == pytest.approx(row[f"prob_{row['label']}"], abs=1e-4)
    np.testing.assert_allclose([face["prior_attention"][name] for name in PRIORS],
                               row[[f"attention_{name}" for name in PRIORS]].to_numpy(float), atol=1e-5)
    assert face["fer_label"] == row["fer_label"] == "happy"
    np.testing.assert_allclose([face["fer_probabilities"][f"fer_probability_{label}"] for label in LABELS],
                               row[[f"fer_probability_{label}" for label in LABELS]].to_numpy(float), atol=1e-4)


def test_video_every_n_frames_and_a_broken_video(model_dir, media, tmp_path):
    truncated = tmp_path / "broken.mp4"
    truncated.write_bytes((media / "clip.mp4").read_bytes()[:2000])
    result = analyze([media / "clip.mp4", truncated], model=model_dir, every_n_frames=2, progress=False)
    assert result.loc[result["source"] == str(media / "clip.mp4"), "frame"].tolist() == [0, 2, 4]
    broken = result[result["source"] == str(truncated)]
    assert broken["status"].tolist() == ["error"] and "video" in broken.iloc[0]["error"]


def test_analyze_columns_and_dtypes_are_the_documented_ones(table, model_dir):
    model = ETFuserForImageClassification.from_pretrained(model_dir, dtype=torch.float32)
    schema = table_schema(model)
    assert list(table.columns) == list(schema)
    assert {name: str(dtype) for name, dtype in table.dtypes.items()} == schema
    assert list(schema)[:11] == ["source", "frame", "timestamp", "face", "status", "error", "box_x0", "box_y0",
                                 "box_x1", "box_y1", "score"]
    assert schema["label"] == "string" and schema["frame"] == "int64" and schema["prob_happy"] == "float32"
    assert sum(name.startswith("face_landmarks_") for name in schema) == 136
    assert [name for name in schema if name.startswith("expression_prob_")] == [f"expression_prob_{e}" for e in LABELS]
    # the FER net's columns, on by default, last: beside the expression prior's readout, never in its names
    assert list(schema)[-8:] == ["fer_label"] + [f"fer_probability_{e}" for e in LABELS]
    assert schema["fer_label"] == "string" and schema["fer_probability_happy"] == "float32"


def test_analyze_model_without_face_priors_lacks_their_columns(media):
    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_etfuser_config()).eval()  # ViT / ConvNeXt / CLIP priors, no heads
    result = analyze(media / "photos" / "astronaut.png", model=model, progress=False)
    # one attention share per prior, in config.priors order (the fusion sequence's order)
    assert [name for name in result.columns if name.startswith("attention_")] == [
        "attention_clip", "attention_convnext", "attention_vit"]
    assert not [name for name in result.columns if name.endswith("_age") or "_prob_" in name or "_x00" in name]
    assert result["status"].tolist() == ["ok"]


def test_analyze_onnx_backend_matches_torch_and_is_cached(table, model_dir, media, tmp_path):
    onnx = analyze([media / "photos", media / "clip.mp4"], model=model_dir, batch_size=4, backend="onnx",
                   cache_dir=tmp_path, progress=False)
    exported = [path for path in (tmp_path / "analysis_onnx").glob("*.onnx") if ".landmarks." not in path.name]
    assert len(exported) == 1
    assert landmark_onnx_path(exported[0]).is_file()  # the first stage, face-api's landmark net on its own crop
    pose = ["yaw", "pitch", "roll"]  # degrees from a fit: a 1e-4 change of the landmarks moves them by ~1e-3
    # the age net's chip is placed by the landmark net's points, so their float differences move it a little too
    placed = [name for name in table.columns if name.startswith("age_")]
    numeric = table.select_dtypes("number").columns.difference(pose + placed)
    np.testing.assert_allclose(onnx[numeric].to_numpy(float), table[numeric].to_numpy(float), atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(onnx[placed].to_numpy(float), table[placed].to_numpy(float), atol=0.02)
    np.testing.assert_allclose(onnx[pose].to_numpy(float), table[pose].to_numpy(float), atol=0.05)
    assert onnx["label"].equals(table["label"]) and onnx["status"].equals(table["status"])
    # the FER net's reading (among `numeric` above, at 2e-4) and its label
    assert onnx["fer_label"].equals(table["fer_label"]) and "fer_probability_happy" in numeric
    model = ETFuserForImageClassification.from_pretrained(model_dir, dtype=torch.float32)
    from etfuser_hf.analysis.extras import EXTRAS, load_companions

    again = OnnxBackend(model, model_dir, CANONICAL_CROP_SIZE, cache_dir=tmp_path,
                        companions=tuple(load_companions(model, EXTRAS)))
    assert not again.exported and again.path == exported[0]


def test_cli_analyze_writes_csv_and_parquet_and_exits_non_zero_on_a_bad_file(table, model_dir, media, tmp_path):
    for name in ("results.csv", "results.parquet"):
        with pytest.raises(SystemExit) as failure:
            main(["analyze", str(media / "photos"), str(media / "clip.mp4"), "--model", str(model_dir), "--output",
                  str(tmp_path / name), "--batch-size", "4", "--no-progress", "--summary", str(tmp_path / "summary.csv"),
                  "--plots", str(tmp_path / "plots")])
        assert failure.value.code == 1  # notes.jpg
        written = read_table(tmp_path / name)
        pd.testing.assert_frame_equal(written, table, check_exact=False, atol=1e-5)
    assert (tmp_path / "plots" / "clip_time_course.png").stat().st_size > 5000
    assert pd.read_csv(tmp_path / "summary.csv")["faces"].tolist() == [1, 0, 0, 6]


def test_cli_analyze_exit_zero_and_argument_errors(model_dir, media, tmp_path, capsys):
    main(["analyze", str(media / "clip.mp4"), "--model", str(model_dir), "--output", str(tmp_path / "ok.csv"),
          "--no-progress"])
    assert len(read_table(tmp_path / "ok.csv")) == 6
    # no run folder or card records synthetic training data for this model: no note on stderr
    assert "SYNTHETIC" not in capsys.readouterr().err
    # a bad argument: one line on stderr naming it, exit status 2, no traceback (the CLI's rule for every sub-command)
    with pytest.raises(SystemExit) as failure:
        main(["analyze", str(media / "clip.mp4"), "--model", str(model_dir), "--output", str(tmp_path / "x.txt")])
    assert failure.value.code == 2
    assert "etfuser analyze: error: --output: expected a .csv or .parquet" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, ValueError, "batch_size: expected an int >= 1"),
    ({"backend": "tensorflow"}, ValueError, "backend: expected one of"),
    ({"every_n_frames": 0}, ValueError, "every_n_frames: expected an int >= 1"),
    ({"inputs": []}, ValueError, "inputs: got an empty list"),
    ({"inputs": [3]}, TypeError, r"inputs\[0\]: expected a file or folder path"),
    ({"model": "no/such/folder"}, FileNotFoundError, "model: no/such/folder is not a saved ET-Fuser folder"),
])
def test_analyze_bad_arguments_are_named(kwargs, error, match, model_dir, media):
    arguments = {"inputs": media / "clip.mp4", "model": model_dir, **kwargs}
    with pytest.raises(error, match=match):
        analyze(arguments.pop("inputs"), progress=False, **arguments)


def test_analyze_onnx_needs_a_model_folder(media):
    model = ETFuserForImageClassification(tiny_etfuser_config())
    with pytest.raises(ValueError, match="backend: 'onnx' needs model= as a saved folder"):
        analyze(media / "clip.mp4", model=model, backend="onnx", progress=False)


def test_analyze_summary_and_time_course(table, media, tmp_path):
    summary = summarize(table).set_index("source")
    clip = summary.loc[str(media / "clip.mp4")]
    assert clip["frames"] == 6 and clip["faces"] == 6 and clip["errors"] == 0 and clip["top_label"] in LABELS
    assert summary.loc[str(media / "photos" / "more" / "notes.jpg"), "errors"] == 1
    np.testing.assert_allclose(clip["mean_prob_happy"], table.loc[table["source"] == str(media / "clip.mp4"),
                                                                    "prob_happy"].mean(), rtol=1e-6)
    # the FER net's reading per file: its most frequent label and mean probabilities
    assert clip["top_fer_label"] == "happy" and clip["mean_fer_probability_happy"] > 0.5
    assert pd.isna(summary.loc[str(media / "photos" / "more" / "flat.png"), "top_fer_label"])
    path = plot_time_course(table, str(media / "clip.mp4"), tmp_path / "clip.png")
    assert PIL.Image.open(path).size[0] > 400
    with pytest.raises(ValueError, match="source: no analysed frames"):
        plot_time_course(table, "missing.mp4", tmp_path / "missing.png")


def test_cli_analyze_help_through_the_cli_entry_module():
    result = subprocess.run([sys.executable, "-m", "etfuser_hf.cli", "analyze", "--help"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": SRC})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: etfuser analyze") and "--every-n-frames" in result.stdout


def test_analyze_is_lazy_on_the_package():
    code = ("import sys, etfuser_hf; assert 'pandas' not in sys.modules and 'av' not in sys.modules; "
            "from etfuser_hf.analysis.pipeline import analyze; assert etfuser_hf.analyze is analyze")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": SRC})
    assert etfuser_hf.analyze is analyze


def test_analyze_two_processes_give_the_one_process_table(table, model_dir, media, tmp_path):
    """`accelerate launch` with 2 CPU processes: each analyses its share of the files, the main process merges."""
    output = tmp_path / "sharded.parquet"
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "-m", "etfuser_hf.cli", "analyze", str(media / "photos"), str(media / "clip.mp4"), "--model",
               str(model_dir), "--output", str(output), "--batch-size", "4", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC},
                          timeout=600)
    assert done.returncode != 0 and "notes.jpg" in done.stderr, done.stderr  # the bad file still fails the run
    assert output.exists(), done.stderr
    sharded = read_table(output)
    # detection batches frames differently across shards; float rounding in those batches can move a crop pixel by
    # one grey level, and the priors' readouts by ~1e-4 of their value
    pose = ["yaw", "pitch", "roll"]  # degrees from a fit: ~1e-3 from such a change of the landmarks
    loose = pose + ["gender_probability"]  # the gender net reads a 32x32 chip: ~1e-4 from a one-level change
    pd.testing.assert_frame_equal(sharded.drop(columns=loose), table.drop(columns=loose), check_exact=False, atol=1e-5,
                                  rtol=1e-4)
    np.testing.assert_allclose(sharded[pose].to_numpy(float), table[pose].to_numpy(float), atol=0.05)
    np.testing.assert_allclose(sharded["gender_probability"].to_numpy(float),
                               table["gender_probability"].to_numpy(float), atol=1e-3)
    assert not list(tmp_path.glob("*.part*"))  # the parts were merged and removed
