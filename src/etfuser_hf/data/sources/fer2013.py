"""FER2013, in its two distributed forms.

- The CSV (`fer2013.csv`, or the challenge's `icml_face_data.csv` with " Usage", " pixels" headers): `emotion`
  (0..6), `pixels` (48*48 space-separated grey values), `Usage`: Training / PublicTest / PrivateTest -> train /
  validation / test, as the literature reports (PrivateTest is the test set). Without a Usage column (the
  challenge's train.csv) every row is train. Skipped and counted: a row with the wrong field count, pixels that are
  not 2304 numbers in 0..255, an emotion outside 0..6, an unknown Usage. A folder that holds `fer2013.csv` reads too.
- The image release most people download now: `train/<class>/*.jpg`, `test/<class>/*.jpg` with the seven class
  folder names; labels follow the CSV's order (not the folders' alphabetical one), so both forms agree. Its splits
  are train / test (no validation split: see `data.validation_split`). A folder of another name is skipped.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import PIL.Image

from .base import (
    ColumnSpec,
    FaceDatasetError,
    Read,
    Reader,
    RowLog,
    class_folder_rows,
    csv_header,
    csv_rows,
    parse_floats,
    parse_label,
    require_file,
)

FORMAT = "fer2013"
LAYOUT = "FER2013: fer2013.csv (emotion, pixels, Usage), or train/<class>/*.jpg + test/<class>/*.jpg"
FER2013_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FER2013_SPLITS = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
FOLDER_SPLITS = ("train", "test")
CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")
COLUMNS = {"label": ColumnSpec("single_label_classification", tuple(FER2013_LABELS))}


def _csv(path: Path) -> Path | None:
    if path.is_dir():
        path = next((path / name for name in CSV_NAMES if (path / name).is_file()), path)
    return path if path.is_file() and path.suffix == ".csv" and {"emotion", "pixels"} <= set(csv_header(path)) \
        else None


def _is_folder_release(path: Path) -> bool:
    split_dirs = [path / split for split in FOLDER_SPLITS]
    return all(folder.is_dir() and {child.name for child in folder.iterdir() if child.is_dir()} == set(FER2013_LABELS)
               for folder in split_dirs)


def recognise(path: Path) -> bool:
    return _csv(path) is not None or (path.is_dir() and _is_folder_release(path))


def read(path: Path, log: RowLog) -> Read:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=FER2013_LABELS)})
    if path.is_dir() and _csv(path) is None:
        if not _is_folder_release(path):
            raise FaceDatasetError(f"{path}: not a FER2013 layout; expected {LAYOUT}.")
        rows = {split: class_folder_rows(path / split, FER2013_LABELS, log) for split in FOLDER_SPLITS}
        origin = {split: f"FER2013's {split}/ folder" for split in FOLDER_SPLITS}
        return Read(rows, features, COLUMNS, [], origin)
    csv_path = _csv(path) or require_file(path, "FER2013")
    rows = {split: [] for split in FER2013_SPLITS.values()}
    for where, row in csv_rows(csv_path, ["emotion", "pixels"], log):
        split = FER2013_SPLITS.get(row.get("Usage", "Training").strip())
        if split is None:
            log.skip("unknown_split", where, f"Usage {row['Usage']!r} is not one of {list(FER2013_SPLITS)}")
            continue
        label = parse_label(row["emotion"], FER2013_LABELS, log, where)
        pixels = None if label is None else parse_floats(row["pixels"], log, where, "'pixels'")
        if pixels is None:
            continue
        if len(pixels) != 48 * 48 or min(pixels) < 0 or max(pixels) > 255:
            log.skip("bad_pixels", where, f"'pixels' must hold 2304 values in 0..255 (48x48), got {len(pixels)}")
            continue
        # the CSV's pixels are the image itself: nothing on disk to point at, so it becomes a grey PNG here
        image = PIL.Image.fromarray(np.asarray(pixels, np.float64).reshape(48, 48).astype(np.uint8), mode="L")
        rows[split].append({"image": image, "label": label})
    origin = {split: f"{csv_path.name} rows with Usage {usage}" for usage, split in FER2013_SPLITS.items()}
    return Read(rows, features, COLUMNS, [csv_path], origin)


# 48x48 grey faces, cropped by the authors: below MTCNN's reach once its window is cut, and crops already
READER = Reader(FORMAT, LAYOUT, recognise, read, faces="whole_image")
