"""One loaded analysis path, several threads (the Space answers requests concurrently): every thread gets the logits,
prior readouts and companion outputs a sequential run gives for its own faces, and analyzer sessions keep their own
tracker."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_in_threads, tiny_vit_config

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.analysis.backends import TorchBackend
from etfuser_hf.priors.crop_geometry import CANONICAL_CROP_SIZE
from etfuser_hf.priors.crop_plan import FaceGeometry
from etfuser_hf.analysis.extras import load_companions
from etfuser_hf.analysis.pipeline import DetectedFaces, FaceAnalyzer
from etfuser_hf.priors.convert_face_priors import ensure_face_priors

PRIORS = ("age", "expression", "face_landmarks")  # each with a readout; face_landmarks is also the pose companion
THREADS = 3
ITERATIONS = 15


@pytest.fixture(scope="module", params=["prepend_token", "add_to_pooled"])
def model(request):
    """Real priors (their readouts are what threads could swap) fused into a tiny ViT, the ensemble token inserted into
    its token sequence or added to its pooled output (the readouts alone)."""
    dirs = ensure_face_priors(names=PRIORS)
    torch.manual_seed(0)
    return ETFuserForImageClassification.from_priors_pretrained(
        priors={name: dirs[name] for name in PRIORS}, backbone=tiny_vit_config(image_size=112, patch_size=16),
        fusion_mode=request.param, image_size=112, hidden_size=32, num_attention_heads=4, intermediate_size=64,
        num_labels=7).eval()


def faces(count: int) -> list[np.ndarray]:
    """`count` batches of two random canonical crops."""
    size = CANONICAL_CROP_SIZE
    return [np.random.default_rng(index).random((2, 3, size, size), dtype=np.float32) for index in range(count)]


def test_threads_sharing_one_analysis_graph_get_their_own_readouts(model):
    backend = TorchBackend(model, tuple(load_companions(model, ("pose",))))
    assert backend.graph.all_output_names == ["logits", "prior_attention", "readout.age", "readout.expression",
                                              "readout.face_landmarks", "companion.pose"]
    # the landmark net runs first, on its own crop; its points place the others
    assert backend.graph.stage_one_names == ["readout.face_landmarks", "companion.pose"]
    geometry = FaceGeometry.of_canonical_crops(2, bottom_grey=np.full(2, 0.5))  # fer's padding: any grey here
    inputs = faces(THREADS)
    sequential = [backend(pixel_values, geometry) for pixel_values in inputs]
    assert not np.array_equal(sequential[0]["readout.age"], sequential[1]["readout.age"])
    for index, results in enumerate(run_in_threads(lambda pixel_values: backend(pixel_values, geometry), inputs,
                                                    ITERATIONS)):
        for result in results:
            assert result.keys() == sequential[index].keys()
            for name, value in result.items():
                np.testing.assert_array_equal(value, sequential[index][name], err_msg=f"thread {index}: {name}")


def detected_faces(source: str, boxes: np.ndarray) -> DetectedFaces:
    """Faces as `FaceAnalyzer.detect` gives them, one per frame of `source`, for the tracker to link."""
    count = len(boxes)
    detections = np.concatenate([boxes, np.ones((count, 1)), np.zeros((count, 10))], axis=1).astype(np.float32)
    rows = [{"source": source, "frame": frame, "timestamp": float(frame), "error": "", "face": 0, "status": "ok"}
            for frame in range(count)]
    crops = np.stack([np.random.default_rng(frame).integers(0, 255, (112, 112, 3), dtype=np.uint8)
                      for frame in range(count)])
    geometry = FaceGeometry.of_canonical_crops(count)  # five points where a canonical crop puts them
    detections[:, 5:] = geometry.points.reshape(count, 10)
    canonical = np.stack([np.random.default_rng(frame).integers(0, 255, (CANONICAL_CROP_SIZE,) * 2 + (3,),
                                                                dtype=np.uint8) for frame in range(count)])
    return DetectedFaces(rows, np.arange(count), detections, crops, [(source, 1)] * count,
                         np.full((count, 2), 640.0), canonical, np.full(count, 0.5))


def test_thread_sessions_of_one_analyzer_keep_their_own_tracks(model):
    """Two requests analysed at once on one analyzer: each session's tracker sees only its own frames, so a video's
    tracks are not reset by the other request's photos."""
    analyzer = FaceAnalyzer(model, detector=object(), extras=("identity",))
    first, second = analyzer.session(), analyzer.session()
    assert first.run is analyzer.run and first.loaded is analyzer.loaded
    assert first.extras.tracker is not second.extras.tracker is not analyzer.extras.tracker
    video = detected_faces("clip.mp4", np.array([[10, 10, 60, 60]] * 3, dtype=np.float32))
    photo = detected_faces("photo.png", np.array([[200, 200, 260, 260]], dtype=np.float32))
    first.predict(video)
    second.predict(photo)
    assert first.extras.tracker.source == "clip.mp4" and first.extras.tracker.frames_seen == 3
    assert second.extras.tracker.source == "photo.png" and second.extras.tracker.frames_seen == 1
    assert analyzer.extras.tracker.frames_seen == 0
