"""`prior_crops`: each network's own crop of `pixel_values`, cut inside the forward by (batch, 2, 3) affines; without
them every network sees the whole input resized, exactly as before."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_etfuser_config

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.models.encoders import crop_sampling_grid, cut_encoder_crops, prepare_encoder_inputs


@pytest.fixture(scope="module")
def model() -> ETFuserForImageClassification:
    torch.manual_seed(0)
    return ETFuserForImageClassification(tiny_etfuser_config()).eval()


@pytest.fixture
def pixel_values() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def scale_shift(scale: float, shift_x: float, shift_y: float, batch: int = 2) -> torch.Tensor:
    """(batch, 2, 3) affines crop = scale * image + shift."""
    affine = torch.tensor([[scale, 0.0, shift_x], [0.0, scale, shift_y]])
    return affine.expand(batch, 2, 3).clone()


def received_inputs(module: torch.nn.Module, call) -> list[torch.Tensor]:
    """The `pixel_values` `module` receives while `call()` runs."""
    seen = []
    handle = module.register_forward_pre_hook(lambda _, args, kwargs: seen.append(kwargs["pixel_values"]),
                                              with_kwargs=True)
    try:
        with torch.no_grad():
            call()
    finally:
        handle.remove()
    return seen


def test_identity_crop_is_the_input_itself(pixel_values):
    identity = scale_shift(1.0, 0.0, 0.0)
    assert torch.equal(cut_encoder_crops(pixel_values, identity, (32, 32)), pixel_values)


def test_crop_reads_the_pixels_its_affine_names(pixel_values):
    # crop = 2 * image - (8, 4): the 16x16 window from x = 4, y = 2 enlarged twice; crop pixel centre (2u + 1) / 2
    # lands on image (u + 0.5 + 8) / 2: the bilinear mix of the image pixels around it
    crops = cut_encoder_crops(pixel_values, scale_shift(2.0, -8.0, -4.0), (32, 32))
    expected = torch.nn.functional.interpolate(pixel_values[:, :, 2:18, 4:20], size=(32, 32), mode="bilinear",
                                               align_corners=False)
    interior = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # the window's border reads its neighbours
    torch.testing.assert_close(crops[interior], expected[interior], atol=1e-6, rtol=0)


def test_grid_matches_the_pixel_centre_convention():
    affines = torch.tensor([[[0.5, 0.0, 3.0], [0.0, 0.5, 1.0]]])  # crop = image / 2 + (3, 1)
    grid = crop_sampling_grid(affines, (40, 20), (8, 8))
    # crop pixel (0, 0) has its centre at (0.5, 0.5): image (2 * (0.5 - 3), 2 * (0.5 - 1)) = (-5, -1)
    x = (grid[0, 0, 0, 0] + 1) * 20 / 2
    y = (grid[0, 0, 0, 1] + 1) * 40 / 2
    torch.testing.assert_close(torch.stack([x, y]), torch.tensor([-5.0, -1.0]))


def test_without_prior_crops_the_forward_is_unchanged(model, pixel_values):
    with torch.no_grad():
        plain = model(pixel_values=pixel_values).logits
        empty = model(pixel_values=pixel_values, prior_crops={}).logits
        none = model(pixel_values=pixel_values, prior_crops=None).logits
    assert torch.equal(plain, empty) and torch.equal(plain, none)


def test_each_prior_receives_its_own_crop(model, pixel_values):
    affines = scale_shift(2.0, -8.0, -4.0)
    spec = model.config.priors["vit"]
    seen = received_inputs(model.etfuser.priors["vit"],
                           lambda: model(pixel_values=pixel_values, prior_crops={"vit": affines}))
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], prepare_encoder_inputs(cut_encoder_crops(pixel_values, affines, (32, 32)),
                                                               spec))
    # a prior without an entry keeps the whole input resized
    seen = received_inputs(model.etfuser.priors["clip"],
                           lambda: model(pixel_values=pixel_values, prior_crops={"vit": affines}))
    torch.testing.assert_close(seen[0], prepare_encoder_inputs(pixel_values, model.config.priors["clip"]))


def test_prior_crops_change_the_features_and_logits(model, pixel_values):
    affines = {"vit": scale_shift(2.0, -8.0, -4.0), "backbone": scale_shift(2.0, -16.0, -16.0)}
    with torch.no_grad():
        plain = model.etfuser.extract_prior_features(pixel_values)
        cropped = model.etfuser.extract_prior_features(pixel_values, prior_crops=affines)
        assert torch.equal(plain["clip"], cropped["clip"]) and not torch.allclose(plain["vit"], cropped["vit"])
        assert not torch.allclose(model(pixel_values=pixel_values).logits,
                                  model(pixel_values=pixel_values, prior_crops=affines).logits)


def test_backbone_crop_reaches_the_canonical_model(model, pixel_values):
    affines = scale_shift(2.0, -16.0, -16.0)
    seen = received_inputs(model.etfuser.backbone,
                           lambda: model(pixel_values=pixel_values, prior_crops={"backbone": affines}))
    torch.testing.assert_close(seen[0], prepare_encoder_inputs(cut_encoder_crops(pixel_values, affines, (32, 32)),
                                                               model.config.backbone))


def test_cached_features_bypass_the_prior_crops(model, pixel_values):
    affines = {"vit": scale_shift(2.0, -8.0, -4.0)}
    with torch.no_grad():
        features = model.etfuser.extract_prior_features(pixel_values, prior_crops=affines)
        direct = model(pixel_values=pixel_values, prior_crops=affines).logits
        cached = model(pixel_values=pixel_values, prior_features=features, prior_crops=affines).logits
    torch.testing.assert_close(direct, cached)


def test_names_run_only_those_priors(model, pixel_values):
    with torch.no_grad():
        first, outputs = model.etfuser.extract_prior_features(pixel_values, return_prior_outputs=True, names=["clip"])
        everything = model.etfuser.extract_prior_features(pixel_values)
    assert list(first) == ["clip"] and list(outputs) == ["clip"]
    assert torch.equal(first["clip"], everything["clip"])
    with pytest.raises(ValueError, match=r"names: expected a list of prior names from \['clip', 'convnext', 'vit'\], "
                                         r"got \['age'\]"):
        model.etfuser.extract_prior_features(pixel_values, names=["age"])


@pytest.mark.parametrize(
    "prior_crops, error, message",
    [
        ({"age": scale_shift(1.0, 0.0, 0.0)}, ValueError,
         r"prior_crops: unknown network\(s\) \['age'\]; expected some of \['clip', 'convnext', 'vit', 'backbone'\]"),
        ({"vit": torch.eye(3)[:2]}, ValueError, r"prior_crops\['vit'\] must have shape \(batch, 2, 3\).*got \(2, 3\)"),
        ({"vit": torch.zeros(2, 3, 3)}, ValueError, r"prior_crops\['vit'\] must have shape \(batch, 2, 3\)"),
        ({"vit": scale_shift(1.0, 0.0, 0.0, batch=3)}, ValueError,
         r"prior_crops\['vit'\] holds 3 affines but pixel_values 2 images"),
        ({"vit": torch.ones(2, 2, 3, dtype=torch.long)}, ValueError, r"prior_crops\['vit'\] must be a float tensor"),
        ({"clip": scale_shift(0.0, 1.0, 1.0)}, ValueError, r"prior_crops\['clip'\]: expected finite, invertible"),
        ({"clip": scale_shift(float("nan"), 1.0, 1.0)}, ValueError, r"prior_crops\['clip'\]: expected finite"),
        ([scale_shift(1.0, 0.0, 0.0)], TypeError, r"prior_crops must be a dict network name -> \(batch, 2, 3\)"),
    ],
)
def test_bad_prior_crops_are_clear_errors(model, pixel_values, prior_crops, error, message):
    with pytest.raises(error, match=message):
        model(pixel_values=pixel_values, prior_crops=prior_crops)
    with pytest.raises(error, match=message):
        model.etfuser.extract_prior_features(pixel_values, prior_crops=prior_crops)


def test_prior_crops_need_pixel_values(model, pixel_values):
    with torch.no_grad():
        features = model.etfuser.extract_prior_features(pixel_values)
    with pytest.raises(ValueError, match="prior_crops: the crops are cut from pixel_values, which is None"):
        model.etfuser(pixel_values=None, prior_features=features, prior_crops={"vit": scale_shift(1.0, 0.0, 0.0)})


def test_shrinking_crop_averages_like_an_antialiased_resize():
    # a smooth image and a crop 8x smaller (the whole input on 16 px): n x n samples per crop pixel (n = 4 here,
    # CROP_SPAN_OF_INPUT of 128 px on 16), not one bilinear tap, so the crop matches an antialiased resize
    coarse = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    smooth = torch.nn.functional.interpolate(coarse, size=(128, 128), mode="bicubic", align_corners=False)
    noisy = smooth + 0.2 * torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    affines = scale_shift(16 / 128, 0.0, 0.0, batch=1)
    resized = torch.nn.functional.interpolate(noisy, size=(16, 16), mode="bilinear", align_corners=False,
                                              antialias=True)
    crops = cut_encoder_crops(noisy, affines, (16, 16))
    assert (crops - resized).abs().mean() < 0.02
    # one tap per pixel would keep the noise the resize averages away
    single = torch.nn.functional.grid_sample(noisy, crop_sampling_grid(affines, (128, 128), (16, 16)),
                                             align_corners=False)
    assert (single - resized).abs().mean() > 2 * (crops - resized).abs().mean()


# ---------------------------------------------------------------------------------------------------------------------
# window rows: what a network's original pipeline shows around its crop (`prior_crops[name + ".window"]`)
# ---------------------------------------------------------------------------------------------------------------------


def window(batch: int = 2, shown=(8.0, 8.0, 24.0, 24.0), bounds=(0.0, 0.0, 32.0, 32.0), fill=0.25,
           to_image=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))) -> torch.Tensor:
    """(batch, 17) window rows: input -> image affine, shown, bounds, one fill in R, G and B."""
    row = [value for line in to_image for value in line] + list(shown) + list(bounds) + [fill] * 3
    return torch.tensor(row).expand(batch, 17).clone()


def test_a_crop_window_fills_outside_shown_and_clamps_into_bounds():
    """A constant image 0.8 seen through a window showing x, y in [8, 24): the crop of the whole input holds 0.8 there
    and the fill 0.25 elsewhere, the bars' edges blending the two; with bounds [0, 16) the crop's right half repeats
    the bounds' last column (0.8 or fill by row) instead of reading on."""
    image = torch.full((1, 1, 32, 32), 0.8)
    identity = scale_shift(1.0, 0.0, 0.0, batch=1)
    crop = cut_encoder_crops(image, identity, (32, 32), window(1)[:, :15])[0, 0]
    expected = torch.full((32, 32), 0.25)
    expected[8:24, 8:24] = 0.8
    torch.testing.assert_close(crop, expected, atol=1e-5, rtol=0)
    clamped = cut_encoder_crops(image, identity, (32, 32), window(1, bounds=(0.0, 0.0, 16.0, 32.0))[:, :15])[0, 0]
    torch.testing.assert_close(clamped[:, 16:], expected[:, 15:16].expand(32, 16), atol=1e-5, rtol=0)
    # a window showing everything with a zero fill and the input's own bounds is no window at all
    whole = window(1, shown=(0.0, 0.0, 32.0, 32.0), fill=0.0)[:, :15]
    pixels = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    affine = scale_shift(1.5, -5.0, -3.0, batch=1)
    torch.testing.assert_close(cut_encoder_crops(pixels, affine, (16, 16), whole),
                               cut_encoder_crops(pixels, affine, (16, 16)), atol=1e-5, rtol=0)


def test_a_crop_window_lives_in_image_pixels_through_its_affine():
    """The input is the image's right half (input x = image x - 16): a window in image pixels masks the same image
    pixels as on the whole image."""
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    rows = window(1, shown=(18.0, 4.0, 28.0, 30.0), bounds=(16.0, 0.0, 32.0, 32.0))
    on_image = cut_encoder_crops(image, scale_shift(1.0, -16.0, 0.0, batch=1), (32, 16), rows)
    half = window(1, shown=(18.0, 4.0, 28.0, 30.0), bounds=(16.0, 0.0, 32.0, 32.0),
                  to_image=((1.0, 0.0, 16.0), (0.0, 1.0, 0.0)))
    on_half = cut_encoder_crops(image[..., 16:], scale_shift(1.0, 0.0, 0.0, batch=1), (32, 16), half)
    torch.testing.assert_close(on_half, on_image, atol=1e-5, rtol=0)


def test_each_prior_receives_its_crop_window(model, pixel_values):
    affines = scale_shift(1.0, 0.0, 0.0)
    spec = model.config.priors["vit"]
    crops = {"vit": affines, "vit.window": window(), "backbone": affines, "backbone.window": window(fill=0.5)}
    seen = received_inputs(model.etfuser.priors["vit"], lambda: model(pixel_values=pixel_values, prior_crops=crops))
    expected = prepare_encoder_inputs(pixel_values, spec, affines, window())
    torch.testing.assert_close(seen[0], expected)
    assert not torch.allclose(expected, prepare_encoder_inputs(pixel_values, spec, affines))
    seen = received_inputs(model.etfuser.backbone, lambda: model(pixel_values=pixel_values, prior_crops=crops))
    torch.testing.assert_close(seen[0], prepare_encoder_inputs(pixel_values, model.config.backbone, affines,
                                                               window(fill=0.5)))


@pytest.mark.parametrize(
    "prior_crops, message",
    [
        ({"vit": scale_shift(1.0, 0.0, 0.0), "age.window": window()},
         r"prior_crops: unknown network\(s\) \['age.window'\]"),
        ({"vit.window": window()}, r"prior_crops\['vit.window'\]: a window without its network's affines; expected "
                                   r"prior_crops\['vit'\]"),
        ({"vit": scale_shift(1.0, 0.0, 0.0), "vit.window": window()[:, :14]},
         r"prior_crops\['vit.window'\] must have shape \(batch, 17\).*got \(2, 14\)"),
        ({"vit": scale_shift(1.0, 0.0, 0.0), "vit.window": window(batch=3)},
         r"prior_crops\['vit.window'\] holds 3 windows but pixel_values 2 images"),
        ({"vit": scale_shift(1.0, 0.0, 0.0), "vit.window": window().long()},
         r"prior_crops\['vit.window'\] must be a float tensor"),
        ({"vit": scale_shift(1.0, 0.0, 0.0), "vit.window": window(fill=float("nan"))},
         r"prior_crops\['vit.window'\]: expected finite windows"),
        ({"vit": scale_shift(1.0, 0.0, 0.0), "vit.window": window(to_image=((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))},
         r"prior_crops\['vit.window'\]: expected finite windows with an invertible input -> image affine"),
    ],
)
def test_bad_crop_windows_are_refused_by_name(model, pixel_values, prior_crops, message):
    with pytest.raises(ValueError, match=message):
        model(pixel_values=pixel_values, prior_crops=prior_crops)
    with pytest.raises(ValueError, match=message):
        model.etfuser.extract_prior_features(pixel_values, prior_crops=prior_crops)


def test_crop_windows_need_their_affines_in_prepare_encoder_inputs(model, pixel_values):
    with pytest.raises(ValueError, match="crop_windows: a window places its fill around a crop, but crop_affines is "
                                         "None"):
        prepare_encoder_inputs(pixel_values, model.config.priors["vit"], None, window())
