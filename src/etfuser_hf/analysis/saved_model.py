"""The model a face analysis runs: a saved ET-Fuser classification folder (default: the newest `runs/*/model`) or a
classifier already in memory, with the image processor that fixes the side of its aligned face crops.

`load_model` is the one loader of `analyze`, `etfuser predict` / `evaluate` / `analyze` / `export` and the demo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..models.modeling_etfuser import ETFuserForImageClassification


@dataclass(frozen=True)
class LoadedModel:
    """A classifier in eval mode, its processor, and its folder (None for a model that was passed in memory)."""

    model: ETFuserForImageClassification
    processor: ETFuserImageProcessor
    folder: Path | None

    @property
    def crop_size(self) -> int:
        """Side of the square aligned face crops the model takes: the processor's size."""
        size = self.processor.size
        if size["height"] != size["width"]:
            raise ValueError(f"model: the face analysis needs square face crops, the processor asks for {size}.")
        return int(size["height"])


def default_model_dir() -> Path:
    """The newest `runs/*/model` folder, or a clear error telling how to get one."""
    candidates = sorted(Path("runs").glob("*/model/config.json"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError("No model given and none found under runs/*/model: run the main job "
                                "(`python training/train.py`) or pass --model <folder>.")
    return candidates[-1].parent


def _processor_for_size(image_size: int) -> ETFuserImageProcessor:
    return ETFuserImageProcessor(size={"height": image_size, "width": image_size})


def load_model(model: str | os.PathLike | ETFuserForImageClassification | LoadedModel | None) -> LoadedModel:
    """A saved folder (None: `default_model_dir()`), an in-memory classifier (its processor then matches
    `config.image_size`) or an already `LoadedModel` (returned as it is) -> `LoadedModel`."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, ETFuserForImageClassification):
        return LoadedModel(model.eval(), _processor_for_size(int(model.config.image_size)), None)
    if model is None:
        model = default_model_dir()
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model: expected a saved ET-Fuser folder or an ETFuserForImageClassification, "
                        f"got {type(model).__name__}.")
    folder = Path(model)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"model: {folder} is not a saved ET-Fuser folder (no config.json).")
    loaded = ETFuserForImageClassification.from_pretrained(folder, dtype=torch.float32).eval()
    if getattr(loaded.config, "tasks", None):
        raise ValueError("model: multi-task ET-Fuser folders are not supported here; pass a single-task model.")
    if (folder / "preprocessor_config.json").is_file():
        processor = ETFuserImageProcessor.from_pretrained(folder)
    else:
        processor = _processor_for_size(int(loaded.config.image_size))
    return LoadedModel(loaded, processor, folder)


__all__ = ["LoadedModel", "default_model_dir", "load_model"]
