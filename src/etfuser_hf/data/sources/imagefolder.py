"""An image folder: one sub-folder per class (`happy/a.png`), optionally under split folders
(`train/happy/a.png`, `test/...`). Class names are the folder names, sorted, shared by all splits; without split
folders everything is the `train` split (as `datasets`' imagefolder builder does). Files that are not images are
ignored; nothing is skipped, since a folder has no rows to damage.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from .base import IMAGE_SUFFIXES, ColumnSpec, FaceDatasetError, Read, Reader, RowLog, class_folder_rows, image_files

FORMAT = "imagefolder"
LAYOUT = "imagefolder: <class>/*.jpg, or <split>/<class>/*.jpg with split folders train, validation, test"
SPLIT_FOLDERS = ("train", "validation", "valid", "val", "dev", "test")


def _class_dirs(folder: Path) -> list[Path]:
    return [child for child in sorted(folder.iterdir()) if child.is_dir() and image_files(child)]


def _splits(path: Path) -> dict[str, Path]:
    named = {name: path / name for name in SPLIT_FOLDERS if (path / name).is_dir() and _class_dirs(path / name)}
    return named or {"train": path}


def recognise(path: Path) -> bool:
    return path.is_dir() and any(_class_dirs(folder) for folder in _splits(path).values())


def read(path: Path, log: RowLog, check_images: bool = False) -> Read:
    """`check_images` is accepted for older callers and ignored: no reader decodes images any more."""
    del check_images
    if not path.is_dir() or not recognise(path):
        raise FaceDatasetError(f"{path}: no examples found (empty dataset): no class folders of "
                               f"{sorted(IMAGE_SUFFIXES)} files; expected {LAYOUT}.")
    splits = _splits(path)
    names = sorted({folder.name for split in splits.values() for folder in _class_dirs(split)})
    rows = {split: class_folder_rows(folder, names, log) for split, folder in splits.items()}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    origin = {split: f"{folder.relative_to(path.parent)}/<class>/ folders" for split, folder in splits.items()}
    return Read(rows, features, {"label": ColumnSpec("single_label_classification", tuple(names))}, [], origin)


READER = Reader(FORMAT, LAYOUT, recognise, read)
