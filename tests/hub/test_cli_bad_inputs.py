"""`etfuser predict` / `etfuser evaluate` on batches with bad files: one stderr line each (path: reason), every good
file's result written, exit status 1, no traceback. Refused output files for `card` and `export`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch
from conftest import REPO_ROOT, tiny_etfuser_config

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.hub.cli import main


LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = tiny_etfuser_config(num_labels=7, id2label=dict(enumerate(LABELS)),
                                 label2id={name: i for i, name in enumerate(LABELS)})
    ETFuserForImageClassification(config).save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def write_bad_files(folder: Path) -> dict[str, str]:
    """The bad inputs, path -> the reason the CLI must give."""
    folder.mkdir(parents=True, exist_ok=True)
    truncated = folder / "truncated.jpg"
    PIL.Image.fromarray(skimage.data.astronaut()).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    (folder / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    PIL.Image.new("RGB", (1, 1), (128, 128, 128)).save(folder / "one_pixel.png")
    return {str(truncated): "truncated or corrupt image", str(folder / "notes.jpg"): "not an image file",
            str(folder / "one_pixel.png"): "image is 1x1 pixels; expected at least 12x12"}


def check_stderr(stderr: str, expected: dict[str, str]) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    for path, reason in expected.items():
        matching = [line for line in lines if line.startswith(f"{path}: ")]
        assert len(matching) == 1 and reason in matching[0], (path, lines)
    assert len(lines) == len(expected), lines


def test_predict_reports_each_bad_file_and_writes_the_good_ones(model_dir, tmp_path):
    good = tmp_path / "good" / "astronaut.png"
    good.parent.mkdir()
    PIL.Image.fromarray(skimage.data.astronaut()).save(good)
    expected = write_bad_files(tmp_path / "bad")
    (tmp_path / "empty").mkdir()
    expected[str(tmp_path / "missing.jpg")] = "no such file or folder"
    expected[str(tmp_path / "empty")] = "folder holds no image files"
    arguments = [str(good), str(tmp_path / "bad"), str(tmp_path / "missing.jpg"), str(tmp_path / "empty")]
    result = subprocess.run([sys.executable, "-m", "etfuser_hf", "predict", str(model_dir), *arguments],
                            capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1, result.stderr
    check_stderr(result.stderr, expected)
    results = json.loads(result.stdout)
    assert list(results) == [str(good)] and results[str(good)][0]["label"] in LABELS


def test_predict_with_only_good_files_exits_zero(model_dir, tmp_path, capsys):
    image = tmp_path / "astronaut.png"
    PIL.Image.fromarray(skimage.data.astronaut()).save(image)
    main(["predict", str(model_dir), str(image)])
    assert list(json.loads(capsys.readouterr().out)) == [str(image)]


def test_evaluate_skips_each_bad_file_and_scores_the_rest(model_dir, tmp_path, capsys):
    root = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for label in ("happy", "sad"):
        (root / label).mkdir(parents=True)
        for index in range(3):
            PIL.Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / label / f"{index}.png")
    expected = write_bad_files(root / "sad")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(model_dir), "--dataset", str(root), "--task", "label", "--split", "train"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    check_stderr(captured.err, expected)
    summary = json.loads(captured.out)
    assert summary["num_samples"] == 6 and summary["num_skipped"] == 3 and 0.0 <= summary["accuracy"] <= 1.0


@pytest.mark.parametrize("dataset, reason", [("missing", "no such file or folder"),
                                             ("empty", "no examples found (empty dataset)")])
def test_evaluate_on_a_missing_or_empty_dataset_is_one_line(model_dir, tmp_path, capsys, dataset, reason):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(model_dir), "--dataset", str(tmp_path / dataset)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("etfuser evaluate: error: ") and reason in error and len(error.splitlines()) == 1


def test_card_refuses_an_existing_card_unless_overwrite(tmp_path, capsys):
    card = tmp_path / "README.md"
    card.write_text("an earlier card\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["card", str(tmp_path / "run"), "--output", str(card)])
    assert exit_info.value.code == 2
    assert "already exist; pass --overwrite" in capsys.readouterr().err
    assert card.read_text() == "an earlier card\n"


def test_export_refuses_an_existing_file_unless_overwrite(model_dir, tmp_path, capsys):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"earlier export")
    with pytest.raises(SystemExit):
        main(["export", str(model_dir), "--output", str(onnx), "--no-verify"])
    assert f"{onnx} already exist; pass --overwrite" in capsys.readouterr().err
    assert onnx.read_bytes() == b"earlier export"
    main(["export", str(model_dir), "--output", str(onnx), "--no-verify", "--overwrite"])
    assert onnx.read_bytes() != b"earlier export"
