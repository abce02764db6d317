"""The table's extra columns, computed from converted priors that run beside the fused model ("companions"): who is
who (`track`, `identity`: face-api's recognition net), head pose (`yaw`, `pitch`, `roll`: face-api's 68 landmarks)
and gender (`gender`, `gender_probability`: dlib's gender net).

A companion whose weights the fused model already holds as one of its priors is read from that prior (its output
comes back with its fusion tokens: `extract_prior_features(..., return_prior_outputs=True)`) instead of running twice;
the others are loaded from the prior cache (`ensure_face_priors`) and run on the same aligned crops, each with its own
input contract.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the CLI reads EXTRAS before anything heavy loads
    import torch

    from ..models.modeling_etfuser import ETFuserForImageClassification

EXTRAS = ("identity", "pose", "gender")
EXTRA_PRIORS = {"identity": "face_recognition", "pose": "face_landmarks", "gender": "gender"}
EXTRA_COLUMNS = {
    "identity": {"track": "int64", "identity": "int64"},
    "pose": {"yaw": "float32", "pitch": "float32", "roll": "float32"},
    "gender": {"gender": "string", "gender_probability": "float32"},
}


def check_extras(extras: Sequence[str]) -> tuple[str, ...]:
    """`extras` as a tuple in `EXTRAS` order, or a ValueError naming the unknown ones."""
    if isinstance(extras, str) or not all(isinstance(extra, str) for extra in extras):
        raise TypeError(f"extras: expected a list of names from {EXTRAS}, got {extras!r}.")
    unknown = [extra for extra in extras if extra not in EXTRAS]
    if unknown:
        raise ValueError(f"extras: unknown {unknown}; expected some of {list(EXTRAS)}.")
    return tuple(extra for extra in EXTRAS if extra in extras)


def extra_schema(extras: Sequence[str]) -> dict[str, str]:
    """Column name -> pandas dtype of the extra columns, in table order."""
    return {name: dtype for extra in check_extras(extras) for name, dtype in EXTRA_COLUMNS[extra].items()}


@dataclass(frozen=True)
class Companion:
    """The prior one extra needs. `prior`: the net to run, or None when `fused_name` names the fused model's prior
    with the same weights; `key`: identifies the weights (part of the ONNX cache key); `config`: the prior's config."""

    extra: str
    prior: Any  # a transformers PreTrainedModel, or None
    fused_name: str | None
    key: str
    config: Any  # its PreTrainedConfig


def _same_weights(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    import torch

    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(a[name].shape == b[name].shape and torch.equal(a[name], b[name]) for name in a)


def load_companions(model: ETFuserForImageClassification, extras: Sequence[str],
                    cache_dir=None) -> list[Companion]:
    """One `Companion` per extra, its prior converted and cached on first use (`ensure_face_priors`)."""
    import torch
    from transformers import AutoModel

    from ..priors.convert_face_priors import MANIFEST, ensure_face_priors

    extras = check_extras(extras)
    folders = ensure_face_priors(cache_dir, names=[EXTRA_PRIORS[extra] for extra in extras]) if extras else {}
    companions = []
    for extra in extras:
        folder = folders[EXTRA_PRIORS[extra]]
        prior = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
        fused = next((name for name, candidate in model.etfuser.priors.items()
                      if candidate.config.model_type == prior.config.model_type and _same_weights(candidate, prior)),
                     None)
        key = f"fused:{fused}" if fused else (folder / MANIFEST).read_text()
        companions.append(Companion(extra, None if fused else prior, fused, key, prior.config))
    return companions


class ExtraColumns:
    """Turns the companions' raw outputs into the extra columns, one chunk of faces at a time; holds the tracker,
    whose state carries over from chunk to chunk (and through `state_dict` into a resumed run)."""

    def __init__(self, companions: Sequence[Companion]):
        from .tracking import FaceTracker

        self.extras = tuple(companion.extra for companion in companions)
        self.schema = extra_schema(self.extras)
        self.tracker = FaceTracker()
        gender = [companion.config for companion in companions if companion.extra == "gender"]
        self.gender_labels = np.asarray([gender[0].id2label[i] for i in range(len(gender[0].id2label))] if gender
                                        else [], dtype=object)

    def with_new_tracker(self) -> ExtraColumns:
        """The same columns with a tracker of their own, starting empty (a new run over the same companions)."""
        from .tracking import FaceTracker

        fresh = copy.copy(self)
        fresh.tracker = FaceTracker()
        return fresh

    def columns(self, outputs: dict[str, np.ndarray], boxes: np.ndarray, frames: Sequence[tuple[str, int]],
                landmarks: np.ndarray | None, image_sizes: np.ndarray) -> dict[str, np.ndarray]:
        """Per-face values of each extra column.

        outputs: the backend's outputs (`companion.<extra>` raw logits) for the chunk's faces, in order.
        boxes: `(faces, 4)` their boxes in image pixels.
        frames: (source, number of faces) per analysed image or frame of the chunk, in order (0 for no face).
        landmarks: the 68 points `(faces, 68, 2)` in image pixels (needed for "pose").
        image_sizes: `(faces, 2)` width and height of each face's image.
        """
        values: dict[str, np.ndarray] = {}
        if "identity" in self.extras:
            descriptors = outputs["companion.identity"].astype(np.float64) if "companion.identity" in outputs \
                else np.zeros((0, 128))
            tracks, identities, start = [], [], 0
            for source, count in frames:
                track, identity = self.tracker.assign(source, boxes[start:start + count].astype(np.float64),
                                                      descriptors[start:start + count])
                tracks.append(track)
                identities.append(identity)
                start += count
            values["track"] = np.concatenate(tracks) if tracks else np.zeros(0, np.int64)
            values["identity"] = np.concatenate(identities) if identities else np.zeros(0, np.int64)
        if "pose" in self.extras:
            from .pose import head_pose

            angles = head_pose(landmarks, image_sizes) if len(image_sizes) else np.zeros((0, 3))
            values.update(yaw=angles[:, 0], pitch=angles[:, 1], roll=angles[:, 2])
        if "gender" in self.extras:
            logits = outputs.get("companion.gender", np.zeros((0, len(self.gender_labels))))
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
            values["gender"] = self.gender_labels[probabilities.argmax(-1)]
            values["gender_probability"] = probabilities.max(-1)
        return values


__all__ = ["EXTRAS", "EXTRA_COLUMNS", "EXTRA_PRIORS", "Companion", "ExtraColumns", "check_extras", "extra_schema",
           "load_companions"]
