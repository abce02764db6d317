"""Fusion overhead of ET-Fuser, measured in one run on this machine.

Prints (a) the forward time of ET-Fuser divided by the time of running its priors and its backbone separately on the
same batch, (b) the fusion module's share of all parameters, and (c) the cost of the eager input check
(`input_checks.check_pixel_values`: empty batch, NaN/inf, beyond 16-bit values, 0..255 warning; skipped under tracing,
export and compile) against the ET-Fuser forward. Realistic prior set: three ViT-S/16-sized random
priors + a ViT-S/16 backbone at 224x224, batch 32, CPU, inference (`torch.inference_mode`). Targets: (a) <= 1.03,
(b) <= 2 %.

    python benchmarks/overhead.py [--batch-size 32] [--repeats 3] [--fusion-mode prepend_token]
    python benchmarks/overhead.py --grid-size 4 --fusion-mode canonical_tokens   # spatial tokens (14x14 patch grids)

`--grid-size G` reads every prior's 14 x 14 patch grid as G x G grid tokens (`EncoderSpec(feature="grid")`) instead
of its pooled output; under `--fusion-mode canonical_tokens` the backbone's own G x G tokens join the fusion too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import ViTConfig

from etfuser_hf import ETFuserConfig, ETFuserModel
from etfuser_hf.models import input_checks
from etfuser_hf.models.encoders import prepare_encoder_inputs


def vit_small() -> ViTConfig:
    return ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                     image_size=224, patch_size=16)


def timed(function, repeats: int) -> float:
    """Median wall time of `function()` over `repeats` runs, after one warm-up."""
    function()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fusion-mode", default="prepend_token")
    parser.add_argument("--grid-size", type=int, default=0, help="G > 0: every prior as G x G grid tokens")
    args = parser.parse_args()
    torch.manual_seed(0)

    read_as = {"feature": "grid", "grid_size": args.grid_size} if args.grid_size else {}
    config = ETFuserConfig(
        priors={name: {"config": vit_small(), **read_as} for name in ("identity", "expression", "age")},
        backbone=vit_small(),
        fusion_mode=args.fusion_mode,
        canonical_grid_size=args.grid_size or 2,
    )
    model = ETFuserModel(config).eval()
    pixel_values = torch.rand(args.batch_size, 3, 224, 224)

    def separately() -> None:
        for name, prior in model.priors.items():
            prior(pixel_values=prepare_encoder_inputs(pixel_values, config.priors[name]))
        model.backbone(pixel_values=prepare_encoder_inputs(pixel_values, config.backbone))

    def fused() -> None:
        model(pixel_values)

    check = input_checks.check_pixel_values

    def fused_unchecked() -> None:
        input_checks.check_pixel_values = lambda pixel_values: None
        try:
            model(pixel_values)
        finally:
            input_checks.check_pixel_values = check

    with torch.inference_mode():
        # interleave the measurements so drifting machine load hits all alike
        separate_times, fused_times, unchecked_times = [], [], []
        for _ in range(args.repeats):
            separate_times.append(timed(separately, 1))
            fused_times.append(timed(fused, 1))
            unchecked_times.append(timed(fused_unchecked, 1))
        check_time = timed(lambda: check(pixel_values), 20)
    separate_time, fused_time = statistics.median(separate_times), statistics.median(fused_times)
    unchecked_time = statistics.median(unchecked_times)

    tokens = f"{args.grid_size}x{args.grid_size} grid" if args.grid_size else "pooled"
    total = sum(p.numel() for p in model.parameters())
    encoders = sum(p.numel() for p in model.priors.parameters()) + sum(p.numel() for p in model.backbone.parameters())
    fusion = total - encoders
    print(f"config: 3 x ViT-S/16 priors + ViT-S/16 backbone, 224x224, batch {args.batch_size}, "
          f"fusion_mode={args.fusion_mode}, prior tokens {tokens}, "
          f"fusion width {config.hidden_size} x {config.num_hidden_layers} layers, "
          f"{torch.get_num_threads()} threads")
    print(f"priors + backbone separately: {separate_time:.3f} s   ET-Fuser forward: {fused_time:.3f} s")
    print(f"(a) forward time ratio ET-Fuser / separate = {fused_time / separate_time:.4f}   (target <= 1.03)")
    print(f"(b) fusion params / total params = {fusion:,} / {total:,} = {100 * fusion / total:.2f} %   (target <= 2 %)")
    print(f"(c) eager input check: {1000 * check_time:.2f} ms = {100 * check_time / fused_time:.3f} % of the forward; "
          f"forward with / without it = {fused_time / unchecked_time:.4f}")


if __name__ == "__main__":
    main()
