"""The `fusion_mode` table: what each mode builds and where its fusion output meets the canonical model.

The configuration, the model and the training code read these properties instead of comparing mode names, so a new
mode is one entry here plus, where it combines the parts in a new way, its branch in `ETFuserModel._run_backbone`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FusionMode:
    """One `fusion_mode` value.

    Args:
        name: the value of `ETFuserConfig.fusion_mode`.
        runs_priors: the priors are built and run (or their cached features read) and projected to the fusion width;
            False for the canonical model alone.
        ensemble_token: the priors' tokens go through the ensemble-token self-attention stack; where `runs_priors`
            without it, they are concatenated through an MLP instead (the baseline the ensemble token is compared to).
        canonical_model: a trainable task backbone (the canonical model) takes the pixels; without one the fusion
            output is the whole representation.
        needs_priors: meaningless without at least one prior (config validation rejects an empty `priors`).
        into_token_sequence: the ensemble token is inserted after the CLS token of a token-sequence backbone, so the
            backbone must be one (`TOKEN_SEQUENCE_BACKBONES`).
        at_pooled: how the fusion output meets the backbone's pooled output: `"add"` (projected to its width),
            `"concat"` (beside it, so the heads read both), or None.
        canonical_tokens: the canonical model's last feature map, as `config.canonical_grid_size`² tokens with
            gradients into the canonical model, joins the fusion sequence after the prior tokens, so the ensemble
            token can relate where the canonical model sees something to where each prior does.
    """

    name: str
    runs_priors: bool
    ensemble_token: bool
    canonical_model: bool
    needs_priors: bool = False
    into_token_sequence: bool = False
    at_pooled: str | None = None
    canonical_tokens: bool = False

    def __post_init__(self) -> None:
        if self.at_pooled not in (None, "add", "concat"):
            raise ValueError(f"FusionMode {self.name!r}: at_pooled must be None, 'add' or 'concat', got {self.at_pooled!r}.")
        if (self.into_token_sequence or self.at_pooled) and not self.canonical_model:
            raise ValueError(f"FusionMode {self.name!r}: fusing into the backbone needs canonical_model=True.")
        if (self.ensemble_token or self.needs_priors) and not self.runs_priors:
            raise ValueError(f"FusionMode {self.name!r}: an ensemble token or needed priors need runs_priors=True.")
        if self.canonical_tokens and not (self.ensemble_token and self.canonical_model and self.at_pooled):
            raise ValueError(f"FusionMode {self.name!r}: canonical tokens need an ensemble token fused at the pooled "
                             "output of a canonical model.")

    @property
    def projects_to_backbone(self) -> bool:
        """The ensemble token is mapped to the backbone's width (`ensemble_to_backbone`, gated by `fusion_gate`)."""
        return self.into_token_sequence or self.at_pooled == "add"

    @property
    def adds_modules_to_canonical_model(self) -> bool:
        """New trainable modules sit beside a canonical model (the fusion module, the projections)."""
        return self.runs_priors and self.canonical_model

    @property
    def supervises_ensemble_token(self) -> bool:
        """`ensemble_loss_weight` applies: the fusion output fused into a canonical model (the ensemble token, or the
        concatenation MLP's output of `concat_priors`, so that both fusion rows get the same help) gets its own
        training head."""
        return self.runs_priors and self.canonical_model


FUSION_MODES: dict[str, FusionMode] = {
    mode.name: mode
    for mode in (
        FusionMode("prepend_token", runs_priors=True, ensemble_token=True, canonical_model=True,
                   into_token_sequence=True),
        FusionMode("add_to_pooled", runs_priors=True, ensemble_token=True, canonical_model=True, at_pooled="add"),
        FusionMode("concat_before_head", runs_priors=True, ensemble_token=True, canonical_model=True,
                   at_pooled="concat"),
        FusionMode("canonical_tokens", runs_priors=True, ensemble_token=True, canonical_model=True, at_pooled="add",
                   canonical_tokens=True),
        FusionMode("concat_priors", runs_priors=True, ensemble_token=False, canonical_model=True, needs_priors=True,
                   at_pooled="concat"),
        FusionMode("priors_only", runs_priors=True, ensemble_token=True, canonical_model=False, needs_priors=True),
        FusionMode("none", runs_priors=False, ensemble_token=False, canonical_model=True),
    )
}
# modes that work with any backbone (CNN or transformer): they meet its pooled output
POOLED_FUSION_MODES = tuple(name for name, mode in FUSION_MODES.items() if mode.at_pooled is not None)


def fusion_mode_properties(name: str) -> FusionMode:
    """The table entry of `fusion_mode` `name`; a clear error for an unknown one."""
    if not isinstance(name, str) or name not in FUSION_MODES:
        raise ValueError(f"fusion_mode must be one of {tuple(FUSION_MODES)}, got {name!r}.")
    return FUSION_MODES[name]


__all__ = ["FUSION_MODES", "POOLED_FUSION_MODES", "FusionMode", "fusion_mode_properties"]
