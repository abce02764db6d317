"""UTKFace, as distributed: labels in the file names `[age]_[gender]_[race]_[date&time].jpg`.

- aligned & cropped: `UTKFace/*.jpg.chip.jpg` (one folder; `crop_part1/` reads the same way);
- in-the-wild: `part1/`, `part2/`, `part3/` of `*.jpg` (read together; they are not splits).

The source path is such a folder or the folder that holds `UTKFace/` or the parts. No splits: the literature cuts
its own (see `data.validation_split` and training's splits). Skipped with one warning line each and counted, as every
UTKFace user does: a name that does not parse — the real aligned set has three with only age and gender
(`39_1_20170116174525125.jpg.chip.jpg`, `61_1_20170109142408075.jpg.chip.jpg`, `61_1_20170109150557335.jpg.chip.jpg`)
— and a gender or race code outside its label set. Other files (not images) are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets

from .base import UNSPLIT, ColumnSpec, FaceDatasetError, Read, Reader, RowLog, image_files, parse_label

FORMAT = "utkface"
LAYOUT = "UTKFace: UTKFace/[age]_[gender]_[race]_[date&time].jpg.chip.jpg, or part1/ part2/ part3/ of *.jpg"
UTKFACE_GENDERS = ["male", "female"]
UTKFACE_RACES = ["white", "black", "asian", "indian", "others"]
NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.jpg(\.chip\.jpg)?$")
_RECOGNISED = re.compile(r"^\d+_[01]_[0-4]_\d+\.jpg(\.chip\.jpg)?$")  # stricter: a folder of other images is not UTK
FOLDERS = ("UTKFace", "crop_part1", "part1", "part2", "part3")


def _folders(path: Path) -> list[Path]:
    """The image folders of a UTKFace source: its named sub-folders, else the folder itself."""
    named = [path / name for name in FOLDERS if (path / name).is_dir()]
    return named or [path]


def recognise(path: Path) -> bool:
    return path.is_dir() and any(_RECOGNISED.match(image.name) for folder in _folders(path)
                                 for image in image_files(folder))


def read(path: Path, log: RowLog) -> Read:
    if not path.is_dir():
        raise FaceDatasetError(f"{path}: image folder missing; expected {LAYOUT}.")
    rows = []
    for folder in _folders(path):
        for image in image_files(folder):
            match = NAME.match(image.name)
            if match is None:
                log.skip("unparseable_name", str(image), "file name is not [age]_[gender]_[race]_[date&time].jpg")
                continue
            age, gender, race = match.groups()[:3]
            gender = parse_label(gender, UTKFACE_GENDERS, log, f"{image} (gender)")
            race = None if gender is None else parse_label(race, UTKFACE_RACES, log, f"{image} (race)")
            if race is not None:
                rows.append({"image": str(image), "age": int(age), "gender": gender, "race": race})
    features = datasets.Features({"image": datasets.Image(), "age": datasets.Value("int32"),
                                  "gender": datasets.ClassLabel(names=UTKFACE_GENDERS),
                                  "race": datasets.ClassLabel(names=UTKFACE_RACES)})
    columns = {"age": ColumnSpec("regression", units="years"),
               "gender": ColumnSpec("single_label_classification", tuple(UTKFACE_GENDERS)),
               "race": ColumnSpec("single_label_classification", tuple(UTKFACE_RACES))}
    folders = ", ".join(f"{folder.name}/" for folder in _folders(path))
    # the chips are aligned crops already; the in-the-wild parts are whole photos, for the detector
    chips = all(row["image"].endswith(".chip.jpg") for row in rows)
    return Read({UNSPLIT: rows}, features, columns, [], {UNSPLIT: f"every image of {folders} (UTKFace has no splits)"},
                faces="whole_image" if chips else "detect")


READER = Reader(FORMAT, LAYOUT, recognise, read)
