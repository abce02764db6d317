"""Sampling crops out of images with torch (`cut_crops`), and what an original pipeline shows around its face
(`CropWindows`): face-api's zero bars, fer's padding filled with the grey of the image's bottom rows.

The affines place a crop (`crop_geometry`); the windows say which of the pixels it covers are the image's. face-api
slices the (clipped) box out of the image and zero-pads the slice to a square before resizing, so outside the slice
its crop is black even where the image goes on; fer pads its grey image by 40 px with one grey and resizes a slice of
that. Both resamplers (TF.js `resizeBilinear`, OpenCV `resize`) clamp their samples to their source's edge pixels
instead of reading past them. `cut_crops` with windows reproduces all three: pixels outside `shown` take the fill
before the bilinear interpolation (so a crop pixel on the edge of a bar blends the image with the fill, as the
original does) and every sample is clamped into `bounds`. The sampler is the forward's own
(`models.encoders.windowed_grid_sample`): the windows travel to it as rows of `prior_crops` (`window_rows`), so the
networks read in training and in `analyze` the crops `cut_crops` checks against the originals.

Coordinates are `crop_geometry`'s: pixel (i, j) covers [i, i + 1) x [j, j + 1), centre (i + 0.5, j + 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.encoders import affine_sampling_grid, crop_window_rows, dlib_pyramid_crops, windowed_grid_sample

# How the part of a crop outside its window is filled: "zeros" (face-api's padToSquare bars) or "bottom_rows_mean" (fer
# 25.10.3's `FER.pad`: cv2.copyMakeBorder with the mean grey of the image's last two rows, ITU-R 601 luma).
CROP_FILLS = ("zeros", "bottom_rows_mean")
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class CropWindows:
    """What each of N faces' crops shows of its image, in image pixels (edges, x1, y1, x2, y2 per face).

    shown: (N, 4) the pixels (by their centres) the original's crop takes from the image; every other pixel, inside
    or outside the image, holds `fill`. bounds: (N, 4) the original resampler's source: every sample is clamped to the
    centres of its edge pixels. fill: one of `CROP_FILLS`."""

    shown: np.ndarray
    bounds: np.ndarray
    fill: str

    def __post_init__(self):
        for name in ("shown", "bounds"):
            value = np.asarray(getattr(self, name), np.float64)
            if value.ndim != 2 or value.shape[1] != 4:
                raise ValueError(f"{name}: expected an array of shape (num_faces, 4) x1, y1, x2, y2, got "
                                 f"{value.shape}.")
            object.__setattr__(self, name, value)
        if len(self.shown) != len(self.bounds):
            raise ValueError(f"shown, bounds: expected one row per face each, got {len(self.shown)} and "
                             f"{len(self.bounds)}.")
        if self.fill not in CROP_FILLS:
            raise ValueError(f"fill: expected one of {CROP_FILLS}, got {self.fill!r}.")

    def __len__(self) -> int:
        return len(self.shown)


def fill_values(images: torch.Tensor, fill: str) -> torch.Tensor:
    """The fill of each image: `images` (N, C, H, W) -> (N, C), in the images' own scale. "bottom_rows_mean" is the
    mean luma of the last two rows (C = 3, RGB) or their mean (C = 1), the same in every channel, so the grey a
    grey-reading network computes from the fill is that mean."""
    if fill == "zeros":
        return images.new_zeros(images.shape[:2])
    channels = images.shape[1]
    if channels not in (1, 3):
        raise ValueError(f"images: the {fill!r} fill reads grey from 1 or 3 (RGB) channels, got {channels}.")
    bottom = images[:, :, -2:, :].mean(dim=(-2, -1))  # (N, C)
    grey = bottom if channels == 1 else bottom @ bottom.new_tensor(_LUMA)[:, None]
    return grey.expand(-1, channels) if channels == 3 else grey


def window_rows(windows: CropWindows, fill: torch.Tensor, input_to_image=None) -> torch.Tensor:
    """`windows` of N faces as the forward's window rows (`models.encoders.crop_window_rows`), (N, 14 + C) float32:
    `fill` (N, C) in the input's scale (`fill_values`), `input_to_image` (N, 2, 3) the input pixel -> image pixel
    affines (None: the input is the image)."""
    fill = torch.as_tensor(fill, dtype=torch.float32)
    if fill.dim() != 2 or len(fill) != len(windows):
        raise ValueError(f"fill: expected one row per face ({len(windows)}, channels), got {tuple(fill.shape)}.")
    if input_to_image is None:
        input_to_image = np.tile(np.eye(2, 3), (len(windows), 1, 1))
    input_to_image = torch.as_tensor(np.asarray(input_to_image, np.float64), dtype=torch.float32)
    if input_to_image.shape != (len(windows), 2, 3):
        raise ValueError(f"input_to_image: expected shape ({len(windows)}, 2, 3), got {tuple(input_to_image.shape)}.")
    as_rows = [torch.as_tensor(box, dtype=torch.float32) for box in (windows.shown, windows.bounds)]
    return crop_window_rows(input_to_image, *as_rows, fill.to(torch.float32))


def antialias_samples(affines) -> int:
    """Samples per side of each crop pixel that `cut_crops(..., antialias=True)` averages for `affines` (N, 2, 3)
    image -> crop: ceil of the largest image-pixels-per-crop-pixel step over the faces where it exceeds 2 (at most 8),
    else 1. Callers that cut many images' faces in one call group them by it, so each face gets the samples it would
    get alone."""
    affines = np.asarray(affines, np.float64)
    if not len(affines):
        return 1
    step = float(np.sqrt(np.abs(1.0 / np.linalg.det(affines[:, :, :2]))).max())
    return min(8, math.ceil(step)) if step > 2 else 1


def cut_crops(images: torch.Tensor, affines, size: int, image_index=None, antialias: bool = False,
              windows: CropWindows | torch.Tensor | None = None, resampling: str | None = None) -> torch.Tensor:
    """Cuts one `size` x `size` crop per affine: `images` (B, C, H, W) float, `affines` (N, 2, 3) image -> crop (numpy
    or tensor), `image_index` (N,) the image each face comes from (default: face i from image i) -> (N, C, size, size).

    Bilinear `grid_sample(align_corners=False)` at the crop's pixel centres, zeros outside the image. With `windows`
    (`crop_rules.crop_windows`, one per face, or their (N, 14 + C) window rows, `window_rows`, with the fill in the
    images' scale), the original pipeline's surroundings: its fill outside `shown` and its samples clamped into
    `bounds` (see the module docstring). With `antialias`, a shrink by more than 2x (the
    largest image-pixels-per-crop-pixel step over the faces) averages an n x n grid of samples over each crop pixel's
    footprint (n = ceil(step), at most 8): a box filter. Without it the crop is plain bilinear, as TF.js, OpenCV and
    PIL resample. `resampling="dlib_pyramid"` (the `"dlib_chip"` rule's, `models.encoders.crop_resampling`) is
    dlib's own extract_image_chip instead (`models.encoders.dlib_pyramid_crops`: its image pyramid where the chip
    shrinks the image by more than 2x, then bilinear), what the forward cuts for the dlib nets; `antialias` is then
    unused, and `windows` (`crop_geometry.dlib_chip_windows`) give the image's scale where `images` are a resampling
    of it."""
    if images.dim() != 4:
        raise ValueError(f"images: expected a (batch, channels, height, width) tensor, got {tuple(images.shape)}.")
    affines = torch.as_tensor(np.asarray(affines) if not torch.is_tensor(affines) else affines, dtype=torch.float64)
    if affines.dim() != 3 or affines.shape[1:] != (2, 3):
        raise ValueError(f"affines: expected shape (num_faces, 2, 3), got {tuple(affines.shape)}.")
    if windows is not None and len(windows) != len(affines):
        raise ValueError(f"windows: expected one window per affine ({len(affines)}), got {len(windows)}.")
    if image_index is None:
        if len(affines) != len(images):
            raise ValueError(
                f"image_index: needed when the {len(affines)} affines are not one per image ({len(images)})."
            )
        image_index = torch.arange(len(images))
    image_index = torch.as_tensor(image_index, dtype=torch.long, device=images.device)
    if image_index.shape != (len(affines),):
        raise ValueError(f"image_index: expected shape ({len(affines)},), got {tuple(image_index.shape)}.")
    if resampling not in (None, "box", "dlib_pyramid"):
        raise ValueError(f"resampling: expected None, 'box' or 'dlib_pyramid', got {resampling!r}.")
    if resampling == "dlib_pyramid":
        sources = images[image_index]
        rows = None
        if windows is not None:
            rows = windows if torch.is_tensor(windows) else window_rows(windows, fill_values(sources, windows.fill))
            rows = rows.to(sources.device, torch.float32)
        return dlib_pyramid_crops(sources, affines.to(sources.device, torch.float32), (size, size), rows)
    height, width = images.shape[-2:]
    linear = torch.linalg.inv(affines[:, :, :2])  # crop -> image
    offset = -linear @ affines[:, :, 2:]
    # grid_sample's normalised coordinates (align_corners=False): image x = (X + 1) W / 2, crop u = (U + 1) S / 2
    to_image = torch.tensor([2.0 / width, 2.0 / height], dtype=torch.float64)
    theta_linear = to_image[:, None] * linear * (size / 2.0)
    theta_offset = to_image[:, None] * (linear.sum(-1, keepdim=True) * (size / 2.0) + offset) - 1
    theta = torch.cat([theta_linear, theta_offset], dim=-1).to(images.device, images.dtype)
    samples = antialias_samples(affines) if antialias else 1
    grid = affine_sampling_grid(theta, size * samples, size * samples)
    sources, rows = images[image_index], None
    if windows is not None:
        rows = windows if torch.is_tensor(windows) else window_rows(windows, fill_values(sources, windows.fill))
        rows = rows.to(sources.device, sources.dtype)
    crops = windowed_grid_sample(sources, grid, rows)
    return F.avg_pool2d(crops, samples) if samples > 1 else crops


__all__ = ["CROP_FILLS", "CropWindows", "antialias_samples", "cut_crops", "fill_values", "window_rows"]
