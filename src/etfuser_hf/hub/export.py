"""Export of the fused classification model: ONNX (torch.onnx with the dynamo exporter, dynamic batch axis,
verified against PyTorch with onnxruntime) and `torch.export`.

    python -m etfuser_hf export runs/etfuser-synthetic/model --output et-fuser.onnx
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.modeling_etfuser import ETFuserForImageClassification


class LogitsOnly(nn.Module):
    """`pixel_values (batch, 3, H, W) -> logits (batch, num_labels)`: the graph an exported classifier needs."""

    def __init__(self, model: ETFuserForImageClassification):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).logits


def example_inputs(model: ETFuserForImageClassification, batch_size: int = 2) -> torch.Tensor:
    size = model.config.image_size
    return torch.rand(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))


def export_program(model: ETFuserForImageClassification) -> torch.export.ExportedProgram:
    """`torch.export` of the classifier with a dynamic batch dimension."""
    model = model.eval()
    return torch.export.export(LogitsOnly(model).eval(), (example_inputs(model),),
                               dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1)}})


def export_onnx(model: ETFuserForImageClassification, output_path: str | Path) -> Path:
    """Writes `output_path` (.onnx): input `pixel_values` (batch, 3, image_size, image_size) RGB in [0, 1], output
    `logits`; the batch axis is dynamic."""
    output_path = Path(output_path)
    if output_path.suffix != ".onnx":
        raise ValueError(f"output_path must end in .onnx, got {output_path}.")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    program = torch.onnx.export(
        LogitsOnly(model).eval(), (example_inputs(model),), dynamo=True, input_names=["pixel_values"],
        output_names=["logits"], dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1)}},
    )
    program.save(str(output_path))
    return output_path


def verify_onnx(model: ETFuserForImageClassification, onnx_path: str | Path, batch_sizes: tuple[int, ...] = (1, 3)
                ) -> float:
    """Max |onnxruntime - PyTorch| over random inputs of the given batch sizes."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch_size in batch_sizes:
        pixel_values = example_inputs(model, batch_size)
        with torch.no_grad():
            expected = LogitsOnly(model.eval())(pixel_values).numpy()
        (actual,) = session.run(["logits"], {"pixel_values": pixel_values.numpy()})
        worst = max(worst, float(np.abs(actual - expected).max()))
    return worst


__all__ = ["LogitsOnly", "export_onnx", "export_program", "verify_onnx"]
