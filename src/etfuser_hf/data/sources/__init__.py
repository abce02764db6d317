"""The source stage of the data wing: one reader per distributed layout (a module each), one factory
(`read_face_source`, `load_face_dataset`), and what they report (`SourceReport`, `ColumnSpec`)."""

from .affectnet import AFFECTNET_LABELS
from .base import ColumnSpec, FaceDatasetError, SourceReport, source_report
from .celeba import CELEBA_SPLITS, celeba_attribute_names
from .factory import FORMATS, READERS, detect_format, layouts, load_face_dataset, read_face_source
from .fer2013 import FER2013_LABELS, FER2013_SPLITS
from .rafdb import RAFDB_LABELS
from .utkface import UTKFACE_GENDERS, UTKFACE_RACES

__all__ = [
    "AFFECTNET_LABELS", "CELEBA_SPLITS", "FER2013_LABELS", "FER2013_SPLITS", "FORMATS", "RAFDB_LABELS", "READERS",
    "UTKFACE_GENDERS", "UTKFACE_RACES", "ColumnSpec", "FaceDatasetError", "SourceReport", "celeba_attribute_names",
    "detect_format", "layouts", "load_face_dataset", "read_face_source", "source_report",
]
