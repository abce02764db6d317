"""The faces stage of the data wing (issue 33, item 3): where the face of each image is, found once per image and
cached, the way `analyze` finds it, so that training, `etfuser evaluate` and `analyze` feed a model the same crops.

Per image (`FaceAligner.align`): the face's box and MTCNN's five points (the detector's, or placed by the layout's
face policy), its loose canonical crop cut from the photo with analyze's code (`priors.crop_warp`), and face-api's 68
landmarks from its landmark net on its own crop of that canonical crop (`priors.landmark_stage`,
`CropPlan.landmark_affines`): analyze's first stage; and, as analyze's detection, dlib's 5-point predictor on the
photo (`priors.dlib_shape_predictor`, its rectangle from the five points), which places dlib's chip. Every network's
crop follows from these through the model's `CropPlan` (`data.face_crops.aligned_inputs`).

Face policies, declared per layout by each reader (`SourceReport.faces`):
- "detect": MTCNN on the file (an image folder or manifest of full frames). An image where it finds no face is taken
  whole (as "whole_image" below) and counted as missed (`face_counts`, `splits.json`).
- "whole_image": the image is a face crop already (RAF-DB aligned, FER2013's 48 px grey faces, below MTCNN's 20 px
  faces once its box is cut; UTKFace's chips; CelebA's img_align_celeba): the whole image is the detector's box, with
  a mean face's landmarks placed in it (`mean_face_in_boxes`).
- "box:<column>": the dataset ships each face's box, [x, y, width, height] in image pixels in `<column>` (AffectNet's
  face_x..face_height): the mean face placed in that box.

The cache (`align_dataset`) is an Arrow file per dataset keyed like the other caches by the images' path, size and
mtime (`data.image_keys`: no image decoded), the policy and the detector's and landmark net's fingerprint (the sha256
manifests of their converted folders), so a warm start neither decodes an image nor builds a network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np
import torch

from ..priors.crop_geometry import CANONICAL_CROP_SIZE, mtcnn_points_from_68
from ..priors.crop_rules import crop_geometry_of
from ..priors.crop_plan import DETECTOR_BOX_FROM_LANDMARKS, CropPlan, FaceGeometry
from ..priors.crop_warp import crops_as_pixel_values, cut_canonical_crops
from .image_decoding import BadImage, decode_encoded
from .image_keys import image_keys
from .mask_synthesis import mean_face_landmarks

# The faces' 68 landmarks in [0, 1] of their image (the landmark net's), the column that says a split is aligned;
# the other columns hold the rest of the face's geometry in image pixels.
ALIGNMENT_COLUMN = "face_alignment"
BOX_COLUMN, POINTS_COLUMN, SIZE_COLUMN, FOUND_COLUMN = "face_box", "face_points", "face_image_size", "face_found"
DLIB_POINTS_COLUMN = "face_dlib_points"  # dlib's 5-point predictor's points in image pixels (`FaceGeometry.dlib_points`)
GEOMETRY_COLUMNS = (ALIGNMENT_COLUMN, BOX_COLUMN, POINTS_COLUMN, SIZE_COLUMN, DLIB_POINTS_COLUMN)  # what a batch reads
ALIGNMENT_COLUMNS = GEOMETRY_COLUMNS + (FOUND_COLUMN,)
# A row of an augmented view (`data.aligned_augmentation`) holds its canonical crop, augmented, as its image, and its
# geometry moved in photo pixels: VIEW_CANONICAL_COLUMN the (2, 3) photo -> crop affine that crop stands for (zeros:
# the row's image is the photo, its crop cut by the five points), VIEW_GREY_COLUMN the photo's fill grey in [0, 1]
# (fer's padding), which the crop alone does not show. Only splits with rendered views have these columns.
VIEW_CANONICAL_COLUMN, VIEW_GREY_COLUMN = "face_view_canonical", "face_view_grey"
VIEW_GEOMETRY_COLUMNS = (VIEW_CANONICAL_COLUMN, VIEW_GREY_COLUMN)
# How each face was found (FOUND_COLUMN): by the detector, taken whole after the detector missed it, taken whole by
# the layout's policy, placed in the dataset's box, or not at all (the image cannot be decoded: dropped later, where
# the decode stage counts it).
FOUND_KINDS = ("detected", "missed", "whole_image", "box", "undecodable")
POLICIES = ("detect", "whole_image", "box:<column>")
ALIGNMENT_VERSION = "3"  # bump when what `align` computes changes: it is part of the cache key; 2: the
# landmark net reads its crop with face-api's zero bars (`CropPlan.landmark_window_rows`), as analyze's first stage;
# 3: dlib's 5-point predictor's points (DLIB_POINTS_COLUMN), which place dlib's chip as in analyze
FEATURES = datasets.Features({
    ALIGNMENT_COLUMN: datasets.Array2D((68, 2), "float32"),
    BOX_COLUMN: datasets.Sequence(datasets.Value("float32"), length=4),
    POINTS_COLUMN: datasets.Array2D((5, 2), "float32"),
    DLIB_POINTS_COLUMN: datasets.Array2D((5, 2), "float32"),
    SIZE_COLUMN: datasets.Sequence(datasets.Value("int32"), length=2),
    FOUND_COLUMN: datasets.Value("string"),
})


def parse_policy(policy: str) -> tuple[str, str | None]:
    """A face policy -> (kind, box column or None); a ValueError naming the policies we know otherwise."""
    if not isinstance(policy, str):
        raise ValueError(f"faces: expected a face policy, one of {list(POLICIES)}, got {policy!r}.")
    kind, _, column = policy.partition(":")
    if kind in ("detect", "whole_image") and not column:
        return kind, None
    if kind == "box" and column.strip():
        return kind, column.strip()
    raise ValueError(f"faces: expected a face policy, one of {list(POLICIES)}, got {policy!r}.")


def mean_face_in_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 detector boxes in pixels -> (N, 68, 2) the mean face (`mask_synthesis.mean_face_landmarks`)
    stretched so that MTCNN's likely box around it (`crop_plan.DETECTOR_BOX_FROM_LANDMARKS`) is that box."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    mean = mean_face_landmarks()
    low, high = mean.min(axis=0), mean.max(axis=0)
    unit = (mean - low) / (high - low)
    left, top, right, bottom = DETECTOR_BOX_FROM_LANDMARKS
    # the detector's box is the landmarks' box grown by those fractions of its width and height: invert that
    extent = np.stack([(boxes[:, 2] - boxes[:, 0]) / (1 + right - left),
                       (boxes[:, 3] - boxes[:, 1]) / (1 + bottom - top)], axis=-1)
    origin = boxes[:, :2] - extent * (left, top)
    return origin[:, None] + unit[None] * extent[:, None]


def _module_digest(digest, module: torch.nn.Module) -> None:
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())


def _prior_manifests(cache_dir: str | os.PathLike | None, names: Sequence[str]) -> str:
    """The converted priors' recorded sha256 manifests (`SHA256SUMS`: config.json, model.safetensors, NOTICE), one
    after the other under their names: what the default networks are, known without loading them. `ensure_face_priors`
    gives the folders (checking each file against its manifest, converting one that is missing)."""
    from ..priors.convert_face_priors import MANIFEST, ensure_face_priors

    folders = ensure_face_priors(cache_dir, names=list(names))
    return "".join(f"{name}\n{(folders[name] / MANIFEST).read_text(encoding='utf-8')}" for name in names)


class FaceAligner:
    """Finds each image's face as `analyze` does: `detector` an `MTCNN` (default: the converted facenet-pytorch
    weights), `landmarks` a `LandmarkStage` (default: the converted face-api landmark net), both loaded on first use
    from `cache_dir` (the prior cache), as is dlib's converted 5-point predictor."""

    def __init__(self, detector=None, landmarks=None, cache_dir: str | os.PathLike | None = None,
                 batch_size: int = 32):
        self._detector, self._landmarks, self.cache_dir, self.batch_size = detector, landmarks, cache_dir, batch_size
        self._shape_predictor = None
        # given networks are fingerprinted by their weights; the default ones by their converted folders' manifests
        self._given = {"mtcnn": detector is not None, "face_landmarks": landmarks is not None}
        self._fingerprint: str | None = None

    @property
    def detector(self):
        if self._detector is None:
            from ..priors.convert_face_priors import ensure_face_priors
            from ..priors.face_detection import MTCNN

            self._detector = MTCNN.from_pretrained(ensure_face_priors(self.cache_dir, names=["mtcnn"])["mtcnn"])
        return self._detector

    @property
    def landmarks(self):
        if self._landmarks is None:
            from ..priors.landmark_stage import converted_landmark_stage

            self._landmarks = converted_landmark_stage(self.cache_dir)
        return self._landmarks

    @property
    def shape_predictor(self):
        if self._shape_predictor is None:
            from ..priors.dlib_shape_predictor import converted_shape_predictor

            self._shape_predictor = converted_shape_predictor(self.cache_dir)
        return self._shape_predictor

    def fingerprint(self) -> str:
        """Changes whenever the detector's weights or settings or the landmark net's weights or config change. The
        default networks are known by the sha256 manifests of their converted folders (config and weights), so a warm
        start builds neither (loading them cost about 3 s of every start); networks given to the aligner are hashed
        from their weights and settings."""
        if self._fingerprint is None:
            from ..priors.mtcnn import MTCNN_DEFAULTS

            digest = hashlib.sha256(f"alignment {ALIGNMENT_VERSION}".encode())
            from ..priors.dlib_shape_predictor import SHAPE_PREDICTOR_PRIOR

            defaults = [name for name, given in self._given.items() if not given] + [SHAPE_PREDICTOR_PRIOR]
            digest.update(_prior_manifests(self.cache_dir, defaults).encode())
            if self._given["mtcnn"]:
                detector = self.detector
                settings = {name: getattr(detector, name, None) for name in MTCNN_DEFAULTS}
                digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
                if isinstance(detector, torch.nn.Module):
                    _module_digest(digest, detector)
            else:  # settings absent from a folder's config.json come from these
                digest.update(json.dumps(MTCNN_DEFAULTS, sort_keys=True).encode())
            if self._given["face_landmarks"]:
                digest.update(json.dumps(self.landmarks.spec.config.to_dict(), sort_keys=True, default=str).encode())
                _module_digest(digest, self.landmarks.prior)
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def align(self, images: Sequence[np.ndarray], policy: str, boxes: Sequence | None = None) -> dict[str, list]:
        """The faces of `images` (uint8 (H, W, 3) RGB, one face each) found by `policy`; `boxes` the dataset's
        [x, y, width, height] per image for a "box:" policy. Returns the `ALIGNMENT_COLUMNS`, a list each."""
        from ..priors.face_detection import detect_faces

        kind, _ = parse_policy(policy)
        if kind == "box" and (boxes is None or len(boxes) != len(images)):
            raise ValueError(f"boxes: a {policy!r} policy needs one [x, y, width, height] box per image, got "
                             f"{None if boxes is None else len(boxes)} for {len(images)} images.")
        sizes = np.asarray([image.shape[:2] for image in images], np.float64).reshape(-1, 2)  # height, width
        whole = np.concatenate([np.zeros_like(sizes), sizes[:, ::-1]], axis=-1)
        if kind == "box":
            given = np.asarray(boxes, np.float64).reshape(-1, 4)
            placed, found = np.concatenate([given[:, :2], given[:, :2] + given[:, 2:]], axis=-1), ["box"] * len(images)
        else:
            placed, found = whole, ["whole_image"] * len(images)
        points = mtcnn_points_from_68(mean_face_in_boxes(placed)) if len(images) else np.zeros((0, 5, 2))
        if kind == "detect" and len(images):
            _, detections = detect_faces(list(images), self.detector, max_faces=1)
            for index, (face_boxes, _, face_points) in enumerate(detections):
                if len(face_boxes):  # the best face, as analyze's face 0
                    placed[index], points[index], found[index] = face_boxes[0], face_points[0], "detected"
                else:
                    found[index] = "missed"
        landmarks = self.image_landmarks(images, placed, points, sizes)
        dlib_points = self.dlib_points(images, points)
        return {ALIGNMENT_COLUMN: list((landmarks / sizes[:, None, ::-1]).astype(np.float32)),
                BOX_COLUMN: list(placed.astype(np.float32)), POINTS_COLUMN: list(points.astype(np.float32)),
                DLIB_POINTS_COLUMN: list(dlib_points.astype(np.float32)), SIZE_COLUMN: list(sizes.astype(np.int32)),
                FOUND_COLUMN: found}

    def dlib_points(self, images: Sequence[np.ndarray], points: np.ndarray) -> np.ndarray:
        """analyze's dlib points: the 5-point predictor on each image in the rectangle MTCNN's five `points` (N, 5, 2)
        place (`DlibShapePredictor.predict_from_mtcnn`) -> (N, 5, 2) image pixels."""
        stored = np.asarray(points, np.float32).astype(np.float64)  # the float32 points a batch reads back
        return self.shape_predictor.predict_from_mtcnn(images, [face[None] for face in stored])

    def image_landmarks(self, images: Sequence[np.ndarray], boxes: np.ndarray, points: np.ndarray,
                        sizes: np.ndarray) -> np.ndarray:
        """analyze's first stage: the landmark net on its own crop of each face's canonical crop -> (N, 68, 2) image
        pixels (`CropPlan.landmarks_to_image`), `batch_size` faces at a time."""
        # the stored (float32) geometry, exactly what a batch reads back and analyze's float32 detections hold
        faces = FaceGeometry.from_detections(boxes.astype(np.float32), points.astype(np.float32), sizes,
                                             CANONICAL_CROP_SIZE)
        stage = self.landmarks
        plan = CropPlan({}, crop_geometry_of(stage.spec.config))
        found = []
        for start in range(0, len(faces), self.batch_size):
            part = faces[start:start + self.batch_size]
            crops = np.concatenate(cut_canonical_crops(list(images[start:start + self.batch_size]),
                                                       [face[None] for face in part.points]))
            windows = plan.landmark_window_rows(part)
            with torch.inference_mode():
                logits = stage(torch.from_numpy(crops_as_pixel_values(crops)),
                               torch.from_numpy(plan.landmark_affines(part)),
                               None if windows is None else torch.from_numpy(windows))[0]
            found.append(plan.landmarks_to_image(logits.float().numpy(), part))
        return np.concatenate(found) if found else np.zeros((0, 68, 2))


def alignment_key(dataset: datasets.Dataset, policy: str, aligner: FaceAligner, image_column: str = "image") -> str:
    """The cache key of `dataset`'s alignment: the images' keys (path, size, mtime: none decoded), the policy, the
    dataset's boxes under a "box:" policy, and the aligner's fingerprint."""
    kind, column = parse_policy(policy)
    digest = hashlib.sha256(f"{aligner.fingerprint()} {policy}".encode())
    for key in image_keys(dataset, image_column):
        digest.update(key.encode())
    if kind == "box":
        digest.update(np.asarray(list(dataset[column]), np.float32).tobytes())
    return digest.hexdigest()[:24]


def align_dataset(dataset: datasets.Dataset, policy: str, aligner: FaceAligner, cache_dir: str | os.PathLike,
                  image_column: str = "image") -> datasets.Dataset:
    """`dataset` with the `ALIGNMENT_COLUMNS` of each row's face (`FaceAligner.align` under `policy`), computed once
    into `<cache_dir>/face-alignment-<key>.arrow` and read back on every later start. A row whose image cannot be
    decoded gets zero geometry and `face_found == "undecodable"`; the decode stage drops and counts it later."""
    kind, column = parse_policy(policy)
    if image_column not in dataset.column_names:
        raise ValueError(f"image_column: the dataset has no column {image_column!r} (columns: {dataset.column_names}).")
    if kind == "box" and column not in dataset.column_names:
        raise ValueError(f"faces: policy {policy!r} reads each face's box from column {column!r}, which the dataset "
                         f"lacks (columns: {dataset.column_names}).")
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cache_file = folder / f"face-alignment-{alignment_key(dataset, policy, aligner, image_column)}.arrow"

    def align(batch: dict[str, list]) -> dict[str, list]:
        images, good = [], []
        for index, encoded in enumerate(batch[image_column]):
            try:
                images.append(np.asarray(decode_encoded(encoded)))
                good.append(index)
            except BadImage:
                pass
        boxes = [batch[column][index] for index in good] if kind == "box" else None
        aligned = aligner.align(images, policy, boxes)
        blank = {ALIGNMENT_COLUMN: np.zeros((68, 2), np.float32), BOX_COLUMN: np.zeros(4, np.float32),
                 POINTS_COLUMN: np.zeros((5, 2), np.float32), DLIB_POINTS_COLUMN: np.zeros((5, 2), np.float32),
                 SIZE_COLUMN: np.zeros(2, np.int32),
                 FOUND_COLUMN: "undecodable"}
        rows = dict(zip(good, range(len(good))))
        return {name: [aligned[name][rows[index]] if index in rows else blank[name]
                       for index in range(len(batch[image_column]))] for name in ALIGNMENT_COLUMNS}

    inputs = [image_column] + ([column] if kind == "box" else [])
    encoded = dataset.select_columns(inputs).cast_column(image_column, datasets.Image(decode=False))
    aligned = encoded.map(align, batched=True, batch_size=aligner.batch_size, features=FEATURES,
                          remove_columns=inputs, cache_file_name=str(cache_file), load_from_cache_file=True,
                          desc=f"aligning faces ({policy})")
    stale = [name for name in ALIGNMENT_COLUMNS if name in dataset.column_names]
    return datasets.concatenate_datasets([dataset.remove_columns(stale), aligned], axis=1)


def face_counts(dataset: datasets.Dataset) -> dict[str, int]:
    """How the faces of an aligned dataset were found: kind (`FOUND_KINDS`) -> rows, the kinds that occur."""
    kinds, counts = np.unique(np.asarray(dataset[FOUND_COLUMN], dtype=object).astype(str), return_counts=True)
    return {str(kind): int(count) for kind, count in zip(kinds, counts)}


def aligned_columns(column_names: Sequence[str]) -> list[str]:
    """The columns a batch reads of an aligned split's faces: `GEOMETRY_COLUMNS`, and `VIEW_GEOMETRY_COLUMNS` where
    the split holds augmented views."""
    return list(GEOMETRY_COLUMNS) + (list(VIEW_GEOMETRY_COLUMNS) if VIEW_CANONICAL_COLUMN in column_names else [])


def view_canonical(row: Mapping) -> np.ndarray | None:
    """(2, 3) the photo -> canonical crop affine of a row of an augmented view (its image is that crop), None for a
    row whose image is the photo."""
    affine = row.get(VIEW_CANONICAL_COLUMN)
    return None if affine is None or not np.any(np.asarray(affine)) else np.asarray(affine, np.float64)


def faces_of_rows(rows: Sequence[Mapping]) -> tuple[FaceGeometry, np.ndarray]:
    """Rows of an aligned dataset -> their `FaceGeometry` (the canonical crop's affines from the stored five points,
    or an augmented view's own, `view_canonical`; dlib's points where every row has them) and their (N, 68, 2)
    landmarks in image pixels."""
    sizes = np.stack([np.asarray(row[SIZE_COLUMN], np.float64) for row in rows])
    dlib_points = None
    if all(row.get(DLIB_POINTS_COLUMN) is not None for row in rows):
        dlib_points = np.stack([np.asarray(row[DLIB_POINTS_COLUMN], np.float32) for row in rows]).astype(np.float64)
    faces = FaceGeometry.from_detections(np.stack([np.asarray(row[BOX_COLUMN], np.float32) for row in rows]),
                                         np.stack([np.asarray(row[POINTS_COLUMN], np.float32) for row in rows]),
                                         sizes, CANONICAL_CROP_SIZE, dlib_points=dlib_points)
    views = [view_canonical(row) for row in rows]
    if any(view is not None for view in views):
        canonical = np.stack([fitted if view is None else view for view, fitted in zip(views, faces.canonical)])
        faces = dataclasses.replace(faces, canonical=canonical)
    landmarks = np.stack([np.asarray(row[ALIGNMENT_COLUMN], np.float32) for row in rows]).astype(np.float64)
    return faces, landmarks * sizes[:, None, ::-1]


__all__ = ["ALIGNMENT_COLUMN", "ALIGNMENT_COLUMNS", "DLIB_POINTS_COLUMN", "FOUND_KINDS", "GEOMETRY_COLUMNS", "POLICIES",
           "VIEW_CANONICAL_COLUMN", "VIEW_GEOMETRY_COLUMNS", "VIEW_GREY_COLUMN", "FaceAligner", "align_dataset",
           "aligned_columns", "alignment_key", "face_counts", "faces_of_rows", "mean_face_in_boxes", "parse_policy",
           "view_canonical"]
