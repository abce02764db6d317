"""Why the recipe runs the fusion module's attention eager on CPU (`recipe.fusion_attention_implementation`): one
training step (forward + backward) of the default fusion module (`DEFAULT_RECIPE`: width 128, 4 heads, 2 layers) at
the main job's fusion lengths, with SDPA and with the eager product, in fp32 and under bf16 autocast, in one run.

    python benchmarks/fusion_attention.py [--batch-size 32] [--lengths 4 50 70 79] [--repeats 20] [--threads 1]

Lengths: 4 is the ensemble token + three pooled priors; 49, 63 and 70 the landmarks, expression and age spatial
settings (ensemble token + the priors' grid cells, `FaceTask.spatial`). Prints the median step of each and the
ratio SDPA / eager (> 1: eager faster). Random fusion inputs; the outputs of the two agree (printed too).
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
from transformers import ViTConfig

from etfuser_hf import ETFuserConfig
from etfuser_hf.models.modeling_etfuser import ETFuserFusion
from etfuser_hf.training.comparison.recipe import DEFAULT_RECIPE

FUSION_WIDTHS = ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers")


def step_seconds(fusion: ETFuserFusion, sequence: torch.Tensor, precision: str, repeats: int) -> float:
    """Median seconds of forward + backward of `fusion` on `sequence` (batch, L, hidden), after three warm-up steps."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    durations = []
    for index in range(repeats + 3):
        start = time.perf_counter()
        with autocast:
            output, _ = fusion(sequence)
        output.float().square().mean().backward()
        if index >= 3:
            durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lengths", nargs="+", type=int, default=[4, 49, 63, 70])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the main job's workers use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    widths = {key: DEFAULT_RECIPE[key] for key in FUSION_WIDTHS}
    fusions = {}
    for implementation in ("sdpa", "eager"):
        # the fusion module reads only the widths; one tiny prior makes the config valid
        tiny = ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8, image_size=8,
                         patch_size=8)
        config = ETFuserConfig(priors={"prior": tiny}, backbone=None, fusion_mode="priors_only", **widths)
        config._attn_implementation = implementation
        torch.manual_seed(0)  # the same weights for both
        fusions[implementation] = ETFuserFusion(config)
    print(f"fusion module {widths}, batch {args.batch_size}, torch threads {torch.get_num_threads()}, CPU")
    print(f"{'length':>6s} {'prec.':5s} {'SDPA':>10s} {'eager':>10s} {'SDPA / eager':>13s} {'max |difference|':>17s}")
    for length in args.lengths:
        sequence = torch.randn(args.batch_size, length, widths["hidden_size"], requires_grad=True)
        for precision in ("fp32", "bf16"):
            seconds = {name: step_seconds(fusion, sequence, precision, args.repeats)
                       for name, fusion in fusions.items()}
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                outputs = [fusion(sequence)[0].float() for fusion in fusions.values()]
            difference = (outputs[0] - outputs[1]).abs().max().item()
            print(f"{length:6d} {precision:5s} {1000 * seconds['sdpa']:8.2f}ms {1000 * seconds['eager']:8.2f}ms "
                  f"{seconds['sdpa'] / seconds['eager']:13.2f} {difference:17.2e}")


if __name__ == "__main__":
    main()
