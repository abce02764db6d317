"""The floor under the fusion's training cost at age group's shape (issue 34 item 6): the cheapest read-only fusion we
could write, stripped to its arithmetic, timed as a training step on one CPU thread.

At age group's main setting the fusion reads 48 grid tokens (three priors at grid 4: 128-, 256- and 256-dim cells)
into one ensemble token, 2 layers of width 128 (4 heads, MLP 256), batch 32. This module is that function with every
cost the package's model carries beyond arithmetic taken out: the prior tokens are normalised once and shared by both
layers (read-only: they never change), the key projection is folded into the one query, the values are mixed before
their projection, no dropout, no gate, no second head, no position tables beyond one (48, 128) sum, no masks. Its step
(forward, backward, gradient clipping, fused AdamW over its own parameters) is what any implementation of the
read-only fusion pays at this shape on this machine, give or take its optimizer's share.

    python benchmarks/fusion_floor.py [--steps 40] [--precision bf16|fp32]

2026-12-07, idle 2-core machine (torch 2.13.0+cpu, 1 thread), three runs each: 15.6, 17.6 and 19.1 ms per step in
bf16 autocast, 12.9, 13.2 and 13.3 ms in float32. The canonical model's age-group step is 82.6-87.8 ms (`benchmarks/fusion_step_ops.py`,
`torch.profiler`), so the 1.10 goal leaves the fusion ~9 ms: this shape cannot reach it on this CPU however the fusion
is written. The package's read-only fusion adds ~20 ms (108.3 against 87.8 ms), the full stack ~29 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

BATCH, WIDTH, HEADS, LAYERS, CELLS = 32, 128, 4, 2, 16
PRIOR_DIMS = (128, 256, 256)  # expression, face_landmarks, face_recognition grids at age group's grid 4


class ReadOnlyFusionFloor(nn.Module):
    """One ensemble token reading `len(PRIOR_DIMS) * CELLS` fixed prior tokens through `LAYERS` pre-norm layers."""

    def __init__(self, num_labels: int = 5):
        super().__init__()
        self.projections = nn.ModuleList(nn.Linear(dim, WIDTH) for dim in PRIOR_DIMS)
        self.positions = nn.Parameter(torch.zeros(len(PRIOR_DIMS) * CELLS, WIDTH))
        self.ensemble_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.norms = nn.ModuleList(nn.LayerNorm(WIDTH) for _ in range(LAYERS))
        self.queries = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS))
        self.keys_values = nn.ParameterList(nn.Parameter(torch.randn(2, WIDTH, WIDTH) * 0.05) for _ in range(LAYERS))
        self.outputs = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS))
        self.mlp_norms = nn.ModuleList(nn.LayerNorm(WIDTH) for _ in range(LAYERS))
        self.mlp_in = nn.ModuleList(nn.Linear(WIDTH, 2 * WIDTH) for _ in range(LAYERS))
        self.mlp_out = nn.ModuleList(nn.Linear(2 * WIDTH, WIDTH) for _ in range(LAYERS))
        self.head = nn.Linear(WIDTH, num_labels)

    def forward(self, grids: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """`grids`: one (batch, CELLS, dim) tensor per prior; `labels` (batch,) -> the cross-entropy loss."""
        batch, head_dim = labels.shape[0], WIDTH // HEADS
        tokens = torch.cat([project(grid) for project, grid in zip(self.projections, grids)], 1) + self.positions
        normalised = F.layer_norm(tokens, (WIDTH,))  # once: read-only tokens are the same in every layer
        ensemble = self.ensemble_token.expand(batch, 1, WIDTH)
        for layer in range(LAYERS):
            sequence = torch.cat([F.layer_norm(ensemble, (WIDTH,)), normalised], 1)
            sequence = sequence * self.norms[layer].weight + self.norms[layer].bias
            query = self.queries[layer](sequence[:, :1]).view(batch, HEADS, head_dim)
            key_weight, value_weight = self.keys_values[layer].view(2, HEADS, head_dim, WIDTH)
            folded = torch.einsum("bhd,hdk->bhk", query, key_weight)
            weights = torch.softmax(folded @ sequence.transpose(1, 2) * head_dim**-0.5, dim=-1)
            values = torch.einsum("bhk,hdk->bhd", weights @ sequence, value_weight).reshape(batch, 1, WIDTH)
            ensemble = ensemble + self.outputs[layer](values)
            ensemble = ensemble + self.mlp_out[layer](F.gelu(self.mlp_in[layer](self.mlp_norms[layer](ensemble))))
        return F.cross_entropy(self.head(ensemble[:, 0]), labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    grids = [torch.randn(BATCH, CELLS, dim) for dim in PRIOR_DIMS]
    labels = torch.randint(0, 5, (BATCH,))
    model = ReadOnlyFusionFloor()
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)

    def step() -> None:
        precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
        with precision:
            loss = model(grids, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(5):  # warm-up: the optimizer's state, the first call's allocations
        step()
    times = []
    for _ in range(args.steps):
        start = time.process_time()
        step()
        times.append(1e3 * (time.process_time() - start))
    print(f"read-only fusion floor at age group's shape ({args.precision}, 1 thread, batch {BATCH}): "
          f"{statistics.median(times):.2f} ms per training step (median of {args.steps})")


if __name__ == "__main__":
    main()
