"""Precompute the frozen priors' features once: `python training/cache_priors.py [--dataset PATH] [--num-images N]`.

Writes Arrow files `prior-features-<key>.arrow` under `<cache>/features`, keyed by the images' content hashes and
the priors' fingerprints (weights + input contract); `training/train.py` then reads them instead of running the
priors (a changed prior or preprocessing gets a new key, so a stale cache is never read).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import datasets

from etfuser_hf import ETFuserImageProcessor
from etfuser_hf.data.face_datasets import load_face_dataset
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.fetch import default_cache_dir
from etfuser_hf.training.main import cache_prior_features
from etfuser_hf.training.tasks import DEFAULT_PRIORS


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
    processor = ETFuserImageProcessor(size={"height": args.image_size, "width": args.image_size})
    if args.dataset is None:
        splits = {"synthetic": make_synthetic_faces(args.num_images, args.image_size)}
    else:
        data = load_face_dataset(args.dataset)
        splits = dict(data) if hasattr(data, "keys") else {"data": data}
    start = time.perf_counter()
    cached = cache_prior_features(datasets.DatasetDict(splits), prior_dirs, processor, cache_dir, args.image_size)
    for name, split in cached.items():
        print(f"{name}: {len(split)} images, columns {[c for c in split.column_names if c.startswith('prior__')]}")
    print(f"{time.perf_counter() - start:.1f} s -> {cache_dir / 'features'}")


if __name__ == "__main__":
    main()
