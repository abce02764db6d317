"""Batch loading of the main job's runs with the decoded-image cache / without it, measured in one run.

What a training step's data loading costs: fetching a batch of rows from the collator's view of the split and
collating it into `pixel_values` + labels, for every batch of an epoch, as the Trainer's loader does (no model runs).
Without the cache each fetch decodes the `image` column's PNGs; with it the rows carry their pixels as raw bytes
(`etfuser_hf.data.image_cache`). The cache's one-off cost (decode + write once per split) is printed beside it.
Each setting is timed `--repeats` times, interleaved, and the fastest epoch counts. SYNTHETIC faces.

    python benchmarks/image_cache.py [--num-images 800] [--image-size 112] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import datasets
import torch

from etfuser_hf import ETFuserImageProcessor
from etfuser_hf.data.collators import FaceCollator
from etfuser_hf.data.image_cache import PIXEL_COLUMN, cache_decoded_images
from etfuser_hf.data.synthetic_faces import make_synthetic_faces


def epoch_seconds(view: datasets.Dataset, collator: FaceCollator, batch_size: int) -> float:
    """Wall seconds to fetch and collate every batch of `view` once, in order."""
    start = time.perf_counter()
    for first in range(0, len(view), batch_size):
        collator(view.__getitems__(list(range(first, min(first + batch_size, len(view))))))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=800, help="the main job's training split (default 800)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the main job's training workers
    processor = ETFuserImageProcessor(size={"height": args.image_size, "width": args.image_size})
    faces = make_synthetic_faces(args.num_images, image_size=args.image_size, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        cached = cache_decoded_images({"train": faces}, processor, folder)["train"]
        one_off = time.perf_counter() - start
        collators = {"PNG decode per fetch": FaceCollator(processor, "expression", 7, use_cached_features=False),
                     "decoded once": FaceCollator(processor, "expression", 7, image_column=PIXEL_COLUMN,
                                                  use_cached_features=False)}
        views = {name: collator.view(cached) for name, collator in collators.items()}
        timings = {name: [] for name in collators}
        for _ in range(args.repeats):
            for name, collator in collators.items():
                timings[name].append(epoch_seconds(views[name], collator, args.batch_size))
    fastest = {name: min(runs) for name, runs in timings.items()}
    batches = -(-args.num_images // args.batch_size)
    print(f"{args.num_images} SYNTHETIC {args.image_size}x{args.image_size} images, batch {args.batch_size}, "
          f"{batches} batches an epoch; one-off decode into the cache {one_off:.2f} s")
    for name, seconds in fastest.items():
        print(f"{name:22s} {seconds:7.3f} s an epoch ({1000 * seconds / batches:6.2f} ms a batch)")
    ratio = fastest["decoded once"] / fastest["PNG decode per fetch"]
    print(f"decoded once / PNG decode per fetch: {ratio:.3f}")


if __name__ == "__main__":
    main()
