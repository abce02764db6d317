"""Decoded-image cache: a job's training images decoded once, not on every fetch. Each split gains a `pixels` column
(per row the (H, W, 3) uint8 RGB pixels as raw bytes, an Arrow file keyed by the images' `image_keys`) that `FaceCollator`
reads instead of decoding the `image` column's PNGs in every epoch and evaluation of every run.

Raw bytes, not an `Array3D`: datasets' numpy format widens an integer array to int64 (3x the fetch time of the bytes),
and the column stays out of the numpy format, which would return it as `np.bytes_` and drop trailing zero bytes.

Only images the processor would merely rescale are cached (RGB, already at its size, no normalisation:
`collators.pixel_values`' fast path), so a batch holds the same `pixel_values` from either column, and only images the
dataset holds as bytes (the synthetic faces): files on disk are decoded per fetch, never all at once.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image

from ..models.image_processing_etfuser import ETFuserImageProcessor
from .alignment import ALIGNMENT_COLUMN
from .image_keys import image_keys, is_file_backed

PIXEL_COLUMN = "pixels"


def rgb_array(image: Any, height: int, width: int) -> np.ndarray | None:
    """(height, width, 3) uint8 pixels of `image` where it is RGB at that size already (a PIL image, such an array,
    or a `PIXEL_COLUMN` value: its raw bytes), else None: the processor has to convert it."""
    if isinstance(image, PIL.Image.Image):
        return np.asarray(image) if image.mode == "RGB" and image.size == (width, height) else None
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (height, width, 3):
        return image
    if isinstance(image, bytes) and len(image) == height * width * 3:
        return np.frombuffer(image, np.uint8).reshape(height, width, 3)
    return None


def encoded_is_rgb(encoded: bytes, height: int, width: int) -> bool:
    """Whether encoded image bytes hold an RGB image of that size, from the header alone (no pixel decoded)."""
    with PIL.Image.open(io.BytesIO(encoded)) as image:
        return image.mode == "RGB" and image.size == (width, height)


def cache_decoded_images(splits: Mapping[str, datasets.Dataset], processor: ETFuserImageProcessor,
                         cache_dir: str | os.PathLike, image_column: str = "image") -> datasets.DatasetDict:
    """`splits` with a `PIXEL_COLUMN` column each, decoded once into `cache_dir` (a file per split, named by the
    images' content hashes and size, read back instead of decoded again). Unchanged, all of them, where the processor
    normalises or any image of any split is not RGB at the processor's size: every split then keeps being read from
    `image_column`, the same for all runs."""
    splits = datasets.DatasetDict(splits)
    height, width = processor.size["height"], processor.size["width"]
    if not processor.do_rescale or processor.do_normalize:
        return splits
    # aligned faces are fed as canonical crops cut from the original image (`data.alignment`), not at this size
    if any(ALIGNMENT_COLUMN in split.column_names for split in splits.values()):
        return splits
    # files on disk (a reader's dataset, any size) are decoded per fetch, by DataLoader workers where asked: decoding
    # them all up front is what a start at AffectNet's size cannot afford
    if any(is_file_backed(split, image_column) for split in splits.values()):
        return splits
    keys = {}
    for name, split in splits.items():
        if getattr(split.features[image_column], "mode", None) not in (None, "RGB"):
            return splits  # the column converts on decode (e.g. Image(mode="L")): its pixels are not the bytes' RGB
        encoded = split.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
        if not all(encoded_is_rgb(value["bytes"], height, width) for value in encoded[image_column]):
            return splits
        digest = hashlib.sha256(f"decoded RGB uint8 {height}x{width}".encode())
        for key in image_keys(split, image_column):
            digest.update(key.encode())
        keys[name] = digest.hexdigest()[:24]
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    features = datasets.Features({PIXEL_COLUMN: datasets.Value("binary")})

    def decode(batch: dict[str, list]) -> dict[str, list[bytes]]:
        return {PIXEL_COLUMN: [np.asarray(image).tobytes() for image in batch[image_column]]}

    cached = {}
    for name, split in splits.items():
        pixels = split.select_columns([image_column]).map(
            decode, batched=True, batch_size=256, features=features, remove_columns=[image_column],
            cache_file_name=str(folder / f"decoded-images-{keys[name]}.arrow"), load_from_cache_file=True,
            desc=f"decoding {name} images once")
        stale = [PIXEL_COLUMN] if PIXEL_COLUMN in split.column_names else []
        cached[name] = datasets.concatenate_datasets([split.remove_columns(stale), pixels], axis=1)
    return datasets.DatasetDict(cached)


__all__ = ["PIXEL_COLUMN", "cache_decoded_images", "rgb_array"]
