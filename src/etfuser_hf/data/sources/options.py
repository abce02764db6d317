"""Reader options from the command line: `--image-root DIR` (AffectNet CSVs' `images_dir=`) and repeatable
`--dataset-option KEY=VALUE` (e.g. `classes=7`), turned into the keyword arguments of `read_face_source`.

    options = reader_options(args.image_root, args.dataset_option)   # {"images_dir": ..., "classes": 7}
    read_face_source(args.dataset, **options)                         # the factory checks the reader takes them
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Sequence
from typing import Any

from .base import FaceDatasetError, Reader


def _value(text: str) -> Any:
    """A command-line value as the reader wants it: integers, floats, true/false and none; anything else as text
    (paths, column names)."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def reader_options(image_root: str | None = None, pairs: Sequence[str] = (), flag: str = "--dataset-option"
                   ) -> dict[str, Any]:
    """`{"images_dir": image_root}` (when given) plus one entry per `KEY=VALUE` of `pairs`; a ValueError naming
    `flag` and the pair for anything not written KEY=VALUE."""
    options: dict[str, Any] = {} if image_root is None else {"images_dir": image_root}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip().isidentifier():
            raise ValueError(f"{flag}: expected KEY=VALUE (e.g. classes=7), got {pair!r}.")
        options[key.strip()] = _value(value)
    return options


def check_reader_options(reader: Reader, source: str, options: dict[str, Any]) -> None:
    """Refuses options `reader` does not take, naming them, the layout found at `source` and the options it takes
    (so `--image-root` on a RAF-DB folder says RAF-DB has no `images_dir`, instead of a TypeError)."""
    taken = list(inspect.signature(reader.read).parameters)[2:]  # after (path, log)
    unknown = [name for name in options if name not in taken]
    if unknown:
        raise FaceDatasetError(f"{source}: the {reader.format} reader ({reader.layout}) takes the options {taken}, "
                               f"not {unknown} (images_dir= is --image-root, for AffectNet CSVs).")


def add_reader_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """`--image-root` and `--dataset-option` on `parser` (evaluate and train share them)."""
    parser.add_argument("--image-root", default=None, metavar="DIR",
                        help="AffectNet: the folder the CSV's subDirectory_filePath is relative to (images_dir=); "
                             "default: the distributed layout's Manually_Annotated_Images/ beside the CSVs")
    parser.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the dataset's reader, repeatable: e.g. classes=7 (AffectNet without "
                             "contempt, as FER2013 models need), keep_non_faces=true, images=original (RAF-DB)")
