"""Bad pixels at the image processor: NaN/inf refused, float 0..255 read as such and reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from etfuser_hf import ETFuserImageProcessor


@pytest.fixture
def processor() -> ETFuserImageProcessor:
    return ETFuserImageProcessor(size={"height": 16, "width": 16})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_non_finite_pixels_are_refused_naming_the_image(processor, bad, kind):
    good = np.full((8, 8, 3), 0.5, dtype=np.float32)
    image = good.copy()
    image[2, 3, 1] = bad
    if kind == "torch":
        good, image = torch.from_numpy(good), torch.from_numpy(image)
    with pytest.raises(ValueError, match=r"images\[1\]: expected finite pixel values, got 1 NaN or inf"):
        processor([good, image], return_tensors="pt")


def test_float_pixels_in_0_255_are_rescaled_with_a_warning(processor):
    image = np.random.default_rng(0).uniform(0, 255, size=(16, 16, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"images\[0\]: float pixels reach .*expected \[0, 1\].*divided by 255"):
        scaled = processor(image, return_tensors="pt")["pixel_values"]
    reference = processor(image / 255.0, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(scaled, reference)  # the same image, not a saturated white one
    assert 0.0 <= float(scaled.min()) and float(scaled.max()) <= 1.0


def test_float_pixels_in_0_1_give_no_warning(processor, recwarn):
    processor(np.full((16, 16, 3), 0.25, dtype=np.float32), return_tensors="pt")
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_float_pixels_beyond_255_are_refused(processor):
    with pytest.raises(ValueError, match=r"images\[0\]: expected float pixels in \[0, 1\].*maximum of 1000"):
        processor(np.full((16, 16, 3), 1000.0, dtype=np.float32), return_tensors="pt")
