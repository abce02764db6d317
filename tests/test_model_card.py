"""Model card generator: metadata that huggingface_hub loads and validates, a body built from the run folder, and
usage blocks that run against a saved model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, tiny_etfuser_config
from huggingface_hub import ModelCard

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.model_card import (
    MODEL_DIR_ASSIGNMENT,
    RunFolderError,
    load_run,
    main,
    python_blocks,
    render_model_card,
    validate_model_card,
    with_model_dir,
)

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def make_tiny_run(run_dir: Path, seed: int = 0) -> Path:
    """A run folder in training/train.py's format: a tiny random ET-Fuser (32x32) and a made-up metrics.json."""
    torch.manual_seed(seed)
    config = tiny_etfuser_config(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                                 problem_type="single_label_classification")
    model = ETFuserForImageClassification(config).eval()
    model.save_pretrained(run_dir / "model")
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(run_dir / "model")
    notice_dir = run_dir / "priors" / "vit"
    notice_dir.mkdir(parents=True)
    (notice_dir / "NOTICE").write_text("Prior 'vit' converted by etfuser_hf from the pypi package tiny-vit 1.0\n"
                                       "  licence: MIT\n")
    metrics = {
        "task": "expression",
        "problem_type": "single_label_classification",
        "label_names": LABELS,
        "dataset": {"name": "etfuser-synthetic-faces", "split": "test", "num_samples": 40, "synthetic": True,
                    "description": "SYNTHETIC faces from etfuser_hf.synthetic_faces (seed 0, 32px); 80 train / 40 eval"},
        "model": {"priors": {"vit": {"model_type": "vit", "source": str(notice_dir)},
                             "convnext": {"model_type": "convnext", "source": str(run_dir / "absent")},
                             "clip": {"model_type": "clip_vision_model", "source": str(run_dir / "absent")}},
                  "backbone": "ViT (hidden 32, 2 layers), random init",
                  "params_total": sum(p.numel() for p in model.parameters()),
                  "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
                  "params_fusion": sum(p.numel() for p in model.etfuser.fusion.parameters())},
        "main_variant": "et-fuser",
        "results": [
            {"variant": "et-fuser", "description": "ET-Fuser: 3 frozen priors", "metrics": {"accuracy": 0.55, "macro_f1": 0.5},
             "p_value_vs_main": None, "mcnemar_p_vs_main": None, "test": "paired bootstrap; exact McNemar"},
            {"variant": "backbone-only", "description": "the ViT backbone alone | no priors",
             "metrics": {"accuracy": 0.4, "macro_f1": 0.35}, "p_value_vs_main": 0.031, "mcnemar_p_vs_main": 0.04,
             "test": "paired bootstrap; exact McNemar"},
        ],
        "prior_attention": {"vit": 0.5, "convnext": 0.3, "clip": 0.2},
        "training": {"epochs": 2, "steps": 10, "seconds": 3.2, "seed": 0, "bf16": False, "cached_prior_features": True},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("run") / "tiny-run")


@pytest.fixture(scope="module")
def card(tiny_run) -> ModelCard:
    return render_model_card(tiny_run)


def test_card_loads_and_metadata_validates(card, tmp_path):
    path = tmp_path / "README.md"
    card.save(path)
    loaded = ModelCard.load(path, ignore_metadata_errors=False)
    validate_model_card(loaded)
    data = loaded.data
    assert data.license == "apache-2.0" and data.library_name == "transformers"
    assert data.pipeline_tag == "image-classification"
    assert data.base_model is None  # priors are converted locally, not Hub models
    assert data.datasets == ["etfuser-synthetic-faces"] and "synthetic-data" in data.tags
    results = {(r.metric_type, r.metric_value) for r in data.eval_results}
    assert results == {("accuracy", 0.55), ("f1", 0.5)}
    assert all(r.dataset_split == "test" and "synthetic" in r.task_name for r in data.eval_results)


def test_body_reports_the_run(card):
    text = card.text
    assert "SYNTHETIC data" in text
    # every variant with its p-values; the main one in bold; pipes in descriptions escaped
    assert "| **et-fuser** | 0.5500 | 0.5000 | — | — |" in text
    assert "| backbone-only | 0.4000 | 0.3500 | 0.0310 | 0.0400 | the ViT backbone alone \\| no priors |" in text
    assert "the pypi package tiny-vit 1.0 | MIT |" in text  # licence read from the prior's NOTICE
    assert "not recorded in this run folder" in text  # priors without a NOTICE say so instead of guessing
    assert "`vit` 0.500" in text and "32x32" in text
    for key in ("lee2025learning", "sun2025leveraging", "pourmirzaei2021using", "zhu2024crosstask"):
        assert "@article{" + key in text
    for section in ("## Model details", "## Intended use and limitations", "## Preprocessing contract", "## Usage",
                    "## Evaluation", "## Citation"):
        assert section in text


def test_usage_blocks_run_against_a_saved_model(card, tiny_run, tmp_path, monkeypatch):
    blocks = python_blocks(card.text)
    assert len(blocks) >= 5 and MODEL_DIR_ASSIGNMENT in blocks[0]
    joined = "\n".join(blocks)
    for needed in ("AutoModel.from_pretrained", "AutoImageProcessor.from_pretrained", 'pipeline("image-classification"',
                   "prior_attention", "extract_prior_features"):
        assert needed in joined
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(with_model_dir(block, tiny_run / "model"), "<model card>", "exec"), namespace)
    assert namespace["MODEL_DIR"] == str(tiny_run / "model")
    assert namespace["probabilities"].shape == (len(LABELS),)
    assert math.isclose(sum(namespace["share"]), 1.0, rel_tol=1e-5)
    assert (tmp_path / "prior_attention.png").stat().st_size > 1000


def test_committed_card_is_generated_and_valid():
    path = REPO_ROOT / "model_cards" / "et-fuser" / "README.md"
    loaded = ModelCard.load(path, ignore_metadata_errors=False)
    validate_model_card(loaded)
    assert MODEL_DIR_ASSIGNMENT in python_blocks(loaded.text)[0]


def test_command_line_writes_the_card(tiny_run, tmp_path):
    output = tmp_path / "card" / "README.md"
    main([str(tiny_run), "--output", str(output)])
    assert ModelCard.load(output).data.model_name == "et-fuser"


def test_bad_run_folders_are_named(tmp_path, tiny_run):
    with pytest.raises(RunFolderError, match="not a folder"):
        load_run(tmp_path / "missing")
    with pytest.raises(RunFolderError, match="metrics.json not found"):
        load_run(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "expression"}))
    with pytest.raises(RunFolderError, match="lacks keys"):
        load_run(tmp_path)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    metrics["main_variant"] = "nope"
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(RunFolderError, match="no results row for main_variant 'nope'"):
        load_run(tmp_path)


def test_validation_rejects_bad_metadata(card):
    broken = ModelCard(str(card).replace("license: apache-2.0", "license: mit"))
    with pytest.raises(ValueError, match="license is 'mit'"):
        validate_model_card(broken)
    broken = ModelCard(str(card).replace("pipeline_tag: image-classification", "pipeline_tag: face-magic"))
    with pytest.raises(ValueError, match="pipeline_tag 'face-magic'"):
        validate_model_card(broken)
