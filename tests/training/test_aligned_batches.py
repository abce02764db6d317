"""Aligned faces through the training caches and collator (issue 33, item 3): the prior-feature cache and the
collator feed a dataset's aligned faces (`data.alignment`) as `analyze` feeds them, each face's canonical crop cut
from the original image and every network's crop placed in it by the model's `CropPlan`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from layouts import write_fer2013_folders  # noqa: E402

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor  # noqa: E402
from etfuser_hf.data.alignment import ALIGNMENT_COLUMN, FaceAligner, align_dataset  # noqa: E402
from etfuser_hf.data.collators import FaceCollator  # noqa: E402
from etfuser_hf.data.face_crops import aligned_inputs, aligned_landmark_labels  # noqa: E402
from etfuser_hf.data.face_datasets import load_face_dataset  # noqa: E402
from etfuser_hf.data.feature_cache import PriorFeatureCache, feature_column  # noqa: E402
from etfuser_hf.data.image_cache import cache_decoded_images  # noqa: E402
from etfuser_hf.models.input_checks import BACKBONE_CROP_KEY, WINDOW_SUFFIX  # noqa: E402
from etfuser_hf.priors.convert_face_priors import ensure_face_priors  # noqa: E402
from etfuser_hf.priors.crop_geometry import CANONICAL_CROP_SIZE  # noqa: E402
from etfuser_hf.priors.crop_plan import CropPlan  # noqa: E402

PRIORS = ("face_recognition", "age")


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """FER2013's image release (48 px grey faces: the whole image is the face), aligned."""
    root = tmp_path_factory.mktemp("fer")
    data = load_face_dataset(write_fer2013_folders(root))["train"]
    return align_dataset(data, "whole_image", FaceAligner(), root / "faces")


@pytest.fixture(scope="module")
def model():
    dirs = ensure_face_priors(names=PRIORS + ("expression",))
    torch.manual_seed(0)
    return ETFuserForImageClassification.from_priors_pretrained(
        priors={name: dirs[name] for name in PRIORS}, backbone=dirs["expression"], image_size=112,
        fusion_mode="add_to_pooled", hidden_size=32, num_attention_heads=4, intermediate_size=64,
        num_labels=7).eval()


def test_aligned_cache_features_come_from_each_priors_crop_of_the_canonical_crop(aligned, model, tmp_path):
    reader = ETFuserForImageClassification.from_priors_pretrained(
        priors={name: model.etfuser.priors[name] for name in PRIORS}, backbone=None, fusion_mode="priors_only",
        image_size=112, hidden_size=32, num_attention_heads=4, num_labels=2)
    processor = ETFuserImageProcessor(size={"height": 112, "width": 112})
    cache = PriorFeatureCache(reader, processor, tmp_path, geometry_column=ALIGNMENT_COLUMN)
    moved = aligned.map(lambda row: {"face_points": (np.asarray(row["face_points"]) + 1).tolist()})
    assert cache.key(moved) != cache.key(aligned), "moved faces must not read a stale cache"
    cached = cache(aligned)
    rows = [aligned[index] for index in range(len(aligned))]
    pixels, crops = aligned_inputs([row["image"] for row in rows], rows, CropPlan.for_model(reader))
    assert pixels.shape == (len(rows), 3, CANONICAL_CROP_SIZE, CANONICAL_CROP_SIZE)
    with torch.inference_mode():
        expected = reader.etfuser.extract_prior_features(pixels, prior_crops=crops)
    for name in PRIORS:
        stored = torch.tensor(np.asarray(cached[feature_column(name)], np.float32))
        torch.testing.assert_close(stored, expected[name].float(), atol=1e-5, rtol=1e-5)


def test_aligned_collator_feeds_canonical_crops_and_skips_cached_priors(aligned, model):
    processor = ETFuserImageProcessor(size={"height": 112, "width": 112})
    assert ALIGNMENT_COLUMN in cache_decoded_images({"train": aligned}, processor, "/nonexistent")["train"].column_names
    collator = FaceCollator(processor, "label", 7, crop_plan=CropPlan.for_model(model),
                            geometry_column=ALIGNMENT_COLUMN)
    view = collator.view(aligned)
    rows = [view[index] for index in range(4)]
    batch = collator(rows)
    expected, crops = aligned_inputs([aligned[index]["image"] for index in range(4)], rows, collator.crop_plan)
    torch.testing.assert_close(batch["pixel_values"], expected)
    # face-api's recognition square (its bars), fer's box (its padding) and dlib's chip (the photo, whose scale its
    # resampling reads) with their windows, in photo pixels
    windows = {"face_recognition" + WINDOW_SUFFIX, BACKBONE_CROP_KEY + WINDOW_SUFFIX}
    assert set(batch["prior_crops"]) == set(PRIORS) | {BACKBONE_CROP_KEY} | windows | {"age" + WINDOW_SUFFIX}
    cached = [{**row, feature_column("age"): np.zeros((1, 4), np.float32)} for row in rows]
    assert set(collator(cached)["prior_crops"]) == {"face_recognition", BACKBONE_CROP_KEY} | windows
    with torch.no_grad():
        outputs = model(**{key: value for key, value in batch.items() if key != "labels"})
    assert outputs.logits.shape == (4, 7)


def test_aligned_landmark_labels_land_in_the_models_frame(aligned, model):
    """The face's own landmarks, as labels, land where the label crop puts the face: inside [0, 1] of it."""
    rows = [aligned[index] for index in range(3)]
    labels = torch.tensor(np.stack([np.asarray(row[ALIGNMENT_COLUMN], np.float32) for row in rows]))
    framed = aligned_landmark_labels(labels, rows, CropPlan.for_model(model))
    assert framed.shape == labels.shape and framed.dtype == labels.dtype
    assert 0.05 < float(framed.min()) and float(framed.max()) < 0.95
    assert not torch.allclose(framed, labels, atol=1e-2)


def test_attention_figure_of_an_aligned_dataset_reads_the_inputs_training_fed(aligned, model, tmp_path, monkeypatch):
    """The run folder's attention maps of a `--dataset` model are drawn on the faces as training fed them: each face's
    canonical crop cut from its photo and every network's crop placed in it, not the photo resized."""
    from etfuser_hf.training.report import plots

    seen = {}
    monkeypatch.setattr(plots, "attention_panels", lambda model, pixels, crops: seen.update(pixels=pixels, crops=crops)
                        or type("NoMaps", (), {"maps": {}})())
    processor = ETFuserImageProcessor(size={"height": 112, "width": 112})
    assert plots.save_attention_maps(tmp_path, {"label": model}, aligned, processor, num_faces=2,
                                     geometry_column=ALIGNMENT_COLUMN) == []  # the pooled model reads no grid
    collator = FaceCollator(processor, "label", 7, use_cached_features=False, crop_plan=CropPlan.for_model(model),
                            geometry_column=ALIGNMENT_COLUMN)
    batch = collator([aligned[index] for index in range(2)])
    assert seen["pixels"].shape[-1] == CANONICAL_CROP_SIZE != 112
    torch.testing.assert_close(seen["pixels"], batch["pixel_values"], rtol=0, atol=0)
    assert set(seen["crops"]) == set(batch["prior_crops"]) and seen["crops"]
    for name, affines in batch["prior_crops"].items():
        torch.testing.assert_close(seen["crops"][name], affines, rtol=0, atol=0)


def test_cache_key_reads_geometry_columns_through_arrow_as_the_python_lists_did(aligned):
    """A warm start hashes the faces' geometry columns through Arrow (`flat_values`): the same bytes as the nested
    Python lists it used to build, so existing caches stay valid, on a selection (an indices mapping) too."""
    from etfuser_hf.data.alignment import GEOMETRY_COLUMNS
    from etfuser_hf.data.feature_cache import flat_values

    subset = aligned.select([3, 0, 2])
    for dataset in (aligned, subset):
        for column in GEOMETRY_COLUMNS:
            expected = np.asarray(list(dataset[column]), np.float32)
            assert flat_values(dataset, column).tobytes() == expected.tobytes(), column
    assert flat_values(subset, "face_points").size == 3 * np.asarray(aligned[0]["face_points"]).size
