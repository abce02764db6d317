"""What a `FaceAnalyzer` loads while its first chunk is read and detected: the model and what reads it (the table
builder, the companions, dlib's 5-point predictor where a network cuts dlib's chip), then the backend that runs the
networks (its graph and sessions). MTCNN is the analyzer's own and needs none of it, so detection starts at once:
the first chunk's alignment waits for the model, its networks for the backend (on 192 faces the load was a third of a
second before the first detection could start).

Tracing an ONNX export must not overlap torch calls in other threads: where an export is due, the loader holds
`ModelLoad.export_gate` while it builds the backend, and detection (`ModelLoad.detection_turn`) takes the gate for as
long as the backend is not built.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from ..priors.crop_geometry import CANONICAL_CROP_SIZE
from ..priors.dlib_shape_predictor import DlibShapePredictor
from .attention_maps import check_reads_grids
from .backends import AnalysisBackend, OnnxBackend, TorchBackend, onnx_exports_cached
from .crops import dlib_chip_predictor
from .extras import Companion, ExtraColumns, load_companions
from .saved_model import LoadedModel, TaskModel, load_model
from .table import TableBuilder


@dataclass(frozen=True)
class AnalyzerModel:
    """The loaded model and what reads it: its table builder, companions and dlib predictor (None: no dlib chip)."""

    loaded: LoadedModel
    table: TableBuilder
    companions: tuple[Companion, ...]
    shape_predictor: DlibShapePredictor | None


@dataclass(frozen=True)
class AnalyzerNetworks:
    """The backend and the extra columns (over the same companions)."""

    run: AnalysisBackend
    extras: ExtraColumns


class ModelLoad:
    """Loads `model` and builds its `backend` in a thread of its own (`model` and `networks`: Futures holding the
    results or what loading raised). `attention_maps`: the folder the analyzer draws into, refused for a model that
    reads no grid (`check_reads_grids`)."""

    def __init__(self, model: str | os.PathLike | TaskModel | LoadedModel | None, backend: str,
                 cache_dir: str | os.PathLike | None, extras: Sequence[str], attention_maps: object | None):
        self.model: Future[AnalyzerModel] = Future()
        self.networks: Future[AnalyzerNetworks] = Future()
        self.export_gate = threading.Lock()
        threading.Thread(target=self._load, args=(model, backend, cache_dir, tuple(extras), attention_maps),
                         name="etfuser-load", daemon=True).start()

    def _load(self, model, backend: str, cache_dir, extras: tuple[str, ...], attention_maps) -> None:
        try:
            loaded = load_model(model)
            if attention_maps is not None:
                check_reads_grids(loaded.model, "attention_maps")
            companions = tuple(load_companions(loaded.model, extras))
            self.model.set_result(AnalyzerModel(loaded, TableBuilder(loaded.model, loaded.crop_size, extras),
                                                companions, dlib_chip_predictor(loaded.model, companions)))
        except BaseException as error:  # noqa: BLE001 - raised where the analyzer first needs the model
            self.model.set_exception(error)
            self.networks.set_exception(error)
            return
        try:
            exports_due = backend != "torch" and not onnx_exports_cached(loaded.folder, cache_dir, companions,
                                                                         backend == "onnx-int8")
            with self.export_gate if exports_due else contextlib.nullcontext():
                if backend == "torch":
                    run = TorchBackend(loaded.model, companions)
                else:
                    run = OnnxBackend(loaded.model, loaded.folder, CANONICAL_CROP_SIZE, cache_dir, companions,
                                      int8=backend == "onnx-int8")
                self.networks.set_result(AnalyzerNetworks(run, ExtraColumns(companions)))
        except BaseException as error:  # noqa: BLE001 - raised where the analyzer first needs the networks
            self.networks.set_exception(error)

    @contextlib.contextmanager
    def detection_turn(self) -> Iterator[None]:
        """Where detection runs its torch calls: under the export gate until the backend is built (an export may be
        tracing), freely after."""
        if self.networks.done():
            yield
            return
        with self.export_gate:
            yield


__all__ = ["AnalyzerModel", "AnalyzerNetworks", "ModelLoad"]
