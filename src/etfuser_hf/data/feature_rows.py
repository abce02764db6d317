"""Cached prior features served to a training loop from their Arrow memory: a batch's rows take their features as
numpy views by index, instead of through `datasets`' formatting of `Array2D` columns (deserialised per row and column:
about 9 ms of a 32-face batch on one core, whatever the tokens' size, against 0.6 ms for the rest of the row; 5-9 % of
an ET-Fuser training step, the larger part of what its step cost beyond the canonical model's, issue 34 item 6).

The columns stay the dataset's: the arrays are its table's own buffers (memory-mapped where the cache file is), so
nothing is copied, and every training run of a process shares them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch


FIXED_SHAPE_FEATURES = (datasets.Array2D, datasets.Array3D)


def leaf_values(values: pa.Array) -> pa.Array:
    """The numbers of a (nested) list or fixed-shape array column's Arrow array, row after row, flat: an extension
    array (`Array2D`) is read through its storage, every list level flattened (respecting slices' offsets)."""
    values = values.storage if isinstance(values, pa.ExtensionArray) else values
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or pa.types.is_fixed_size_list(
            values.type):
        values = values.flatten()
    return values


class ColumnArrays:
    """One fixed-shape (`Array2D`/`Array3D`) column of a dataset as numpy, row `i` the dataset's row `i` (through its
    indices mapping, after `select`/`shuffle`): `rows(indices)` -> (len(indices), *shape) float32 (a copy of those
    rows only)."""

    def __init__(self, dataset: datasets.Dataset, column: str):
        feature = dataset.features[column]
        if not isinstance(feature, FIXED_SHAPE_FEATURES):
            raise ValueError(f"{column}: expected a fixed-shape Array2D/Array3D column (how data.feature_cache "
                             f"stores features), got {feature!r}.")
        self.source = dataset.select_columns([column])  # what a DataLoader worker started by spawn rebuilds from
        self._read(column, tuple(feature.shape))

    def _read(self, column: str, shape: tuple[int, ...]) -> None:
        dataset = self.source
        self.column, self.shape, chunks = column, shape, dataset.data.column(column).chunks
        self.chunks = [self._chunk_array(chunk) for chunk in chunks]
        self.starts = np.cumsum([0] + [len(chunk) for chunk in chunks])
        # `datasets` keeps a select/shuffle as a mapping onto the table's rows (its private `_indices`, stable since
        # datasets 1.x); resolving it here keeps the buffers shared instead of writing a reordered copy
        indices = getattr(dataset, "_indices", None)
        self.mapping = None if indices is None else indices.column(0).to_numpy().astype(np.int64)

    def __getstate__(self) -> dict[str, Any]:
        # the arrays are views of the cache file's memory: a pickled copy would carry all of them; the dataset
        # pickles as its file's path
        return {"source": self.source, "column": self.column, "shape": self.shape}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.source = state["source"]
        self._read(state["column"], state["shape"])

    def _chunk_array(self, chunk: pa.Array) -> np.ndarray:
        values = leaf_values(chunk)
        if values.null_count:
            raise ValueError(f"a feature column holds missing values ({values.null_count}); rebuild its cache.")
        return values.to_numpy(zero_copy_only=False).reshape(len(chunk), *self.shape)

    def __len__(self) -> int:
        return int(self.starts[-1]) if self.mapping is None else len(self.mapping)

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        table_rows = np.asarray(indices, np.int64)
        if self.mapping is not None:
            table_rows = self.mapping[table_rows]
        if len(self.chunks) == 1:
            return self.chunks[0][table_rows].astype(np.float32, copy=False)
        chunk_of = np.searchsorted(self.starts, table_rows, side="right") - 1
        return np.stack([self.chunks[chunk][row - self.starts[chunk]] for chunk, row in zip(chunk_of, table_rows)]
                        ).astype(np.float32, copy=False)


class CachedFeatureRows(torch.utils.data.Dataset):
    """`dataset`'s rows for a DataLoader, its `feature_columns` served by `ColumnArrays` and every other column as
    `dataset` formats it: row `i` is `dataset[i]` with each feature column a (*shape) float32 array."""

    def __init__(self, dataset: datasets.Dataset, feature_columns: Sequence[str]):
        self.features = {column: ColumnArrays(dataset, column) for column in feature_columns}
        self.others = dataset.remove_columns(list(feature_columns)) if feature_columns else dataset
        self.column_names = list(dataset.column_names)

    def __len__(self) -> int:
        return len(self.others)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        rows = self.others.__getitems__(list(indices))
        for column, arrays in self.features.items():
            for row, values in zip(rows, arrays.rows(indices)):
                row[column] = values
        return rows

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([int(index)])[0]


__all__ = ["FIXED_SHAPE_FEATURES", "CachedFeatureRows", "ColumnArrays", "leaf_values"]
