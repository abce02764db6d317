"""Where each network of a model cuts its crop of a face: the faces' geometry in one frame (`FaceGeometry`: the
detector's boxes, the five points, the image sizes and the frame the model is fed) and, per network, the rule its
authors used (`CropPlan`, from each network's `crop_geometry`). `analyze` builds the geometry from MTCNN's detections
and feeds a loose canonical crop; training builds it from the landmarks a dataset gives (`FaceGeometry.from_landmarks`)
and feeds the training image itself. Either way `CropPlan.prior_crops` gives the `prior_crops` of the forward (each
network's affine and, where its authors' pipeline bars or pads the crop, its window rows), so a network sees the same
crop of a face in training and in use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..models.configuration_etfuser import EncoderSpec
from ..models.configuration_face_priors import DEFAULT_CROP_GEOMETRY
from ..models.input_checks import BACKBONE_CROP_KEY, WINDOW_SUFFIX
from .crop_geometry import (
    CANONICAL_CROP_MARGIN,
    CANONICAL_CROP_SIZE,
    canonical_crop_affines,
    compose_affines,
    faceapi_landmarks_to_image,
    invert_affines,
    mtcnn_points_from_68,
)
from .crop_rules import CROP_GEOMETRIES, crop_affines, crop_geometry_of, crop_windows
from .crop_sampling import CropWindows, fill_values, window_rows
from .face_detection import ARCFACE_TEMPLATE_112

# The model type of face-api's 68-landmark net: its points place the crops of the rules below.
LANDMARK_MODEL_TYPE = "etfuser_faceapi_landmarks"
READS_68_LANDMARKS = ("dlib_chip", "faceapi_aligned_box")
# The rule placed by dlib's 5-point predictor where the faces carry its points (`FaceGeometry.dlib_points`).
READS_DLIB_POINTS = "dlib_chip"

# Where MTCNN puts its box around a face's 68 landmarks, as fractions of their bounding box's width and height added
# to its left, top, right and bottom: the medians over the 257 of 300 synthetic faces (seed 99, 112 px) that MTCNN
# finds once, interquartile ranges 0.05 (x) and 0.11 (y). Two rules read the detector's box (face-api's landmark
# crop, fer's box): a face known by its landmarks alone (the synthetic faces, a dataset's annotation) gets the box the
# detector would most likely have drawn, so those networks see in training the crop they see behind MTCNN in use.
DETECTOR_BOX_FROM_LANDMARKS = (0.038, -0.342, -0.061, -0.048)


def detector_boxes_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(N, 68, 2) landmarks in image pixels -> (N, 4) x1, y1, x2, y2: MTCNN's likely box
    (`DETECTOR_BOX_FROM_LANDMARKS`)."""
    landmarks = np.asarray(landmarks, np.float64)
    low, high = landmarks.min(axis=1), landmarks.max(axis=1)
    extent = np.concatenate([high - low, high - low], axis=-1)
    return np.concatenate([low, high], axis=-1) + extent * np.asarray(DETECTOR_BOX_FROM_LANDMARKS)


@dataclass(frozen=True)
class FaceGeometry:
    """What detection found for a batch of faces, all in image pixels.

    boxes: (faces, 4) x1, y1, x2, y2; points: (faces, 5, 2) MTCNN's five points; image_sizes: (faces, 2) height and
    width of each face's image; canonical: (faces, 2, 3) image -> canonical crop affines (the frame the model is fed);
    bottom_grey: (faces,) the grey of each face's image's last two rows in [0, 1] (`image_bottom_grey`: fer's padding),
    None where the image is not at hand; dlib_points: (faces, 5, 2) dlib's 5-point predictor on the photo
    (`dlib_shape_predictor`), which places the `"dlib_chip"` rule's chips where given (analyze, aligned datasets), or
    None: that rule then reads iBUG points 45, 42, 36, 39, 33 of the 68 landmarks (faces known by their landmarks:
    the synthetic faces are drawn from theirs, a dataset's annotation is its own truth, and the predictor needs the
    photo, which a rendered view or a training frame is not).
    """

    boxes: np.ndarray
    points: np.ndarray
    image_sizes: np.ndarray
    canonical: np.ndarray
    bottom_grey: np.ndarray | None = None
    dlib_points: np.ndarray | None = None

    @classmethod
    def from_detections(cls, boxes: np.ndarray, points: np.ndarray, image_sizes: np.ndarray,
                        size: int = CANONICAL_CROP_SIZE, bottom_grey: np.ndarray | None = None,
                        dlib_points: np.ndarray | None = None) -> FaceGeometry:
        boxes, points = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(points, np.float64).reshape(-1, 5, 2)
        canonical = canonical_crop_affines(points, size) if len(points) else np.zeros((0, 2, 3))
        if dlib_points is not None:
            dlib_points = np.asarray(dlib_points, np.float64)
            if dlib_points.shape != points.shape:
                raise ValueError(f"dlib_points: expected one 5-point shape per face {points.shape}, got "
                                 f"{dlib_points.shape}.")
        return cls(boxes, points, np.asarray(image_sizes, np.float64).reshape(-1, 2), canonical,
                   _per_face(bottom_grey, len(boxes)), dlib_points)

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray, image_sizes: np.ndarray, frame_size: tuple[int, int],
                       bottom_grey: np.ndarray | None = None) -> FaceGeometry:
        """Faces known by their 68 iBUG landmarks (N, 68, 2) in image pixels, each in an image of `image_sizes`
        (N, 2) height and width, fed to the model as the whole image resized to `frame_size` (height, width): MTCNN's
        five points taken from the landmarks, its box from `detector_boxes_from_landmarks`."""
        landmarks = np.asarray(landmarks, np.float64)
        if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
            raise ValueError(f"landmarks: expected shape (faces, 68, 2), got {landmarks.shape}.")
        sizes = np.broadcast_to(np.asarray(image_sizes, np.float64), (len(landmarks), 2))
        to_frame = np.zeros((len(landmarks), 2, 3))
        to_frame[:, 0, 0], to_frame[:, 1, 1] = frame_size[1] / sizes[:, 1], frame_size[0] / sizes[:, 0]
        return cls(detector_boxes_from_landmarks(landmarks), mtcnn_points_from_68(landmarks), sizes.copy(), to_frame,
                   _per_face(bottom_grey, len(landmarks)))

    @classmethod
    def of_canonical_crops(cls, count: int, size: int = CANONICAL_CROP_SIZE,
                           bottom_grey: np.ndarray | None = None) -> FaceGeometry:
        """`count` faces whose photo is their canonical crop itself (`size` x `size`, e.g. synthetic faces rendered
        aligned, or a test's inputs): the five points on the crop's template and, as the detector's box, the square
        the ArcFace crop covers in it."""
        template = (ARCFACE_TEMPLATE_112 - 56.0) * (size / (112.0 * CANONICAL_CROP_MARGIN)) + size / 2.0
        half = size / (2 * CANONICAL_CROP_MARGIN)
        box = np.array([size / 2 - half, size / 2 - half, size / 2 + half, size / 2 + half])
        return cls.from_detections(np.tile(box, (count, 1)), np.tile(template, (count, 1, 1)),
                                   np.tile([size, size], (count, 1)), size, bottom_grey)

    def __getitem__(self, index: slice) -> FaceGeometry:
        grey = None if self.bottom_grey is None else self.bottom_grey[index]
        dlib_points = None if self.dlib_points is None else self.dlib_points[index]
        return FaceGeometry(self.boxes[index], self.points[index], self.image_sizes[index], self.canonical[index], grey,
                            dlib_points)

    def __len__(self) -> int:
        return len(self.boxes)

    def in_canonical(self, image_affines: np.ndarray) -> np.ndarray:
        """Image -> crop affines (faces, 2, 3) as canonical crop -> crop ones, float32 (what `prior_crops` takes)."""
        return compose_affines(image_affines, invert_affines(self.canonical)).astype(np.float32)


def scale_to_cut_size(affines: np.ndarray, geometry_size: int, cut_size: Sequence[int] | None) -> np.ndarray:
    """Image -> crop affines (N, 2, 3) of a `geometry_size` crop -> the same crop cut at `cut_size` (height, width)
    pixels: the geometry's frame stretched onto the network's input, so the whole crop reaches it."""
    if cut_size is None or tuple(cut_size) == (geometry_size, geometry_size):
        return affines
    scale = np.array([cut_size[1], cut_size[0]], np.float64)[:, None] / float(geometry_size)  # x rows by width
    return np.asarray(affines, np.float64) * scale


def _per_face(grey: np.ndarray | None, count: int) -> np.ndarray | None:
    """`bottom_grey` as (count,) float64, or None."""
    if grey is None:
        return None
    grey = np.asarray(grey, np.float64).reshape(-1)
    if grey.shape != (count,) or not np.isfinite(grey).all():
        raise ValueError(f"bottom_grey: expected one finite grey per face ({count},), got shape {grey.shape}.")
    return grey


def image_bottom_grey(images) -> np.ndarray:
    """(N,) the grey fer 25.10.3 pads each image with (`crop_sampling.fill_values`, "bottom_rows_mean") in [0, 1]:
    `images` a (N, 3, H, W) float tensor or array in [0, 1], or a sequence of uint8 (H, W, 3) RGB arrays or PIL
    images."""
    if isinstance(images, (torch.Tensor, np.ndarray)) and np.ndim(images) == 4:
        if images.shape[1] != 3:
            raise ValueError(f"images: expected a (N, 3, H, W) batch in [0, 1], got shape {tuple(images.shape)}.")
        tensor = torch.as_tensor(images, dtype=torch.float32)
        return fill_values(tensor, "bottom_rows_mean")[:, 0].double().numpy()
    rows = [torch.from_numpy(np.asarray(image)[-2:].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
            for image in images]
    return np.array([float(fill_values(row, "bottom_rows_mean")[0, 0]) for row in rows], np.float64)


def _window_rows(name: str, windows: CropWindows, faces: FaceGeometry) -> np.ndarray:
    """Network `name`'s `windows` of `faces` -> (faces, 17) float32 window rows for the frame the model is fed."""
    if windows.fill == "bottom_rows_mean" and faces.bottom_grey is None:
        raise ValueError(f"faces: network {name!r} pads its crop with the grey of the image's bottom rows, but "
                         "faces.bottom_grey is None; build the FaceGeometry with its images' bottom_grey "
                         "(image_bottom_grey).")
    grey = faces.bottom_grey if windows.fill == "bottom_rows_mean" else np.zeros(len(faces))
    fill = np.repeat(np.asarray(grey, np.float64)[:, None], 3, axis=1)  # the same grey in R, G and B
    return window_rows(windows, torch.from_numpy(fill), invert_affines(faces.canonical)).numpy()


class CropPlan:
    """Where each network of one analysis graph cuts its crop: `networks` (the `prior_crops` names of the fused
    model's priors and backbone, then `companion.<extra>` for each companion with a net of its own), their
    `crop_geometry` and `cut_sizes`, the (height, width) each network's crop is cut at (its input size; default the
    geometry's own size). A geometry whose `size` is not the network's input (the ArcFace template crop of 112 px
    that any prior without its own geometry gets, a ViT prior at 32 or 224) is scaled to it, so the network reads
    the whole crop, not its corner."""

    def __init__(self, geometries: dict[str, dict], landmark_geometry: dict | None,
                 label_geometry: dict | None = None, cut_sizes: dict[str, Sequence[int]] | None = None):
        self.geometries = geometries
        self.networks = list(geometries)
        self.cut_sizes = {name: tuple(size) for name, size in (cut_sizes or {}).items()}
        self.landmark_geometry = landmark_geometry
        # The crop a landmarks head predicts in: the canonical model's own crop, or for a model without one the
        # ArcFace template crop, a frame placed by the face's five points that needs no network. Without a face-centred
        # frame a priors-only head would have to read the face's place in the image from priors that only ever see
        # their own crops of it.
        self.label_geometry = dict(label_geometry or geometries.get(BACKBONE_CROP_KEY) or DEFAULT_CROP_GEOMETRY)

    @classmethod
    def for_graph(cls, model, companions, landmark_config=None, first: str | None = None) -> CropPlan:
        """The plan of `AnalysisGraph(model, companions)`: `landmark_config` is the config of the landmark net it
        runs first (None: none), and `first` that net's name among the networks (kept out of the second stage)."""
        geometries, cut_sizes = {}, {}
        if model.config.fusion_properties.runs_priors:
            geometries.update({name: crop_geometry_of(prior.config) for name, prior in model.etfuser.priors.items()})
            cut_sizes.update({name: model.config.priors[name].image_size for name in model.etfuser.priors})
        if model.config.backbone is not None:
            geometries[BACKBONE_CROP_KEY] = crop_geometry_of(model.config.backbone.config)
            cut_sizes[BACKBONE_CROP_KEY] = model.config.backbone.image_size
        for companion in companions:
            if companion.prior is not None:
                geometries[f"companion.{companion.extra}"] = crop_geometry_of(companion.config)
                # the companion's crop is cut at its spec's size (analysis.backends, crops)
                cut_sizes[f"companion.{companion.extra}"] = EncoderSpec(config=companion.config).image_size
        label = geometries.get(BACKBONE_CROP_KEY)
        geometries.pop(first, None)
        landmark = crop_geometry_of(landmark_config) if landmark_config is not None else None
        return cls(geometries, landmark, label, cut_sizes)

    @classmethod
    def for_model(cls, model) -> CropPlan:
        """The plan of `model`'s own networks (its priors, where it runs them, and its backbone): what training
        feeds."""
        return cls.for_graph(model, ())

    @property
    def needs_landmarks(self) -> bool:
        return any(geometry["name"] in READS_68_LANDMARKS for geometry in self.geometries.values())

    @property
    def needs_dlib_points(self) -> bool:
        """Whether a network cuts dlib's chip: then analyze runs dlib's 5-point predictor on the photo."""
        return any(geometry["name"] == READS_DLIB_POINTS for geometry in self.geometries.values())

    def landmark_affines(self, faces: FaceGeometry) -> np.ndarray:
        """(faces, 2, 3) canonical crop -> landmark-net crop affines, float32."""
        return faces.in_canonical(crop_affines(self.landmark_geometry, boxes=faces.boxes,
                                               image_sizes=faces.image_sizes))

    def landmarks_to_image(self, logits: np.ndarray, faces: FaceGeometry) -> np.ndarray:
        """The landmark net's raw `logits` (faces, 136) -> (faces, 68, 2) image pixels, through its own crop."""
        points = np.asarray(logits, np.float64).reshape(len(faces), 68, 2)
        return faceapi_landmarks_to_image(points, faces.boxes, faces.image_sizes) if len(faces) else points

    def _inputs(self, geometry: dict, faces: FaceGeometry, landmarks: np.ndarray | None) -> dict:
        """The keyword arguments of `crop_affines` / `crop_windows` for one network's `geometry`."""
        if geometry["name"] == READS_DLIB_POINTS and faces.dlib_points is not None:
            return {"landmarks": faces.dlib_points, "boxes": faces.boxes, "image_sizes": faces.image_sizes}
        reads_68 = geometry["name"] in READS_68_LANDMARKS
        if reads_68 and landmarks is None:
            raise ValueError(f"landmarks: crop geometry {geometry['name']!r} reads face-api's 68 landmarks, got None.")
        return {"landmarks": landmarks if reads_68 else faces.points, "boxes": faces.boxes,
                "image_sizes": faces.image_sizes}

    def affines(self, faces: FaceGeometry, landmarks: np.ndarray | None) -> np.ndarray:
        """(faces, len(networks), 2, 3) canonical crop -> network crop affines, float32, in `networks` order;
        `landmarks` (faces, 68, 2) image pixels, needed where a rule reads them."""
        stacked = np.zeros((len(faces), len(self.networks), 2, 3), np.float32)
        if not len(faces):
            return stacked
        for index, (name, geometry) in enumerate(self.geometries.items()):
            image_affines = crop_affines(geometry, **self._inputs(geometry, faces, landmarks))
            image_affines = scale_to_cut_size(image_affines, int(geometry["size"]), self.cut_sizes.get(name))
            stacked[:, index] = faces.in_canonical(image_affines)
        return stacked

    def windows(self, faces: FaceGeometry, landmarks: np.ndarray | None) -> dict[str, CropWindows]:
        """What each network's original crop shows around the image, for the networks whose rule records it
        (`crop_rules.crop_windows`: face-api's zero bars, fer's padding grey): name -> `CropWindows` in the image
        pixels of `faces` (the photo, or the frame training feeds), one per face, for `cut_crops(..., windows=)` on
        that image. The rule's registry entry is the one source of each network's fill; networks without one are
        left out (zeros beyond the image). The forward takes them as `window_rows`."""
        return {name: crop_windows(geometry, **self._inputs(geometry, faces, landmarks))
                for name, geometry in self.geometries.items() if CROP_GEOMETRIES[geometry["name"]].windows is not None}

    def window_rows(self, faces: FaceGeometry, landmarks: np.ndarray | None,
                    networks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """`windows` as the forward's `prior_crops` entries: name + `WINDOW_SUFFIX` -> (faces, 17) float32 window
        rows (`crop_sampling.window_rows`) for the model's input (the frame `faces.canonical` maps onto), for
        `networks` (default: all of this plan's) whose rule records windows; a fer fill needs `faces.bottom_grey`."""
        found = self.windows(faces, landmarks)
        return {name + WINDOW_SUFFIX: _window_rows(name, windows, faces) for name, windows in found.items()
                if networks is None or name in networks}

    def landmark_window_rows(self, faces: FaceGeometry) -> np.ndarray | None:
        """(faces, 17) float32 window rows of the landmark net's crop (`landmark_affines`; face-api's zero bars), or
        None where its rule records none."""
        windows = crop_windows(self.landmark_geometry, boxes=faces.boxes, image_sizes=faces.image_sizes)
        return None if windows is None or not len(faces) else _window_rows("landmarks", windows, faces)

    def label_frame(self, faces: FaceGeometry, landmarks: np.ndarray | None) -> tuple[np.ndarray, int]:
        """Where a landmarks head predicts: (faces, 2, 3) float32 affines from the frame the model is fed onto
        `label_geometry`'s crop, and that crop's side in pixels."""
        image_affines = crop_affines(self.label_geometry, **self._inputs(self.label_geometry, faces, landmarks))
        return faces.in_canonical(image_affines), int(self.label_geometry["size"])

    def prior_crops(self, faces: FaceGeometry, landmarks: np.ndarray | None,
                    networks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """`affines` as the forward's `prior_crops`: network name -> (faces, 2, 3) float32, and its window rows
        (`window_rows`) where its rule records them, for `networks` (default: all of this plan's)."""
        stacked = self.affines(faces, landmarks)
        wanted = self.networks if networks is None else networks
        crops = {name: stacked[:, index] for index, name in enumerate(self.networks) if name in wanted}
        return {**crops, **(self.window_rows(faces, landmarks, wanted) if len(faces) else {})}


__all__ = ["DETECTOR_BOX_FROM_LANDMARKS", "LANDMARK_MODEL_TYPE", "READS_68_LANDMARKS", "READS_DLIB_POINTS", "CropPlan",
           "FaceGeometry", "detector_boxes_from_landmarks", "image_bottom_grey", "scale_to_cut_size"]
