"""The user-facing surface: model card (metadata validates, every usage block runs), demo on a real photo,
ONNX and torch.export, and the CLI's --help texts."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, tiny_etfuser_config, tiny_protocol
from huggingface_hub import ModelCard

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.hub.cli import build_parser
from etfuser_hf.hub.export import export_onnx, export_program, verify_onnx
from etfuser_hf.hub.model_card import (
    MODEL_DIR_PLACEHOLDER,
    build_model_card,
    write_model_card,
)

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder in the documented format around a tiny saved model (what `training/train.py` writes)."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    config = tiny_etfuser_config(num_labels=7, id2label=dict(enumerate(LABELS)),
                                 label2id={name: i for i, name in enumerate(LABELS)})
    ETFuserForImageClassification(config).save_pretrained(folder / "model")
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder / "model")
    summary = {
        "task": "expression", "problem_type": "single_label_classification", "label_names": LABELS,
        "dataset": {"name": "etfuser-synthetic-faces", "split": "test", "num_samples": 800, "synthetic": True,
                    "description": "SYNTHETIC faces"},
        "model": {"priors": {"vit": {"model_type": "vit", "source": "random"}}, "backbone": "ViT",
                  "params_total": 1000, "params_trainable": 400, "params_fusion": 20},
        "protocol": tiny_protocol(), "prior_attention": {"vit": 0.4, "convnext": 0.3, "clip": 0.3},
    }
    (folder / "metrics.json").write_text(json.dumps(summary))
    return folder


def test_card_metadata_loads_and_validates(run_folder, tmp_path):
    path = write_model_card(run_folder, tmp_path / "README.md")
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "image-classification" and "synthetic-data" in data["tags"]
    results = data["model-index"][0]["results"][0]
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"accuracy": 0.55, "macro_f1": 0.5}
    text = card.text
    assert "SYNTHETIC" in text and "| canonical | 0.4000 ± 0.0000 | 0.3500 ± 0.0000 |" in text
    for arxiv in ("2507.01290", "2105.06421", "2404.14606"):
        assert arxiv in text
    assert "Pattern Recognition" in text


def test_every_usage_block_of_the_card_runs(run_folder, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", build_model_card(run_folder).text, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        code = block.replace(MODEL_DIR_PLACEHOLDER, str(run_folder / "model"))
        subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(REPO_ROOT / "src"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert (tmp_path / "prior_attention.png").is_file()


def test_missing_run_folder_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `python training/train.py` first"):
        build_model_card(tmp_path)


def test_demo_annotates_the_real_photo(run_folder, tmp_path):
    import PIL.Image

    from etfuser_hf.hub.demo import run_demo

    (output,) = run_demo(None, run_folder / "model", tmp_path / "demo.png")
    annotated = np.asarray(PIL.Image.open(output))
    import skimage.data

    original = skimage.data.astronaut()
    assert annotated.shape == original.shape
    # the face box (yellow) was drawn around the astronaut's face
    assert (np.abs(annotated.astype(int) - original).sum(-1) > 0)[20:240, 140:320].sum() > 500


def test_demo_without_a_model_says_what_to_do(tmp_path, monkeypatch):
    from etfuser_hf.hub.demo import run_demo

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="run the main job"):
        run_demo(None, None, None)


def test_onnx_export_matches_pytorch(run_folder, tmp_path):
    model = ETFuserForImageClassification.from_pretrained(run_folder / "model", dtype=torch.float32).eval()
    path = export_onnx(model, tmp_path / "et-fuser.onnx")
    assert verify_onnx(model, path, batch_sizes=(1, 4)) <= 1e-4
    with pytest.raises(ValueError, match="must end in .onnx"):
        export_onnx(model, tmp_path / "et-fuser.bin")


def test_torch_export_with_dynamic_batch(run_folder):
    model = ETFuserForImageClassification.from_pretrained(run_folder / "model", dtype=torch.float32).eval()
    program = export_program(model)
    pixel_values = torch.rand(5, 3, 32, 32)
    torch.testing.assert_close(program.module()(pixel_values), model(pixel_values).logits)


@pytest.mark.parametrize("command", ["", "predict", "train", "sweep", "evaluate", "export", "card", "demo"])
def test_cli_help_for_every_subcommand(command):
    result = subprocess.run([sys.executable, "-m", "etfuser_hf", *([command] if command else []), "--help"],
                            capture_output=True, text=True, env={"PYTHONPATH": str(REPO_ROOT / "src"),
                                                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: etfuser{' ' + command if command else ''}")
    assert len(result.stdout.splitlines()) >= 4


def test_cli_predict_and_card(run_folder, tmp_path):
    import PIL.Image
    import skimage.data

    photo = tmp_path / "astronaut.png"
    PIL.Image.fromarray(skimage.data.astronaut()).save(photo)
    env = {"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "etfuser_hf", "predict", str(run_folder / "model"), str(photo)],
                            capture_output=True, text=True, env=env, check=True)
    faces = json.loads(result.stdout[result.stdout.index("{"):])[str(photo)]
    assert len(faces) >= 1 and faces[0]["label"] in LABELS
    subprocess.run([sys.executable, "-m", "etfuser_hf", "card", str(run_folder), "--output", str(tmp_path / "c.md")],
                   check=True, env=env, capture_output=True)
    assert ModelCard.load(tmp_path / "c.md").data.license == "apache-2.0"
    assert build_parser().parse_args(["export", "m"]).output == "et-fuser.onnx"
