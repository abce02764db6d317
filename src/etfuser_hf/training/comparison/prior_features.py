"""The priors' features of a job's splits, computed once for every row: the recipe's way of reading the priors and
each row's own (`data.feature_cache.PriorFeatureCache`, one reader model per way). `main` precomputes them ahead of
the job:

    python training/cache_priors.py [--dataset PATH] [--num-images N]

which `training/train.py` then reads instead of running the priors.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from ...data.face_datasets import load_face_dataset, source_report
from ...data.feature_cache import PRIOR_COLUMN_PREFIX, PriorFeatureCache, feature_view
from ...data.synthetic_faces import make_synthetic_faces
from ...models.image_processing_etfuser import ETFuserImageProcessor
from ...models.modeling_etfuser import ETFuserForImageClassification
from ...priors.convert_face_priors import ensure_face_priors
from ...priors.fetch import default_cache_dir
from .recipe import DEFAULT_RECIPE, prior_entries
from .tasks import DEFAULT_PRIORS


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
