"""The data wing's stages as one object (issue 33, "Where it goes"): `FacePipeline` runs source -> faces -> views ->
prior features -> pixels in that order over a layout as distributed, records what each stage found, and is what the
main job prepares its splits with. Select with `-k pipeline`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layouts import write_fer2013_folders  # noqa: E402

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor  # noqa: E402
from etfuser_hf.data.alignment import ALIGNMENT_COLUMN  # noqa: E402
from etfuser_hf.data.face_datasets import load_face_dataset, source_report  # noqa: E402
from etfuser_hf.data.feature_cache import feature_column  # noqa: E402
from etfuser_hf.data.image_cache import PIXEL_COLUMN  # noqa: E402
from etfuser_hf.data.pipeline import SYNTHETIC_GEOMETRY, FacePipeline, face_policy  # noqa: E402
from etfuser_hf.data.synthetic_faces import make_synthetic_faces  # noqa: E402
from etfuser_hf.data.views import VIEW_COLUMN, Augmentation  # noqa: E402
from etfuser_hf.priors.convert_face_priors import ensure_face_priors  # noqa: E402


def reader() -> ETFuserForImageClassification:
    torch.manual_seed(0)
    return ETFuserForImageClassification.from_priors_pretrained(
        priors={"age": ensure_face_priors(names=["age"])["age"]}, backbone=None, fusion_mode="priors_only",
        image_size=64, hidden_size=32, num_attention_heads=4, num_labels=2)


def test_pipeline_runs_a_layouts_stages_in_order_and_records_what_they_found(tmp_path):
    data = load_face_dataset(write_fer2013_folders(tmp_path / "fer"))
    assert face_policy(source_report(data)) == "whole_image" and face_policy(None) == "detect"
    processor = ETFuserImageProcessor(size={"height": 64, "width": 64})
    pipeline = FacePipeline(processor, tmp_path / "cache", face_policy(source_report(data)))
    assert pipeline.geometry_column == SYNTHETIC_GEOMETRY
    splits = pipeline.prepare(dict(data), {"": reader()})
    assert pipeline.geometry_column == ALIGNMENT_COLUMN  # the faces stage placed the crops
    assert pipeline.record["faces"]["policy"] == "whole_image"
    assert set(pipeline.record["faces"]["counts"]) == set(data)
    for name, split in splits.items():
        assert len(split) == len(data[name]) and feature_column("age") in split.column_names
        assert np.asarray(split[0][feature_column("age")]).shape == (1, 256)
    assert (tmp_path / "cache" / "faces").is_dir() and any((tmp_path / "cache" / "features").iterdir())


def test_pipeline_renders_views_before_the_prior_features_and_decodes_pixels_last(tmp_path):
    faces = make_synthetic_faces(3, 64, seed=2, mask_probability=0.0)
    processor = ETFuserImageProcessor(size={"height": 64, "width": 64})
    pipeline = FacePipeline(processor, tmp_path / "cache")
    splits = pipeline.prepare({"train": faces, "test": faces}, {"": reader()},
                              [Augmentation("light", "views", 3, seed=1)])
    assert splits["train"][VIEW_COLUMN] == [0, 0, 0, 1, 1, 1, 2, 2, 2] and len(splits["test"]) == 3
    assert feature_column("age") in splits["train"].column_names and PIXEL_COLUMN in splits["train"].column_names
    # each view's features come from that view: the mirror's differ from the image's
    first, mirror = (np.asarray(splits["train"][index][feature_column("age")]) for index in (0, 1))
    assert not np.allclose(first, mirror)
    assert pipeline.prepare({"train": faces}, None)["train"].column_names == faces.column_names  # --no-cache
