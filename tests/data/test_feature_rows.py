"""Cached features served from the cache's memory: the same rows and values `datasets` formats, through any
select/shuffle and across chunks, without copying the column."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from etfuser_hf.data.feature_rows import CachedFeatureRows, ColumnArrays

FEATURES = datasets.Features({"prior__a": datasets.Array2D((3, 4), "float32"), "label": datasets.Value("int64")})


def _dataset(first: int, count: int) -> datasets.Dataset:
    values = [np.arange(12, dtype=np.float32).reshape(3, 4) + 100 * index for index in range(first, first + count)]
    return datasets.Dataset.from_dict({"prior__a": values, "label": list(range(first, first + count))},
                                      features=FEATURES)


@pytest.mark.parametrize("reorder", ["none", "select", "shuffle", "two chunks"])
def test_feature_rows_equal_what_datasets_formats_through_any_reordering(reorder):
    dataset = _dataset(0, 10)
    if reorder == "select":
        dataset = dataset.select([7, 2, 9, 2])
    elif reorder == "shuffle":
        dataset = dataset.shuffle(seed=3)
    elif reorder == "two chunks":
        dataset = datasets.concatenate_datasets([_dataset(0, 4), _dataset(4, 6)]).select([5, 0, 9, 3])
    indices = [3, 0, 1, len(dataset) - 1]
    expected = dataset.with_format("numpy")
    rows = CachedFeatureRows(dataset, ["prior__a"])
    assert len(rows) == len(dataset) and rows.column_names == ["prior__a", "label"]
    for row, index in zip(rows.__getitems__(indices), indices):
        np.testing.assert_array_equal(row["prior__a"], expected[index]["prior__a"])
        assert row["label"] == dataset[index]["label"] and row["prior__a"].dtype == np.float32
    np.testing.assert_array_equal(rows[2]["prior__a"], expected[2]["prior__a"])


def test_feature_rows_read_the_columns_buffers_without_copying_them(tmp_path):
    _dataset(0, 6).save_to_disk(tmp_path / "cache")
    dataset = datasets.load_from_disk(tmp_path / "cache")  # memory-mapped, as the feature cache's files are
    column = ColumnArrays(dataset, "prior__a")
    (chunk,) = column.chunks
    assert not chunk.flags.owndata and chunk.shape == (6, 3, 4)  # a view of Arrow's buffer
    np.testing.assert_array_equal(column.rows([4, 1])[:, 0, 0], [400.0, 100.0])


def test_feature_rows_refuse_a_column_without_a_fixed_shape_by_name():
    nested = datasets.Dataset.from_dict({"prior__b": [[[1.0, 2.0]], [[3.0]]]})
    with pytest.raises(ValueError, match="prior__b: expected a fixed-shape Array2D/Array3D column"):
        ColumnArrays(nested, "prior__b")


def test_feature_rows_pickle_as_their_cache_file_not_their_arrays(tmp_path):
    import pickle

    _dataset(0, 200).save_to_disk(tmp_path / "cache")
    dataset = datasets.load_from_disk(tmp_path / "cache").shuffle(seed=1)
    rows = CachedFeatureRows(dataset, ["prior__a"])
    payload = pickle.dumps(rows)  # what a DataLoader worker started by spawn receives
    assert len(payload) < 200 * 12 * 4  # less than the column's own bytes: the file's path, not a copy
    again = pickle.loads(payload)
    np.testing.assert_array_equal(again[5]["prior__a"], rows[5]["prior__a"])
