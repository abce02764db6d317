"""What is measured of a trained model besides its metrics: its parameter counts, how far its fusion gate opened and
the ensemble token's mean attention per prior."""

from __future__ import annotations

import datasets
import torch

from ...data.collators import FaceCollator
from ...models.modeling_etfuser import ETFuserPreTrainedModel
from .processes import batch_to


def count_parameters(model: ETFuserPreTrainedModel) -> dict[str, int]:
    """Total and trainable parameters, and those of the fusion module (all but the encoders and the head)."""
    base = model.base_model
    total = sum(p.numel() for p in model.parameters())
    encoders = sum(p.numel() for p in base.priors.parameters())
    encoders += sum(p.numel() for p in base.backbone.parameters()) if base.backbone is not None else 0
    head = total - sum(p.numel() for p in base.parameters())
    return {"params_total": total, "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "params_fusion": total - encoders - head}


def gate_magnitude(model: torch.nn.Module) -> float | None:
    """Mean |tanh(g)| of the fusion gate `g` (0: closed, the canonical model alone; 1: fully open), or None for a
    model without one. Reads any wrapper of the model (a PEFT model too) by the parameter's name."""
    gates = [parameter for name, parameter in model.named_parameters() if name.split(".")[-1] == "fusion_gate"]
    if not gates:
        return None
    with torch.no_grad():
        return float(torch.tanh(gates[0].float()).abs().mean())


def mean_prior_attention(model: ETFuserPreTrainedModel, dataset: datasets.Dataset, collator: FaceCollator,
                         batch_size: int = 64) -> dict[str, float]:
    """The ensemble token's attention per prior (last fusion layer), averaged over `dataset`."""
    model.eval()
    totals, count = None, 0
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        batch.pop("labels")
        batch = batch_to(batch, model.device)  # where the model is: a GPU's, not the CPU beside it
        with torch.inference_mode():
            attention = model(**batch, output_attentions=True).prior_attention
        totals = attention.sum(0).cpu() if totals is None else totals + attention.sum(0).cpu()
        count += attention.shape[0]
    return {name: round(float(value) / count, 4) for name, value in zip(model.config.priors, totals)}
