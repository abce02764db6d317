"""The analysis's own crop cutting (issue 32, Speed): the numpy sampling grid of plain CPU tensors gives the very
floats of the element-wise torch grid that exports use, and networks with one crop share one cut."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from etfuser_hf.models.encoders import affine_sampling_grid, cut_encoder_crops


@pytest.mark.parametrize("batch, height, width", [(4, 160, 160), (3, 7, 9), (0, 4, 4)])
def test_numpy_grid_is_the_torch_grid_bit_for_bit(batch, height, width):
    theta = torch.randn(batch, 2, 3, generator=torch.Generator().manual_seed(batch))
    fast = affine_sampling_grid(theta, height, width)
    # a tensor that needs grad takes the torch ops (as tracing and export do)
    traced = affine_sampling_grid(theta.clone().requires_grad_(True), height, width).detach()
    assert fast.shape == (batch, height, width, 2) and fast.is_contiguous() and fast.dtype == torch.float32
    assert torch.equal(fast, traced)
    if batch:  # and both are affine_grid's up to float rounding (affine_grid refuses an empty batch)
        reference = torch.nn.functional.affine_grid(theta, [batch, 1, height, width], align_corners=False)
        torch.testing.assert_close(fast, reference, atol=2e-6, rtol=0)


def test_network_crops_cut_a_shared_crop_once():
    from types import SimpleNamespace

    from etfuser_hf.analysis.backends import AnalysisGraph

    pixel_values = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    affines = torch.tensor([[[0.5, 0.0, -4.0], [0.0, 0.5, -6.0]]]).repeat(2, 3, 1, 1)
    affines[:, 2, 0, 2] = -3.0  # the third network: the same size, another place
    graph = SimpleNamespace(plan=SimpleNamespace(networks=["first", "second", "third"]),
                            network_sizes=lambda: [(32, 32)] * 3)
    crops = AnalysisGraph.network_crops(graph, pixel_values, affines)
    assert crops["first"] is crops["second"] and crops["third"] is not crops["first"]
    for index, name in enumerate(crops):
        assert torch.equal(crops[name], cut_encoder_crops(pixel_values, affines[:, index], (32, 32)))
    assert not np.array_equal(crops["first"].numpy(), crops["third"].numpy())
