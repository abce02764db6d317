"""The arithmetic a training run computes in: `--precision auto|fp32|bf16|fp16`, resolved to `TrainingArguments`
flags once per job and recorded in the run folder; and the other accelerator settings of a run
(`--gradient-accumulation-steps`, `--torch-compile`).

`auto` is bf16 autocast where the hardware has bf16 matrix units (a CUDA GPU that supports bf16, or a CPU with Intel
AMX-BF16), fp16 autocast with loss scaling on a CUDA GPU without bf16 (T4, V100: their tensor cores run fp16, and
fp32 leaves them idle), fp32 elsewhere: on an AMX CPU bf16 autocast makes a training step (batch 32, one thread) of the
dlib age net 7x faster and of the FER net 1.6x, and the main job's expression run 62 -> 34 s, while on CPUs without AMX it is
emulated and slower than fp32 (`benchmarks/training_cost.py --precision fp32 bf16` prints each model's epoch ratio:
a bf16 epoch takes 0.19 of the fp32 one for the age net, 0.47 for the FER net, 0.86 for the landmark net). It was adopted on
validation: the main job's 21 rows moved by -0.0002 accuracy / -0.0004 NME on average, each within its seeds' spread
(docs/recipe.md). Like cuDNN's TF32 default, the default therefore depends on the machine; the run folder's
`metrics.json` says which one a run used, and `--precision fp32` gives the same arithmetic everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_amx_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU advertises Intel AMX-BF16 (`amx_bf16` among its Linux cpuinfo flags); False where unknown."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines())


def resolve_precision(precision: str, cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """`precision` with `auto` replaced by what this machine computes fastest: "bf16", "fp16" (CUDA without bf16) or
    "fp32"."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}.")
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_amx_bf16(cpuinfo) else "fp32"


def precision_arguments(precision: str) -> dict[str, bool]:
    """The `TrainingArguments` flags of a resolved precision ("fp32", "bf16" or "fp16")."""
    if precision not in PRECISIONS[1:]:
        raise ValueError(f"precision: expected a resolved precision {PRECISIONS[1:]}, got {precision!r}.")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def add_accelerator_arguments(group: argparse._ArgumentGroup) -> None:
    """The options of how a run uses its hardware, beside `--precision`."""
    group.add_argument("--gradient-accumulation-steps", type=int, default=1, metavar="N",
                       help="reach --batch-size images per optimizer step in N forward passes of a share each (less "
                            "memory; the same step, so the recipe's learning rates hold)")
    group.add_argument("--torch-compile", action="store_true",
                       help="compile each model with torch.compile (the Trainer's torch_compile; worth it on a GPU)")


def accelerator_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The `TrainingArguments` of those options and of `--precision`."""
    return {"gradient_accumulation_steps": args.gradient_accumulation_steps, "torch_compile": args.torch_compile,
            **precision_arguments(resolve_precision(args.precision))}
