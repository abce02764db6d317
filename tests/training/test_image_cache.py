"""The decoded-image cache: the same `pixel_values` from the decoded column as from the images, decoded once per
content, and left out wherever the processor would have to convert an image."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from etfuser_hf import ETFuserImageProcessor
from etfuser_hf.data.collators import FaceCollator, pixel_values
from etfuser_hf.data.image_cache import PIXEL_COLUMN, cache_decoded_images, rgb_array
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.training.comparison.protocol import ProtocolContext
from etfuser_hf.training.comparison.tasks import FaceTask


@pytest.fixture(scope="module")
def splits():
    faces = make_synthetic_faces(10, image_size=32, seed=5)
    return datasets.DatasetDict({"train": faces.select(range(6)), "validation": faces.select(range(6, 10))})


@pytest.fixture
def processor():
    return ETFuserImageProcessor(size={"height": 32, "width": 32})


def test_decoded_column_gives_the_images_batches(splits, processor, tmp_path):
    cached = cache_decoded_images(splits, processor, tmp_path)
    for name, split in cached.items():
        assert split.features[PIXEL_COLUMN] == datasets.Value("binary")
        assert split.column_names == [*splits[name].column_names, PIXEL_COLUMN]
    from_images = FaceCollator(processor, "expression", 7, use_cached_features=False)
    from_pixels = FaceCollator(processor, "expression", 7, image_column=PIXEL_COLUMN, use_cached_features=False)
    view = from_pixels.view(cached["train"])
    assert set(view.column_names) == {PIXEL_COLUMN, "expression"}
    rows = [view[index] for index in range(6)]
    assert all(isinstance(row[PIXEL_COLUMN], bytes) and len(row[PIXEL_COLUMN]) == 32 * 32 * 3 for row in rows)
    expected = from_images([splits["train"][index] for index in range(6)])
    batch = from_pixels(rows)
    torch.testing.assert_close(batch["pixel_values"], expected["pixel_values"], rtol=0, atol=0)
    torch.testing.assert_close(batch["pixel_values"], processor(list(splits["train"]["image"]), return_tensors="pt")[
        "pixel_values"], rtol=0, atol=0)
    torch.testing.assert_close(batch["labels"], expected["labels"])


def test_images_are_decoded_once_per_content(splits, processor, tmp_path):
    first = cache_decoded_images(splits, processor, tmp_path)
    files = sorted(path.name for path in tmp_path.glob("decoded-images-*.arrow"))
    assert len(files) == 2  # one per split
    again = cache_decoded_images(splits, processor, tmp_path)
    assert sorted(path.name for path in tmp_path.glob("decoded-images-*.arrow")) == files
    assert list(again["train"][PIXEL_COLUMN]) == list(first["train"][PIXEL_COLUMN])
    recached = cache_decoded_images(first, processor, tmp_path)  # a stale column is replaced, not doubled
    assert recached["train"].column_names.count(PIXEL_COLUMN) == 1
    other = datasets.DatasetDict({"train": make_synthetic_faces(6, image_size=32, seed=6)})
    cache_decoded_images(other, processor, tmp_path)
    assert len(list(tmp_path.glob("decoded-images-*.arrow"))) == 3  # other pixels, another file


def test_splits_the_processor_must_convert_are_left_as_they_are(splits, processor, tmp_path):
    resized = ETFuserImageProcessor(size={"height": 24, "width": 24})
    assert cache_decoded_images(splits, resized, tmp_path)["train"].column_names == splits["train"].column_names
    normalising = ETFuserImageProcessor(size={"height": 32, "width": 32}, do_normalize=True)
    assert PIXEL_COLUMN not in cache_decoded_images(splits, normalising, tmp_path)["validation"].column_names
    # one grey image in one split: no split is cached, so every run reads its pixels the same way
    grey = splits["validation"].cast_column("image", datasets.Image(mode="L"))
    mixed = cache_decoded_images({"train": splits["train"], "validation": grey}, processor, tmp_path)
    assert all(PIXEL_COLUMN not in split.column_names for split in mixed.values())
    assert not list(tmp_path.glob("decoded-images-*.arrow"))


def test_rgb_array_takes_only_what_needs_no_conversion(splits):
    image = splits["train"][0]["image"]
    np.testing.assert_array_equal(rgb_array(image, 32, 32), np.asarray(image))
    assert rgb_array(image, 32, 16) is None and rgb_array(image.convert("L"), 32, 32) is None
    array = np.asarray(image)
    assert rgb_array(array, 32, 32) is array
    assert rgb_array(array.astype(np.float32), 32, 32) is None and rgb_array(array[:, :, :1], 32, 32) is None
    np.testing.assert_array_equal(rgb_array(array.tobytes(), 32, 32), array)
    assert rgb_array(array.tobytes()[:-1], 32, 32) is None


def test_pixels_ending_in_zero_bytes_keep_their_length(processor, tmp_path):
    # datasets' numpy format would hand a binary value back as np.bytes_, which drops trailing zero bytes
    black_corner = np.full((32, 32, 3), 200, np.uint8)
    black_corner[-1, -1] = 0
    data = datasets.Dataset.from_dict({"image": [Image.fromarray(black_corner)] * 4, "expression": [0, 1, 2, 3]},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "expression": datasets.Value("int64")}))
    cached = cache_decoded_images({"train": data}, processor, tmp_path)["train"]
    collator = FaceCollator(processor, "expression", 7, image_column=PIXEL_COLUMN, use_cached_features=False)
    batch = collator(collator.view(cached).__getitems__([0, 1, 2, 3]))
    torch.testing.assert_close(batch["pixel_values"][0], torch.from_numpy(black_corner).permute(2, 0, 1) / 255.0)


def test_pixel_values_of_arrays_match_the_processor(splits, processor):
    images = list(splits["train"]["image"])[:3]
    arrays = [np.asarray(image) for image in images]
    torch.testing.assert_close(pixel_values(arrays, processor), processor(images, return_tensors="pt")["pixel_values"],
                               rtol=0, atol=0)


def test_protocol_runs_read_the_decoded_column_where_there_is_one(splits, processor, tmp_path):
    class Model:
        class config:
            backbone = "canonical"

            class fusion_properties:
                runs_priors = True

    task = FaceTask("expression", "expression", "single_label_classification", "expression", 1e-3)

    def context(data):
        return ProtocolContext(data, {}, processor, 32, tmp_path, {}, label_names={"expression": list("abcdefg")})

    assert context(splits).collator(task, Model).image_column == "image"
    cached = cache_decoded_images(splits, processor, tmp_path)
    assert context(cached).collator(task, Model).image_column == PIXEL_COLUMN
