"""The model a face analysis runs: a saved ET-Fuser task model (default: the newest `runs/*/model`) or one already in
memory, with the image processor that fixes the side of its aligned face crops and the task type of its head.

Every task type loads: single-label and multi-label classification and regression (binned age regression included)
through `ETFuserForImageClassification`, landmarks through `ETFuserForLandmarkDetection`, chosen by the saved config
(`task_type_of`). `load_model` is the one loader of `analyze`, `etfuser predict` / `evaluate` / `analyze` / `export`,
the demo and the Space.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.configuration_etfuser import ETFuserConfig
from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..models.modeling_etfuser import ETFuserForImageClassification, ETFuserForLandmarkDetection

TaskModel = ETFuserForImageClassification | ETFuserForLandmarkDetection
TASK_TYPES = ("single_label_classification", "multi_label_classification", "regression", "landmarks")
# the head classes a saved folder's `architectures` may name; ETFuserModel (no head) and the multi-task model are not
# task models this path can read
_HEAD_CLASSES = {"ETFuserForImageClassification": ETFuserForImageClassification,
                 "ETFuserForLandmarkDetection": ETFuserForLandmarkDetection}


def task_type_of(config: ETFuserConfig) -> str:
    """The task type (`TASK_TYPES`) of an ET-Fuser task model's config: landmarks for `ETFuserForLandmarkDetection`,
    else `config.problem_type` (unset: transformers' rule, one output is regression, several single-label)."""
    if getattr(config, "tasks", None):
        raise ValueError("model: multi-task ET-Fuser folders are not supported here; pass a single-task model.")
    if "ETFuserForLandmarkDetection" in (getattr(config, "architectures", None) or []):
        return "landmarks"
    return config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")


def _head_class(folder: Path) -> type[TaskModel]:
    """The head class a saved folder's config.json names, or a ValueError saying what the folder holds instead."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"model: {folder}/config.json cannot be read as JSON ({error}).") from None
    if not isinstance(config, dict) or config.get("model_type") != ETFuserConfig.model_type:
        found = config.get("model_type") if isinstance(config, dict) else None
        raise ValueError(f"model: {folder} is not an ET-Fuser task model: its config.json is a {found!r} model "
                         f"(expected model_type {ETFuserConfig.model_type!r}).")
    if config.get("tasks"):
        raise ValueError("model: multi-task ET-Fuser folders are not supported here; pass a single-task model.")
    architectures = config.get("architectures") or []
    if not architectures:  # a hand-written config: AutoModelForImageClassification's class, as before
        return ETFuserForImageClassification
    heads = [_HEAD_CLASSES[name] for name in architectures if name in _HEAD_CLASSES]
    if not heads:
        raise ValueError(f"model: {folder} is an ET-Fuser without a task head (architectures {architectures}); "
                         f"expected one saved as {sorted(_HEAD_CLASSES)}.")
    return heads[0]


@dataclass(frozen=True)
class LoadedModel:
    """A task model in eval mode, its processor, and its folder (None for a model that was passed in memory)."""

    model: TaskModel
    processor: ETFuserImageProcessor
    folder: Path | None

    @property
    def task_type(self) -> str:
        """What the head predicts (`TASK_TYPES`)."""
        if isinstance(self.model, ETFuserForLandmarkDetection):
            return "landmarks"
        return task_type_of(self.model.config)

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


def model_folder(model: str | os.PathLike | TaskModel | LoadedModel | None) -> Path | None:
    """The saved folder `load_model(model)` reads (None: a model in memory), with its argument errors (a wrong type, a
    folder without config.json, no model given and none under runs/) raised without loading anything."""
    if isinstance(model, LoadedModel):
        return model.folder
    if isinstance(model, (ETFuserForImageClassification, ETFuserForLandmarkDetection)):
        return None
    if model is None:
        model = default_model_dir()
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model: expected a saved ET-Fuser folder, an ETFuserForImageClassification or an "
                        f"ETFuserForLandmarkDetection, got {type(model).__name__}.")
    folder = Path(model)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"model: {folder} is not a saved ET-Fuser folder (no config.json).")
    return folder


def load_model(model: str | os.PathLike | TaskModel | LoadedModel | None) -> LoadedModel:
    """A saved task-model folder (None: `default_model_dir()`), an in-memory task model (its processor then matches
    `config.image_size`) or an already `LoadedModel` (returned as it is) -> `LoadedModel`. A folder that is not an
    ET-Fuser task model (another model type, no head, a multi-task model) gets a ValueError saying what it holds."""
    if isinstance(model, LoadedModel):
        return model
    folder = model_folder(model)
    if folder is None:
        task_type_of(model.config)
        return LoadedModel(model.eval(), _processor_for_size(int(model.config.image_size)), None)
    loaded = _head_class(folder).from_pretrained(folder, dtype=torch.float32).eval()
    if (folder / "preprocessor_config.json").is_file():
        processor = ETFuserImageProcessor.from_pretrained(folder)
    else:
        processor = _processor_for_size(int(loaded.config.image_size))
    return LoadedModel(loaded, processor, folder)


__all__ = ["TASK_TYPES", "LoadedModel", "TaskModel", "default_model_dir", "load_model", "model_folder", "task_type_of"]
