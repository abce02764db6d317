"""What identifies an image for the caches, read without decoding it: a file by its path, size and modification time,
an image held in the dataset by its encoded bytes' sha256. A start with warm caches then opens no image at all (at
AffectNet's 287,651 training images, decoding each to hash its pixels took longer than a training epoch), and an
edited or replaced file gets a new key, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import os

import datasets


def image_key(encoded: dict) -> str:
    """The key of one `datasets.Image(decode=False)` value (`{"path": ..., "bytes": ...}`)."""
    if encoded.get("bytes"):
        return "sha256:" + hashlib.sha256(encoded["bytes"]).hexdigest()
    path = encoded.get("path")
    if not path:
        raise ValueError(f"image: expected a file path or encoded bytes, got {sorted(encoded)} without either.")
    try:
        status = os.stat(path)
    except OSError as error:
        raise ValueError(f"image: {path} cannot be read ({error.strerror}); was it moved or deleted since the "
                         "dataset was read?") from None
    return f"file:{os.path.abspath(path)}:{status.st_size}:{status.st_mtime_ns}"


def image_keys(dataset: datasets.Dataset, image_column: str = "image") -> list[str]:
    """One `image_key` per row of `dataset[image_column]` (an `Image` column), no image decoded."""
    feature = dataset.features.get(image_column)
    if not isinstance(feature, datasets.Image):
        raise ValueError(f"image_column: {image_column!r} must be an Image column, got {feature!r}.")
    encoded = dataset.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
    return [image_key(value) for value in encoded[image_column]]


def is_file_backed(dataset: datasets.Dataset, image_column: str = "image") -> bool:
    """Whether the images of `dataset` are files on disk (a reader's dataset) rather than bytes it holds (the
    synthetic faces): the former are decoded per fetch, never all at once."""
    if not len(dataset):
        return False
    first = dataset.select([0]).cast_column(image_column, datasets.Image(decode=False))[0][image_column]
    return not first.get("bytes") and bool(first.get("path"))


__all__ = ["image_key", "image_keys", "is_file_backed"]
