"""Image processor for ET-Fuser: any image in, RGB in [0, 1] at the model's input size out.

Normalisation is deliberately not done here: every prior and the backbone normalise their own view of the image
inside the model (see `prepare_encoder_inputs`), so one `pixel_values` tensor feeds all of them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling


def _check_image(image: Any, where: str) -> None:
    """Rejects inputs the backend would otherwise fail on deep inside numpy/PIL, naming what was expected."""
    if isinstance(image, PIL.Image.Image):
        return
    if isinstance(image, (np.ndarray, torch.Tensor)):
        shape = tuple(image.shape)
        if len(shape) == 2:
            return
        if len(shape) != 3:
            raise ValueError(f"{where}: expected an image of shape (H, W), (H, W, C) or (C, H, W), got {shape}.")
        if shape[-1] in (1, 3, 4) or shape[0] in (1, 3, 4):
            if min(shape[:2] if shape[-1] in (1, 3, 4) else shape[1:]) < 1:
                raise ValueError(f"{where}: image has an empty side, shape {shape}.")
            return
        raise ValueError(f"{where}: expected 1 (grey), 3 (RGB) or 4 (RGBA) channels, got shape {shape}.")
    raise TypeError(
        f"{where}: expected a PIL.Image, numpy array or torch tensor, got {type(image).__name__}."
        + (" Load file paths with PIL.Image.open first." if isinstance(image, str) else "")
    )


def _float_to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    """Float pixels -> uint8. [0, 1] is expected; a float image whose maximum lies in (1, 255] is taken as 0..255,
    divided by 255 and reported (clipping it to [0, 1] would turn it white); non-finite or larger values are refused."""
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{where}: expected finite pixel values, got {bad} NaN or inf value(s).")
    high = float(array.max()) if array.size else 0.0
    if high > 255.0:
        raise ValueError(f"{where}: expected float pixels in [0, 1] (or uint8 0..255), got a maximum of {high:g}.")
    if high > 1.0:
        warnings.warn(f"{where}: float pixels reach {high:g}, expected [0, 1]; read them as 0..255 and divided by "
                      "255. Pass uint8 arrays or floats in [0, 1] to silence this.", UserWarning, stacklevel=4)
        array = array / 255.0
    return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _to_pil_rgb(image: Any, where: str = "images") -> PIL.Image.Image:
    """Any accepted image -> an RGB PIL image. Grey and RGBA are converted; float arrays are read as [0, 1]."""
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):  # channels first
        array = np.moveaxis(array, 0, -1)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{where}: expected uint8 (0..255) or float ([0, 1]) pixels, got dtype {array.dtype}.")
        array = _float_to_uint8(array.astype(np.float64, copy=False), where)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
    return PIL.Image.fromarray(array[..., 0] if mode == "L" else array, mode=mode).convert("RGB")


class ETFuserImageProcessor(PilBackend):
    r"""
    Produces `pixel_values` of shape `(batch, 3, size["height"], size["width"])`, RGB, float in [0, 1].

    Accepts a PIL image, a numpy array or torch tensor (HWC or CHW; uint8 in 0..255 or float in [0, 1]), grey or
    RGBA (converted to RGB), or a list of them. NaN/inf pixels are refused; a float image whose values reach past 1
    (up to 255) is read as 0..255 and divided by 255, with a `UserWarning` saying so.

    Args:
        size (`dict[str, int]`, defaults to `{"height": 224, "width": 224}`): output size.
        resample (`PILImageResampling`, defaults to `BILINEAR`): resampling filter.
        do_rescale (`bool`, defaults to `True`): divide uint8 pixel values by 255.
    """

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = False
    do_convert_rgb = True

    def preprocess(self, images: Any, *args: Any, **kwargs: Any):
        if images is None:
            raise ValueError("images: expected an image or a list of images, got None.")
        batch = images if isinstance(images, (list, tuple)) else [images]
        if len(batch) == 0:
            raise ValueError("images: got an empty list.")
        for index, image in enumerate(batch):
            _check_image(image, f"images[{index}]")
        batch = [_to_pil_rgb(image, f"images[{index}]") for index, image in enumerate(batch)]
        return super().preprocess(batch, *args, **kwargs)


__all__ = ["ETFuserImageProcessor"]
