"""The crop rules by name: a prior config's recorded `crop_geometry` (`configuration_face_priors.CROP_GEOMETRY_NAMES`)
-> the image -> crop affines and the windows of that rule (`crop_geometry`), for any face."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..models.configuration_face_priors import CROP_GEOMETRY_NAMES, DEFAULT_CROP_GEOMETRY
from .crop_geometry import (
    arcface_template_affines,
    dlib_chip_affines,
    dlib_chip_windows,
    faceapi_aligned_box_affines,
    faceapi_aligned_box_windows,
    faceapi_box_affines,
    faceapi_box_windows,
    fer_box_affines,
    fer_box_windows,
)
from .crop_sampling import CropWindows


@dataclass(frozen=True)
class CropGeometry:
    """One crop rule: its affine function, which of `landmarks` / `boxes` it reads, and where the original shows more
    than the image under the crop (`windows`: its fill and resampling bounds; None: zeros outside the image)."""

    function: Callable[..., np.ndarray]
    reads: str  # "landmarks" or "boxes"
    clips_at_image: bool  # takes `image_sizes`
    also_boxes: bool = False  # a landmark rule that also takes the detector's `boxes` where given
    windows: Callable[..., CropWindows] | None = None  # the same arguments as `function`


CROP_GEOMETRIES: dict[str, CropGeometry] = {
    "dlib_chip": CropGeometry(dlib_chip_affines, "landmarks", True, windows=dlib_chip_windows),
    "faceapi_box": CropGeometry(faceapi_box_affines, "boxes", True, windows=faceapi_box_windows),
    "faceapi_aligned_box": CropGeometry(faceapi_aligned_box_affines, "landmarks", True, also_boxes=True,
                                        windows=faceapi_aligned_box_windows),
    "fer_box": CropGeometry(fer_box_affines, "boxes", True, windows=fer_box_windows),
    "arcface_template": CropGeometry(arcface_template_affines, "landmarks", False),
}
assert set(CROP_GEOMETRIES) == set(CROP_GEOMETRY_NAMES), "the registry and the config's geometry names disagree"

# Parameters of a recorded geometry that are documentation, not arguments of its function.
_DESCRIPTIVE_KEYS = ("name", "source", "antialias", "inputs")


def crop_geometry_of(config) -> dict:
    """The crop geometry a prior's config records (`crop_geometry`), or `DEFAULT_CROP_GEOMETRY` (today's ArcFace
    template crop) for any config without one, e.g. a Hugging Face vision AutoModel's."""
    geometry = getattr(config, "crop_geometry", None)
    return dict(geometry) if geometry else dict(DEFAULT_CROP_GEOMETRY)


def _rule_call(geometry: str | Mapping, landmarks, boxes, image_sizes) -> tuple[CropGeometry, np.ndarray, dict]:
    """(rule, what it reads, its keyword arguments) of `geometry` for `crop_affines` and `crop_windows`."""
    if isinstance(geometry, str):
        geometry = {"name": geometry}
    name = geometry.get("name") if isinstance(geometry, Mapping) else None
    if name not in CROP_GEOMETRIES:
        raise ValueError(f"geometry: unknown crop geometry {name!r}; expected one of {sorted(CROP_GEOMETRIES)}.")
    rule = CROP_GEOMETRIES[name]
    source = landmarks if rule.reads == "landmarks" else boxes
    if source is None:
        raise ValueError(f"{rule.reads}: crop geometry {name!r} reads {rule.reads}, got None.")
    parameters = {key: value for key, value in geometry.items() if key not in _DESCRIPTIVE_KEYS}
    if rule.clips_at_image:
        parameters["image_sizes"] = image_sizes
    if rule.also_boxes and boxes is not None:
        parameters["boxes"] = boxes
    if "offsets" in parameters:
        parameters["offsets"] = tuple(parameters["offsets"])
    return rule, source, parameters


def crop_affines(geometry: str | Mapping, landmarks: np.ndarray | None = None, boxes: np.ndarray | None = None,
                 image_sizes=None) -> np.ndarray:
    """Image -> crop affines (N, 2, 3) of `geometry` (a registered name, or a config's `crop_geometry` dict whose
    parameters are passed on) for N faces, from the `landmarks` or `boxes` that geometry reads."""
    rule, source, parameters = _rule_call(geometry, landmarks, boxes, image_sizes)
    return rule.function(source, **parameters)


def crop_windows(geometry: str | Mapping, landmarks: np.ndarray | None = None, boxes: np.ndarray | None = None,
                 image_sizes=None) -> CropWindows | None:
    """What the original crop of `geometry` shows around the image for N faces (`CropWindows`, for `cut_crops`), from
    the same arguments as `crop_affines`; None for a rule whose crop is the image under it, zeros beyond."""
    rule, source, parameters = _rule_call(geometry, landmarks, boxes, image_sizes)
    return rule.windows(source, **parameters) if rule.windows is not None else None


__all__ = ["CROP_GEOMETRIES", "CropGeometry", "crop_affines", "crop_geometry_of", "crop_windows"]
