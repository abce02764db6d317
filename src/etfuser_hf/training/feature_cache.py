"""Prior-feature cache: frozen priors run once per image; their features are stored as Arrow columns keyed by the
images' keys (`data.image_keys`: path, size and mtime, or the encoded bytes' hash; no image decoded), the faces'
landmarks where they place each prior's crop, and the priors' fingerprint (weights + input contract). `cache_prior_features` fills it for the
main job's splits; `main` precomputes it ahead of the job:

    python training/cache_priors.py [--dataset PATH] [--num-images N]

writes Arrow files `prior-features-<key>.arrow` under `<cache>/features`, which `training/train.py` then reads
instead of running the priors (a changed prior or preprocessing gets a new key, so a stale cache is never read).

Column `prior__<name>` holds the recipe's way of reading prior `name` (`recipe.PRIOR_FEATURES`); another way (a row's
`prior_feature`, e.g. grid tokens) is a column of its own, `prior__<name>@<view>` (`feature_view`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ..data.alignment import ALIGNMENT_COLUMN, GEOMETRY_COLUMNS
from ..data.face_crops import aligned_inputs, face_crops
from ..data.face_datasets import load_face_dataset, source_report
from ..data.image_decoding import BadImage, decode_encoded
from ..data.image_keys import image_keys
from ..data.synthetic_faces import make_synthetic_faces
from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..models.modeling_etfuser import ETFuserForImageClassification, ETFuserPreTrainedModel
from ..priors.convert_face_priors import ensure_face_priors
from ..priors.crop_plan import CropPlan
from ..priors.fetch import default_cache_dir
from .recipe import DEFAULT_RECIPE, prior_entries
from .tasks import DEFAULT_PRIORS

PRIOR_COLUMN_PREFIX = "prior__"
DECODE_ERROR_COLUMN = "decode_error"  # per row of a cache file: "" or why its image could not be decoded
logger = logging.getLogger(__name__)
VIEW_SEPARATOR = "@"  # never part of a prior name (a Python identifier)


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


class PriorFeatureCache:
    """Computes `model.etfuser.extract_prior_features` once per image and stores it as Arrow columns
    `prior__<name>[@view]` in `cache_dir`, under a file name made of the images' content hashes, the priors'
    fingerprints and the view: a changed prior or preprocessing gets a new file, an unchanged one is read back instead
    of recomputed. A file holds its feature columns only (not the images), so each view costs only its own size."""

    def __init__(self, model: ETFuserPreTrainedModel, processor: ETFuserImageProcessor, cache_dir: str | os.PathLike,
                 batch_size: int = 64, view: str = "", geometry_column: str | None = None):
        self.model, self.processor, self.batch_size, self.view = model, processor, batch_size, view
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.fingerprints = {name: prior_fingerprint(model, name) for name in model.config.priors}
        # each prior reads its own crop of the face, placed by the rows' landmarks (`collators.face_crops`), or of an
        # aligned dataset's canonical crop, placed by its alignment (`face_crops.aligned_inputs`), as analyze feeds it
        self.geometry_column = geometry_column
        self.crop_plan = CropPlan.for_model(model) if geometry_column is not None else None
        aligned = geometry_column == ALIGNMENT_COLUMN
        self.geometry_columns = list(GEOMETRY_COLUMNS) if aligned else [geometry_column] if geometry_column else []

    def key(self, dataset: datasets.Dataset, image_column: str = "image") -> str:
        digest = hashlib.sha256(json.dumps(self.fingerprints, sort_keys=True).encode())
        digest.update(json.dumps(self.processor.to_dict(), sort_keys=True, default=str).encode())
        digest.update(f"feature columns only, view {self.view!r}".encode())
        for key in image_keys(dataset, image_column):
            digest.update(key.encode())
        if self.crop_plan is not None:
            digest.update(json.dumps(self.crop_plan.geometries, sort_keys=True, default=str).encode())
            for column in self.geometry_columns:  # (one column for the synthetic faces: the key they always had)
                digest.update(np.asarray(list(dataset[column]), np.float32).tobytes())
        return digest.hexdigest()[:24]

    def __call__(self, dataset: datasets.Dataset, image_column: str = "image") -> datasets.Dataset:
        """Returns `dataset` with one `feature_column(name, view)` column per prior ((tokens, feature_dim) float32 per
        row), less the rows whose image cannot be decoded: each is logged with its reason, once, and listed in
        `undecodable` as (path or row, reason); the cache remembers them, so a warm start finds them without decoding."""
        if len(dataset) == 0:
            raise ValueError("dataset is empty: nothing to cache.")
        base = self.model.base_model
        cache_file = self.cache_dir / f"prior-features-{self.key(dataset, image_column)}.arrow"

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
            if self.geometry_column == ALIGNMENT_COLUMN:
                if images:
                    faces = [{column: batch[column][index] for column in self.geometry_columns} for index in good]
                    pixel_values, prior_crops = aligned_inputs(images, faces, self.crop_plan)
            else:
                if images:
                    pixel_values = self.processor(images, return_tensors="pt")["pixel_values"]
                if self.crop_plan is not None:
                    landmarks = np.asarray(batch[self.geometry_column], np.float64)
                    prior_crops = face_crops(landmarks[good] if good else landmarks[:1], self.crop_plan, size)
            with torch.inference_mode():
                features = base.extract_prior_features(pixel_values, prior_crops=prior_crops)
            columns: dict[str, list] = {DECODE_ERROR_COLUMN: errors}
            for name, value in features.items():
                rows, blank = iter(value.float().numpy()), np.zeros(value.shape[1:], np.float32)
                columns[feature_column(name, self.view)] = [blank if error else next(rows) for error in errors]
            return columns

        inputs = [image_column] + (self.geometry_columns if self.crop_plan is not None else [])
        encoded = dataset.select_columns(inputs).cast_column(image_column, datasets.Image(decode=False))
        features = encoded.map(
            extract, batched=True, batch_size=self.batch_size, with_indices=True, cache_file_name=str(cache_file),
            load_from_cache_file=True, remove_columns=inputs, desc="prior features (cached)")
        errors = features[DECODE_ERROR_COLUMN]
        self.undecodable = [error for error in errors if error]
        for error in self.undecodable:
            logger.warning("skipped %s", error)
        features = features.remove_columns([DECODE_ERROR_COLUMN])
        stale = [column for column in features.column_names if column in dataset.column_names]
        cached = datasets.concatenate_datasets([dataset.remove_columns(stale), features], axis=1)
        return cached.select([index for index, error in enumerate(errors) if not error]) if self.undecodable \
            else cached


def pooled_prior_features(dataset: datasets.Dataset, names: Iterable[str]) -> np.ndarray:
    """(N, sum of feature dims): each cached prior's tokens averaged, concatenated in `names` order."""
    columns = [np.asarray(dataset[PRIOR_COLUMN_PREFIX + name], dtype=np.float32).mean(axis=1) for name in names]
    return np.concatenate(columns, axis=1)


def cache_prior_features(splits: datasets.DatasetDict, prior_dirs: dict, processor: ETFuserImageProcessor,
                         cache_dir: Path, image_size: int,
                         prior_features: Sequence[Mapping[str, Any]] = (),
                         geometry_column: str | None = None
                         ) -> tuple[datasets.DatasetDict, dict[str, list[str]]]:
    """Every selected prior runs once per image and way of reading it: the recipe's, then each of `prior_features`
    (all tasks share the columns; each model reads its own priors, in its own view), each on its own crop of the face
    where `geometry_column` holds the faces' landmarks (`PriorFeatureCache`). Returns the splits less their
    undecodable images, and those per split ("path: reason")."""
    splits = datasets.DatasetDict(splits)
    undecodable: dict[str, list[str]] = {}
    views = {feature_view(prior_feature): prior_feature for prior_feature in [None, *prior_features]}
    for view, prior_feature in views.items():
        reader = ETFuserForImageClassification.from_priors_pretrained(
            priors=prior_entries(prior_dirs, list(prior_dirs), prior_feature), backbone=None,
            fusion_mode="priors_only", num_labels=2, image_size=image_size,
            **{key: DEFAULT_RECIPE[key] for key in ("hidden_size", "num_attention_heads")})
        cache = PriorFeatureCache(reader, processor, cache_dir / "features", view=view, geometry_column=geometry_column)
        for name, split in splits.items():
            splits[name] = cache(split)
            if cache.undecodable:  # dropped in the first view, so later views never meet them
                undecodable[name] = cache.undecodable
    return splits, undecodable


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Precomputes the selected priors' features of the synthetic default (or `--dataset`) into the cache."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="a local dataset layout (default: the synthetic faces)")
    parser.add_argument("--num-images", type=int, default=3200, help="synthetic images (default: 3200)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--priors", nargs="+", default=list(DEFAULT_PRIORS), choices=list(DEFAULT_PRIORS))
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(None if argv is None else list(argv))
    cache_dir = args.cache_dir or default_cache_dir()
    prior_dirs = ensure_face_priors(cache_dir, args.priors)
    processor = ETFuserImageProcessor(size={"height": args.image_size, "width": args.image_size})
    start = time.perf_counter()
    if args.dataset is None:
        splits, geometry_column = {"synthetic": make_synthetic_faces(args.num_images, args.image_size)}, "landmarks"
    else:  # each network on its crop of the faces found as training finds them (`dataset_source.align_splits`)
        from .dataset_source import align_splits

        data = load_face_dataset(args.dataset)
        splits, geometry_column = align_splits(datasets.DatasetDict(dict(data) if hasattr(data, "keys")
                                                                    else {"data": data}),
                                               source_report(data), cache_dir, {})
    cached, _ = cache_prior_features(datasets.DatasetDict(splits), prior_dirs, processor, cache_dir, args.image_size,
                                     geometry_column=geometry_column)
    for name, split in cached.items():
        columns = [column for column in split.column_names if column.startswith(PRIOR_COLUMN_PREFIX)]
        print(f"{name}: {len(split)} images, columns {columns}")
    print(f"{time.perf_counter() - start:.1f} s -> {cache_dir / 'features'}")
