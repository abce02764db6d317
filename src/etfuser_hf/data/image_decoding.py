"""The decode stage: an image file or its encoded bytes -> RGB pixels, or `BadImage` naming why not. Readers never
decode (they only check that files exist), so this is where a truncated JPEG or a file that is not an image is
found: each caller skips that one image with a line naming it and counts it, and the run goes on.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import PIL.Image

# The face detector's smallest window is 12 pixels: anything smaller cannot hold a face.
MIN_IMAGE_SIDE = 12


class BadImage(ValueError):
    """One input image that cannot be used; the message is the reason (the caller adds the path)."""


def open_image(source: str | os.PathLike | bytes) -> PIL.Image.Image:
    """Opens and fully decodes an image (a path or encoded bytes) as RGB; `BadImage` with the reason otherwise:
    a missing file, not an image, truncated or corrupt, smaller than `MIN_IMAGE_SIDE` pixels."""
    if not isinstance(source, bytes) and not Path(source).exists():
        raise BadImage("no such file or folder")
    try:
        with PIL.Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()  # decode now: PIL opens lazily and a truncated file fails only here
            rgb = image.convert("RGB")
    except PIL.UnidentifiedImageError:
        raise BadImage("not an image file (PIL cannot identify it)") from None
    except Exception as error:  # noqa: BLE001 - any decoder failure is this file's problem, not the run's
        raise BadImage(f"truncated or corrupt image ({error})") from None
    if min(rgb.size) < MIN_IMAGE_SIDE:
        raise BadImage(f"image is {rgb.width}x{rgb.height} pixels; expected at least "
                       f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    return rgb


def decode_encoded(encoded: dict) -> PIL.Image.Image:
    """`open_image` of one `datasets.Image(decode=False)` value (`{"path": ..., "bytes": ...}`)."""
    return open_image(encoded["bytes"] if encoded.get("bytes") else encoded["path"])


__all__ = ["MIN_IMAGE_SIDE", "BadImage", "decode_encoded", "open_image"]
