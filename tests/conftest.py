"""Shared fixtures: tiny random ET-Fuser configs over three prior architectures (ViT, ConvNeXt, CLIP vision)."""

from __future__ import annotations

import os
import sys
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


@pytest.fixture
def tiny_config() -> ETFuserConfig:
    return tiny_etfuser_config()


@pytest.fixture
def pixel_values() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
