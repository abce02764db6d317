"""Shared fixtures: tiny random ET-Fuser configs over three prior architectures (ViT, ConvNeXt, CLIP vision)."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from transformers import CLIPVisionConfig, ConvNextConfig, ViTConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import etfuser_hf  # noqa: E402  (registers the Auto classes for every test)
from etfuser_hf import ETFuserConfig  # noqa: E402


def free_port() -> int:
    """A TCP port nobody listens on now: for the rendezvous of multi-process tests (a fixed one can be taken)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_in_threads(call: Callable, inputs: Sequence, iterations: int) -> list[list]:
    """Calls `call(inputs[i])` `iterations` times in thread i, one thread per input, all started together (a
    barrier): the results of each thread in order. The first exception of any thread is raised here."""
    barrier = threading.Barrier(len(inputs))
    results: list[list] = [[] for _ in inputs]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            for _ in range(iterations):
                results[index].append(call(inputs[index]))
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def tiny_vit_config(**overrides) -> ViTConfig:
    settings = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=8)
    return ViTConfig(**{**settings, **overrides})


def tiny_priors() -> dict:
    """Three prior architectures with three feature choices."""
    return {
        "vit": tiny_vit_config(),
        "convnext": {
            "config": ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32),
            "feature": "topk",
            "num_tokens": 3,
        },
        "clip": {
            "config": CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, image_size=24, patch_size=8),
            "feature": "cls",
        },
    }


def tiny_etfuser_config(**overrides) -> ETFuserConfig:
    settings = dict(
        priors=tiny_priors(),
        backbone=None if overrides.get("fusion_mode") == "priors_only" else tiny_vit_config(num_hidden_layers=2),
        image_size=32,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=5,
        num_landmarks=68,
    )
    return ETFuserConfig(**{**settings, **overrides})


def tiny_spatial_config(fusion_mode: str = "add_to_pooled", grid_size: int = 2, **overrides) -> ETFuserConfig:
    """Spatial tokens: a CNN prior (the FER mini-Xception architecture, random weights) and a ViT prior, both as
    grid_size x grid_size grid tokens, on a ConvNeXt canonical model."""
    from etfuser_hf.models.configuration_face_priors import FerMiniXceptionConfig

    priors = {"fer": {"config": FerMiniXceptionConfig(), "feature": "grid", "grid_size": grid_size},
              "vit": {"config": tiny_vit_config(), "feature": "grid", "grid_size": grid_size}}
    settings = dict(priors=priors, backbone=ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                                                           image_size=32),
                    image_size=32, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=5,
                    fusion_mode=fusion_mode)
    return ETFuserConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def astronaut_path(tmp_path_factory) -> Path:
    """scikit-image's astronaut (Eileen Collins, public domain) as a PNG file: a real face photo that ships offline."""
    import PIL.Image
    import skimage.data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    PIL.Image.fromarray(skimage.data.astronaut()).save(path)
    return path


@pytest.fixture
def tiny_config() -> ETFuserConfig:
    return tiny_etfuser_config()


@pytest.fixture
def pixel_values() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def tiny_protocol() -> dict:
    """A run folder's metrics.json `protocol` for one task (expression) and two seeds, its table built by the main
    job's own `task_table` from made-up runs: et-fuser at test accuracy 0.6 / 0.5 (mean 0.55), canonical at 0.4 / 0.4,
    macro-F1 0.5 / 0.35 throughout; validation 0.05 below test."""
    import numpy as np

    from etfuser_hf.training.comparison.tasks import FaceTask
    from etfuser_hf.training.report.task_tables import task_table
    from etfuser_hf.training.run.trainer import RunResult

    rng = np.random.default_rng(0)

    def run(name: str, accuracy: float, macro_f1: float) -> RunResult:
        scores = (rng.random(40) < accuracy).astype(np.float64)  # per-image correctness, for the paired tests
        return RunResult(name, name, np.zeros(40, int), np.zeros((40, 7)), {"accuracy": accuracy, "macro_f1": macro_f1},
                         seconds=1.0, validation_metrics={"accuracy": accuracy - 0.05}, scores=scores, split="test")

    task = FaceTask("expression", "expression", "single_label_classification", "expression", learning_rate=1e-3)
    runs = {"et-fuser": [run("et-fuser", 0.6, 0.5), run("et-fuser", 0.5, 0.5)],
            "canonical": [run("canonical", 0.4, 0.35), run("canonical", 0.4, 0.35)]}
    descriptions = {"et-fuser": "ET-Fuser", "canonical": "the canonical model alone"}
    table = task_table(task, runs, [0, 1], "et-fuser", descriptions)
    return {"splits": {"source": "synthetic", "seed": 0, "sizes": {"train": 80, "validation": 40, "test": 40}},
            "seeds": [0, 1], "tasks": {"expression": table}, "reading": ["expression: made-up numbers."]}
