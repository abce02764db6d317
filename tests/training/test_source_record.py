"""A user dataset's run records how its data was read: the reader's `SourceReport` (layout, annotation files, split
origin, rows skipped and excluded per reason) and the validation cut (seed, fraction, counts) go into `splits.json`,
`results.md` and the model card's Data section."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
from layouts import UTKFACE_BAD_NAMES, save_face, write_rafdb  # noqa: E402
from test_model_card import make_tiny_run  # noqa: E402

from etfuser_hf.hub.model_card import build_model_card, validate_model_card  # noqa: E402
from etfuser_hf.training.comparison.tasks import resolve_tasks  # noqa: E402
from etfuser_hf.training.main import load_splits, parse_args  # noqa: E402
from etfuser_hf.training.report.run_writer import render_data_markdown, write_run_folder  # noqa: E402


def write_utkface_like(tmp_path: Path, count: int = 20) -> Path:
    """UTKFace/ with `count` parseable names (genders alternating) and one of the real set's unparseable names."""
    root = tmp_path / "UTKFace"
    for index in range(count):
        save_face(root / f"{20 + index}_{index % 2}_{index % 5}_2017011617452{index:04d}.jpg.chip.jpg", index, (32, 32))
    save_face(root / UTKFACE_BAD_NAMES[0], 99, (32, 32))
    return root


def splits_record(argv: list[str]) -> dict:
    args = parse_args(argv)
    return load_splits(args, resolve_tasks(args.tasks, synthetic=False))[1]


@pytest.fixture
def utkface_record(tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)  # parse_args checks the default --output-dir
    return splits_record(["--dataset", str(write_utkface_like(tmp_path)), "--task", "gender", "--data-seed", "7"])


def test_the_split_record_keeps_the_readers_skips_and_the_cut(utkface_record):
    report, carve = utkface_record["source_report"], utkface_record["carve"]
    assert report["format"] == "utkface" and report["splits"] == {"all": 20}
    assert sum(report["skipped"].values()) == 1  # the unparseable name, counted under its reason
    (reason, examples), = report["examples"].items()
    assert report["skipped"] == {reason: 1} and UTKFACE_BAD_NAMES[0] in examples[0]
    assert report["columns"]["gender"]["problem_type"] == "single_label_classification"
    assert carve["seed"] == 7 and carve["fraction"] == 0.15 and carve["stratify_column"] == "gender"
    assert carve["counts"] == utkface_record["sizes"] and sum(carve["counts"].values()) == 20


def test_splits_json_and_results_md_carry_the_source_report(utkface_record, tmp_path):
    summary = {"dataset": {"synthetic": False},
               "protocol": {"splits": utkface_record, "seeds": [0], "tasks": {}, "reading": []}}
    folder = write_run_folder(tmp_path / "run", summary)
    written = json.loads((folder / "splits.json").read_text())
    assert written["source_report"]["skipped"] == utkface_record["source_report"]["skipped"]
    assert written["carve"] == utkface_record["carve"]
    results = (folder / "results.md").read_text()
    (reason, count), = utkface_record["source_report"]["skipped"].items()
    assert "## Data" in results and f"| skipped | {reason} | {count} |" in results
    assert "Read as the **utkface** layout" in results


def write_rafdb_to_carve(tmp_path: Path) -> Path:
    """The RAF-DB fixture with 42 more training rows (6 per class, so that a stratified validation split can be
    carved) and one row whose image is not on disk (skipped as "missing_image")."""
    root = write_rafdb(tmp_path)
    labels = root / "EmoLabel" / "list_patition_label.txt"
    lines = [f"train_{index:05d}.jpg {1 + index % 7}\n" for index in range(10, 52)]
    for index in range(10, 52):
        save_face(root / "Image" / "aligned" / f"train_{index:05d}_aligned.jpg", index, (32, 32))
    labels.write_text(labels.read_text() + "".join(lines) + "train_00099.jpg 3\n")
    return root


def test_rafdb_carve_from_train_and_a_skipped_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_rafdb_to_carve(tmp_path)
    labels = root / "EmoLabel" / "list_patition_label.txt"
    record = splits_record(["--dataset", str(root)])
    report = record["source_report"]
    assert report["skipped"] == {"missing_image": 1} and report["files"] == [str(labels)]
    assert report["split_origin"]["train"].startswith("RAF-DB's train_* images")
    assert record["carve"]["counts"] == {"train": record["sizes"]["train"], "validation": record["sizes"]["validation"]}
    assert sum(record["carve"]["counts"].values()) == 48 and record["sizes"]["test"] == 3  # never cut from test


def test_the_card_shows_the_data_section_and_stays_valid(utkface_record, tmp_path):
    run = make_tiny_run(tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["protocol"]["splits"] = {**metrics["protocol"]["splits"], **utkface_record}
    (run / "metrics.json").write_text(json.dumps(metrics))
    card = build_model_card(run)
    text = str(card)
    (reason, count), = utkface_record["source_report"]["skipped"].items()
    assert "### Data" in text and "Read as the **utkface** layout" in text and f"| skipped | {reason} | {count} |" in text
    assert "Cut by the run (seed 7, fraction 0.15, stratified by `gender`)" in text
    assert f"Its splits: all: {utkface_record['source_report']['split_origin']['all']}." in text
    validate_model_card(ModelCard(text, ignore_metadata_errors=False))


def test_no_data_section_without_a_reader_or_a_cut():
    assert render_data_markdown({"source": "synthetic", "sizes": {"train": 4}, "seed": 0}) is None
    excluded = render_data_markdown({"sizes": {"train": 7}, "origin": {}, "source_report": {
        "format": "affectnet", "source": "AffectNet", "files": [], "skipped": {},
        "excluded": {"contempt (7 classes)": 2}}})
    assert "| excluded by the protocol | contempt (7 classes) | 2 |" in excluded
    clean = render_data_markdown({"sizes": {"train": 7}, "source_report": {"format": "rafdb", "source": "x"}})
    assert "No row was skipped or excluded." in clean


def test_training_on_rafdb_writes_the_skips_into_splits_json_and_the_card(tmp_path, capsys):
    """The main job end to end on a RAF-DB layout (one step of the et-fuser row, one seed, no feature cache written)."""
    from etfuser_hf.training.main import main

    root, run = write_rafdb_to_carve(tmp_path), tmp_path / "run"
    main(["--dataset", str(root), "--seeds", "1", "--max-steps", "1", "--no-baselines", "--workers", "1", "--no-cache",
          "--batch-size", "8", "--early-stopping", "0", "--output-dir", str(run)])
    record = json.loads((run / "splits.json").read_text())
    assert record["source_report"]["format"] == "rafdb" and record["source_report"]["skipped"] == {"missing_image": 1}
    assert record["carve"]["counts"] == {"train": 40, "validation": 8} and record["sizes"]["test"] == 3
    assert "agree with the pretrained canonical network" in capsys.readouterr().out  # RAF-DB names are expressions
    text = str(build_model_card(run))
    assert "Read as the **rafdb** layout" in text and "| skipped | missing_image | 1 |" in text


def test_the_main_job_passes_reader_options_to_the_reader(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = write_rafdb_to_carve(tmp_path)
    record = splits_record(["--dataset", str(root), "--dataset-option", "images=aligned"])
    assert record["source_report"]["split_origin"]["train"].endswith("Image/aligned")
    with pytest.raises(ValueError, match=r"the rafdb reader .* takes the options \['images'\], not \['images_dir'\]"):
        splits_record(["--dataset", str(root), "--image-root", str(tmp_path)])
    with pytest.raises(SystemExit):
        parse_args(["--image-root", str(tmp_path)])  # no --dataset: refused before any work
    assert "--image-root / --dataset-option: options of a --dataset's reader" in capsys.readouterr().err
