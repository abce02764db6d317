"""Eager checks of the model inputs: a clear error, naming the argument and what was expected, before any encoder runs.

Value checks need a host sync, so they run in eager mode only, never under tracing, export or compile
(`benchmarks/overhead.py` measures their cost).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch
from transformers.utils.import_utils import is_tracing

from .configuration_etfuser import ETFuserConfig
from .encoders import WINDOW_GEOMETRY_FIELDS

# The `prior_crops` key of the canonical model's (the backbone's) crop; every other key names a prior.
BACKBONE_CROP_KEY = "backbone"
# `prior_crops[name + WINDOW_SUFFIX]`: what network `name`'s original pipeline shows around its crop (its window row,
# `encoders.windowed_grid_sample`); a network without one is cut with zeros outside the input.
WINDOW_SUFFIX = ".window"

# The largest value of a 16-bit pixel: no image encoding reaches past it, and far larger finite values (1e30) overflow
# the encoders to NaN/inf logits. Values between 1 and this limit only warn (0..255 pixels, say).
PIXEL_VALUE_LIMIT = 65535.0


def check_inputs(
    config: ETFuserConfig, pixel_values: torch.Tensor | None, prior_features: Mapping[str, torch.Tensor] | None,
    prior_crops: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Checks the arguments of `ETFuserModel.forward`: `pixel_values` (batch, 3, H, W) float RGB in [0, 1],
    `prior_features` as `extract_prior_features` returns them, of the same batch, and `prior_crops`
    (`check_prior_crops`)."""
    if prior_crops is not None:
        check_prior_crops(config, prior_crops, pixel_values)
    runs_priors = config.fusion_properties.runs_priors
    if prior_features is not None and runs_priors:
        check_prior_features(config, prior_features)
    if pixel_values is None:
        if config.backbone is not None or prior_features is None:
            raise ValueError("pixel_values is required (prior_features alone suffice only for fusion_mode='priors_only').")
        return
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}; use ETFuserImageProcessor.")
    if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
        raise ValueError(
            f"pixel_values must have shape (batch, 3, height, width) (RGB in [0, 1]), got {tuple(pixel_values.shape)}."
        )
    if not pixel_values.is_floating_point():
        raise ValueError(f"pixel_values must be a float tensor in [0, 1], got dtype {pixel_values.dtype}.")
    tracing = is_tracing(pixel_values)
    if not tracing:
        check_pixel_values(pixel_values)
    if prior_features is not None and config.priors and runs_priors and not tracing:
        batch = prior_features[next(iter(config.priors))].shape[0]
        if batch != pixel_values.shape[0]:
            raise ValueError(f"prior_features hold {batch} images but pixel_values {pixel_values.shape[0]}; "
                             "expected the features of the same batch.")


def check_prior_features(config: ETFuserConfig, prior_features: Mapping[str, torch.Tensor]) -> None:
    """One (batch, num_output_tokens, feature_dim) tensor per prior of `config.priors`, all of one non-empty batch."""
    if not isinstance(prior_features, Mapping):
        raise TypeError(f"prior_features must be a dict prior name -> tensor (what extract_prior_features returns), "
                        f"got {type(prior_features).__name__}.")
    missing = sorted(set(config.priors) - set(prior_features))
    if missing:
        raise ValueError(f"prior_features is missing priors {missing}; expected keys {list(config.priors)}.")
    batch_sizes = []
    for name, spec in config.priors.items():
        features = prior_features[name]
        expected = (spec.num_output_tokens, spec.feature_dim)
        if not isinstance(features, torch.Tensor) or features.dim() != 3 or tuple(features.shape[1:]) != expected:
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"prior_features[{name!r}] must have shape (batch, {expected[0]}, {expected[1]}) "
                             f"(the prior's selected tokens, as extract_prior_features gives them), got {got}.")
        batch_sizes.append(features.shape[0])
    if not batch_sizes or is_tracing(prior_features[next(iter(config.priors))]):
        return  # batch sizes are symbolic under export: comparing them would add guards, not catch mistakes
    if len(set(batch_sizes)) > 1:
        raise ValueError(f"prior_features: every prior needs the same batch size, got {sorted(set(batch_sizes))}.")
    if batch_sizes[0] == 0:
        raise ValueError("prior_features: got an empty batch; expected the features of at least one image.")


def crop_keys(config: ETFuserConfig) -> list[str]:
    """The keys `prior_crops` may hold: the fused priors' names, then `BACKBONE_CROP_KEY` where there is a backbone."""
    priors = list(config.priors) if config.fusion_properties.runs_priors else []
    return priors + ([BACKBONE_CROP_KEY] if config.backbone is not None else [])


def check_prior_crops(config: ETFuserConfig, prior_crops: Mapping[str, torch.Tensor],
                      pixel_values: torch.Tensor | None) -> None:
    """`prior_crops`: name (a prior of `config.priors`, or `BACKBONE_CROP_KEY`) -> (batch, 2, 3) float affines
    mapping `pixel_values` pixel coordinates onto that network's crop, one per image of `pixel_values`, finite and
    invertible; and, for some of those networks, name + `WINDOW_SUFFIX` -> its window rows (`check_crop_windows`)."""
    if not isinstance(prior_crops, Mapping):
        raise TypeError(f"prior_crops must be a dict network name -> (batch, 2, 3) affine tensor, got "
                        f"{type(prior_crops).__name__}.")
    if pixel_values is None:
        raise ValueError("prior_crops: the crops are cut from pixel_values, which is None.")
    if config.priors and BACKBONE_CROP_KEY in config.priors and config.backbone is not None:
        raise ValueError(f"prior_crops: the prior named {BACKBONE_CROP_KEY!r} is ambiguous with the backbone's crop "
                         "key; rename the prior.")
    expected = crop_keys(config)
    windows = {key: value for key, value in prior_crops.items() if key.endswith(WINDOW_SUFFIX)}
    unknown = sorted(set(prior_crops) - set(expected) - set(windows))
    unknown += sorted(key for key in windows if key[: -len(WINDOW_SUFFIX)] not in expected)
    if unknown:
        raise ValueError(f"prior_crops: unknown network(s) {unknown}; expected some of {expected}, each optionally "
                         f"with its window under name + {WINDOW_SUFFIX!r}.")
    tracing = is_tracing(pixel_values)
    for key, rows in windows.items():
        check_crop_windows(key, rows, prior_crops.get(key[: -len(WINDOW_SUFFIX)]), pixel_values, tracing)
    for name, affines in prior_crops.items():
        if name in windows:
            continue
        if not isinstance(affines, torch.Tensor) or affines.dim() != 3 or tuple(affines.shape[1:]) != (2, 3):
            got = tuple(affines.shape) if isinstance(affines, torch.Tensor) else type(affines).__name__
            raise ValueError(f"prior_crops[{name!r}] must have shape (batch, 2, 3) (one image -> crop affine per "
                             f"image), got {got}.")
        _check_per_image_values(name, affines, lambda: affines[:, :, :2], "affines", "finite, invertible affines",
                                pixel_values, tracing)


def check_crop_windows(key: str, rows: torch.Tensor, affines: torch.Tensor | None, pixel_values: torch.Tensor,
                       tracing: bool = False) -> None:
    """`prior_crops[key]`, a network's window rows: (batch, 14 + C) float, C the channels of `pixel_values`, one per
    image: the input -> image pixel affine (2x3, invertible), the `shown` and `bounds` boxes in image pixels and the
    fill per channel (`encoders.crop_window_rows`), all finite; only beside that network's affines."""
    if affines is None:
        raise ValueError(f"prior_crops[{key!r}]: a window without its network's affines; expected "
                         f"prior_crops[{key[: -len(WINDOW_SUFFIX)]!r}] beside it.")
    width = WINDOW_GEOMETRY_FIELDS + pixel_values.shape[1]
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or rows.shape[1] != width:
        got = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows).__name__
        raise ValueError(f"prior_crops[{key!r}] must have shape (batch, {width}) (per image the input -> image affine "
                         f"(6), shown (4), bounds (4), fill per channel ({pixel_values.shape[1]})), got {got}.")
    _check_per_image_values(key, rows, lambda: rows[:, :6].reshape(-1, 2, 3)[:, :, :2], "windows",
                            "finite windows with an invertible input -> image affine", pixel_values, tracing)


def _check_per_image_values(key: str, values: torch.Tensor, linear_part: Callable[[], torch.Tensor], what: str,
                            expected: str, pixel_values: torch.Tensor, tracing: bool) -> None:
    """`prior_crops[key]` is float, one row per image of `pixel_values`, finite, and its (batch, 2, 2) `linear_part()`
    invertible (the values unchecked while tracing: symbolic batch sizes and values are checked in eager calls
    only, and a traced graph records no check)."""
    if not values.is_floating_point():
        raise ValueError(f"prior_crops[{key!r}] must be a float tensor, got dtype {values.dtype}.")
    if tracing:
        return
    if values.shape[0] != pixel_values.shape[0]:
        raise ValueError(f"prior_crops[{key!r}] holds {values.shape[0]} {what} but pixel_values "
                         f"{pixel_values.shape[0]} images; expected one per image.")
    linear = linear_part()
    determinant = linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]
    if not (torch.isfinite(values).all() and (determinant != 0).all()):
        raise ValueError(f"prior_crops[{key!r}]: expected {expected}, got NaN, inf or a singular 2x2 part.")


def check_pixel_values(pixel_values: torch.Tensor) -> None:
    """Value checks of `pixel_values` (batch, 3, H, W): a non-empty batch of finite values at most
    `PIXEL_VALUE_LIMIT` in magnitude; a `UserWarning` when they reach past 1 (0..255 pixels where RGB in [0, 1] is
    expected). One min/max reduction over the batch."""
    if pixel_values.shape[0] == 0:
        raise ValueError(f"pixel_values: got an empty batch, shape {tuple(pixel_values.shape)}; expected at least "
                         "one image (batch, 3, height, width).")
    low, high = torch.aminmax(pixel_values.detach())
    low, high = float(low), float(high)
    if not (torch.isfinite(torch.tensor([low, high])).all()):  # NaN propagates through min/max; inf lands there
        bad = int((~torch.isfinite(pixel_values)).sum())
        raise ValueError(f"pixel_values: expected finite values (RGB in [0, 1]), got {bad} NaN or inf value(s).")
    extreme = high if high >= -low else low
    if abs(extreme) > PIXEL_VALUE_LIMIT:
        raise ValueError(f"pixel_values: expected RGB in [0, 1] (never beyond +-{PIXEL_VALUE_LIMIT:g}, the largest "
                         f"16-bit pixel value), got a value of {extreme:g}, which no image encoding gives (values far "
                         "out overflow the encoders to NaN/inf logits).")
    if high > 1.01:
        warnings.warn(f"pixel_values reach {high:g}, but ET-Fuser expects RGB in [0, 1] (0..255 pixels? divide by "
                      "255, or use ETFuserImageProcessor).", UserWarning, stacklevel=4)


__all__ = ["BACKBONE_CROP_KEY", "PIXEL_VALUE_LIMIT", "WINDOW_SUFFIX", "check_crop_windows", "check_inputs",
           "check_pixel_values", "check_prior_crops", "check_prior_features", "crop_keys"]
