"""Starts that scale to AffectNet's size (issue 33, item 4): the caches are keyed by what identifies each image without
decoding it (path, size, mtime; or the encoded bytes' hash), so a warm start opens no image; an image that cannot be
decoded is skipped with a line naming it and counted, never fatal; a reader's files are never decoded all at once."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import PIL.Image
import pytest
from conftest import tiny_etfuser_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from layouts import write_rafdb  # noqa: E402  (the official-layout fixtures of tests/data)

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor  # noqa: E402
from etfuser_hf.data.face_datasets import load_face_dataset  # noqa: E402
from etfuser_hf.data.feature_cache import PriorFeatureCache, feature_column  # noqa: E402
from etfuser_hf.data.image_cache import PIXEL_COLUMN, cache_decoded_images  # noqa: E402
from etfuser_hf.data.image_keys import image_key, image_keys, is_file_backed  # noqa: E402
from etfuser_hf.data.synthetic_faces import make_synthetic_faces  # noqa: E402
from etfuser_hf.training.report.run_writer import render_data_markdown  # noqa: E402


@pytest.fixture
def processor():
    return ETFuserImageProcessor(size={"height": 32, "width": 32})


def tiny_reader() -> ETFuserForImageClassification:
    return ETFuserForImageClassification(tiny_etfuser_config(fusion_mode="priors_only"))


@pytest.fixture
def rafdb_train(tmp_path):
    """RAF-DB's train split as distributed (real photos), its second image truncated as a broken download leaves it."""
    data = load_face_dataset(write_rafdb(tmp_path))["train"]
    broken = Path(image_key_path(data, 1))
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 3])
    return data


def image_key_path(data, index: int) -> str:
    return image_keys(data)[index].split(":")[1]


class CountingOpen:
    """Counts `PIL.Image.open` calls (every decode and every header read goes through it)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = PIL.Image.open

        def counting(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(PIL.Image, "open", counting)


def test_image_keys_read_no_pixels_and_change_with_the_file(rafdb_train, monkeypatch):
    opened = CountingOpen(monkeypatch)
    keys = image_keys(rafdb_train)
    assert opened.calls == 0 and len(set(keys)) == len(rafdb_train)
    assert is_file_backed(rafdb_train) and not is_file_backed(make_synthetic_faces(2, 32))
    path = image_key_path(rafdb_train, 0)
    os.utime(path, ns=(0, 10**9))
    assert image_keys(rafdb_train)[0] != keys[0], "a touched file must not read a stale cache"
    with pytest.raises(ValueError, match="cannot be read .* moved or deleted"):
        image_key({"path": str(Path(path).with_name("gone.jpg")), "bytes": None})


def test_an_undecodable_image_is_skipped_named_and_counted_and_a_warm_start_opens_none(
        rafdb_train, processor, tmp_path, monkeypatch, caplog):
    reader = tiny_reader().eval()
    broken = image_key_path(rafdb_train, 1)
    with caplog.at_level(logging.WARNING):
        cached = PriorFeatureCache(reader, processor, tmp_path / "features")(rafdb_train)
    assert len(cached) == len(rafdb_train) - 1
    assert [line for line in caplog.messages if broken in line and "truncated or corrupt" in line]
    kept = {Path(image_key_path(cached, index)).name for index in range(len(cached))}
    assert Path(broken).name not in kept

    opened = CountingOpen(monkeypatch)
    cache = PriorFeatureCache(reader, processor, tmp_path / "features")
    again = cache(rafdb_train)
    assert opened.calls == 0, "a warm start decoded images"
    assert len(again) == len(cached) and len(cache.undecodable) == 1 and broken in cache.undecodable[0]
    assert again[feature_column("vit")] == cached[feature_column("vit")]
    # the run folder's Data section counts them
    markdown = render_data_markdown({"sizes": {"train": len(again)}, "undecodable": {
        "train": {"count": 1, "first": cache.undecodable}}})
    assert "| skipped when decoded | train: image cannot be decoded | 1 |" in markdown


def test_files_on_disk_are_never_decoded_all_at_once(rafdb_train, processor, tmp_path, monkeypatch):
    opened = CountingOpen(monkeypatch)
    splits = cache_decoded_images({"train": rafdb_train}, processor, tmp_path)
    assert opened.calls == 0 and PIXEL_COLUMN not in splits["train"].column_names


def test_synthetic_faces_are_decoded_once_and_read_back(tmp_path, monkeypatch):
    processor = ETFuserImageProcessor(size={"height": 32, "width": 32})
    faces = make_synthetic_faces(4, 32)
    first = cache_decoded_images({"train": faces}, processor, tmp_path)
    assert PIXEL_COLUMN in first["train"].column_names
    opened = CountingOpen(monkeypatch)
    second = cache_decoded_images({"train": faces}, processor, tmp_path)
    assert opened.calls == len(faces)  # headers only: mode and size, no pixel decoded
    assert second["train"][PIXEL_COLUMN] == first["train"][PIXEL_COLUMN]


def test_dataloader_workers_flag_reaches_the_trainer_and_batches_in_worker_processes(rafdb_train, processor, tmp_path):
    from transformers import Trainer

    from etfuser_hf.data.collators import FaceCollator
    from etfuser_hf.training.main import parse_args
    from etfuser_hf.training.run.trainer import training_arguments

    assert parse_args(["--dataloader-workers", "2"]).dataloader_workers == 2
    with pytest.raises(SystemExit):
        parse_args(["--dataloader-workers", "-1"])
    model = ETFuserForImageClassification(tiny_etfuser_config(num_labels=7))
    collator = FaceCollator(processor, "label", 7, use_cached_features=False)
    data = rafdb_train.select([0, 2, 3])  # the truncated image is the cache's to drop
    trainer = Trainer(model=model, args=training_arguments(tmp_path, dataloader_num_workers=2,
                                                           per_device_train_batch_size=2, eval_strategy="no",
                                                           save_strategy="no", load_best_model_at_end=False),
                      train_dataset=collator.view(data), data_collator=collator)
    batches = list(trainer.get_train_dataloader())
    assert trainer.args.dataloader_num_workers == 2
    assert sum(len(batch["labels"]) for batch in batches) == 3
    assert all(batch["pixel_values"].shape[1:] == (3, 32, 32) for batch in batches)


def test_without_the_cache_an_undecodable_image_costs_its_row_not_the_run(rafdb_train, processor, caplog):
    from etfuser_hf.data.collators import FaceCollator

    collator = FaceCollator(processor, "label", 7, use_cached_features=False)
    view = collator.view(rafdb_train)
    with caplog.at_level(logging.WARNING):
        batch = collator([view[index] for index in range(3)])
    assert len(batch["labels"]) == 2 and batch["pixel_values"].shape == (2, 3, 32, 32)
    assert [line for line in caplog.messages if image_key_path(rafdb_train, 1) in line]
    with pytest.raises(ValueError, match="no image of this batch of 1 could be decoded"):
        collator([view[1]])
