"""face-api's 68-landmark net as the first stage of an analysis (issue 32): the net on its own crop of a face, whose
points place the crops of the rules that read them (`crop_plan.READS_68_LANDMARKS`). `analyze` runs it on each face's
canonical crop, and so does training's alignment step (`data.alignment`), with the same module."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..models.configuration_etfuser import EncoderSpec
from ..models.encoders import prepare_encoder_inputs, select_feature_tokens


class LandmarkStage(nn.Module):
    """The first stage: face-api's landmark net on its own crop. `(pixel_values (batch, 3, S, S), affines (batch, 2,
    3), windows (batch, 17) or None)` -> `(logits (batch, 136),)`, plus its fusion tokens `(batch, n, d)` where it is
    one of the fused priors; `windows` its crop's window rows (face-api's zero bars, `CropPlan.landmark_window_rows`).
    """

    def __init__(self, prior: nn.Module, spec: EncoderSpec, fused: bool):
        super().__init__()
        self.prior, self.spec, self.fused = prior, spec, fused

    @property
    def output_names(self) -> list[str]:
        return ["logits", "features"] if self.fused else ["logits"]

    def forward(self, pixel_values: torch.Tensor, affines: torch.Tensor,
                windows: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        inputs = prepare_encoder_inputs(pixel_values, self.spec, affines, windows)
        outputs = self.prior(pixel_values=inputs, return_dict=True)
        if self.fused:
            return outputs.logits, select_feature_tokens(outputs, self.spec, "landmark stage")
        return (outputs.logits,)


def converted_landmark_stage(cache_dir: str | os.PathLike | None = None) -> LandmarkStage:
    """The converted face-api landmark net (`convert_face_priors`, fetched and converted once) as a `LandmarkStage`
    of its own (not a fused prior), in eval mode."""
    from transformers import AutoModel

    from .convert_face_priors import ensure_face_priors

    prior = AutoModel.from_pretrained(ensure_face_priors(cache_dir, names=["face_landmarks"])["face_landmarks"],
                                      dtype=torch.float32).eval()
    return LandmarkStage(prior, EncoderSpec(config=prior.config), fused=False)


__all__ = ["LandmarkStage", "converted_landmark_stage"]
