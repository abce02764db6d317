"""Every network's own crop of each detected face (issue 32), as `analyze` cuts it.

The model is fed one loose canonical crop per face (`crop_geometry.canonical_crop_affines`: the five MTCNN points on
the ArcFace template with room around it), and `prior_crops` tells the forward where, in that crop, each network's
authors cut their face (`crop_geometry`). Two rules read face-api's 68 landmarks (`dlib_chip`, `faceapi_aligned_box`),
so the analysis runs in two stages: face-api's landmark net first, on its own crop (`faceapi_box`, from the detector's
box), then every other network on crops placed by those landmarks; the landmark net's output is reused as that
prior's fusion tokens and readout, never run twice. Landmark readouts are mapped back to the image through the
landmark net's own crop (`faceapi_landmarks_to_image`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.input_checks import BACKBONE_CROP_KEY
from ..priors.face_detection import ARCFACE_TEMPLATE_112
from ..priors.crop_geometry import (
    CANONICAL_CROP_MARGIN,
    CANONICAL_CROP_SIZE,
    canonical_crop_affines,
    compose_affines,
    crop_affines,
    crop_geometry_of,
    cut_crops,
    faceapi_landmarks_to_image,
    invert_affines,
)

# The model type of face-api's 68-landmark net: its points place the crops of the rules below.
LANDMARK_MODEL_TYPE = "etfuser_faceapi_landmarks"
READS_68_LANDMARKS = ("dlib_chip", "faceapi_aligned_box")


@dataclass(frozen=True)
class FaceGeometry:
    """What detection found for a batch of faces, all in image pixels.

    boxes: (faces, 4) x1, y1, x2, y2; points: (faces, 5, 2) MTCNN's five points; image_sizes: (faces, 2) height and
    width of each face's image; canonical: (faces, 2, 3) image -> canonical crop affines.
    """

    boxes: np.ndarray
    points: np.ndarray
    image_sizes: np.ndarray
    canonical: np.ndarray

    @classmethod
    def from_detections(cls, boxes: np.ndarray, points: np.ndarray, image_sizes: np.ndarray,
                        size: int = CANONICAL_CROP_SIZE) -> FaceGeometry:
        boxes, points = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(points, np.float64).reshape(-1, 5, 2)
        canonical = canonical_crop_affines(points, size) if len(points) else np.zeros((0, 2, 3))
        return cls(boxes, points, np.asarray(image_sizes, np.float64).reshape(-1, 2), canonical)

    @classmethod
    def of_canonical_crops(cls, count: int, size: int = CANONICAL_CROP_SIZE) -> FaceGeometry:
        """`count` faces whose photo is their canonical crop itself (`size` x `size`, e.g. synthetic faces rendered
        aligned, or a test's inputs): the five points on the crop's template and, as the detector's box, the square
        the ArcFace crop covers in it."""
        template = (ARCFACE_TEMPLATE_112 - 56.0) * (size / (112.0 * CANONICAL_CROP_MARGIN)) + size / 2.0
        half = size / (2 * CANONICAL_CROP_MARGIN)
        box = np.array([size / 2 - half, size / 2 - half, size / 2 + half, size / 2 + half])
        return cls.from_detections(np.tile(box, (count, 1)), np.tile(template, (count, 1, 1)),
                                   np.tile([size, size], (count, 1)), size)

    def __getitem__(self, index: slice) -> FaceGeometry:
        return FaceGeometry(self.boxes[index], self.points[index], self.image_sizes[index], self.canonical[index])

    def __len__(self) -> int:
        return len(self.boxes)

    def in_canonical(self, image_affines: np.ndarray) -> np.ndarray:
        """Image -> crop affines (faces, 2, 3) as canonical crop -> crop ones, float32 (what `prior_crops` takes)."""
        return compose_affines(image_affines, invert_affines(self.canonical)).astype(np.float32)


def cut_canonical_crops(images: list[np.ndarray], points: list[np.ndarray],
                        size: int = CANONICAL_CROP_SIZE) -> list[np.ndarray]:
    """The canonical crop of every face: `images` uint8 (H, W, 3), `points[i]` (faces, 5, 2) of image i -> one uint8
    (faces, size, size, 3) array per image (bilinear, zeros outside the image, antialiased where the face shrinks by
    more than 2x, as dlib's chips are)."""
    import torch

    crops = []
    for image, face_points in zip(images, points):
        if not len(face_points):
            crops.append(np.zeros((0, size, size, 3), np.uint8))
            continue
        pixels = torch.from_numpy(np.array(image, np.float32)).permute(2, 0, 1)[None]  # a copy: frames may be read-only
        affines = canonical_crop_affines(np.asarray(face_points, np.float64), size)
        cut = cut_crops(pixels, affines, size, image_index=np.zeros(len(affines), np.int64), antialias=True)
        crops.append(cut.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return crops


class CropPlan:
    """Where each network of one analysis graph cuts its crop: `networks` (the `prior_crops` names of the fused
    model's priors and backbone, then `companion.<extra>` for each companion with a net of its own) and their
    `crop_geometry`; `landmark_size` the landmark net's input side, or None when no rule needs its points."""

    def __init__(self, geometries: dict[str, dict], landmark_geometry: dict | None):
        self.geometries = geometries
        self.networks = list(geometries)
        self.landmark_geometry = landmark_geometry

    @classmethod
    def for_graph(cls, model, companions, landmark_config=None, first: str | None = None) -> CropPlan:
        """The plan of `AnalysisGraph(model, companions)`: `landmark_config` is the config of the landmark net it
        runs first (None: none), and `first` that net's name among the networks (kept out of the second stage)."""
        geometries = {}
        if model.config.fusion_properties.runs_priors:
            geometries.update({name: crop_geometry_of(prior.config) for name, prior in model.etfuser.priors.items()})
        if model.config.backbone is not None:
            geometries[BACKBONE_CROP_KEY] = crop_geometry_of(model.config.backbone.config)
        for companion in companions:
            if companion.prior is not None:
                geometries[f"companion.{companion.extra}"] = crop_geometry_of(companion.config)
        geometries.pop(first, None)
        landmark = crop_geometry_of(landmark_config) if landmark_config is not None else None
        return cls(geometries, landmark)

    @property
    def needs_landmarks(self) -> bool:
        return any(geometry["name"] in READS_68_LANDMARKS for geometry in self.geometries.values())

    def landmark_affines(self, faces: FaceGeometry) -> np.ndarray:
        """(faces, 2, 3) canonical crop -> landmark-net crop affines, float32."""
        return faces.in_canonical(crop_affines(self.landmark_geometry, boxes=faces.boxes,
                                               image_sizes=faces.image_sizes))

    def landmarks_to_image(self, logits: np.ndarray, faces: FaceGeometry) -> np.ndarray:
        """The landmark net's raw `logits` (faces, 136) -> (faces, 68, 2) image pixels, through its own crop."""
        points = np.asarray(logits, np.float64).reshape(len(faces), 68, 2)
        return faceapi_landmarks_to_image(points, faces.boxes, faces.image_sizes) if len(faces) else points

    def affines(self, faces: FaceGeometry, landmarks: np.ndarray | None) -> np.ndarray:
        """(faces, len(networks), 2, 3) canonical crop -> network crop affines, float32, in `networks` order;
        `landmarks` (faces, 68, 2) image pixels, needed where a rule reads them."""
        stacked = np.zeros((len(faces), len(self.networks), 2, 3), np.float32)
        if not len(faces):
            return stacked
        for index, geometry in enumerate(self.geometries.values()):
            reads_68 = geometry["name"] in READS_68_LANDMARKS
            if reads_68 and landmarks is None:
                raise ValueError(f"landmarks: crop geometry {geometry['name']!r} reads face-api's 68 landmarks, "
                                 "got None.")
            image_affines = crop_affines(geometry, landmarks=landmarks if reads_68 else faces.points,
                                         boxes=faces.boxes, image_sizes=faces.image_sizes)
            stacked[:, index] = faces.in_canonical(image_affines)
        return stacked


__all__ = ["CANONICAL_CROP_SIZE", "LANDMARK_MODEL_TYPE", "READS_68_LANDMARKS", "CropPlan", "FaceGeometry", "cut_canonical_crops"]
