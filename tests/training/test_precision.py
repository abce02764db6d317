"""`--precision`: auto picks bf16 only where the hardware has bf16 matrix units, and the choice reaches the Trainer."""

from __future__ import annotations

import pytest
import torch

from etfuser_hf.training.main import parse_args
from etfuser_hf.training.precision import cpu_has_amx_bf16, precision_arguments, resolve_precision


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
