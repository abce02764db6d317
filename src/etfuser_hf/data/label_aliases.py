"""Expression names across datasets, onto FER2013's canonical names, and a dataset's label ids onto a model's.

RAF-DB says "happiness", AffectNet "happy", others "joy" or "surprised": evaluating a model on another dataset
matches classes by canonical name, never by id (RAF-DB's id 0 is surprise, FER2013's is angry)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

CANONICAL_EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013's names and order
EXPRESSION_ALIASES = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "smile": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "neutrality": "neutral", "calm": "neutral",
}
NO_FER_COUNTERPART = ("contempt", "none", "uncertain", "non-face")  # AffectNet's classes FER2013 lacks


def canonical_expression(name: str) -> str:
    """FER2013's name for an expression name (case and spaces ignored); names without one come back normalised."""
    key = name.strip().lower().replace("_", " ")
    return EXPRESSION_ALIASES.get(key, key)


def is_expression_label_set(names: Sequence[str]) -> bool:
    """Whether `names` are expression classes a FER2013 model can read: at least two, each one of FER2013's seven
    through the aliases (RAF-DB's, FER2013's, AffectNet's `classes=7`; not AffectNet's contempt, not age groups)."""
    canonical = [canonical_expression(str(name)) for name in names]
    return len(set(canonical)) >= 2 and all(name in CANONICAL_EXPRESSIONS for name in canonical)


def names_expressions(names: Sequence[str]) -> bool:
    """Whether `names` are the classes of an expression dataset, FER2013's seven or beyond them: at least two of
    FER2013's expressions through the aliases, the rest AffectNet's own (contempt, none, uncertain, non-face). Looser
    than `is_expression_label_set`, which asks whether the FER net can read every class."""
    canonical = [canonical_expression(str(name)) for name in names]
    return (len(set(canonical) & set(CANONICAL_EXPRESSIONS)) >= 2
            and all(name in CANONICAL_EXPRESSIONS or name in NO_FER_COUNTERPART for name in canonical))


def id2label_names(id2label: Mapping[Any, str], where: str = "id2label") -> list[str]:
    """A model config's `id2label` as names in class-id order; a ValueError naming `where` unless the ids are
    0..N-1 (transformers writes them as strings in config.json)."""
    names = {int(index): str(name) for index, name in id2label.items()}
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{where}: class ids must be 0..{len(names) - 1}, got {sorted(names)}.")
    return [names[index] for index in range(len(names))]


def map_label_names(dataset_names: Sequence[str], model_names: Sequence[str]) -> list[int]:
    """For each dataset class id, the model class id of the same expression, matched by canonical name.

    Raises `ValueError` listing both label sets when a dataset class has no model class (e.g. AffectNet's contempt
    on a FER2013 model: load AffectNet with `classes=7`), or when two dataset classes meet one model class."""
    model_index = {canonical_expression(name): index for index, name in enumerate(model_names)}
    mapping, missing = [], []
    for name in dataset_names:
        canonical = canonical_expression(name)
        if canonical not in model_index:
            missing.append(name)
        mapping.append(model_index.get(canonical, -1))
    both = f"dataset labels {list(dataset_names)}; model labels {list(model_names)}"
    if missing:
        hint = " (contempt has no FER2013 counterpart: drop it, e.g. AffectNet classes=7)" \
            if any(canonical_expression(name) in NO_FER_COUNTERPART for name in missing) else ""
        raise ValueError(f"dataset classes {missing} have no counterpart among the model's classes{hint}: {both}.")
    if len(set(mapping)) != len(mapping):
        raise ValueError(f"several dataset classes map onto one model class: {both}.")
    return mapping
