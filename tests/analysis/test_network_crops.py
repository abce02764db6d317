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
    """Networks with the same affines, windows, size and resampling share one cut; a dlib chip at the same place is
    cut apart, with dlib's pyramid (`encoders.crop_resampling`)."""
    from types import SimpleNamespace

    from etfuser_hf.analysis.backends import AnalysisGraph

    pixel_values = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    affines = torch.tensor([[[0.5, 0.0, -4.0], [0.0, 0.5, -6.0]]]).repeat(2, 4, 1, 1)
    affines[:, 2, 0, 2] = -3.0  # the third network: the same size, another place
    names = ["first", "second", "third", "chip"]
    geometries = {name: {"name": "arcface_template"} for name in names} | {"chip": {"name": "dlib_chip"}}
    graph = SimpleNamespace(plan=SimpleNamespace(networks=names, geometries=geometries),
                            network_sizes=lambda: [(32, 32)] * 4)
    crops = AnalysisGraph.network_crops(graph, pixel_values, affines)
    assert crops["first"] is crops["second"] and crops["third"] is not crops["first"]
    assert crops["chip"] is not crops["first"]
    for index, name in enumerate(crops):
        resampling = "dlib_pyramid" if name == "chip" else "box"
        assert torch.equal(crops[name], cut_encoder_crops(pixel_values, affines[:, index], (32, 32), None, resampling))
    assert not np.array_equal(crops["first"].numpy(), crops["third"].numpy())


def test_analyze_network_crops_carry_the_windows_on_a_border_face():
    """fer's box over the right and bottom border of a photo (its recorded face 3), as `analyze` cuts it: the first
    stage hands the second each windowed network's rows (`CropPlan.window_rows`, the canonical crop -> photo affine,
    fer's grey from the photo's bottom rows), and the crop the graph is handed (`network_crops`) is fer's recorded
    crop, padding grey included: within 2 grey levels on average (measured 1.03; the loose canonical crop is a uint8
    bilinear resample of the photo, cut again, so fine detail at the top left misses by up to 46 at a few pixels,
    with or without windows), within 1 on the padding (measured 0.15), where without the windows the padding is black:
    off by the photo's bottom grey, 19 levels."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from etfuser_hf.analysis.backends import AnalysisBackend, AnalysisGraph
    from etfuser_hf.models.configuration_face_priors import FaceApiLandmarkConfig, FerMiniXceptionConfig
    from etfuser_hf.models.input_checks import BACKBONE_CROP_KEY, WINDOW_SUFFIX
    from etfuser_hf.priors.crop_plan import CropPlan, FaceGeometry, image_bottom_grey
    from etfuser_hf.priors.crop_warp import crops_as_pixel_values, cut_canonical_crops

    fixtures = Path(__file__).resolve().parents[1] / "priors" / "fixtures"
    spec = importlib.util.spec_from_file_location("reference_photos", fixtures / "generate" / "reference_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    recorded = np.load(fixtures / "fer" / "crops.npz")
    photo = module.reference_photos()[str(recorded["photos"][3])]
    points = np.array([[[470.0, 560.0], [520.0, 560.0], [495.0, 590.0], [475.0, 615.0], [515.0, 615.0]]])
    canonical = np.concatenate(cut_canonical_crops([photo], [points]))
    faces = FaceGeometry.from_detections(recorded["boxes"][3:4], points, photo.shape[:2], canonical.shape[1],
                                         image_bottom_grey([photo]))
    plan = CropPlan({BACKBONE_CROP_KEY: FerMiniXceptionConfig().crop_geometry,
                     "face_landmarks": FaceApiLandmarkConfig().crop_geometry}, None)
    graph = SimpleNamespace(plan=plan, landmark_stage=None, network_sizes=lambda: [(64, 64), (112, 112)])
    pixel_values = crops_as_pixel_values(canonical)
    _, affines, _, windows = AnalysisBackend.first_stage(SimpleNamespace(graph=graph), pixel_values, faces)
    assert set(windows) == {BACKBONE_CROP_KEY + WINDOW_SUFFIX, "face_landmarks" + WINDOW_SUFFIX}
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    crops = [(AnalysisGraph.network_crops(graph, torch.from_numpy(pixel_values), torch.from_numpy(affines), cut)
              [BACKBONE_CROP_KEY] * 255 * luma).sum(1)[0].numpy() for cut in (windows, None)]
    difference, without = (np.abs(crop - recorded["crops"][3]) for crop in crops)
    assert difference.mean() < 2, difference.mean()
    # the last 15 rows and columns are fer's padding (the box runs 40 px past the photo's right and bottom edges)
    for padding in (np.s_[-15:, :], np.s_[:, -15:]):
        assert difference[padding].mean() < 1 and without[padding].mean() > 15, (difference[padding].mean(),
                                                                                  without[padding].mean())
