"""Eager input checks of the model forward: empty batch, NaN/inf, values beyond any pixel encoding, 0..255 floats;
skipped under torch.export."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from conftest import tiny_etfuser_config

from etfuser_hf import ETFuserForImageClassification


@pytest.fixture(scope="module")
def model() -> ETFuserForImageClassification:
    torch.manual_seed(0)
    return ETFuserForImageClassification(tiny_etfuser_config()).eval()


def test_empty_batch_is_a_clear_error(model):
    with pytest.raises(ValueError, match=r"pixel_values: got an empty batch, shape \(0, 3, 32, 32\)"):
        model(pixel_values=torch.rand(0, 3, 32, 32))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_pixels_are_a_clear_error(model, bad):
    pixel_values = torch.rand(2, 3, 32, 32)
    pixel_values[1, 0, 4, 4] = bad
    with pytest.raises(ValueError, match=r"pixel_values: expected finite values .*got 1 NaN or inf"):
        model(pixel_values=pixel_values)


@pytest.mark.parametrize("huge", [1e30, -1e30, 7e4])
def test_finite_but_huge_pixels_are_a_clear_error(model, huge, monkeypatch):
    pixel_values = torch.rand(2, 3, 32, 32)
    pixel_values[0, 1, 2, 3] = huge
    expected = re.escape(f"pixel_values: expected RGB in [0, 1] (never beyond +-65535, the largest 16-bit pixel "
                         f"value), got a value of {huge:g}, which no image encoding gives")
    with pytest.raises(ValueError, match=expected):
        model(pixel_values=pixel_values)
    if abs(huge) == 1e30:  # what the check prevents: without it, the logits are silently not finite
        from etfuser_hf.models import input_checks

        monkeypatch.setattr(input_checks, "check_pixel_values", lambda pixel_values: None)
        with torch.no_grad():
            assert not torch.isfinite(model(pixel_values=pixel_values).logits).all()


def test_16_bit_pixels_only_warn(model):
    pixel_values = torch.rand(2, 3, 32, 32)
    pixel_values[0, 0, 0, 0] = 65535.0
    with pytest.warns(UserWarning, match="pixel_values reach 65535"), torch.no_grad():
        assert torch.isfinite(model(pixel_values=pixel_values).logits).all()


def test_pixels_in_0_255_warn(model):
    with pytest.warns(UserWarning, match=r"pixel_values reach 2\d\d.*expects RGB in \[0, 1\].*divide by 255"):
        model(pixel_values=torch.rand(2, 3, 32, 32) * 255)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model(pixel_values=torch.rand(2, 3, 32, 32))


def test_checks_are_skipped_under_export(model, monkeypatch):
    from etfuser_hf.models import input_checks

    calls = []
    monkeypatch.setattr(input_checks, "check_pixel_values", lambda pixel_values: calls.append(1))
    model(pixel_values=torch.rand(1, 3, 32, 32))
    assert calls == [1]
    torch.export.export(model, (), {"pixel_values": torch.rand(2, 3, 32, 32)}, strict=False)
    assert calls == [1]  # not called while tracing
