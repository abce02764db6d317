"""AffectNet (manually annotated part), as distributed: `Manually_Annotated_file_lists/training.csv` and
`validation.csv`, images in `Manually_Annotated_Images/<subDirectory_filePath>` (also found one level down, in
`Manually_Annotated/`, as the archive unpacks).

The source is the distributed folder, the file-list folder, or one CSV (with `images_dir=`, default: the
distributed images folder if the CSV sits in the file-list folder, else the CSV's folder). Splits: training.csv ->
train, validation.csv -> test (the official validation set is what the literature reports on; carve a validation
split from train with `data.validation_split`); one CSV alone loads without splits.

Columns: the expression (`classes=8`, or `classes=7` without contempt as much of the literature does), valence and
arousal, the face box and the 68 landmarks (in the original image's pixels; the images are not cropped).
Excluded by the protocol and counted: expressions 8..10 (none, uncertain, non-face; `keep_non_faces=True` keeps them
as classes of their own) and, with `classes=7`, contempt. Skipped with a warning line and counted: a row with the
wrong field count, an expression that is not 0..10, a number that does not parse, landmarks that are not x;y pairs,
an image not on disk (users of AffectNet drop such rows).
"""

from __future__ import annotations

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
    csv_header,
    csv_rows,
    first_existing,
    landmark_feature,
    pairs,
    parse_floats,
    parse_label,
    require_file,
)

FORMAT = "affectnet"
LAYOUT = ("AffectNet: Manually_Annotated_file_lists/{training,validation}.csv + Manually_Annotated_Images/, or one "
          "such CSV (subDirectory_filePath, face_x, ..., expression, valence, arousal)")
AFFECTNET_LABELS = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]
NON_FACE_LABELS = ["none", "uncertain", "non-face"]  # expressions 8..10
LISTS, IMAGES = "Manually_Annotated_file_lists", "Manually_Annotated_Images"
SPLIT_FILES = {"training.csv": "train", "validation.csv": "test"}
BOX = ("face_x", "face_y", "face_width", "face_height")
NUMBERS = (*BOX, "valence", "arousal")
REQUIRED = ("subDirectory_filePath", *BOX, "facial_landmarks", "expression", "valence", "arousal")
FRAME = "pixels of the original (uncropped) image"


def _images_dir(root: Path) -> Path | None:
    return first_existing([root / IMAGES, root / "Manually_Annotated" / IMAGES])


def _lists(path: Path) -> Path | None:
    """The file-list folder of a source folder (the distributed folder or the file-list folder itself)."""
    folder = path / LISTS if (path / LISTS).is_dir() else path
    return folder if any((folder / name).is_file() for name in SPLIT_FILES) else None


def recognise(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".csv" and "subDirectory_filePath" in csv_header(path)
    return path.is_dir() and _lists(path) is not None


def label_names(classes: int = 8, keep_non_faces: bool = False) -> list[str]:
    """The expression names of `classes` (8, or 7 without contempt), plus 8..10 with `keep_non_faces`."""
    if classes not in (7, 8) or (classes == 7 and keep_non_faces):
        raise ValueError(f"classes must be 8 or 7 (without contempt), and keep_non_faces needs classes=8; got "
                         f"classes={classes}, keep_non_faces={keep_non_faces}.")
    return AFFECTNET_LABELS[:classes] + (NON_FACE_LABELS if keep_non_faces else [])


def _read_csv(csv_path: Path, images_dir: Path, names: list[str], log: RowLog, files: FileIndex) -> list[dict]:
    rows = []
    for where, row in csv_rows(csv_path, REQUIRED, log):
        expression = parse_label(row["expression"], AFFECTNET_LABELS + NON_FACE_LABELS, log, where)
        if expression is None:
            continue
        if expression >= len(names):  # inside 0..10 but left out by the protocol
            log.exclude("non_face_or_uncertain (8..10)" if expression >= len(AFFECTNET_LABELS)
                        else "contempt (7 classes)")
            continue
        numbers = parse_floats(" ".join(row[key] for key in NUMBERS), log, where, "a number field")
        if numbers is not None and len(numbers) != len(NUMBERS):
            log.skip("bad_number", where, f"expected one number in each of {', '.join(NUMBERS)}")
            continue
        points = None if numbers is None else parse_floats(row["facial_landmarks"], log, where, "facial_landmarks", ";")
        if points is None:
            continue
        if len(points) % 2:
            log.skip("bad_landmarks", where, f"facial_landmarks must hold x;y pairs, got {len(points)} values")
            continue
        image = files.image(images_dir / row["subDirectory_filePath"], log, where)
        if image is not None:
            rows.append({"image": image, "label": expression, "valence": numbers[4], "arousal": numbers[5],
                         "face_box": numbers[:4], "landmarks": pairs(points)})
    return rows


def read(path: Path, log: RowLog, images_dir: str | Path | None = None, classes: int = 8,
         keep_non_faces: bool = False) -> Read:
    names = label_names(classes, keep_non_faces)
    if path.is_file() or path.suffix == ".csv":
        csv_files = {UNSPLIT: require_file(path, "AffectNet")}
        default_images = _images_dir(path.parent.parent) if path.parent.name == LISTS else None
        default_images = default_images or path.parent
    else:
        lists = _lists(path)
        if lists is None:
            raise FaceDatasetError(f"{path / LISTS / 'training.csv'}: missing; the AffectNet layout needs this file.")
        csv_files = {split: require_file(lists / name, "AffectNet") for name, split in SPLIT_FILES.items()}
        default_images = _images_dir(lists.parent if lists.name == LISTS else path)
        if default_images is None and images_dir is None:
            raise FaceDatasetError(f"{lists.parent / 'Manually_Annotated_Images'}: image folder missing; the AffectNet "
                                   f"layout keeps its images there (or pass images_dir=).")
    images = Path(images_dir) if images_dir is not None else default_images
    if not images.is_dir():
        raise FaceDatasetError(f"{images}: image folder missing; the AffectNet layout keeps its images there.")
    files = FileIndex()
    rows = {split: _read_csv(csv_path, images, names, log, files) for split, csv_path in csv_files.items()}
    counts = {len(row["landmarks"]) for split_rows in rows.values() for row in split_rows}
    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=names),
        "valence": datasets.Value("float32"), "arousal": datasets.Value("float32"),
        "face_box": datasets.Sequence(datasets.Value("float32"), length=4), "landmarks": landmark_feature(),
    })
    columns = {"label": ColumnSpec("single_label_classification", tuple(names)),
               "valence": ColumnSpec("regression", units="valence in [-1, 1]"),
               "arousal": ColumnSpec("regression", units="arousal in [-1, 1]"),
               "face_box": ColumnSpec("box", frame=FRAME),
               "landmarks": ColumnSpec("landmarks", num_points=counts.pop() if len(counts) == 1 else None, frame=FRAME)}
    origin = {split: f"AffectNet {csv_path.name}" + (" (the official validation set)" if split == "test" else "")
              for split, csv_path in csv_files.items()}
    return Read(rows, features, columns, list(csv_files.values()), origin)


# the images are not cropped; each row ships its face's box (face_x, face_y, face_width, face_height)
READER = Reader(FORMAT, LAYOUT, recognise, read, faces="box:face_box")
