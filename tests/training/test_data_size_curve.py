"""The data-size curve: added training images from beyond the test range, the other splits unchanged; each size's
best candidate per row on validation; the token row against concatenation over the same tokens at every size."""

from __future__ import annotations

import json

import pytest

from etfuser_hf.training.comparison.splits import POOL_FIRST_INDEX, SAME_TRAIN_IMAGES, synthetic_splits
from etfuser_hf.training.data_size_curve import data_size_curves
from etfuser_hf.training.data_size_curve import main as curve_main
from etfuser_hf.training.main import parse_args
from etfuser_hf.training.report.curves import render_curves_markdown

SIZES = {"train": 4, "validation": 2, "test": 2}


def _labels(split) -> list:
    return [tuple(points[0]) for points in split["landmarks"]]


def test_data_size_more_train_adds_images_beyond_the_test_range_and_moves_no_other_split():
    base, _ = synthetic_splits(SIZES, image_size=32, seed=4)
    grown, record = synthetic_splits(SIZES, image_size=32, seed=4, more_train=3)
    assert len(grown["train"]) == 7 and record.sizes["train"] == 7 and "train_pool" not in record.sizes
    assert _labels(grown["train"])[:4] == _labels(base["train"])  # the smaller point's images, then new ones
    assert not set(_labels(grown["train"])[4:]) & set(_labels(base["train"]))
    assert str(POOL_FIRST_INDEX) in record.origin["train"] and record.train_sampling == SAME_TRAIN_IMAGES
    for split in ("validation", "test"):
        assert _labels(grown[split]) == _labels(base[split])
    with pytest.raises(ValueError, match="more_train: expected a count >= 0"):
        synthetic_splits(SIZES, image_size=32, more_train=-1)
    with pytest.raises(ValueError, match="not with a resampling pool"):
        synthetic_splits(SIZES, image_size=32, more_train=2, train_pool=8)


@pytest.mark.parametrize("options, message", [
    (["--more-train", "-5"], "--more-train: a count >= 0"),
    (["--more-train", "5", "--resample-train"], "not with --resample-train"),
    (["--more-train", "5", "--dataset", "somewhere"], "a --dataset keeps its own train split"),
])
def test_data_size_more_train_bad_options_are_refused_by_name(options, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        parse_args([*options, "--output-dir", str(tmp_path / "run")])
    assert message in capsys.readouterr().err


def _record(row: str, candidate: str, per_seed: list[float]) -> dict:
    return {"row": row, "candidate": candidate, "per_seed": per_seed,
            "validation": {"mean": sum(per_seed) / len(per_seed), "std": 0.0}}


def test_data_size_curve_takes_each_rows_best_candidate_per_size_and_compares_the_same_tokens():
    sweeps = {size: {"tasks": {"expression": [
        _record("et-fuser", "augment light", [base + 0.02, base + 0.03, base + 0.025]),
        _record("et-fuser", "augment none", [base - 0.1, base - 0.1, base - 0.1]),
        _record("concat-mlp-pooled", "augment light", [base, base + 0.001, base - 0.001]),
        _record("canonical", "augment light", [base - 0.05, base - 0.04, base - 0.06]),
    ]}} for size, base in ((800, 0.7), (1600, 0.8))}
    curves = data_size_curves(sweeps)
    curve = curves["expression"]
    assert curve["split"] == "validation" and curve["metric"] == "accuracy"
    assert curve["rows"]["et-fuser"][1600]["candidate"] == "augment light"  # not the worse one
    assert curve["rows"]["et-fuser"][800]["mean"] == pytest.approx(0.725)
    gains = {(entry["row"], entry["against"]): entry["points"] for entry in curve["comparisons"]}
    # expression's et-fuser reads pooled priors; concat-mlp its own best (grid) tokens, concat-mlp-pooled the same ones
    assert set(gains) == {("et-fuser", "concat-mlp-pooled"), ("et-fuser", "canonical")}
    assert gains[("et-fuser", "concat-mlp-pooled")][800]["gain"] == pytest.approx(0.025)
    markdown = render_curves_markdown(curves, "## curve", lambda size: f"{size} images")
    assert "| expression: validation accuracy | 800 images | 1600 images |" in markdown
    assert "et-fuser - concat-mlp-pooled: gain, p (t-test over seeds, validation split) | +0.0250" in markdown


@pytest.mark.parametrize("argv, message", [
    (["--train-sizes", "800"], "at least two different positive sizes"),
    (["--train-sizes", "800", "1600", "--num-train", "10"], "--num-train: not taken here"),
    (["--train-sizes", "800", "1600", "--select-on=macro_f1"], "--select-on: not taken here"),
])
def test_data_size_curve_bad_options_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit):
        curve_main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_data_size_curve_runs_a_sweep_per_size_and_writes_the_curve(tmp_path):
    shrunk = ["--num-validation", "4", "--num-test", "4", "--image-size", "64", "--max-steps", "1",
              "--batch-size", "4", "--seeds", "2", "--workers", "1", "--priors", "expression", "face_recognition",
              "--tasks", "expression", "--rows", "canonical", "et-fuser", "concat-mlp"]
    curves = curve_main(["--train-sizes", "8", "12", "--output-dir", str(tmp_path), *shrunk])
    assert set(curves["expression"]["rows"]["et-fuser"]) == {8, 12}
    for size in (8, 12):
        splits = json.loads((tmp_path / f"train-{size}" / "sweep.json").read_text())["splits"]
        assert splits["sizes"]["train"] == size and splits["sizes"]["validation"] == 4
    written = json.loads((tmp_path / "data_size_curve.json").read_text())
    assert written["train_sizes"] == [8, 12] and (tmp_path / "data_size_curve.png").stat().st_size > 0
    assert "et-fuser - concat-mlp" in (tmp_path / "data_size_curve.md").read_text()
