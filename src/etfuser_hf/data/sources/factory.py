"""One factory for every source: `read_face_source` / `load_face_dataset` find the reader of a path's layout (each
reader says how it recognises its own, in `recognise`) and turn its rows into `datasets.Dataset`s.

    data, report = read_face_source("path/to/AffectNet")          # DatasetDict train/test + SourceReport
    data = load_face_dataset("path/to/RAF-DB/basic")              # the same data; the report is in info.description

Readers are tried in `READERS` order: the layouts with their own annotation files first, then UTKFace's file names,
then any manifest file or class-folder tree. Anything that is not a local path goes to `datasets.load_dataset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from .affectnet import READER as AFFECTNET
from .base import UNSPLIT, FaceDatasetError, Read, Reader, RowLog, SourceReport
from .celeba import READER as CELEBA
from .fer2013 import READER as FER2013
from .imagefolder import READER as IMAGEFOLDER
from .manifest import READER as MANIFEST
from .options import check_reader_options
from .rafdb import READER as RAFDB
from .utkface import READER as UTKFACE

READERS: dict[str, Reader] = {reader.format: reader for reader in (
    RAFDB, CELEBA, AFFECTNET, FER2013, UTKFACE, MANIFEST, IMAGEFOLDER)}
FORMATS = ("imagefolder", "manifest", "fer2013", "rafdb", "utkface", "celeba", "affectnet")
assert set(FORMATS) == set(READERS)


def layouts() -> str:
    """The layouts we read, one line ("; "-separated), for error messages and `--help`."""
    return "; ".join(reader.layout for reader in READERS.values())


def detect_format(source: str | Path) -> str | None:
    """The `FORMATS` entry of a local path's layout, or None when `source` is not a local path. A local path that
    matches no layout raises `FaceDatasetError` listing the layouts we read (an empty folder: "no examples")."""
    path = Path(source).expanduser()
    if not path.exists():
        return None
    found = next((name for name, reader in READERS.items() if reader.recognise(path)), None)
    if found is None and path.is_dir() and not any(child.is_file() for child in path.rglob("*")):
        raise FaceDatasetError(f"{path}: no examples found (empty dataset): the folder holds no files.")
    if found is None:
        raise FaceDatasetError(f"{path}: not a dataset layout we read; pass format= one of {FORMATS}, or lay it out "
                               f"as one of: {layouts()}.")
    return found


def _build(read: Read, log: RowLog, report: SourceReport, where: str) -> datasets.Dataset | datasets.DatasetDict:
    report.skipped, report.excluded, report.examples = log.skipped, log.excluded, log.examples
    report.splits = {split or "all": len(rows) for split, rows in read.rows.items()}
    if not any(read.rows.values()):
        shown = "; ".join(message for messages in log.examples.values() for message in messages[:3])
        excluded = f"; excluded by the protocol: {log.excluded}" if log.excluded else ""
        raise FaceDatasetError(f"{where}: no examples found (empty dataset): nothing usable remains{excluded}"
                               + (f"; skipped {log.skipped}, e.g. {shown}" if shown else ""))
    info = datasets.DatasetInfo(description=f'{{"source_report": {report.to_json()}}}', features=read.features)
    built = {split: datasets.Dataset.from_list(rows, features=read.features, info=info.copy())
             for split, rows in read.rows.items() if rows}
    return built[UNSPLIT] if UNSPLIT in read.rows else datasets.DatasetDict(built)


def read_face_source(source: str | Path, format: str | None = None, strict: bool | None = None, **options: Any
                     ) -> tuple[datasets.Dataset | datasets.DatasetDict, SourceReport]:
    """The data of a local layout and the `SourceReport` of how it was read (files, splits, skips, columns).

    `options` go to the reader (e.g. AffectNet's `images_dir`, `classes`; a manifest's `label_names`). Damaged rows
    are skipped with a warning line each and counted, except in a manifest; `strict=True` refuses the first one,
    `strict=False` skips in a manifest too."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} or None, got {format!r}.")
    path = Path(source).expanduser()
    format = format or detect_format(path)
    if format is None:
        raise FaceDatasetError(f"{source}: no such file or folder (a local path was given).")
    reader = READERS[format]
    check_reader_options(reader, str(path), options)
    log = RowLog(strict=not reader.skips_bad_rows if strict is None else strict)
    read = reader.read(path, log, **options)
    report = SourceReport(format, str(path), [str(file) for file in read.files],
                          split_origin={split or "all": origin for split, origin in read.split_origin.items()},
                          columns=read.columns, faces=read.faces or reader.faces)
    return _build(read, log, report, str(path)), report


def load_face_dataset(source: str | Path, format: str | None = None, **kwargs: Any
                      ) -> datasets.Dataset | datasets.DatasetDict:
    """The data of a local layout (see `read_face_source`; its report is in each split's `info.description`, read
    back with `source_report`) or, for anything that is not a local path, `datasets.load_dataset(source, **kwargs)`."""
    if format is None and not Path(source).expanduser().exists() and not (
            isinstance(source, Path) or str(source).startswith(("/", ".", "~"))):
        return datasets.load_dataset(str(source), **kwargs)
    return read_face_source(source, format, **kwargs)[0]
