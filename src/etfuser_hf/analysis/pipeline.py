"""Face analysis at scale: `analyze(inputs, model=...)` -> one `pandas.DataFrame`, a row per face per image or frame.

`FaceAnalyzer` is the detect -> align -> predict path; `analyze`, `etfuser predict`, `etfuser analyze`, the demo and
the Space all go through it, so they read the same crop size from the processor and the same head (softmax, sigmoid
or regression) from the config. Its two halves are public (`detect` -> `DetectedFaces` -> `predict`), so one detection
can serve several models with the same crop size.

Images, folders (searched recursively by extension) and videos (decoded frame by frame with PyAV) are streamed in
chunks of `batch_size` frames: MTCNN detects the faces of a whole chunk at once (`MTCNN.detect_batch`: each network
runs once over all frames of the chunk) and cuts each face's canonical crop (one warp of its frame), then the faces
go through the fused model in batches of `batch_size`. The model is fed each face's loose canonical crop, and every
network cuts its own crop from it, as its authors' pipeline cut it (`crops.py`: face-api's landmark net first, whose
68 points place the dlib chips and the recognition net's square). With `backend="onnx"` MTCNN's networks and the
fused graph run under onnxruntime, otherwise in PyTorch. Bad inputs never abort the run: they get a row with
`status == "error"` and the reason, and a warning in the log. `table.py` documents the table's columns
(`table_schema(model)` gives the exact names and dtypes for one model).

With `attention_maps=<folder>` (`etfuser analyze --attention-maps`) the analyzer also draws, for every image and for
the first `ATTENTION_FRAMES_PER_VIDEO` frames with faces of each video, where the ensemble token looks in each prior's
grid (`attention_maps.py`; models whose priors are read as grid tokens only): the PyTorch model on the table's inputs
(the canonical crops and the crops its backend placed), each grid drawn over its own network's crop of the face.

`FaceAnalyzer.iter_chunks` yields the table one chunk of `batch_size` frames at a time, so a caller that writes each
chunk out (`etfuser analyze --output`, `parts.py`) holds three chunks in memory whatever the length of the video: while
the networks read one chunk's faces, a worker thread detects the faces of the next and a reader thread decodes the one
after (their single-threaded steps, decoding, NMS and warps, then overlap the networks' threads). The model, then the
backend's graph and sessions, load in a thread of their own while the first chunk is read and detected (`loading.py`;
where an export is due, detection waits for it: tracing must not overlap).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..models.modeling_etfuser import ETFuserForImageClassification
from ..priors.crop_geometry import CANONICAL_CROP_SIZE
from ..priors.crop_plan import FaceGeometry, image_bottom_grey
from ..priors.dlib_shape_predictor import DlibShapePredictor
from ..priors.face_detection import MTCNN, OnnxMTCNN, detect_faces
from .attention_maps import AttentionPanels, attention_panels, check_reads_grids, save_frame_figures
from .backends import AnalysisBackend
from .crops import arcface_crops, cut_canonical_crops, dlib_points
from .extras import EXTRAS, ExtraColumns, check_extras
from .loading import AnalyzerNetworks, ModelLoad
from .media import MediaItem, count_frames, expand_inputs, is_video, iter_media
from .memory import bound_heap_growth, release_freed_memory
from .saved_model import LoadedModel, model_folder
from .table import (
    DETECTION_COLUMNS,
    META_COLUMNS,
    POINT_NAMES,
    TableBuilder,
    crop_points_to_image,
    empty_table,
    model_output_columns,
    table_schema,
)

logger = logging.getLogger("etfuser_hf.analysis")

BACKENDS = ("torch", "onnx", "onnx-int8")
ATTENTION_FRAMES_PER_VIDEO = 16  # attention figures per video at most: one per analysed frame would be thousands


class _Prefetched(list):
    """A chunk of `MediaItem`s whose detection was started ahead in a worker thread (`detected`, a Future)."""

    detected: Future


def _chunks(items: Iterable[MediaItem], size: int) -> Iterator[list[MediaItem]]:
    items = iter(items)  # lazily: a video's frames are read one chunk at a time (itertools.batched from 3.12)
    return iter(lambda: list(itertools.islice(items, size)), [])


def _as_pixel_values(crops: np.ndarray) -> np.ndarray:
    """uint8 (faces, S, S, 3) RGB crops -> the model's float32 (faces, 3, S, S) in [0, 1], contiguous."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class DetectedFaces:
    """One chunk of frames after detection and alignment (`FaceAnalyzer.detect`), before any model ran.

    rows: the meta columns (`META_COLUMNS`) of each table row: one per face, per face-less frame, per failure.
    face_rows: (faces,) the row of each face.
    detections: (faces, 15) float32 box, score and five points in image pixels (`DETECTION_COLUMNS`).
    crops: (faces, S, S, 3) uint8 RGB faces aligned to the ArcFace template, S the model's crop size (the centre of
        their canonical crops, `crops.arcface_crops`).
    frames: (source, number of faces) of each decoded frame, in order (the tracker links faces frame to frame).
    image_sizes: (faces, 2) float64 width and height of each face's image (head pose's camera).
    canonical: (faces, C, C, 3) uint8 RGB loose canonical crops (`crops.py`), what the model is fed: every network
        cuts its own crop from them.
    bottom_grey: (faces,) the grey of each face's image's bottom rows in [0, 1] (fer's padding), or None: unknown.
    dlib_points: (faces, 5, 2) dlib's 5-point predictor on the photo (places dlib's chip), None where none is cut.
    """

    rows: list[dict[str, Any]]
    face_rows: np.ndarray
    detections: np.ndarray
    crops: np.ndarray
    frames: list[tuple[str, int]]
    image_sizes: np.ndarray
    canonical: np.ndarray
    bottom_grey: np.ndarray | None = None
    dlib_points: np.ndarray | None = None

    def subset(self, faces: np.ndarray) -> DetectedFaces:
        """These detections narrowed to the faces at indices `faces` (rows and frames kept whole: they describe the
        chunk, not the faces)."""
        per_face = ("face_rows", "detections", "crops", "image_sizes", "canonical", "bottom_grey", "dlib_points")
        return dataclasses.replace(self, **{name: getattr(self, name)[faces] for name in per_face
                                            if getattr(self, name) is not None})

    def geometry(self) -> FaceGeometry:
        """The faces' detection as `FaceGeometry` (boxes, five points, image sizes, canonical crop affines, grey)."""
        return FaceGeometry.from_detections(self.detections[:, :4], self.detections[:, 5:], self.image_sizes[:, ::-1],
                                            self.canonical.shape[1], self.bottom_grey, self.dlib_points)


class FaceAnalyzer:
    """The detect -> align -> predict path: `MediaItem`s in, `analyze`'s table out.

    Args:
        model: a saved ET-Fuser classification folder (default: the newest `runs/*/model`), a loaded
            `ETFuserForImageClassification` (torch backend only) or a `LoadedModel`.
        backend: "torch", "onnx" (the fused model exported once per model folder, run with onnxruntime) or
            "onnx-int8" (the same with the nets of `backends.INT8_MODEL_TYPES` quantised to int8; MTCNN fp32).
        batch_size: frames per detection chunk and faces per model batch.
        max_faces: keep at most this many faces per image or frame (highest scores first); None keeps all.
        detector: an `MTCNN` (or `OnnxMTCNN`); default: the converted facenet-pytorch weights from the prior cache.
            With an ONNX backend an `MTCNN`'s three networks are exported too (cached) and run with onnxruntime.
        cache_dir: where the ONNX exports are cached (default `$ETFUSER_CACHE` or `~/.cache/etfuser_hf`).
        extras: the extra column groups (`extras.EXTRAS`: "identity", "pose", "gender", "fer"); () for none.
        attention_maps: a folder for one PNG per image (and per video frame with faces, the first
            `ATTENTION_FRAMES_PER_VIDEO` of each video): every face beside the ensemble token's attention over each
            prior's grid, drawn over that prior's own crop (`save_attention_maps`). The maps come from the PyTorch
            model on the table's inputs whatever the backend (the ONNX graphs do not return attention). Refused for a
            model that reads no prior as grid tokens.
    """

    def __init__(self, model: str | os.PathLike | ETFuserForImageClassification | LoadedModel | None = None,
                 backend: str = "torch", batch_size: int = 32, max_faces: int | None = None,
                 detector: MTCNN | OnnxMTCNN | None = None, cache_dir: str | os.PathLike | None = None,
                 extras: Sequence[str] = EXTRAS, attention_maps: str | os.PathLike | None = None):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}.")
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}.")
        extras = check_extras(extras)
        bound_heap_growth()
        if backend != "torch" and model_folder(model) is None:
            raise ValueError(f"backend: {backend!r} needs model= as a saved folder (its hash keys the export cache).")
        if detector is None:
            from ..priors.convert_face_priors import ensure_face_priors

            detector = MTCNN.from_pretrained(ensure_face_priors(names=["mtcnn"])["mtcnn"])
        if backend != "torch" and isinstance(detector, MTCNN):
            # the detector's networks under onnxruntime too, exported first where the cache has none: before the
            # model loads in the background (tracing must not overlap other threads' torch calls)
            detector = OnnxMTCNN(detector, cache_dir)
        self.detector, self.batch_size, self.max_faces = detector, batch_size, max_faces
        self.attention_folder = None if attention_maps is None else Path(attention_maps)
        self._attention_frames: dict[str, int] = {}  # video -> figures written
        # the model, then the backend, load in a thread of their own while the caller goes on to read and detect the
        # first chunk, which needs neither (`loading.py`); what needs them waits and raises what loading raised
        self._loading = ModelLoad(model, backend, cache_dir, extras, attention_maps)
        self._networks = self._loading.networks
        if attention_maps is not None:
            self._loading.model.result()  # a model that reads no grid is refused as an argument, here

    @property
    def loaded(self) -> LoadedModel:
        """The model and its processor (loaded in the background: the first use waits)."""
        return self._loading.model.result().loaded

    @property
    def table(self) -> TableBuilder:
        """The table's columns for this model and these extras."""
        return self._loading.model.result().table

    @property
    def shape_predictor(self) -> DlibShapePredictor | None:
        """dlib's 5-point predictor where a network cuts dlib's chip, else None."""
        return self._loading.model.result().shape_predictor

    @property
    def run(self) -> AnalysisBackend:
        """The backend that runs the networks on canonical crops (built in the background: the first use waits)."""
        return self._networks.result().run

    @property
    def extras(self) -> ExtraColumns:
        """The extra columns and their tracker (built with `run`)."""
        return self._networks.result().extras

    @extras.setter
    def extras(self, value: ExtraColumns) -> None:
        networks = Future()
        networks.set_result(AnalyzerNetworks(self.run, value))
        self._networks = networks

    def session(self) -> FaceAnalyzer:
        """A view of this analyzer with its own run state (the tracker's tracks and identities, the attention figures
        written per video) that shares the loaded model, backend and detector: one per concurrent request, so that
        threads sharing the loaded model never mix each other's tracks."""
        view = copy.copy(self)
        view.extras = self.extras.with_new_tracker()
        view._attention_frames = {}
        return view

    def __call__(self, items: Iterable[MediaItem]) -> pd.DataFrame:
        """The table's rows for `items`, detected `batch_size` frames at a time; failed items become `error` rows."""
        parts = [part for _, part in self.iter_chunks(items)]
        return pd.concat(parts, ignore_index=True) if parts else self.table.empty()

    def iter_chunks(self, items: Iterable[MediaItem], skip: int = 0) -> Iterator[tuple[int, pd.DataFrame]]:
        """(chunk index, its rows) for each chunk of `batch_size` items, as they are made. The first `skip` chunks
        are read but not analysed (a resumed run; restore the tracker with `extras.tracker` first)."""
        chunks = ((index, chunk) for index, chunk in enumerate(_chunks(items, self.batch_size)) if index >= skip)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="etfuser-read") as reader, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="etfuser-detect") as worker:
            # three stages, a chunk each: the reader decodes the chunk after the one the worker detects, while the
            # networks read the one before (decoding on the detection thread made it the slowest of the three)
            reading = reader.submit(next, chunks, (None, None))

            def read_ahead() -> tuple[int, _Prefetched] | None:  # the next chunk, detected in the worker
                nonlocal reading
                index, chunk = reading.result()
                if chunk is None:
                    return None
                reading = reader.submit(next, chunks, (None, None))  # one thread only reads, in order
                chunk = _Prefetched(chunk)
                chunk.detected = Future()
                try:
                    chunk.detected.set_result(self.detect(chunk))
                except Exception as error:  # noqa: BLE001 - raised where the chunk is analysed
                    chunk.detected.set_exception(error)
                return index, chunk

            pending = worker.submit(read_ahead)
            while (ahead := pending.result()) is not None:
                pending = worker.submit(read_ahead)
                table = self.analyze_chunk(ahead[1])
                release_freed_memory()
                yield ahead[0], table

    def watched(self, files: Sequence[str], every_n_frames: int = 1, progress: bool = True) -> Iterator[MediaItem]:
        """`iter_media(files)` that logs each failure as a warning and, when `progress`, moves a tqdm bar (frames)."""
        from tqdm.auto import tqdm

        items = iter_media(files, every_n_frames)
        total = sum(count_frames(path, every_n_frames) for path in files) if progress else None
        with tqdm(total=total or None, unit="frame", desc="analyze", disable=not progress) as bar:
            for item in items:
                if item.error is None:
                    bar.update()
                else:
                    logger.warning("%s: %s", item.source, item.error)
                yield item

    def analyze_files(self, files: Sequence[str], every_n_frames: int = 1, progress: bool = True) -> pd.DataFrame:
        """`analyze` on files already expanded (`expand_inputs`): each failure logged as a warning, a tqdm bar
        (frames) when `progress`."""
        return self(self.watched(files, every_n_frames, progress))

    def analyze_chunk(self, chunk: list[MediaItem]) -> pd.DataFrame:
        """The rows of one chunk of frames: MTCNN detects all its frames at once, the faces go through the model in
        batches of `batch_size` (and, with `attention_maps`, their attention figures are written)."""
        detected = chunk.detected.result() if isinstance(chunk, _Prefetched) else self.detect(chunk)
        if self.attention_folder is not None:
            self._networks.result()  # the backend is built: no export traces beside the attention maps' torch calls
            self.save_attention_maps(detected)
        return self.predict(detected)

    def attention_maps(self, detected: DetectedFaces) -> dict[str, np.ndarray]:
        """The ensemble token's last-layer attention over each grid of the fusion, per detected face, in the table's
        run: {prior (or "canonical"): (faces, g, g)} float32, each map summing to 1 (`attention`)."""
        return self.attention(detected).maps

    def attention(self, detected: DetectedFaces) -> AttentionPanels:
        """`attention_maps`, with each grid's network crop of every face and the faces as the model reads them (their
        canonical crops), at the model's crop size (`attention_maps.attention_panels`), `batch_size` faces at a time.
        The model runs in PyTorch on the table's inputs: the canonical crops, and every network's crop placed by the
        backend's first stage (`AnalysisBackend.prior_crops`)."""
        model, geometry, size = self.loaded.model, detected.geometry(), self.table.crop_size
        parts = []
        for start in range(0, len(detected.canonical), self.batch_size):
            pixel_values = _as_pixel_values(detected.canonical[start:start + self.batch_size])
            crops = self.run.prior_crops(pixel_values, geometry[start:start + self.batch_size])
            parts.append(attention_panels(model, torch.from_numpy(pixel_values), crops, size))
        if not parts:  # no face: empty maps of the model's grids
            side = detected.canonical.shape[1]
            return attention_panels(model, torch.zeros(0, 3, side, side), None, size)
        return AttentionPanels.concatenate(parts)

    def save_attention_maps(self, detected: DetectedFaces, folder: str | os.PathLike | None = None) -> list[Path]:
        """Writes `<folder>/<source>_frame<NNNNNN>.png` (the source's path with other characters than letters,
        digits, `.`, `-` and `_` as `_`) for each image or video frame with faces: a row per face, the face and one
        overlay per grid over its network's crop. Video frames after the first `ATTENTION_FRAMES_PER_VIDEO` with faces
        are skipped. Returns the paths written."""
        folder = Path(folder) if folder is not None else self.attention_folder
        if folder is None:
            raise ValueError("folder: no folder given and the analyzer was made without attention_maps=.")
        check_reads_grids(self.loaded.model, "attention_maps")
        frames: dict[tuple[str, int], list[int]] = {}
        for face, row in enumerate(detected.face_rows):
            frames.setdefault((detected.rows[row]["source"], detected.rows[row]["frame"]), []).append(face)
        chosen = {}
        for (source, frame), faces in frames.items():
            if is_video(source):
                written = self._attention_frames.get(source, 0)
                if written >= ATTENTION_FRAMES_PER_VIDEO:
                    continue
                self._attention_frames[source] = written + 1
            chosen[source, frame] = faces
        if not chosen:
            return []
        wanted = np.concatenate(list(chosen.values()))
        panels = self.attention(detected.subset(wanted))
        position = dict(zip(wanted.tolist(), range(len(wanted))))
        return save_frame_figures(folder, {
            key: [panels.face(position[face], f"face {detected.rows[detected.face_rows[face]]['face']}")
                  for face in faces] for key, faces in chosen.items()})

    def detect(self, chunk: list[MediaItem]) -> DetectedFaces:
        """Detects the faces of all frames of `chunk` at once and cuts their canonical crops (one warp of the frame
        per face), the ArcFace-aligned crops at this model's crop size from those."""
        good = [item for item in chunk if item.error is None]
        with self._loading.detection_turn():
            arrays, found = detect_faces([item.image for item in good], self.detector, max_faces=self.max_faces) \
                if good else ([], [])
        detections = iter(zip(found, cut_canonical_crops(arrays, [points for _, _, points in found])))
        rows, face_rows, boxes, frames, sizes, loose, greys = [], [], [], [], [], [], []
        for item in chunk:
            meta = {"source": item.source, "frame": item.frame, "timestamp": item.timestamp, "error": ""}
            if item.error is not None:
                rows.append({**meta, "face": -1, "status": "error", "error": item.error})
                continue
            (face_boxes, scores, points), canonical_crops = next(detections)
            frames.append((item.source, len(face_boxes)))
            if not len(face_boxes):
                rows.append({**meta, "face": -1, "status": "no_face"})
                continue
            for index in range(len(face_boxes)):
                face_rows.append(len(rows))
                rows.append({**meta, "face": index, "status": "ok"})
            boxes.append(np.concatenate([face_boxes, scores[:, None], points.reshape(-1, 10)], axis=1))
            loose.append(canonical_crops)
            sizes += [item.image.shape[1::-1]] * len(face_boxes)
            greys += list(image_bottom_grey([item.image])) * len(face_boxes)
        canonical = np.concatenate(loose) if loose else np.zeros((0, CANONICAL_CROP_SIZE, CANONICAL_CROP_SIZE, 3), "u1")
        return DetectedFaces(rows, np.asarray(face_rows, dtype=np.int64),
            np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, len(DETECTION_COLUMNS)), np.float32),
            arcface_crops(canonical, self.table.crop_size), frames, np.asarray(sizes, dtype=np.float64).reshape(-1, 2),
            canonical, np.asarray(greys, dtype=np.float64), dlib_points(self.shape_predictor, arrays, found))

    def predict(self, detected: DetectedFaces) -> pd.DataFrame:
        """The table's rows for faces `detect` found (by this analyzer or another one with the same crop size: one
        detection serves several models), run through the model in batches of `batch_size`."""
        if detected.crops.shape[1:3] != (self.table.crop_size,) * 2:
            raise ValueError(f"detected: faces aligned to {detected.crops.shape[1:3]}, this model takes "
                             f"{self.table.crop_size}x{self.table.crop_size} crops.")
        faces, geometry, step = detected.canonical, detected.geometry(), self.batch_size
        batches = [self.run(_as_pixel_values(faces[start:start + step]), geometry[start:start + step])
                   for start in range(0, len(faces), step)]
        outputs = {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]} if batches else {}
        boxes = detected.detections
        # the landmark net's points, mapped to the image through its own crop (the backend's first stage)
        landmarks = outputs.get("image_landmarks", np.zeros((0, 68, 2)))
        extras = self.extras.columns(outputs, boxes[:, :4], detected.frames, landmarks, detected.image_sizes)
        # a landmark head predicts in its canonical model's crop: the frame the backend's plan placed for each face
        frames = self.table.task.model_frames(self.run.graph.plan, geometry, outputs.get("image_landmarks"),
                                              faces.shape[1]) if self.table.task.needs_frames and len(faces) else None
        return self.table.frame(detected.rows, detected.face_rows, boxes, outputs, extras, frames)


def analyze(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    model: str | os.PathLike | ETFuserForImageClassification | LoadedModel | None = None,
    batch_size: int = 32,
    backend: str = "torch",
    every_n_frames: int = 1,
    max_faces: int | None = None,
    detector: MTCNN | OnnxMTCNN | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    extras: Sequence[str] = EXTRAS,
    attention_maps: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Detects, aligns and analyses every face in `inputs`; returns one row per face per image or video frame.

    Args:
        inputs: an image, a video, a folder (searched recursively for both) or a list of these.
        model: a saved ET-Fuser classification folder (default: the newest `runs/*/model`), a loaded
            `ETFuserForImageClassification` (torch backend only) or a `LoadedModel` (`load_model`).
        batch_size: frames per detection chunk and faces per model batch.
        backend: "torch", "onnx" (the fused model exported once per model folder, run with onnxruntime) or
            "onnx-int8" (the same with the nets of `backends.INT8_MODEL_TYPES` quantised to int8; MTCNN fp32).
        every_n_frames: analyse every n-th frame of a video (1: all).
        max_faces: keep at most this many faces per image or frame (highest scores first); None keeps all.
        detector: an `MTCNN` (or `OnnxMTCNN`); default: the converted facenet-pytorch weights from the prior cache.
            With an ONNX backend an `MTCNN`'s three networks are exported too (cached) and run with onnxruntime.
        progress: show a tqdm bar (frames).
        cache_dir: where the ONNX exports are cached (default `$ETFUSER_CACHE` or `~/.cache/etfuser_hf`).
        extras: the extra column groups: "identity" (`track`, `identity`), "pose" (`yaw`, `pitch`, `roll`),
            "gender" (`gender`, `gender_probability`), "fer" (`fer_label`, `fer_probability_<expression>`: the
            pretrained FER net's own reading); () for none.
        attention_maps: a folder for the ensemble token's attention figures (`FaceAnalyzer`'s argument); None: none.

    Returns:
        A `pandas.DataFrame` with the columns and dtypes of `table_schema(model, extras)` (documented in this
        module). The whole table is in memory: for long videos write it as it is made (`etfuser analyze --output`).
    """
    iter_media([], every_n_frames)  # refuses a bad every_n_frames before the model loads
    files = expand_inputs(inputs)
    analyzer = FaceAnalyzer(model, backend, batch_size, max_faces, detector, cache_dir, extras, attention_maps)
    return analyzer.analyze_files(files, every_n_frames, progress)


# the table's names stay importable from here, where they were first defined
__all__ = ["ATTENTION_FRAMES_PER_VIDEO", "BACKENDS", "DETECTION_COLUMNS", "META_COLUMNS", "POINT_NAMES", "DetectedFaces",
           "FaceAnalyzer", "analyze", "crop_points_to_image", "empty_table", "table_schema", "model_output_columns"]
