"""Prior-feature cache: frozen priors run once per image; their features are stored as Arrow columns keyed by the
images' keys (`data.image_keys`: path, size and mtime, or the encoded bytes' hash; no image decoded), the faces'
landmarks where they place each prior's crop, and the priors' fingerprint (weights + input contract). Arrow files
`prior-features-<key>.arrow` under `<cache>/features`, read instead of running the priors (a changed prior or
preprocessing gets a new key, so a stale cache is never read); the main job fills them for its splits
(`training.comparison.prior_features`).

Column `prior__<name>` holds the recipe's way of reading prior `name` (`recipe.PRIOR_FEATURES`); another way (a row's
`prior_feature`, e.g. grid tokens) is a column of its own, `prior__<name>@<view>` (`feature_view`). The ways differ
only in which of a network's outputs become tokens, so one run of the networks fills every view's columns
(`PriorFeatureCache(..., more_views=)`): a cold main job runs its priors once per image, not once per view.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch

from ..models.encoders import select_feature_tokens
from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..models.modeling_etfuser import ETFuserPreTrainedModel
from ..priors.crop_plan import CropPlan
from .alignment import ALIGNMENT_COLUMN, aligned_columns
from .face_crops import aligned_inputs, face_crops
from .feature_rows import leaf_values
from .image_decoding import BadImage, decode_encoded
from .image_keys import image_keys

PRIOR_COLUMN_PREFIX = "prior__"
# In the key: a cache written in another storage, or by another way of cutting the crops the features come from, is
# never read. Bump it with any change to either that the priors' fingerprints do not see (a sampler's arithmetic): the
# card's numbers of 2026-12-06 moved within seed noise when caches written by earlier crop code were recomputed.
# v3: each crop with its original pipeline's bars and padding (windows); v4: dlib's chips resampled as dlib does (its
# image pyramid where the chip shrinks the photo by more than 2x, `encoders.dlib_pyramid_crops`), not a box filter
FEATURE_STORAGE = "Array2D float32, crops v4"
DECODE_ERROR_COLUMN = "decode_error"  # per row of a cache file: "" or why its image could not be decoded
logger = logging.getLogger(__name__)
VIEW_SEPARATOR = "@"  # never part of a prior name (a Python identifier)
# The fields of a prior's `EncoderSpec` that only choose which of its outputs become tokens: views that differ in no
# other field run the same network on the same input.
TOKEN_SELECTION_FIELDS = ("feature", "num_tokens", "grid_size", "feature_dim")


def feature_view(prior_feature: Mapping[str, Any] | None) -> str:
    """The cache's name of a way of reading the priors (`recipe.build_task_model(prior_feature=...)`): "" for the
    recipe's own, else e.g. "feature=grid,grid_size=2"."""
    if not prior_feature:
        return ""
    return json.dumps(prior_feature, sort_keys=True, separators=(",", "=")).translate(str.maketrans("", "", '{}" '))


def feature_column(name: str, view: str = "") -> str:
    """The cache column of prior `name` read as `view` (`feature_view`)."""
    return PRIOR_COLUMN_PREFIX + name + (VIEW_SEPARATOR + view if view else "")


def prior_fingerprint(model: ETFuserPreTrainedModel, name: str) -> str:
    """Changes whenever the prior's weights, its config or its input contract (size, mean/std, ...) change."""
    base = model.base_model
    digest = hashlib.sha256(json.dumps(model.config.priors[name].to_dict(), sort_keys=True, default=str).encode())
    for key, tensor in sorted(base.priors[name].state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_same_networks(model: ETFuserPreTrainedModel, other: ETFuserPreTrainedModel, view: str) -> None:
    """Raises unless `other` (the reader of `view`) has `model`'s priors with the same weights and input contract,
    differing at most in the tokens each selects (`TOKEN_SELECTION_FIELDS`): what lets one run serve both."""
    if list(other.config.priors) != list(model.config.priors):
        raise ValueError(f"more_views[{view!r}]: expected the priors {list(model.config.priors)}, got "
                         f"{list(other.config.priors)}.")
    for name in model.config.priors:
        ours, theirs = (
            {key: value for key, value in spec.to_dict().items() if key not in TOKEN_SELECTION_FIELDS}
            for spec in (model.config.priors[name], other.config.priors[name]))
        ours_state, their_state = model.base_model.priors[name].state_dict(), other.base_model.priors[name].state_dict()
        same_weights = ours_state.keys() == their_state.keys() and all(
            torch.equal(ours_state[key], their_state[key]) for key in ours_state)
        if ours != theirs or not same_weights:
            raise ValueError(f"more_views[{view!r}]: prior {name!r} is another network or reads another input than "
                             f"the cache's model; only the tokens it selects ({', '.join(TOKEN_SELECTION_FIELDS)}) may "
                             f"differ.")


def flat_values(dataset: datasets.Dataset, column: str) -> np.ndarray:
    """Every number of a (nested) list or scalar `column`, row after row, as one flat float32 array, read through
    Arrow: the bytes `np.asarray(list(dataset[column]), np.float32)` gives, without building 20,000 nested Python lists
    (the bulk of a warm start's time at AffectNet scale)."""
    values = dataset.with_format("arrow")[:][column]
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return np.asarray(leaf_values(values).to_numpy(zero_copy_only=False), np.float32)


class PriorFeatureCache:
    """Computes `model.etfuser.extract_prior_features` once per image and stores it as Arrow columns
    `prior__<name>[@view]` in `cache_dir`, under a file name made of the images' content hashes, the priors'
    fingerprints and the view: a changed prior or preprocessing gets a new file, an unchanged one is read back instead
    of recomputed. A file holds its feature columns only (not the images), so each view costs only its own size."""

    def __init__(self, model: ETFuserPreTrainedModel, processor: ETFuserImageProcessor, cache_dir: str | os.PathLike,
                 batch_size: int = 64, view: str = "", geometry_column: str | None = None,
                 more_views: Mapping[str, ETFuserPreTrainedModel] | None = None):
        """`model`'s priors fill the columns of `view`; each of `more_views` (view -> a reader of the same priors that
        selects other tokens, `check_same_networks`) fills its own columns from the same run."""
        self.model, self.processor, self.batch_size, self.view = model, processor, batch_size, view
        self.more_views = dict(more_views or {})
        if view in self.more_views:
            raise ValueError(f"more_views: view {view!r} is the cache's own view; give each view once.")
        for other_view, reader in self.more_views.items():
            check_same_networks(model, reader, other_view)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.fingerprints = {name: prior_fingerprint(model, name) for name in model.config.priors}
        self.view_fingerprints = {other_view: {name: prior_fingerprint(reader, name) for name in reader.config.priors}
                                  for other_view, reader in self.more_views.items()}
        # each prior reads its own crop of the face, placed by the rows' landmarks (`collators.face_crops`), or of an
        # aligned dataset's canonical crop, placed by its alignment (`face_crops.aligned_inputs`), as analyze feeds it
        self.geometry_column = geometry_column
        self.crop_plan = CropPlan.for_model(model) if geometry_column is not None else None
        self.aligned = geometry_column == ALIGNMENT_COLUMN

    def geometry_columns(self, dataset: datasets.Dataset) -> list[str]:
        """The columns that place the priors' crops: an aligned split's (`alignment.aligned_columns`: with its
        augmented views' `VIEW_GEOMETRY_COLUMNS`), else the landmarks column, if any."""
        if self.aligned:
            return aligned_columns(dataset.column_names)
        return [self.geometry_column] if self.geometry_column else []

    def key(self, dataset: datasets.Dataset, image_column: str = "image") -> str:
        digest = hashlib.sha256(json.dumps(self.fingerprints, sort_keys=True).encode())
        digest.update(json.dumps(self.processor.to_dict(), sort_keys=True, default=str).encode())
        digest.update(f"feature columns only, view {self.view!r}, {FEATURE_STORAGE}".encode())
        if self.more_views:  # (a cache of one view keeps the key it always had)
            digest.update(json.dumps(self.view_fingerprints, sort_keys=True).encode())
        for key in image_keys(dataset, image_column):
            digest.update(key.encode())
        if self.crop_plan is not None:
            digest.update(json.dumps(self.crop_plan.geometries, sort_keys=True, default=str).encode())
            for column in self.geometry_columns(dataset):  # (the synthetic faces' one column: the key they always had)
                digest.update(flat_values(dataset, column).tobytes())
        return digest.hexdigest()[:24]

    def __call__(self, dataset: datasets.Dataset, image_column: str = "image") -> datasets.Dataset:
        """Returns `dataset` with one `feature_column(name, view)` column per prior and view ((tokens, feature_dim)
        float32 per row), less the rows whose image cannot be decoded: each is logged with its reason, once, and listed in
        `undecodable` as (path or row, reason); the cache remembers them, so a warm start finds them without decoding."""
        if len(dataset) == 0:
            raise ValueError("dataset is empty: nothing to cache.")
        cache_file = self.cache_dir / f"prior-features-{self.key(dataset, image_column)}.arrow"
        geometry = self.geometry_columns(dataset)

        def extract(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            images, errors = [], []
            for index, encoded in zip(indices, batch[image_column]):
                try:
                    images.append(decode_encoded(encoded))
                    errors.append("")
                except BadImage as error:
                    errors.append(f"{encoded.get('path') or f'row {index}'}: {error}")
            good = [index for index, error in enumerate(errors) if not error]
            size = (self.processor.size["height"], self.processor.size["width"])
            # a batch of undecodable images only still runs the priors, on black, so that every batch writes the
            # same columns and types; those rows are dropped below
            pixel_values, prior_crops = torch.zeros(1, 3, *size), None
            if self.aligned:
                if images:
                    faces = [{column: batch[column][index] for column in geometry} for index in good]
                    pixel_values, prior_crops = aligned_inputs(images, faces, self.crop_plan)
            else:
                if images:
                    pixel_values = self.processor(images, return_tensors="pt")["pixel_values"]
                if self.crop_plan is not None:
                    landmarks = np.asarray(batch[self.geometry_column], np.float64)
                    prior_crops = face_crops(landmarks[good] if good else landmarks[:1], self.crop_plan, size,
                                             pixel_values=pixel_values)
            columns: dict[str, list] = {DECODE_ERROR_COLUMN: errors}
            for column, value in self._view_features(pixel_values, prior_crops).items():
                rows, blank = iter(value.float().numpy()), np.zeros(value.shape[1:], np.float32)
                columns[column] = [blank if error else next(rows) for error in errors]
            return columns

        inputs = [image_column] + (geometry if self.crop_plan is not None else [])
        encoded = dataset.select_columns(inputs).cast_column(image_column, datasets.Image(decode=False))
        features = encoded.map(
            extract, batched=True, batch_size=self.batch_size, with_indices=True, cache_file_name=str(cache_file),
            load_from_cache_file=True, remove_columns=inputs, features=self.column_features,
            desc="prior features (cached)")
        errors = features[DECODE_ERROR_COLUMN]
        self.undecodable = [error for error in errors if error]
        for error in self.undecodable:
            logger.warning("skipped %s", error)
        features = features.remove_columns([DECODE_ERROR_COLUMN])
        stale = [column for column in features.column_names if column in dataset.column_names]
        cached = datasets.concatenate_datasets([dataset.remove_columns(stale), features], axis=1)
        return cached.select([index for index, error in enumerate(errors) if not error]) if self.undecodable \
            else cached

    def _view_features(self, pixel_values: torch.Tensor, prior_crops: Mapping[str, torch.Tensor] | None
                       ) -> dict[str, torch.Tensor]:
        """Column name -> (batch, tokens, feature_dim) of every view, from one run of the priors."""
        with torch.inference_mode():
            features, outputs = self.model.base_model.extract_prior_features(
                pixel_values, prior_crops=prior_crops, return_prior_outputs=True)
            columns = {feature_column(name, self.view): value for name, value in features.items()}
            for view, reader in self.more_views.items():
                for name, spec in reader.config.priors.items():
                    columns[feature_column(name, view)] = select_feature_tokens(outputs[name], spec,
                                                                                f"more_views[{view!r}][{name!r}]")
        return columns

    @functools.cached_property
    def column_features(self) -> datasets.Features:
        """The cache's columns: each prior's (tokens, feature_dim) as a fixed-shape float32 `Array2D`, so that a batch
        of rows reads as numpy arrays without building nested lists (half of a grid-token step's collation), and the
        decode errors. The shapes come from one forward of the priors on a black image, once per cache (not per
        split it is called on)."""
        size = (self.processor.size["height"], self.processor.size["width"])
        probe = self._view_features(torch.zeros(1, 3, *size), None)
        return datasets.Features({DECODE_ERROR_COLUMN: datasets.Value("string"),
                                  **{column: datasets.Array2D(tuple(value.shape[1:]), "float32")
                                     for column, value in probe.items()}})


def pooled_prior_features(dataset: datasets.Dataset, names: Iterable[str]) -> np.ndarray:
    """(N, sum of feature dims): each cached prior's tokens averaged, concatenated in `names` order."""
    columns = [np.asarray(dataset[PRIOR_COLUMN_PREFIX + name], dtype=np.float32).mean(axis=1) for name in names]
    return np.concatenate(columns, axis=1)
