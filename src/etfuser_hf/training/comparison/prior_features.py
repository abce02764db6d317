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
from ...data.feature_cache import PRIOR_COLUMN_PREFIX, feature_view
from ...data.pipeline import FacePipeline, face_policy
from ...data.synthetic_faces import make_synthetic_faces
from ...models.image_processing_etfuser import ETFuserImageProcessor
from ...models.modeling_etfuser import ETFuserForImageClassification
from ...priors.convert_face_priors import ensure_face_priors
from ...priors.fetch import default_cache_dir
from .recipe import DEFAULT_RECIPE, prior_entries
from .tasks import DEFAULT_PRIORS


def prior_readers(prior_dirs: Mapping[str, Any], image_size: int,
                  prior_features: Sequence[Mapping[str, Any]] = ()) -> dict[str, ETFuserForImageClassification]:
    """View name -> a priors-only model over every prior of `prior_dirs` read that way: the recipe's way ("", first),
    then each of `prior_features` (`recipe.build_task_model(prior_feature=...)`; all tasks share the columns, each
    model reads its own view)."""
    views = {feature_view(prior_feature): prior_feature for prior_feature in [None, *prior_features]}
    return {view: ETFuserForImageClassification.from_priors_pretrained(
                priors=prior_entries(prior_dirs, list(prior_dirs), prior_feature), backbone=None,
                fusion_mode="priors_only", num_labels=2, image_size=image_size,
                **{key: DEFAULT_RECIPE[key] for key in ("hidden_size", "num_attention_heads")})
            for view, prior_feature in views.items()}


def cache_prior_features(splits: datasets.DatasetDict, prior_dirs: dict, processor: ETFuserImageProcessor,
                         cache_dir: Path, image_size: int,
                         prior_features: Sequence[Mapping[str, Any]] = (),
                         geometry_column: str | None = None
                         ) -> tuple[datasets.DatasetDict, dict[str, list[str]]]:
    """The data wing's prior-features stage (`data.pipeline.FacePipeline.prior_features`) with the readers of the
    recipe's view and each of `prior_features`, each prior on its own crop of the face where `geometry_column` holds
    the faces' landmarks. Returns the splits less their undecodable images, and those per split ("path: reason")."""
    pipeline = FacePipeline(processor, cache_dir, geometry_column=geometry_column)
    splits = pipeline.prior_features(splits, prior_readers(prior_dirs, image_size, prior_features))
    return splits, pipeline.undecodable


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
        pipeline, splits = FacePipeline(processor, cache_dir), {"synthetic": make_synthetic_faces(args.num_images,
                                                                                                  args.image_size)}
    else:  # each network on its crop of the faces found as training finds them (the layout's face policy)
        data = load_face_dataset(args.dataset)
        pipeline = FacePipeline(processor, cache_dir, face_policy=face_policy(source_report(data)))
        splits = dict(data) if hasattr(data, "keys") else {"data": data}
    cached = pipeline.prior_features(pipeline.faces(splits), prior_readers(prior_dirs, args.image_size))
    for name, split in cached.items():
        columns = [column for column in split.column_names if column.startswith(PRIOR_COLUMN_PREFIX)]
        print(f"{name}: {len(split)} images, columns {columns}")
    print(f"{time.perf_counter() - start:.1f} s -> {cache_dir / 'features'}")
