"""RAF-DB basic, as distributed: `basic/EmoLabel/list_patition_label.txt` (sic: the official spelling) with lines
`train_00001.jpg 5` (labels 1..7 in RAF order) and images `basic/Image/aligned/train_00001_aligned.jpg`
(or `basic/Image/original/train_00001.jpg`, with `images="original"` or when no aligned folder exists).

Splits: the file names' own train / test prefixes (no validation split: see `data.validation_split`).
Quirks, skipped with one warning line each and counted (users of RAF-DB drop such lines): a line without a name and
a label, a name without the train_/test_ prefix, a label outside 1..7, an image not on disk. Refused: a missing label
file or image folder.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from .base import ColumnSpec, FileIndex, Read, Reader, RowLog, parse_label, require_dir, require_file, text_rows

FORMAT = "rafdb"
LAYOUT = "RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned/*_aligned.jpg (or Image/original/)"
RAFDB_LABELS = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]  # file labels 1..7
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"


def _root(path: Path) -> Path:
    """`basic/` itself, or the RAF-DB folder that holds it."""
    return path / "basic" if (path / "basic" / LABEL_FILE).is_file() else path


def recognise(path: Path) -> bool:
    return path.is_dir() and (_root(path) / LABEL_FILE).is_file()


def read(path: Path, log: RowLog, images: str | None = None) -> Read:
    root = _root(path)
    label_file = require_file(root / LABEL_FILE, "RAF-DB")
    images = images or ("aligned" if (root / "Image" / "aligned").is_dir() else "original")
    if images not in ("aligned", "original"):
        raise ValueError(f"images must be 'aligned' or 'original', got {images!r}.")
    image_dir = root / "Image" / images
    suffix = "_aligned.jpg" if images == "aligned" else ".jpg"
    files, rows = FileIndex(), {"train": [], "test": []}
    for where, fields in text_rows(label_file):
        if len(fields) != 2 or not fields[0].startswith(("train_", "test_")):
            log.skip("malformed_row", where,
                     f"expected '<train|test>_NNNNN.jpg <label 1..7>', got {' '.join(fields)!r}")
            continue
        name, value = fields
        label = parse_label(value, RAFDB_LABELS, log, where, first=1)
        if label is not None and not any(rows.values()):  # an empty label file is "no examples", not a missing folder
            require_dir(image_dir, "RAF-DB")
        image = None if label is None else files.image(image_dir / name.replace(".jpg", suffix), log, where)
        if image is not None:
            rows[name.split("_")[0]].append({"image": image, "label": label})
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=RAFDB_LABELS)})
    origin = {split: f"RAF-DB's {split}_* images ({label_file.name}); Image/{images}" for split in rows}
    return Read(rows, features, {"label": ColumnSpec("single_label_classification", tuple(RAFDB_LABELS))},
                [label_file], origin)


# Image/aligned/ holds face crops already (100x100, aligned by the authors)
READER = Reader(FORMAT, LAYOUT, recognise, read, faces="whole_image")
