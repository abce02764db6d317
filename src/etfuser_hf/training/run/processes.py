"""The processes a job runs in: this one alone, or those `torchrun` / `accelerate launch` started. Under a launcher
every process trains every run together (the Trainer's data parallelism); the main process alone prepares the caches
first (the others then read them) and writes: the run folder, the saved models, the Trainer's checkpoints."""

from __future__ import annotations

from typing import Any

import torch
from accelerate import PartialState


def trains_on_cpu() -> bool:
    """Whether the runs train on the CPU (no GPU here): `trainer.training_arguments`' `use_cpu`."""
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    """This job's processes as accelerate sees them, its process group set up on first call. On the device the runs
    train on: on a CPU-only machine a state made without `cpu=True` would not see the processes torchrun started."""
    return PartialState(cpu=trains_on_cpu())


def per_process_batch_size(batch_size: int, num_processes: int, accumulation_steps: int = 1) -> int:
    """Each process's share of `batch_size` images per optimizer step in each of `accumulation_steps` forward passes,
    so that a step sees the same images however many processes and passes share it (the recipe's learning rates were
    chosen for that batch). Raises `ValueError` where they cannot share it evenly."""
    if accumulation_steps < 1:
        raise ValueError(f"gradient accumulation steps must be at least 1, got {accumulation_steps}.")
    shares = num_processes * accumulation_steps
    if batch_size % shares:
        passes = f" x {accumulation_steps} accumulation steps" if accumulation_steps > 1 else ""
        raise ValueError(f"{batch_size} images per step cannot be shared evenly by {num_processes} processes{passes}; "
                         f"pass a multiple of {shares}.")
    return batch_size // shares


def batch_to(batch: Any, device: torch.device | str) -> Any:
    """A collated batch (tensors, nested in dicts, lists and tuples) with every tensor on `device`: evaluation and
    the attention figures run where the model is, not on the CPU beside a GPU."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: batch_to(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(batch_to(value, device) for value in batch)
    return batch


def runs_device() -> torch.device:
    """Where the runs train and their models are measured: the GPU where there is one, else the CPU."""
    return torch.device("cpu" if trains_on_cpu() else "cuda")


__all__ = ["batch_to", "per_process_batch_size", "process_state", "runs_device", "trains_on_cpu"]
