"""What every source reader shares: the error, the skip log, the column description, the report, and the cheap
checks readers build on (annotation files present, CSV / text rows split into fields, images present on disk).

Readers never decode an image: they check that the file exists (from one directory listing per folder) and hand
its path on; a file that exists but cannot be decoded is the decode stage's concern, where it is reported per image.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets

logger = logging.getLogger("etfuser_hf.data.sources")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
UNSPLIT = ""  # the split key of a dataset that comes without splits (loaded as one `Dataset`)
SHOWN_PER_REASON = 20  # warning lines per skip reason; the rest are counted (AffectNet can miss thousands of images)


class FaceDatasetError(ValueError):
    """A face dataset on disk is incomplete or not a layout we read; the message names the file and row."""


@dataclass(frozen=True)
class ColumnSpec:
    """What a column holds, so training can pick head, loss and metric without knowing the layout.

    `problem_type` is one of "single_label_classification" (`names`: class names in id order),
    "multi_label_classification" (`names`: one per vector entry, 0/1), "regression" (`units`), "landmarks"
    (`num_points` (x, y) points, in `frame`) or "box" ([x, y, width, height] in `frame`)."""

    problem_type: str
    names: tuple[str, ...] | None = None
    units: str | None = None
    num_points: int | None = None
    frame: str | None = None


@dataclass
class SourceReport:
    """How a source was read: the files, the splits and where they came from, the rows skipped and excluded per
    reason, and what each column holds. Travels with the data as JSON in `info.description` (see `source_report`),
    to be written into `splits.json` and the model card."""

    format: str
    source: str
    files: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    split_origin: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # damaged rows / files, per reason
    excluded: dict[str, int] = field(default_factory=dict)  # rows the protocol leaves out (AffectNet 8..10, ...)
    examples: dict[str, list[str]] = field(default_factory=dict)  # the first skip messages per reason
    columns: dict[str, ColumnSpec] = field(default_factory=dict)
    faces: str = "detect"  # the layout's face policy (`data.alignment`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> SourceReport:
        columns = {name: ColumnSpec(**{key: tuple(value) if key == "names" and value is not None else value
                                       for key, value in spec.items()})
                   for name, spec in record.get("columns", {}).items()}
        return cls(**{**record, "columns": columns})


def source_report(data: datasets.Dataset | datasets.DatasetDict) -> SourceReport | None:
    """The `SourceReport` a reader left in the data's `info.description`, or None (data from elsewhere)."""
    dataset = next(iter(data.values())) if isinstance(data, datasets.DatasetDict) else data
    try:
        record = json.loads(dataset.info.description or "")
    except ValueError:
        return None
    return SourceReport.from_dict(record["source_report"]) if isinstance(record, dict) and "source_report" in record \
        else None


class RowLog:
    """Skips a damaged row with one warning line naming it (`skip`), or raises `FaceDatasetError` with the same
    message when `strict`; counts skips and protocol exclusions per reason for the report."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.skipped: dict[str, int] = {}
        self.excluded: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def skip(self, reason: str, where: str, what: str) -> None:
        message = f"{where}: {what}"
        if self.strict:
            raise FaceDatasetError(message + ".")
        count = self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if count <= SHOWN_PER_REASON:
            self.examples.setdefault(reason, []).append(message)
            logger.warning("skipped %s", message)
        elif count == SHOWN_PER_REASON + 1:
            logger.warning("further %r skips are counted, not shown (see the source report)", reason)

    def exclude(self, reason: str) -> None:
        self.excluded[reason] = self.excluded.get(reason, 0) + 1


@dataclass
class Read:
    """What a reader hands the factory: rows per split (`UNSPLIT` for a dataset without splits), their features,
    what each label column holds, the annotation files read, where each split came from, and, where this read's
    layout differs from the reader's default, its face policy (`faces`)."""

    rows: dict[str, list[dict[str, Any]]]
    features: datasets.Features
    columns: dict[str, ColumnSpec]
    files: list[Path]
    split_origin: dict[str, str] = field(default_factory=dict)
    faces: str | None = None


@dataclass(frozen=True)
class Reader:
    """One layout's reader as the factory sees it: how it recognises its layout (`recognise(path)`), how it reads it
    (`read(path, log, **options)`), one line naming the layout for messages, and whether damaged rows are skipped
    (counted) or the first one refuses the source unless `strict=False`. `faces` is the layout's face policy
    (`data.alignment`: "detect" for full frames, "whole_image" for images that are face crops already, "box:<column>"
    where each row ships its face's box), what the alignment step does with its images."""

    format: str
    layout: str
    recognise: Callable[[Path], bool]
    read: Callable[..., Read]
    skips_bad_rows: bool = True
    faces: str = "detect"


# ----------------------------------------------------------------------------------------------------------------------
# files and rows
# ----------------------------------------------------------------------------------------------------------------------


def require_file(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise FaceDatasetError(f"{path}: missing; the {layout} layout needs this file.")
    return path


def require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise FaceDatasetError(f"{path}: image folder missing; the {layout} layout keeps its images there.")
    return path


def first_existing(paths: Sequence[Path]) -> Path | None:
    return next((path for path in paths if path.exists()), None)


class FileIndex:
    """Whether image files exist, from one directory listing per folder: a `stat` per image is slow on network
    disks, and opening one (as the old loaders did) is the decode stage's job."""

    def __init__(self) -> None:
        self._listings: dict[Path, frozenset[str]] = {}

    def listing(self, folder: Path) -> frozenset[str]:
        if folder not in self._listings:
            try:
                self._listings[folder] = frozenset(os.listdir(folder))
            except OSError:
                self._listings[folder] = frozenset()
        return self._listings[folder]

    def image(self, path: Path, log: RowLog, where: str) -> str | None:
        """`path` as a string if the file exists, else None after skipping the row as "missing_image"."""
        if path.name in self.listing(path.parent):
            return str(path)
        log.skip("missing_image", where, f"image file {path} does not exist")
        return None


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted (other files, such as a `.DS_Store`, are not examples)."""
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def csv_header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def csv_rows(path: Path, required: Sequence[str], log: RowLog) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, row) per data row of a CSV file; header names are stripped (FER2013's icml_face_data.csv writes
    " Usage", " pixels"). A missing required column refuses the file; a row whose field count differs from the
    header is skipped as "malformed_row". `where` is "<file> row N" with the header as row 1."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [column for column in required if column not in header]
        if missing:
            raise FaceDatasetError(f"{path}: missing columns {missing}; found {header}.")
        for number, fields in enumerate(reader, start=2):
            if not any(value.strip() for value in fields):
                continue
            where = f"{path} row {number}"
            if len(fields) != len(header):
                log.skip("malformed_row", where, f"malformed row, expected {len(header)} fields ({', '.join(header)}), "
                                                 f"got {len(fields)}")
                continue
            yield where, dict(zip(header, fields))


def text_rows(path: Path, header_lines: int = 0) -> Iterator[tuple[str, list[str]]]:
    """(where, whitespace-split fields) per non-blank line after `header_lines`; `where` is "<file> line N"."""
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if number > header_lines and line.strip():
                yield f"{path} line {number}", line.split()


def parse_label(value: Any, names: Sequence[str], log: RowLog, where: str, first: int = 0) -> int | None:
    """The class id of a label written as `first`..`first`+len(names)-1 (RAF-DB writes 1..7), or None after
    skipping the row ("bad_label": not an integer; "label_out_of_range")."""
    try:
        label = int(value)
    except (TypeError, ValueError):
        log.skip("bad_label", where, f"label {value!r} is not an integer")
        return None
    if not first <= label < first + len(names):
        last = first + len(names) - 1
        log.skip("label_out_of_range", where, f"label {label} is outside the label set {first}..{last} {list(names)}")
        return None
    return label - first


def parse_floats(text: str, log: RowLog, where: str, what: str, separators: str = "") -> list[float] | None:
    """Numbers of a field (`separators` become spaces: AffectNet's landmarks are "x1;y1;x2;..."), or None after
    skipping the row as "bad_number"."""
    for separator in separators:
        text = text.replace(separator, " ")
    try:
        return [float(value) for value in text.split()]
    except ValueError:
        log.skip("bad_number", where, f"{what} holds a value that is not a number")
        return None


def pairs(values: Sequence[float]) -> list[list[float]]:
    """[x1, y1, x2, y2, ...] as [[x1, y1], [x2, y2], ...]."""
    return [[values[index], values[index + 1]] for index in range(0, len(values) - 1, 2)]


def landmark_feature(num_points: int | None = None) -> datasets.Sequence:
    return datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=2), length=num_points or -1)


def class_folder_rows(folder: Path, names: Sequence[str], log: RowLog) -> list[dict[str, Any]]:
    """{"image", "label"} rows of one-sub-folder-per-class `folder` (imagefolder, FER2013's image release); a
    folder of images whose name is not in `names` is skipped as "unknown_class" (a folder without images is not a
    class)."""
    rows = []
    for class_dir in sorted(path for path in folder.iterdir() if path.is_dir()):
        images = image_files(class_dir)
        if images and class_dir.name not in names:
            log.skip("unknown_class", str(class_dir), f"folder name is not one of the classes {list(names)}")
        elif images:
            rows += [{"image": str(path), "label": names.index(class_dir.name)} for path in images]
    return rows
