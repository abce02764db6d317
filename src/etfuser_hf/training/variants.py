"""The comparison entries (baselines, ablations, companion-paper tasks) as overrides of the default recipe:
`VARIANTS`, filled by `register_variant` (one line adds a new entry)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Variant:
    """One entry of the comparison: ET-Fuser built by `build_etfuser_from_face_priors` with `overrides` of the default
    recipe (ETFuserConfig keyword arguments), on the first `num_priors` of the selected priors where that is set."""

    description: str
    group: str  # "baseline" (always trained), "ablation" (--ablations) or "companion" (--companion)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    num_priors: int | None = None


@dataclass
class VariantResult:
    """Everything the comparison tables need of one trained variant, on the split it is reported on (`split`):
    the test split when training was given one, else the validation split it was selected on."""

    name: str
    description: str
    predictions: np.ndarray  # (N,) predicted class ids, or (N, K, 2) landmarks
    logits: np.ndarray  # (N, num_labels) head output (landmarks: (N, K, 2))
    metrics: dict[str, float]
    log_history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    validation_metrics: dict[str, float] = field(default_factory=dict)
    scores: np.ndarray | None = None  # (N,) per-example score on `split`: 1.0/0.0 correct, or NME
    split: str = "validation"
    params: dict[str, int] = field(default_factory=dict)


VARIANT_GROUPS = ("ablation", "companion")  # the baselines are the protocol's rows (protocol.PROTOCOL_ROWS)


VARIANTS: dict[str, Variant] = {}


def register_variant(name: str, description: str, group: str = "ablation", num_priors: int | None = None,
                     **overrides: Any) -> Variant:
    """Adds `name` to `VARIANTS` (e.g. `register_variant("mask-isolated", "...", attention_mask_strategy="isolated")`);
    `training/train.py` trains it under `--ablations`, `--companion` or `--variants name`."""
    if group not in VARIANT_GROUPS:
        raise ValueError(f"group must be one of {VARIANT_GROUPS}, got {group!r}.")
    if name in VARIANTS or name == "et-fuser":
        raise ValueError(f"variant {name!r} is already registered.")
    VARIANTS[name] = Variant(description, group, dict(overrides), num_priors)
    return VARIANTS[name]




register_variant("mask-ensemble-reads-priors", "ET-Fuser ablation: attention_mask_strategy=ensemble_reads_priors",
                 attention_mask_strategy="ensemble_reads_priors")


register_variant("mask-isolated", "ET-Fuser ablation: attention_mask_strategy=isolated",
                 attention_mask_strategy="isolated")


register_variant("fusion-prepend-token", "ET-Fuser ablation: fusion_mode=prepend_token", fusion_mode="prepend_token")


register_variant("fusion-concat-before-head", "ET-Fuser ablation: fusion_mode=concat_before_head",
                 fusion_mode="concat_before_head")




for _count in (1, 2, 3):
    register_variant(f"priors-{_count}", f"ET-Fuser ablation: only the first {_count} selected prior(s)",
                     num_priors=_count)


register_variant("aux-jigsaw", "ET-Fuser + HMTL jigsaw puzzling (3x3 grid, weight 0.1)", "companion",
                 auxiliary_tasks={"jigsaw": {"grid": 3}})


register_variant("aux-inpainting", "ET-Fuser + HMTL in-painting (L1 + perceptual loss on the first prior)",
                 "companion", auxiliary_tasks={"inpainting": True})


register_variant("aux-multilevel", "ET-Fuser + pixel / patch / component face-prior tasks", "companion",
                 auxiliary_tasks={"masked_pixels": True, "landmark_heatmap": True, "components": True})
