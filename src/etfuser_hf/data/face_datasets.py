"""Face datasets as `datasets.Dataset`s with explicit `datasets.Features`, from their original on-disk layouts.

    load_face_dataset("path/to/fer2013.csv")        # FER2013: emotion, pixels, Usage -> train/validation/test
    load_face_dataset("path/to/RAF-DB/basic")       # EmoLabel/list_patition_label.txt + Image/aligned/
    load_face_dataset("path/to/UTKFace")            # [age]_[gender]_[race]_[date&time].jpg(.chip.jpg)
    load_face_dataset("path/to/CelebA")             # list_attr_celeba.txt (+ list_eval_partition.txt) + img_align_celeba/
    load_face_dataset("path/to/affectnet.csv")      # AffectNet-style CSV (subDirectory_filePath, ..., expression, valence, arousal)
    load_face_dataset("path/to/manifest.csv")       # any CSV/JSON manifest: an image path column + label columns
    load_face_dataset("path/to/folder")             # imagefolder: one sub-folder per class
    load_face_dataset("user/dataset-id")            # anything else goes to datasets.load_dataset (needs the Hub)

The format is detected from the layout unless `format=` says it. `with_face_transform(dataset, processor, "label")`
turns any of them into lazily computed `pixel_values` + `labels` for the Trainer. Every loader checks what a broken download
produces — a missing or unreadable image, a label outside the label set, a malformed row, an empty result — and
raises `FaceDatasetError` naming the file and row.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image

FER2013_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FER2013_SPLITS = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
RAFDB_LABELS = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]  # file labels 1..7
AFFECTNET_LABELS = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]  # 8..10: non-faces
UTKFACE_GENDERS = ["male", "female"]
UTKFACE_RACES = ["white", "black", "asian", "indian", "others"]
CELEBA_SPLITS = {"0": "train", "1": "validation", "2": "test"}
FORMATS = ("imagefolder", "manifest", "fer2013", "rafdb", "utkface", "celeba", "affectnet")
_UTKFACE_NAME = re.compile(r"^(\d+)_(\d)_(\d)_(\d+)\.jpg(\.chip\.jpg)?$")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class FaceDatasetError(ValueError):
    """A face dataset on disk is incomplete or inconsistent; the message names the file and row."""


def _check_image(path: Path, where: str) -> str:
    if not path.is_file():
        raise FaceDatasetError(f"{where}: image file {path} does not exist.")
    try:
        with PIL.Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for broken files
        raise FaceDatasetError(f"{where}: image file {path} is corrupt or not an image ({error}).") from error
    return str(path)


def _check_label(value: Any, names: Sequence[str], where: str) -> int:
    try:
        label = int(value)
    except (TypeError, ValueError):
        raise FaceDatasetError(f"{where}: label {value!r} is not an integer.") from None
    if not 0 <= label < len(names):
        raise FaceDatasetError(f"{where}: label {label} is outside the label set 0..{len(names) - 1} {list(names)}.")
    return label


def _dataset(rows: list[dict[str, Any]], features: datasets.Features, where: str) -> datasets.Dataset:
    if not rows:
        raise FaceDatasetError(f"{where}: no examples found (empty dataset).")
    return datasets.Dataset.from_list(rows, features=features)


def _splits(rows_by_split: dict[str, list[dict[str, Any]]], features: datasets.Features, where: str):
    if not any(rows_by_split.values()):
        raise FaceDatasetError(f"{where}: no examples found (empty dataset).")
    return datasets.DatasetDict({split: _dataset(rows, features, f"{where} [{split}]")
                                 for split, rows in rows_by_split.items() if rows})


def _require_file(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise FaceDatasetError(f"{path}: missing; the {layout} layout needs this file.")
    return path


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in required if column not in (reader.fieldnames or [])]
        if missing:
            raise FaceDatasetError(f"{path}: missing columns {missing}; found {reader.fieldnames}.")
        rows = list(reader)
    for number, row in enumerate(rows, start=2):
        if None in row or None in row.values():  # DictReader's marks for too many / too few fields
            raise FaceDatasetError(f"{path} row {number}: malformed row, expected {len(reader.fieldnames)} fields "
                                   f"({', '.join(reader.fieldnames)}).")
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# one loader per layout
# ----------------------------------------------------------------------------------------------------------------------


def load_fer2013(csv_path: str | Path) -> datasets.DatasetDict:
    """FER2013 CSV: `emotion` (0..6), `pixels` (48*48 space-separated grey values), `Usage` -> splits."""
    csv_path = _require_file(Path(csv_path), "FER2013")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=FER2013_LABELS)})
    rows: dict[str, list] = {split: [] for split in FER2013_SPLITS.values()}
    for number, row in enumerate(_read_csv(csv_path, ["emotion", "pixels"]), start=2):
        where = f"{csv_path} row {number}"
        try:
            pixels = np.array(row["pixels"].split(), dtype=np.float64)
        except ValueError:
            raise FaceDatasetError(f"{where}: 'pixels' holds a value that is not a number.") from None
        if pixels.size != 48 * 48 or pixels.min() < 0 or pixels.max() > 255:
            raise FaceDatasetError(f"{where}: 'pixels' must hold 2304 values in 0..255 (48x48), got {pixels.size}.")
        split = FER2013_SPLITS.get(row.get("Usage", "Training"))
        if split is None:
            raise FaceDatasetError(f"{where}: Usage {row.get('Usage')!r} is not one of {list(FER2013_SPLITS)}.")
        image = PIL.Image.fromarray(pixels.reshape(48, 48).astype(np.uint8), mode="L")
        rows[split].append({"image": image, "label": _check_label(row["emotion"], FER2013_LABELS, where)})
    return _splits(rows, features, str(csv_path))


def load_rafdb(root: str | Path) -> datasets.DatasetDict:
    """RAF-DB basic: `EmoLabel/list_patition_label.txt` lines `train_00001.jpg 5` (labels 1..7, RAF order) and images
    `Image/aligned/train_00001_aligned.jpg` (or `Image/original/train_00001.jpg`)."""
    root = Path(root)
    label_file = _require_file(root / "EmoLabel" / "list_patition_label.txt", "RAF-DB")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=RAFDB_LABELS)})
    rows: dict[str, list] = {"train": [], "test": []}
    for number, line in enumerate(label_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{label_file} line {number}"
        parts = line.split()
        if len(parts) != 2 or not parts[0].startswith(("train_", "test_")):
            raise FaceDatasetError(f"{where}: expected '<train|test>_NNNNN.jpg <label 1..7>', got {line!r}.")
        name, label = parts
        aligned = root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")
        path = aligned if aligned.exists() or not (root / "Image" / "original" / name).exists() else root / "Image" / "original" / name
        rows[name.split("_")[0]].append({"image": _check_image(path, where),
                                         "label": _check_label(int(label) - 1, RAFDB_LABELS, where)})
    return _splits(rows, features, str(root))


def load_utkface(root: str | Path) -> datasets.Dataset:
    """UTKFace: labels parsed from `[age]_[gender]_[race]_[date&time].jpg` (or `.jpg.chip.jpg`)."""
    root = Path(root)
    features = datasets.Features({"image": datasets.Image(), "age": datasets.Value("int32"),
                                  "gender": datasets.ClassLabel(names=UTKFACE_GENDERS),
                                  "race": datasets.ClassLabel(names=UTKFACE_RACES)})
    rows = []
    for path in sorted(p for p in root.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
        match = _UTKFACE_NAME.match(path.name)
        if match is None:
            raise FaceDatasetError(f"{path}: file name is not [age]_[gender]_[race]_[date&time].jpg.")
        age, gender, race = (int(value) for value in match.groups()[:3])
        rows.append({"image": _check_image(path, str(path)), "age": age,
                     "gender": _check_label(gender, UTKFACE_GENDERS, str(path)),
                     "race": _check_label(race, UTKFACE_RACES, str(path))})
    return _dataset(rows, features, str(root))


def load_celeba(root: str | Path) -> datasets.DatasetDict | datasets.Dataset:
    """CelebA: `list_attr_celeba.txt` (count line, header of attribute names, rows of -1/1) with images in
    `img_align_celeba/`; splits from `list_eval_partition.txt` when present. `attributes` is multi-hot (float32),
    ready for multi-label training; its attribute order is in `dataset.info.description` and
    `celeba_attribute_names(root)`."""
    root = Path(root)
    attribute_file = _require_file(root / "list_attr_celeba.txt", "CelebA")
    lines = attribute_file.read_text().splitlines()
    if len(lines) < 2:
        raise FaceDatasetError(f"{attribute_file}: expected a count line and a header line.")
    names = lines[1].split()
    features = datasets.Features({"image": datasets.Image(),
                                  "attributes": datasets.Sequence(datasets.Value("float32"), length=len(names))})
    partition_file = root / "list_eval_partition.txt"
    partitions = dict(line.split() for line in partition_file.read_text().splitlines() if line.strip()) \
        if partition_file.exists() else {}
    rows: dict[str, list] = {"train": [], "validation": [], "test": []}
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        where = f"{attribute_file} line {number}"
        parts = line.split()
        if len(parts) != len(names) + 1 or any(value not in ("1", "-1") for value in parts[1:]):
            raise FaceDatasetError(f"{where}: expected a file name and {len(names)} values of 1/-1.")
        split = CELEBA_SPLITS.get(partitions.get(parts[0], "0"), "train")
        rows[split].append({"image": _check_image(root / "img_align_celeba" / parts[0], where),
                            "attributes": [float(value == "1") for value in parts[1:]]})
    info = datasets.DatasetInfo(description="CelebA attributes (multi-hot order): " + ", ".join(names))
    if not partitions:
        dataset = _dataset(rows["train"], features, str(root))
        dataset.info.description = info.description
        return dataset
    result = _splits(rows, features, str(root))
    for split in result.values():
        split.info.description = info.description
    return result


def celeba_attribute_names(root: str | Path) -> list[str]:
    """The 40 attribute names of a CelebA folder, in the order of the `attributes` column."""
    return (Path(root) / "list_attr_celeba.txt").read_text().splitlines()[1].split()


def load_affectnet(csv_path: str | Path, images_dir: str | Path | None = None, keep_non_faces: bool = False
                   ) -> datasets.Dataset:
    """AffectNet-style CSV (`subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks,
    expression, valence, arousal`); images relative to `images_dir` (default: the CSV's folder). Expressions 8..10
    (none / uncertain / non-face) are dropped unless `keep_non_faces`, as in the usual 8-class protocol."""
    csv_path = Path(csv_path)
    images_dir = Path(images_dir) if images_dir is not None else csv_path.parent
    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=AFFECTNET_LABELS),
        "valence": datasets.Value("float32"), "arousal": datasets.Value("float32"),
        "face_box": datasets.Sequence(datasets.Value("float32"), length=4),
        "landmarks": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=2)),
    })
    required = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                "expression", "valence", "arousal"]
    rows = []
    for number, row in enumerate(_read_csv(csv_path, required), start=2):
        where = f"{csv_path} row {number}"
        try:
            expression = int(row["expression"])
            box = [float(row[key]) for key in ("face_x", "face_y", "face_width", "face_height")]
            points = [float(value) for value in row["facial_landmarks"].replace(";", " ").split()]
            valence, arousal = float(row["valence"]), float(row["arousal"])
        except ValueError as error:
            raise FaceDatasetError(f"{where}: malformed numeric field ({error}).") from None
        if expression >= len(AFFECTNET_LABELS) and not keep_non_faces and expression <= 10:
            continue
        if len(points) % 2:
            raise FaceDatasetError(f"{where}: facial_landmarks must hold x;y pairs, got {len(points)} values.")
        rows.append({"image": _check_image(images_dir / row["subDirectory_filePath"], where),
                     "label": _check_label(expression, AFFECTNET_LABELS, where), "valence": valence,
                     "arousal": arousal, "face_box": box, "landmarks": np.reshape(points, (-1, 2)).tolist()})
    return _dataset(rows, features, str(csv_path))


def load_manifest(path: str | Path, image_column: str = "image", label_names: dict[str, Sequence[str]] | None = None
                  ) -> datasets.Dataset:
    """CSV or JSON/JSON-lines manifest: `image_column` holds paths (relative to the manifest's folder); every other
    column is a label. Columns named in `label_names` become `ClassLabel`s (values: names or ids) and are checked."""
    path = Path(path)
    if path.suffix == ".csv":
        records = _read_csv(path, [image_column])
    elif path.suffix in (".json", ".jsonl"):
        text = path.read_text()
        records = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line.strip()]
        if not isinstance(records, list) or any(not isinstance(r, dict) or image_column not in r for r in records):
            raise FaceDatasetError(f"{path}: expected a list of records that all have an {image_column!r} field.")
    else:
        raise FaceDatasetError(f"{path}: a manifest must be .csv, .json or .jsonl.")
    label_names = label_names or {}
    rows = []
    for number, record in enumerate(records, start=2 if path.suffix == ".csv" else 1):
        where = f"{path} row {number}"
        row = {image_column: _check_image(path.parent / record[image_column], where)}
        for column, value in record.items():
            if column == image_column:
                continue
            if column in label_names:
                names = list(label_names[column])
                value = names.index(value) if value in names else _check_label(value, names, f"{where} column {column!r}")
            row[column] = value
        rows.append(row)
    if not rows:
        raise FaceDatasetError(f"{path}: no examples found (empty dataset).")
    features = datasets.Dataset.from_list([{k: v for k, v in rows[0].items() if k != image_column}]).features
    features[image_column] = datasets.Image()
    for column, names in label_names.items():
        features[column] = datasets.ClassLabel(names=list(names))
    return datasets.Dataset.from_list(rows, features=features)


def load_imagefolder(root: str | Path, check_images: bool = True) -> datasets.Dataset | datasets.DatasetDict:
    """One sub-folder per class (optionally under train/ validation/ test/), via datasets' `imagefolder` builder.
    `check_images=False` leaves unreadable files in (for callers that report and skip them one by one)."""
    root = Path(root)
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not images:
        raise FaceDatasetError(f"{root}: no examples found (empty dataset): no {sorted(_IMAGE_SUFFIXES)} files.")
    for path in images if check_images else ():
        _check_image(path, str(path.relative_to(root)))
    return datasets.load_dataset("imagefolder", data_dir=str(root))


def detect_format(source: str | Path) -> str | None:
    """The `FORMATS` entry a local path looks like, or None (not a local path)."""
    path = Path(source)
    if path.is_file():
        if path.suffix in (".json", ".jsonl"):
            return "manifest"
        if path.suffix == ".csv":
            with path.open(newline="") as handle:
                header = next(csv.reader(handle), [])
            if "pixels" in header and "emotion" in header:
                return "fer2013"
            if "subDirectory_filePath" in header:
                return "affectnet"
            return "manifest"
        raise FaceDatasetError(f"{path}: cannot tell the dataset format of this file; pass format= one of {FORMATS}.")
    if path.is_dir():
        if (path / "EmoLabel" / "list_patition_label.txt").exists():
            return "rafdb"
        if (path / "list_attr_celeba.txt").exists():
            return "celeba"
        if any(_UTKFACE_NAME.match(p.name) for p in path.iterdir()):
            return "utkface"
        return "imagefolder"
    return None


def load_face_dataset(source: str | Path, format: str | None = None, **kwargs: Any
                      ) -> datasets.Dataset | datasets.DatasetDict:
    """Loads a face dataset from a local layout (see the module docstring) or, for anything that is not a local
    path, `datasets.load_dataset(source, **kwargs)`."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} or None, got {format!r}.")
    format = format or detect_format(source)
    if format is None:
        if isinstance(source, Path) or str(source).startswith(("/", ".", "~")):
            raise FaceDatasetError(f"{source}: no such file or folder (a local path was given).")
        return datasets.load_dataset(str(source), **kwargs)
    loaders = {"imagefolder": load_imagefolder, "manifest": load_manifest, "fer2013": load_fer2013,
               "rafdb": load_rafdb, "utkface": load_utkface, "celeba": load_celeba, "affectnet": load_affectnet}
    return loaders[format](source, **kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# model inputs
# ----------------------------------------------------------------------------------------------------------------------


def with_face_transform(
    dataset: datasets.Dataset,
    image_processor: Any | None = None,
    label_column: str | None = "label",
    image_column: str = "image",
) -> datasets.Dataset:
    """A view of `dataset` whose rows are model inputs, computed lazily on access (`Dataset.with_transform`, the
    non-mutating `set_transform`): `pixel_values` (3, H, W) float in [0, 1] from `image_processor` (default: an
    `ETFuserImageProcessor` at 224x224) and `labels` from `label_column` — int64 for a `ClassLabel`, float32 otherwise
    (multi-hot attributes, ages, landmarks). `label_column=None` gives pixels only. Rows batch with
    `transformers.default_data_collator`.
    """
    if image_column not in dataset.column_names:
        raise ValueError(f"image_column: {image_column!r} is not a column of the dataset {dataset.column_names}.")
    if label_column is not None and label_column not in dataset.column_names:
        raise ValueError(f"label_column: {label_column!r} is not a column of the dataset {dataset.column_names}.")
    if image_processor is None:
        from ..models.image_processing_etfuser import ETFuserImageProcessor

        image_processor = ETFuserImageProcessor()
    import torch

    integer_labels = label_column is not None and isinstance(dataset.features[label_column], datasets.ClassLabel)

    def transform(batch: dict[str, list]) -> dict[str, Any]:
        images = [image.convert("RGB") for image in batch[image_column]]
        inputs = {"pixel_values": image_processor(images, return_tensors="pt")["pixel_values"]}
        if label_column is not None:
            inputs["labels"] = torch.tensor(batch[label_column], dtype=torch.long if integer_labels else torch.float32)
        return inputs

    return dataset.with_transform(transform, columns=[image_column] + ([label_column] if label_column else []))


__all__ = ["FORMATS", "FaceDatasetError", "celeba_attribute_names", "detect_format", "load_affectnet", "load_celeba",
           "load_face_dataset", "load_fer2013", "load_imagefolder", "load_manifest", "load_rafdb", "load_utkface", "with_face_transform"]
