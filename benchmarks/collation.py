"""Collating cached grid-token features, measured: the time `FaceCollator` takes to turn 32 rows of the prior-feature
cache into a batch, with the features stored as fixed-shape `Array2D` columns (how `data.feature_cache` writes them)
against the nested float lists it wrote before, in one run on the same SYNTHETIC faces and the same rows.

    python benchmarks/collation.py [--num-images 128] [--batch-size 32] [--repeats 5]

Why it matters (issue 34, item 6): with the priors read as grid tokens (the main job's spatial rows, `NATIVE_GRIDS`:
78 tokens per face), collation was the largest part of what an ET-Fuser step costs beyond the canonical model's
(21 -> 45 ms of CPU per step for age group, 22 -> 49 for expression, branch readonly's step split). On the shared
machine (load ~5, 1 thread, 128 faces): nested lists 46.8 ms, Array2D 28.3 ms per batch of 32 (1.65x), most of it
`datasets`' own formatting of extension arrays (deserialised per row and column). Since the Array2D columns are served
from the cache's memory by index (`data.feature_rows.CachedFeatureRows`, what `FaceCollator.view` returns), the same
run gives (load ~3): nested lists 16.6 ms, Array2D 1.1 ms (15.7x).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import datasets
import numpy as np
import torch

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.data.collators import FaceCollator
from etfuser_hf.data.feature_cache import PRIOR_COLUMN_PREFIX, PriorFeatureCache, feature_view
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.training.comparison.recipe import prior_entries
from etfuser_hf.training.comparison.tasks import NATIVE_GRIDS


def batch_time(collator: FaceCollator, dataset: datasets.Dataset, batch_size: int, repeats: int) -> float:
    """Best mean seconds per batch over `repeats` rounds of 4 random batches, fetched as the DataLoader fetches them."""
    narrowed, rng, best = collator.view(dataset), np.random.default_rng(0), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            collator(narrowed.__getitems__([int(i) for i in rng.permutation(len(dataset))[:batch_size]]))
        best = min(best, (time.perf_counter() - start) / 4)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the main job's training workers
    dirs = ensure_face_priors(names=list(NATIVE_GRIDS))
    reader = ETFuserForImageClassification.from_priors_pretrained(
        priors=prior_entries(dirs, list(dirs), NATIVE_GRIDS), backbone=None, fusion_mode="priors_only", num_labels=2,
        image_size=112, hidden_size=32, num_attention_heads=4)
    processor = ETFuserImageProcessor(size={"height": 112, "width": 112})
    view = feature_view(NATIVE_GRIDS)
    with tempfile.TemporaryDirectory() as folder:
        cached = PriorFeatureCache(reader, processor, folder, view=view, geometry_column="landmarks")(
            make_synthetic_faces(args.num_images, 112, seed=1))
        columns = [column for column in cached.column_names if column.startswith(PRIOR_COLUMN_PREFIX)]
        nested = datasets.Sequence(datasets.Sequence(datasets.Value("float32")))
        as_lists = cached.cast(datasets.Features({**cached.features, **{column: nested for column in columns}}))
        collator = FaceCollator(processor, "expression", 7, feature_view=view, include_pixel_values=False)
        before = batch_time(collator, as_lists, args.batch_size, args.repeats)
        after = batch_time(collator, cached, args.batch_size, args.repeats)
    tokens = sum(cached.features[column].shape[0] for column in columns)
    print(f"collating {args.batch_size} rows of {tokens} cached grid tokens (SYNTHETIC faces): nested lists "
          f"{before * 1e3:.1f} ms, Array2D {after * 1e3:.1f} ms, ratio {before / after:.2f}x")


if __name__ == "__main__":
    main()
