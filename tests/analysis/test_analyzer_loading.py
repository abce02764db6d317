"""`FaceAnalyzer` loads its model and backend in a thread of its own (`analysis/loading.py`): detection starts before the
model has loaded, what loading raised reaches the caller where the model is first needed, and detection never runs
while an ONNX export is tracing."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from conftest import tiny_etfuser_config

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.analysis import loading
from etfuser_hf.analysis.media import MediaItem
from etfuser_hf.analysis.pipeline import FaceAnalyzer

WAIT = 10.0  # seconds a test waits for another thread before it fails


@pytest.fixture(scope="module")
def model() -> ETFuserForImageClassification:
    return ETFuserForImageClassification(tiny_etfuser_config()).eval()


class FaceAtTheCentre:
    """A detector stub: one face with five points in the middle of every image; `started` is set on the first call."""

    def __init__(self):
        self.started = threading.Event()

    def detect_batch(self, images):
        self.started.set()
        points = np.array([[[40, 45], [60, 45], [50, 55], [42, 65], [58, 65]]], np.float32)
        return [(np.array([[30, 30, 70, 80]], np.float32), np.ones(1, np.float32), points) for _ in images]


def photo() -> MediaItem:
    return MediaItem("photo.png", 0, math.nan, np.full((100, 100, 3), 120, np.uint8), None)


def test_detection_starts_before_the_model_has_loaded(model, monkeypatch):
    release, original = threading.Event(), loading.load_model

    def slow_load(argument):
        assert release.wait(WAIT), "the test never released the load"
        return original(argument)

    monkeypatch.setattr(loading, "load_model", slow_load)
    detector = FaceAtTheCentre()
    analyzer = FaceAnalyzer(model, detector=detector, extras=())  # returns while the model is still loading
    assert not analyzer._loading.model.done()
    found = {}
    worker = threading.Thread(target=lambda: found.update(detected=analyzer.detect([photo()])))
    worker.start()
    assert detector.started.wait(WAIT), "detection did not start while the model loaded"
    assert not analyzer._loading.model.done() and worker.is_alive()  # the chunk's alignment waits for the model
    release.set()
    worker.join(WAIT)
    detected = found["detected"]
    assert detected.crops.shape == (1, model.config.image_size, model.config.image_size, 3)
    assert analyzer.predict(detected)["status"].tolist() == ["ok"]


def test_what_loading_raised_reaches_the_caller_where_the_model_is_needed(model, monkeypatch):
    def broken(argument):
        raise ValueError("model: broken weights")

    monkeypatch.setattr(loading, "load_model", broken)
    analyzer = FaceAnalyzer(model, detector=FaceAtTheCentre(), extras=())
    for use in (lambda: analyzer.loaded, lambda: analyzer.table, lambda: analyzer.run, lambda: analyzer.extras,
                lambda: analyzer([photo()])):
        with pytest.raises(ValueError, match="model: broken weights"):
            use()


def test_detection_waits_while_an_export_traces(model, monkeypatch):
    exporting, release, entered = threading.Event(), threading.Event(), threading.Event()

    class SlowExport:
        def __init__(self, *args, **kwargs):
            exporting.set()
            assert release.wait(WAIT), "the test never released the export"

    monkeypatch.setattr(loading, "onnx_exports_cached", lambda *args, **kwargs: False)
    monkeypatch.setattr(loading, "OnnxBackend", SlowExport)
    load = loading.ModelLoad(model, "onnx", None, (), None)
    assert exporting.wait(WAIT)

    def detect():
        with load.detection_turn():
            entered.set()

    worker = threading.Thread(target=detect)
    worker.start()
    assert not entered.wait(0.5), "detection ran while the export traced"
    release.set()
    assert entered.wait(WAIT) and load.networks.result(WAIT).run.__class__ is SlowExport
    worker.join(WAIT)
    with load.detection_turn():  # built: detection no longer takes the gate
        assert not load.export_gate.locked()
