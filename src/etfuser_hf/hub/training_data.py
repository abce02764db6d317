"""What a saved model's run recorded about its training data: whether it was trained on SYNTHETIC faces.

`synthetic_training_data` is the one reader: the Space's banner (`spaces/et-fuser/space_model.py`) and the stderr
note of `etfuser analyze` / `etfuser predict` (`synthetic_data_note`) both go through it, so they never disagree on
which models carry the warning.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

# The model card's tag for a model trained on generated faces (`model_card.py` writes it).
SYNTHETIC_TAG = "synthetic-data"


def synthetic_training_data(folder: str | os.PathLike) -> str | None:
    """How the run of the model in `folder` described its SYNTHETIC training data, or None when it recorded real data
    or nothing.

    Read from the run folder's `metrics.json` (`dataset.synthetic` and `dataset.description`, written by the main job
    beside `model/`, and three levels above `checkpoints/attention/<task>/`, the spatial model of each task), else
    from the Hub card's `synthetic-data` tag (a folder exported with its README)."""
    folder = Path(folder)
    for metrics_path in [folder / "metrics.json", *(parent / "metrics.json" for parent in folder.parents[:3])]:
        if metrics_path.is_file():
            try:
                dataset = json.loads(metrics_path.read_text(encoding="utf-8")).get("dataset") or {}
            except (json.JSONDecodeError, AttributeError):
                continue
            if not dataset.get("synthetic"):
                return None
            return str(dataset.get("description") or dataset.get("name") or "generated faces").strip()
    card = folder / "README.md"
    if card.is_file():
        from huggingface_hub import ModelCard

        if SYNTHETIC_TAG in (ModelCard.load(card).data.tags or []):
            return f"its model card is tagged {SYNTHETIC_TAG}"
    return None


def synthetic_data_note(folder: str | os.PathLike | None, command: str, extras: Sequence[str]) -> str | None:
    """The one stderr line `etfuser <command>` prints for a model trained on SYNTHETIC faces (None otherwise, and for
    a model passed in memory, `folder` None): it names the pretrained FER net's columns, the reading of a network
    trained on real faces, or how to get them when `extras` leaves "fer" out."""
    from ..analysis.extras import FER_LABEL_COLUMN, FER_PROBABILITY_PREFIX

    description = None if folder is None else synthetic_training_data(folder)
    if description is None:
        return None
    description = " ".join(description.split())  # one line, whatever the run wrote
    columns = f"{FER_LABEL_COLUMN}, {FER_PROBABILITY_PREFIX}*"
    reading = (f"the pretrained FER net's own reading (trained on real faces) is in {columns}" if "fer" in extras
               else f"add fer to --extras for the pretrained FER net's own reading ({columns})")
    return (f"etfuser {command}: note: {folder} was trained on SYNTHETIC faces ({description}); its label and prob_* "
            f"are not validated on real photos; {reading}")


__all__ = ["SYNTHETIC_TAG", "synthetic_data_note", "synthetic_training_data"]
