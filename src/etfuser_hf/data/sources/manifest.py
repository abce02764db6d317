"""A manifest: a CSV, JSON (a list of records) or JSON-lines file with an image path column (relative to the
manifest's folder) and label columns.

A manifest is the user's own file, so its reader is strict by default: the first bad row (wrong field count, a
missing image, a label outside `label_names`) refuses the file with its row, since skipping would hide a bug in the
user's own export; `strict=False` skips and counts such rows instead. Columns named in `label_names` become
`ClassLabel`s (values: names or ids) and are declared single-label; the others keep their inferred types and are
not declared (the manifest does not say what they are).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets

from .base import UNSPLIT, ColumnSpec, FaceDatasetError, FileIndex, Read, Reader, RowLog, csv_rows, parse_label

FORMAT = "manifest"
LAYOUT = "manifest: a .csv, .json or .jsonl file with an image path column and label columns"
SUFFIXES = (".csv", ".json", ".jsonl")


def recognise(path: Path) -> bool:
    return path.is_file() and path.suffix in SUFFIXES


def _records(path: Path, image_column: str, log: RowLog) -> Iterator[tuple[str, dict[str, Any]]]:
    if path.suffix == ".csv":
        yield from csv_rows(path, [image_column], log)
        return
    text = path.read_text()
    records = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines()
                                                               if line.strip()]
    if not isinstance(records, list) or any(not isinstance(r, dict) or image_column not in r for r in records):
        raise FaceDatasetError(f"{path}: expected a list of records that all have an {image_column!r} field.")
    yield from ((f"{path} row {number}", record) for number, record in enumerate(records, start=1))


def read(path: Path, log: RowLog, image_column: str = "image", label_names: dict[str, Sequence[str]] | None = None
         ) -> Read:
    if path.suffix not in SUFFIXES:
        raise FaceDatasetError(f"{path}: a manifest must be .csv, .json or .jsonl.")
    if not path.is_file():
        raise FaceDatasetError(f"{path}: missing; the manifest layout needs this file.")
    label_names = {column: list(names) for column, names in (label_names or {}).items()}
    files, rows = FileIndex(), []
    for where, record in _records(path, image_column, log):
        image = files.image(path.parent / record[image_column], log, where)
        if image is None:
            continue
        row = {image_column: image, **{column: value for column, value in record.items() if column != image_column}}
        for column in label_names.keys() & row.keys():
            names, value = label_names[column], row[column]
            row[column] = names.index(value) if value in names else parse_label(value, names, log,
                                                                                f"{where} column {column!r}")
        if all(row[column] is not None for column in label_names.keys() & row.keys()):
            rows.append(row)
    features = datasets.Dataset.from_list([{k: v for k, v in rows[0].items() if k != image_column}]).features \
        if rows else datasets.Features()
    features[image_column] = datasets.Image()
    for column, names in label_names.items():
        features[column] = datasets.ClassLabel(names=names)
    columns = {column: ColumnSpec("single_label_classification", tuple(names)) for column, names in label_names.items()}
    return Read({UNSPLIT: rows}, features, columns, [path], {UNSPLIT: f"every row of {path.name}"})


READER = Reader(FORMAT, LAYOUT, recognise, read, skips_bad_rows=False)
