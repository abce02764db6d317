"""The same faces in training and in use (issue 33, item 3): a tiny model trained through `train.py --dataset` on
real full-frame photos (the detector's path), then `analyze` on the same files. Both paths' forwards are captured
(the `pixel_values` and `prior_crops` each hands the model): every face `analyze` finds was fed in training as the
same canonical crop, and every network cut the same crop of it."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from full_frames import write_full_frames  # noqa: E402

from etfuser_hf.models.modeling_etfuser import ETFuserForImageClassification  # noqa: E402
from etfuser_hf.priors.crop_geometry import CANONICAL_CROP_SIZE, cut_crops  # noqa: E402
from etfuser_hf.priors.landmark_stage import LandmarkStage  # noqa: E402

RUN = ["--seeds", "1", "--max-steps", "2", "--no-baselines", "--workers", "1", "--no-cache", "--batch-size", "4",
       "--early-stopping", "0", "--precision", "fp32", "--tasks", "label"]


def _capture(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Records every ET-Fuser classification forward's `pixel_values` and `prior_crops` (both paths call it)."""
    calls: list[dict[str, torch.Tensor]] = []
    forward = ETFuserForImageClassification.forward

    @functools.wraps(forward)  # the Trainer reads the signature to keep the dataset's columns
    def recording(self, *args, **kwargs):
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        crops = kwargs.get("prior_crops") or {}
        calls.append({"pixel_values": pixels.detach().clone(),
                      **{f"crop.{name}": torch.as_tensor(value).detach().clone() for name, value in crops.items()}})
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(ETFuserForImageClassification, "forward", recording)
    return calls


def _capture_landmark_stage(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Records the affines and window rows of every call of the landmark net's own stage (analyze's first stage)."""
    calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    forward = LandmarkStage.forward

    def recording(self, pixel_values, affines, windows=None):
        calls.append((affines.detach().clone(), None if windows is None else windows.detach().clone()))
        return forward(self, pixel_values, affines, windows)

    monkeypatch.setattr(LandmarkStage, "forward", recording)
    return calls


def _capture_analysis_graph(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Records what analyze's fused graph is handed per chunk (it cuts each network's crop before the model's forward,
    `AnalysisGraph.network_crops`): the canonical crops in [0, 1] and, per network, the crop affines it cuts them by
    and their window rows (`crop.<network>.window`)."""
    from etfuser_hf.analysis.backends import TorchBackend

    calls: list[dict[str, torch.Tensor]] = []
    run_graph = TorchBackend.run_graph

    def recording(self, pixel_values, crop_affines, landmark_features, windows=None):
        pixels = torch.as_tensor(pixel_values)
        pixels = pixels.float() / 255 if pixels.dtype == torch.uint8 else pixels.float()
        networks = self.graph.plan.networks
        calls.append({"pixel_values": pixels.clone(),
                      **{f"crop.{name}": torch.as_tensor(crop_affines[:, index]).clone()
                         for index, name in enumerate(networks) if not name.startswith("companion.")},
                      **{f"crop.{name}": torch.as_tensor(rows).clone() for name, rows in (windows or {}).items()
                         if not name.startswith("companion.")}})
        return run_graph(self, pixel_values, crop_affines, landmark_features, windows)

    monkeypatch.setattr(TorchBackend, "run_graph", recording)
    return calls


def _rows(calls: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """One entry per face of all calls."""
    return [{key: value[index] for key, value in call.items()} for call in calls
            for index in range(len(call["pixel_values"]))]


def _network_crop(pixels: torch.Tensor, affine: torch.Tensor, windows: torch.Tensor | None = None,
                  size: int = 112) -> torch.Tensor:
    """One face's crop as its network reads it (with its window rows, where it has them)."""
    return cut_crops(pixels[None].float(), affine[None].double().numpy(), size,
                     windows=None if windows is None else windows[None])[0]


@pytest.mark.slow
def test_alignment_training_and_analyze_feed_the_same_crops(tmp_path, monkeypatch):
    from etfuser_hf.analysis.pipeline import analyze
    from etfuser_hf.training.main import main

    root, run = write_full_frames(tmp_path / "frames"), tmp_path / "run"
    calls = _capture(monkeypatch)
    main(["--dataset", str(root), *RUN, "--output-dir", str(run)])
    trained = _rows(calls)
    record = json.loads((run / "splits.json").read_text())
    faces = record["faces"]
    assert faces["policy"] == "detect"
    totals = {}
    for counts in faces["counts"].values():
        for kind, count in counts.items():
            totals[kind] = totals.get(kind, 0) + count
    assert totals == {"detected": 8, "missed": 1}  # the cat: no human face, taken whole and counted
    assert "missed by the detector, taken whole" in (run / "results.md").read_text()
    # training fed 320 px canonical crops, not the image squashed to 112 px
    assert all(row["pixel_values"].shape == (3, CANONICAL_CROP_SIZE, CANONICAL_CROP_SIZE) for row in trained)

    calls = _capture_analysis_graph(monkeypatch)
    landmark_calls = _capture_landmark_stage(monkeypatch)
    files = sorted(str(path) for path in root.rglob("*.png"))
    table = analyze(files, model=run / "model", backend="torch", extras=(), progress=False)
    used = _rows(calls)
    # the fused landmark net runs in analyze's first stage, on its own crop of the same faces, in the same order
    stage_affines = torch.cat([affines for affines, _ in landmark_calls])
    stage_windows = torch.cat([windows for _, windows in landmark_calls])  # face-api's bars: always windowed
    for face, affine, windows in zip(used, stage_affines, stage_windows):
        face["crop.face_landmarks"], face["crop.face_landmarks.window"] = affine, windows
    found = table[table["status"] == "ok"]
    assert sorted(found["source"]) == [file for file in files if not file.endswith("cat.png")]
    assert len(used) == len(found) == 8
    networks = {key for row in used for key in row if key.startswith("crop.") and not key.endswith(".window")}
    # every network the model runs on pixels: the canonical age net (dlib's chip, placed by the 68 landmarks), the
    # recognition net (face-api's square, by the landmarks too), the FER net (its box rule) and the landmark net
    assert networks == {"crop.backbone", "crop.face_recognition", "crop.expression", "crop.face_landmarks"}
    for face in used:
        # the training row fed the same photo: its canonical crop, pixel for pixel (the very same cut of the same
        # decoded file)
        distances = [float((row["pixel_values"] - face["pixel_values"]).abs().max()) for row in trained]
        match = trained[int(np.argmin(distances))]
        assert min(distances) < 1e-6
        for key in networks:
            assert key in match, f"training fed no {key} crop"
            # the same place (the landmarks come from the same net on the same crop: float noise only)
            torch.testing.assert_close(match[key].double(), face[key].double(), atol=2e-3, rtol=0)
            # the same surroundings, in training and in analyze alike: face-api's bars (recognition, landmarks), fer's
            # padding (expression), and for the dlib chip the whole photo, black beyond it (its window also gives the
            # sampler the photo's scale: dlib's pyramid, `crop_geometry.dlib_chip_windows`)
            window = f"{key}.window"
            assert window in match and window in face, window
            torch.testing.assert_close(match[window].double(), face[window].double(), atol=2e-3, rtol=0)
            ours = _network_crop(match["pixel_values"], match[key], match.get(window))
            theirs = _network_crop(face["pixel_values"], face[key], face.get(window))
            assert float((ours - theirs).abs().mean()) < 1e-3 and float((ours - theirs).abs().max()) < 0.05
