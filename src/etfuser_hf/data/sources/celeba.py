"""CelebA (aligned images, 40 attributes), in the three layouts people have it in:

- official: `Anno/list_attr_celeba.txt`, `Eval/list_eval_partition.txt`, `Img/img_align_celeba/`;
- Kaggle copy: `list_attr_celeba.csv`, `list_eval_partition.csv`, `img_align_celeba/img_align_celeba/`;
- torchvision (flat): `list_attr_celeba.txt`, `list_eval_partition.txt`, `img_align_celeba/` (or under `celeba/`).

The txt files start with two header lines (the count, then the names); the CSVs with one (`image_id`, names).
`attributes` is the 40-long 0/1 vector (file -1 -> 0) in the file's attribute order, whose names are in the report's
column spec and `celeba_attribute_names`; `landmarks` are the 5 aligned points (eyes, nose, mouth corners) from
`list_landmarks_align_celeba.txt`/`.csv` when present. Splits: partition 0/1/2 -> train/validation/test; without a
partition file, one dataset without splits. Skipped with a warning line and counted: a row with the wrong field
count, an attribute other than 1/-1, an image missing from the partition or landmark file, a partition other than
0/1/2, an image not on disk. Refused: a missing attribute file or image folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets

from .base import (
    UNSPLIT,
    ColumnSpec,
    FaceDatasetError,
    FileIndex,
    Read,
    Reader,
    RowLog,
    csv_rows,
    first_existing,
    landmark_feature,
    pairs,
    parse_floats,
    text_rows,
)

FORMAT = "celeba"
LAYOUT = ("CelebA: Anno/list_attr_celeba.txt + Eval/list_eval_partition.txt + Img/img_align_celeba/ (official), "
          "list_attr_celeba.csv + img_align_celeba/img_align_celeba/ (Kaggle), or list_attr_celeba.txt + "
          "img_align_celeba/ (torchvision)")
CELEBA_SPLITS = {"0": "train", "1": "validation", "2": "test"}
FRAME = "pixels of the aligned 178x218 image (img_align_celeba)"


@dataclass(frozen=True)
class _Files:
    name: str
    attributes: str
    partition: str
    landmarks: str
    images: tuple[str, ...]  # candidates, first existing wins


_LAYOUTS = (
    _Files("official", "Anno/list_attr_celeba.txt", "Eval/list_eval_partition.txt",
           "Anno/list_landmarks_align_celeba.txt", ("Img/img_align_celeba",)),
    _Files("kaggle", "list_attr_celeba.csv", "list_eval_partition.csv", "list_landmarks_align_celeba.csv",
           ("img_align_celeba/img_align_celeba", "img_align_celeba")),
    _Files("torchvision", "list_attr_celeba.txt", "list_eval_partition.txt", "list_landmarks_align_celeba.txt",
           ("img_align_celeba",)),
)


def _locate(path: Path) -> tuple[Path, _Files] | None:
    for root in (path, path / "celeba"):
        for files in _LAYOUTS:
            if (root / files.attributes).is_file():
                return root, files
    return None


def recognise(path: Path) -> bool:
    return path.is_dir() and _locate(path) is not None


def _table(path: Path, log: RowLog, header_lines: int) -> tuple[list[str], Iterator[tuple[str, str, list[str]]]]:
    """Column names and (where, image name, values) rows of a CelebA list: whitespace-separated .txt with
    `header_lines` lines before the rows (the names on the last of them), or a .csv whose first column is image_id."""
    if path.suffix == ".csv":
        with path.open() as handle:
            names = [name.strip() for name in handle.readline().strip().split(",")][1:]
        rows = ((where, row["image_id"], [row[name] for name in names])
                for where, row in csv_rows(path, ["image_id"], log))
        return names, rows
    with path.open() as handle:
        header = [handle.readline() for _ in range(header_lines)]
    names = header[-1].split() if header_lines else []
    return names, ((where, fields[0], fields[1:]) for where, fields in text_rows(path, header_lines))


def celeba_attribute_names(root: str | Path) -> list[str]:
    """The 40 attribute names of a CelebA folder (any layout), in the order of the `attributes` vector."""
    located = _locate(Path(root))
    if located is None:
        raise FaceDatasetError(f"{root}: no CelebA attribute file; expected {LAYOUT}.")
    return _table(located[0] / located[1].attributes, RowLog(), 2)[0]


def _lookup(path: Path, log: RowLog, header_lines: int, width: int, what: str) -> dict[str, list[str]]:
    """image name -> values of a partition (width 1) or landmark (width 10) list; bad rows are skipped."""
    found = {}
    for where, name, values in _table(path, log, header_lines)[1]:
        if len(values) != width:
            log.skip("malformed_row", where, f"expected an image name and {width} {what}, got {len(values)} values")
        else:
            found[name] = values
    return found


def read(path: Path, log: RowLog) -> Read:
    located = _locate(path)
    if located is None:
        raise FaceDatasetError(f"{path / _LAYOUTS[0].attributes}: missing; the CelebA layout needs this file "
                               f"(or list_attr_celeba.csv / .txt at the top level).")
    root, files = located
    image_dir = first_existing([root / candidate for candidate in files.images])
    if image_dir is None:
        raise FaceDatasetError(f"{root / files.images[0]}: image folder missing; the CelebA layout keeps its images "
                               f"there.")
    attribute_file = root / files.attributes
    names, attribute_rows = _table(attribute_file, log, 2)
    read_files = [attribute_file]
    partition = landmarks = None
    if (root / files.partition).is_file():
        read_files.append(root / files.partition)
        partition = _lookup(root / files.partition, log, 0, 1, "partition")
    if (root / files.landmarks).is_file():
        read_files.append(root / files.landmarks)
        landmarks = _lookup(root / files.landmarks, log, 2, 10, "landmark coordinates")
    rows: dict[str, list] = {split: [] for split in CELEBA_SPLITS.values()} if partition is not None else {UNSPLIT: []}
    index = FileIndex()
    for where, name, values in attribute_rows:
        if len(values) != len(names) or any(value not in ("1", "-1") for value in values):
            log.skip("bad_attributes", where, f"expected an image name and {len(names)} values of 1/-1")
            continue
        row = {"image": None, "attributes": [int(value == "1") for value in values]}
        split = UNSPLIT
        if partition is not None:
            split = CELEBA_SPLITS.get(partition.get(name, ["?"])[0])
            if split is None:
                log.skip("no_partition", where, f"{name} has no partition 0/1/2 in {files.partition}")
                continue
        if landmarks is not None:
            points = parse_floats(" ".join(landmarks.get(name, [])), log, where, "its landmarks")
            if points is None:
                continue
            if not points:
                log.skip("no_landmarks", where, f"{name} has no 5 landmarks in {files.landmarks}")
                continue
            row["landmarks"] = pairs(points)
        row["image"] = index.image(image_dir / name, log, where)
        if row["image"] is not None:
            rows[split].append(row)
    features = datasets.Features({"image": datasets.Image(),
                                  "attributes": datasets.Sequence(datasets.Value("int8"), length=len(names))})
    columns = {"attributes": ColumnSpec("multi_label_classification", tuple(names))}
    if landmarks is not None:
        features["landmarks"] = landmark_feature(5)
        columns["landmarks"] = ColumnSpec("landmarks", num_points=5, frame=FRAME)
    origin = ({split: f"CelebA partition {number} ({files.partition})" for number, split in CELEBA_SPLITS.items()}
              if partition is not None else {UNSPLIT: f"every row of {files.attributes} (no partition file)"})
    return Read(rows, features, columns, read_files, {key: value + f"; {files.name} layout" for key, value in
                                                      origin.items()})


# img_align_celeba holds the authors' aligned and cropped faces
READER = Reader(FORMAT, LAYOUT, recognise, read, faces="whole_image")
