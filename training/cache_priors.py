"""Precompute the frozen priors' features once: `python training/cache_priors.py [--dataset PATH] [--num-images N]`.

Writes Arrow files `prior-features-<key>.arrow` under `<cache>/features`, keyed by the images' content hashes and
the priors' fingerprints (weights + input contract); `training/train.py` then reads them instead of running the
priors (a changed prior or preprocessing gets a new key, so a stale cache is never read).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from etfuser_hf import ETFuserImageProcessor
from etfuser_hf.data.face_datasets import load_face_dataset
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.fetch import default_cache_dir
from etfuser_hf.training.feature_cache import PriorFeatureCache
from etfuser_hf.training.recipe import DEFAULT_PRIORS, build_etfuser_from_face_priors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="a local dataset layout (default: the synthetic faces)")
    parser.add_argument("--num-images", type=int, default=3200, help="synthetic images (default: 3200)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--priors", nargs="+", default=list(DEFAULT_PRIORS), choices=list(DEFAULT_PRIORS))
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    cache_dir = args.cache_dir or default_cache_dir()
    prior_dirs = ensure_face_priors(cache_dir, args.priors)
    model = build_etfuser_from_face_priors({name: prior_dirs[name] for name in args.priors}, ["_"] * 2, args.image_size)
    processor = ETFuserImageProcessor(size={"height": args.image_size, "width": args.image_size})
    cache = PriorFeatureCache(model, processor, cache_dir / "features")
    if args.dataset is None:
        splits = {"synthetic": make_synthetic_faces(args.num_images, args.image_size)}
    else:
        data = load_face_dataset(args.dataset)
        splits = dict(data) if hasattr(data, "keys") else {"data": data}
    for name, split in splits.items():
        start = time.perf_counter()
        cached = cache(split)
        print(f"{name}: {len(cached)} images, columns {[c for c in cached.column_names if c.startswith('prior__')]}, "
              f"{time.perf_counter() - start:.1f} s -> {cache.cache_dir}")


if __name__ == "__main__":
    main()
