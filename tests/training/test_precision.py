"""`--precision`: auto picks bf16 only where the hardware has bf16 matrix units, and the choice reaches the Trainer."""

from __future__ import annotations

import pytest
import torch

from etfuser_hf.training.main import parse_args
from etfuser_hf.training.run.precision import cpu_has_amx_bf16, precision_arguments, resolve_precision


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test cpu\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto reads the GPU, not the CPU, where one is present")
def test_precision_auto_is_bf16_on_amx_cpus_only(tmp_path):
    assert cpu_has_amx_bf16(_cpuinfo(tmp_path, "avx512f amx_tile amx_bf16"))
    assert not cpu_has_amx_bf16(_cpuinfo(tmp_path, "avx512f avx512_bf16"))  # emulated bf16 is slower than fp32
    assert not cpu_has_amx_bf16(tmp_path / "absent")
    assert resolve_precision("auto", _cpuinfo(tmp_path, "amx_bf16")) == "bf16"
    assert resolve_precision("auto", _cpuinfo(tmp_path, "avx2")) == "fp32"
    assert resolve_precision("fp32", _cpuinfo(tmp_path, "amx_bf16")) == "fp32"


def test_precision_arguments_and_bad_values(tmp_path):
    assert precision_arguments("bf16") == {"bf16": True, "fp16": False}
    assert precision_arguments("fp32") == {"bf16": False, "fp16": False}
    with pytest.raises(ValueError, match="precision: expected one of"):
        resolve_precision("float32")
    with pytest.raises(ValueError, match="resolved precision"):
        precision_arguments("auto")
    with pytest.raises(SystemExit):
        parse_args(["--precision", "half", "--output-dir", str(tmp_path / "run")])
    assert parse_args(["--output-dir", str(tmp_path / "run")]).precision == "auto"


def test_precision_auto_on_a_gpu_is_bf16_where_supported_else_fp16(monkeypatch):
    """T4 / V100 have fp16 tensor cores and no bf16: auto must not leave them in fp32."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_precision("auto") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision("auto") == "bf16"


def test_gradient_accumulation_keeps_the_images_per_optimizer_step(tmp_path):
    from etfuser_hf.training.run.precision import accelerator_arguments
    from etfuser_hf.training.run.processes import per_process_batch_size

    args = parse_args(["--batch-size", "32", "--gradient-accumulation-steps", "4", "--torch-compile",
                       "--precision", "fp32", "--output-dir", str(tmp_path / "run")])
    assert args.batch_per_process == 8  # 4 passes of 8 images: one step of 32, as the recipe's rates assume
    assert accelerator_arguments(args) == {"gradient_accumulation_steps": 4, "torch_compile": True, "bf16": False,
                                           "fp16": False}
    assert per_process_batch_size(32, 2, 4) == 4
    with pytest.raises(ValueError, match="by 2 processes x 3 accumulation steps; pass a multiple of 6"):
        per_process_batch_size(32, 2, 3)
    with pytest.raises(ValueError, match="at least 1, got 0"):
        per_process_batch_size(32, 1, 0)
    with pytest.raises(SystemExit):
        parse_args(["--batch-size", "32", "--gradient-accumulation-steps", "3", "--output-dir", str(tmp_path / "r")])


def test_batches_move_to_the_models_device_nested():
    from etfuser_hf.training.run.processes import batch_to

    batch = {"pixel_values": torch.zeros(2, 3), "prior_crops": {"age": torch.zeros(2, 2, 3)},
             "labels": [torch.ones(2)], "name": "x"}
    moved = batch_to(batch, torch.device("meta"))
    assert moved["pixel_values"].is_meta and moved["prior_crops"]["age"].is_meta and moved["labels"][0].is_meta
    assert moved["name"] == "x" and not batch["pixel_values"].is_meta
