"""The rows of the comparison: what a task table compares, each an override of the default recipe (or the
best-single-prior linear probe). `PROTOCOL_ROWS` are trained for every task; `OPTIONAL_ROWS` (ablations,
companion-paper tasks), filled by `register_row`, join the first task's table when asked for (one line adds one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


MAIN_ROW = "et-fuser"


@dataclass(frozen=True)
class Row:
    """One row of a task table: ET-Fuser built by `recipe.build_task_model` with `overrides` of the default recipe
    (ETFuserConfig keyword arguments, and `prior_feature`: how the priors are read), on the first `num_priors` of the
    selected priors where that is set; or, with `probe`, the linear probe on the best single prior. `tuned_as` names
    the row whose per-task learning rate and overrides (`FaceTask.row_learning_rates`) it takes, where not its own.
    `tokens` says how the row reads the priors: `"pooled"` (one vector per prior, or as `overrides` say),
    `"spatial"` (its task's best spatial setting, `FaceTask.spatial`, so that the rows compared on grid tokens read
    the same ones) or `"chosen"` (whichever of the two validation chose for et-fuser, `FaceTask.main_tokens`)."""

    name: str
    description: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    probe: bool = False
    group: str = "protocol"  # "protocol" (always trained), "ablation" (--ablations) or "companion" (--companion)
    num_priors: int | None = None
    tuned_as: str | None = None
    tokens: str = "pooled"

    def reads_spatial(self, main_tokens: str) -> bool:
        """Whether the row reads its task's spatial setting, where et-fuser reads `main_tokens`."""
        return self.tokens == "spatial" or (self.tokens == "chosen" and main_tokens == "spatial")

    @property
    def tuning(self) -> str:
        """The row whose chosen learning rate and overrides (`FaceTask.row_learning_rates`, `row_overrides`) this row
        trains with: `tuned_as` where set; else its own for a protocol row, and the et-fuser row's for an ablation or
        companion row, each a change of ET-Fuser that was not tuned on its own."""
        if self.tuned_as is not None:
            return self.tuned_as
        return self.name if self.group == "protocol" else MAIN_ROW


# et-fuser reads the priors as validation chose for its task: one pooled vector per prior, or its best spatial setting
# (grid tokens, FaceTask.spatial); concat-mlp likewise reads what validation chose for it among the same candidates
# (FaceTask.row_tokens), so each is compared at its best on the same budget. Beside them, each on the other token
# layouts at its row's tuned rate: et-fuser-spatial / et-fuser-pooled and concat-mlp-grid (the very grid et-fuser-spatial
# reads) / concat-mlp-pooled, so that the token and concatenation can also be compared on the same input
# (report.task_tables.same_token_pairs). Rows that would train alike on a task are trained once there. A row whose
# recipe equals an earlier row's on a task (et-fuser and the one of et-fuser-spatial / et-fuser-pooled it matches) is
# trained once (`protocol.distinct_rows`).
PROTOCOL_ROWS = (
    Row(MAIN_ROW, "canonical model + ET-Fuser: the ensemble token over the frozen priors, fused into the "
                  "canonical model (prior tokens and fusion mode in the table heading)", tokens="chosen"),
    Row("canonical", "the pretrained canonical model alone, fine-tuned (the baseline to beat)",
        {"fusion_mode": "none"}),
    Row("concat-mlp", "canonical model + the frozen priors' tokens concatenated (flattened) through an MLP (no "
                      "ensemble token): pooled, or the grid validation chose for it as for et-fuser",
        {"fusion_mode": "concat_priors"}),
    Row("concat-mlp-pooled", "canonical model + the frozen priors' pooled features concatenated through an MLP (no "
                             "ensemble token)", {"fusion_mode": "concat_priors"}, tuned_as="concat-mlp"),
    Row("concat-mlp-grid", "canonical model + the same grid tokens as et-fuser-spatial, concatenated (flattened) "
                           "through an MLP (no ensemble token)", {"fusion_mode": "concat_priors"},
        tuned_as="concat-mlp", tokens="spatial"),
    Row("et-fuser-spatial", "canonical model + ET-Fuser over grid tokens (the task's best spatial setting on "
                            "validation)", tuned_as=MAIN_ROW, tokens="spatial"),
    Row("et-fuser-pooled", "canonical model + ET-Fuser over one pooled vector per prior", tuned_as=MAIN_ROW),
    Row("et-fuser-priors-only", "ET-Fuser on the frozen priors alone (no canonical model)",
        {"fusion_mode": "priors_only"}),
    Row("probe-best-prior", "linear probe on the single best frozen prior (chosen on validation)", probe=True),
)

OPTIONAL_GROUPS = ("ablation", "companion", "spatial")
OPTIONAL_ROWS: dict[str, Row] = {}


def register_row(name: str, description: str, group: str = "ablation", num_priors: int | None = None,
                 tuned_as: str | None = None, **overrides: Any) -> Row:
    """Adds `name` to `OPTIONAL_ROWS` (e.g. `register_row("mask-isolated", "...", attention_mask_strategy="isolated")`);
    `training/train.py` trains it under `--ablations`, `--companion`, `--spatial` (every task) or `--variants name`."""
    if group not in OPTIONAL_GROUPS:
        raise ValueError(f"group must be one of {OPTIONAL_GROUPS}, got {group!r}.")
    if name in OPTIONAL_ROWS or any(row.name == name for row in PROTOCOL_ROWS):
        raise ValueError(f"row {name!r} is already registered.")
    OPTIONAL_ROWS[name] = Row(name, description, dict(overrides), group=group, num_priors=num_priors,
                              tuned_as=tuned_as)
    return OPTIONAL_ROWS[name]


# The mask strategies decide what prior tokens read, so these rows keep the full stack (read_only_priors=False) even
# where et-fuser, whose tuning they share, was chosen read-only on validation.
register_row("mask-ensemble-reads-priors", "ET-Fuser ablation: attention_mask_strategy=ensemble_reads_priors",
             attention_mask_strategy="ensemble_reads_priors", read_only_priors=False)
register_row("mask-isolated", "ET-Fuser ablation: attention_mask_strategy=isolated", attention_mask_strategy="isolated",
             read_only_priors=False)
register_row("fusion-prepend-token", "ET-Fuser ablation: fusion_mode=prepend_token", fusion_mode="prepend_token")
register_row("fusion-concat-before-head", "ET-Fuser ablation: fusion_mode=concat_before_head",
             fusion_mode="concat_before_head")
for _count in (1, 2, 3):
    register_row(f"priors-{_count}", f"ET-Fuser ablation: only the first {_count} selected prior(s)", num_priors=_count)
register_row("aux-jigsaw", "ET-Fuser + HMTL jigsaw puzzling (3x3 grid, weight 0.1)", "companion",
             auxiliary_tasks={"jigsaw": {"grid": 3}})
register_row("aux-inpainting", "ET-Fuser + HMTL in-painting (L1 + perceptual loss on the first prior)", "companion",
             auxiliary_tasks={"inpainting": True})
register_row("aux-multilevel", "ET-Fuser + pixel / patch / component face-prior tasks", "companion",
             auxiliary_tasks={"masked_pixels": True, "landmark_heatmap": True, "components": True})

def row_tuning(name: str) -> str:
    """`Row.tuning` of the registered row `name` (a protocol row, or a sweep candidate: its own name)."""
    row = OPTIONAL_ROWS.get(name)
    return row.tuning if row is not None else name


# Exploratory spatial rows at a fixed 2x2 grid (each prior's last feature map as 2x2 tokens with a 2-D position
# embedding), whatever the task chose; tuned as the rows they extend.
GRID2 = {"feature": "grid", "grid_size": 2}
register_row("et-fuser-grid2", "canonical model + ET-Fuser over 2x2 grid tokens per prior", "spatial",
             tuned_as=MAIN_ROW, prior_feature=GRID2)
register_row("et-fuser-grid2-canonical", "canonical model + ET-Fuser over 2x2 grid tokens per prior and the "
             "canonical model's own 2x2 tokens (fusion_mode=canonical_tokens)", "spatial", tuned_as=MAIN_ROW,
             prior_feature=GRID2, fusion_mode="canonical_tokens")
register_row("concat-mlp-grid2", "canonical model + the priors' 2x2 grid tokens concatenated (flattened) through an "
             "MLP (no ensemble token): the same input as et-fuser-grid2", "spatial", tuned_as="concat-mlp",
             prior_feature=GRID2, fusion_mode="concat_priors")
