"""The processes a job runs in: this one alone, or those `torchrun` / `accelerate launch` started. Under a launcher
every process trains every run together (the Trainer's data parallelism); the main process alone prepares the caches
first (the others then read them) and writes: the run folder, the saved models, the Trainer's checkpoints."""

from __future__ import annotations

import torch
from accelerate import PartialState


def trains_on_cpu() -> bool:
    """Whether the runs train on the CPU (no GPU here): `trainer.training_arguments`' `use_cpu`."""
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    """This job's processes as accelerate sees them, its process group set up on first call. On the device the runs
    train on: on a CPU-only machine a state made without `cpu=True` would not see the processes torchrun started."""
    return PartialState(cpu=trains_on_cpu())


def per_process_batch_size(batch_size: int, num_processes: int) -> int:
    """Each process's share of `batch_size` images per optimizer step, so that a step sees the same images however
    many processes share it (the recipe's learning rates were chosen for that batch). Raises `ValueError` where the
    processes cannot share it evenly."""
    if batch_size % num_processes:
        raise ValueError(f"{batch_size} images per step cannot be shared evenly by {num_processes} processes; "
                         f"pass a multiple of {num_processes}.")
    return batch_size // num_processes


__all__ = ["per_process_batch_size", "process_state", "trains_on_cpu"]
