"""The arithmetic a training run computes in: `--precision auto|fp32|bf16|fp16`, resolved to `TrainingArguments`
flags once per job and recorded in the run folder.

`auto` is bf16 autocast where the hardware has bf16 matrix units (a CUDA GPU that supports bf16, or a CPU with Intel
AMX-BF16), fp32 elsewhere: on an AMX CPU bf16 autocast makes a training step (batch 32, one thread) of the dlib age
net 7x faster and of the FER net 1.6x, and the main job's expression run 62 -> 34 s, while on CPUs without AMX it is
emulated and slower than fp32 (`benchmarks/training_cost.py --precision fp32 bf16` prints each model's epoch ratio:
a bf16 epoch takes 0.19 of the fp32 one for the age net, 0.47 for the FER net, 0.86 for the landmark net). It was adopted on
validation: the main job's 21 rows moved by -0.0002 accuracy / -0.0004 NME on average, each within its seeds' spread
(docs/recipe.md). Like cuDNN's TF32 default, the default therefore depends on the machine; the run folder's
`metrics.json` says which one a run used, and `--precision fp32` gives the same arithmetic everywhere.
"""

from __future__ import annotations

from pathlib import Path

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
    """`precision` with `auto` replaced by what this machine computes fastest: "bf16" or "fp32"."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}.")
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_amx_bf16(cpuinfo) else "fp32"


def precision_arguments(precision: str) -> dict[str, bool]:
    """The `TrainingArguments` flags of a resolved precision ("fp32", "bf16" or "fp16")."""
    if precision not in PRECISIONS[1:]:
        raise ValueError(f"precision: expected a resolved precision {PRECISIONS[1:]}, got {precision!r}.")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}
