"""Face datasets from their distributed on-disk layouts (compatibility module: the readers live in `data.sources`,
one per layout, behind one factory).

    load_face_dataset("path/to/fer2013.csv")        # FER2013 CSV, or train/<class>/ + test/<class>/ folders
    load_face_dataset("path/to/RAF-DB/basic")       # EmoLabel/list_patition_label.txt + Image/aligned/
    load_face_dataset("path/to/UTKFace")            # [age]_[gender]_[race]_[date&time].jpg(.chip.jpg), or part1..3/
    load_face_dataset("path/to/CelebA")             # official (Anno/, Eval/, Img/), Kaggle (CSVs) or torchvision flat
    load_face_dataset("path/to/AffectNet")          # Manually_Annotated_file_lists/*.csv + Manually_Annotated_Images/
    load_face_dataset("path/to/manifest.csv")       # any CSV/JSON manifest: an image path column + label columns
    load_face_dataset("path/to/folder")             # imagefolder: one sub-folder per class
    load_face_dataset("user/dataset-id")            # anything else goes to datasets.load_dataset (needs the Hub)

`read_face_source` returns the same data with its `SourceReport` (skips per reason, splits, column specs).
`with_face_transform(dataset, processor, "label")` turns any of them into lazily computed `pixel_values` + `labels`.
"""

from .face_transform import with_face_transform
from .sources import (AFFECTNET_LABELS, CELEBA_SPLITS, FER2013_LABELS, FER2013_SPLITS, FORMATS, RAFDB_LABELS,
                      UTKFACE_GENDERS, UTKFACE_RACES, ColumnSpec, FaceDatasetError, SourceReport,
                      celeba_attribute_names, detect_format, load_face_dataset, read_face_source, source_report)

__all__ = [
    "AFFECTNET_LABELS", "CELEBA_SPLITS", "FER2013_LABELS", "FER2013_SPLITS", "FORMATS", "RAFDB_LABELS",
    "UTKFACE_GENDERS", "UTKFACE_RACES", "ColumnSpec", "FaceDatasetError", "SourceReport", "celeba_attribute_names",
    "detect_format", "load_face_dataset", "read_face_source", "source_report", "with_face_transform",
]
