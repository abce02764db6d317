"""Does the data wing scale to AffectNet? A RAF-DB-layout dataset of 20,000 generated faces on disk (SYNTHETIC faces,
100x100 JPEG, `EmoLabel/list_patition_label.txt` + `Image/aligned/*_aligned.jpg` as RAF-DB distributes them), read by
the package's reader and prepared as `training/train.py --dataset` prepares it, then one training step:

    python benchmarks/dataset_scale.py [--images 20000] [--folder /tmp/etfuser-dataset-scale]

Prints, measured in this run:
- cold start (empty caches) and warm start (the same again) to the first training step, each in a process of its own
  with its peak RSS, and how many images each opened before that step (a warm start must open none);
- the prior-feature cache on disk: per view and per image;
- images/s of the data pipeline (the collator over the cached split, 0 and 2 DataLoader workers) against the images/s
  of a training step of the default et-fuser row (canonical FER net + four priors read from the cache);
- the same figures extrapolated (linearly, per image) to AffectNet's 287,651 training images.

The full cold start runs the two cheapest priors (the dlib age net; the FER net, also the canonical model) so the
whole benchmark stays within 10 minutes on 2 cores; the four default priors' cost per image is measured on a slice and
the cold start with them extrapolated from it (the priors' cost is per image, everything else was measured on all
images).

Last run (2026-12-06, after the alignment key moved to the priors' sha256 manifests, commit d78f851;
`nice -n 5 python benchmarks/dataset_scale.py --images 20000 --folder /tmp/wt-borders-scale`, dataset generated
beforehand; a SHARED, overloaded machine: `uptime` load average 5.94, 6.12, 5.50 before and 6.94, 7.09, 7.93 after,
10-11 in between, this process getting about half of one core, so the times are several-fold what an idle machine
gives and the run took 1999 s, not the 10 minutes it is meant to):

    13600 training images ({'train': 13600, 'validation': 2400, 'test': 4000}), SYNTHETIC faces; cold start with the
    age and FER priors only:
      cold start to the first training step: 1720.0 s (preparing 1714.9 s), peak RSS 915 MiB, images opened before
      the step: 40000
      warm start to the first training step: 28.6 s (preparing 24.0 s), peak RSS 911 MiB, images opened before the
      step: 0  (goal: 0, met)
      prior-feature cache: 29.8 MiB in 3 files (one view, three splits), 1564 bytes per image; the four default
      priors' pooled view: 3072 bytes per image
      data pipeline: 276 images/s (in-process), 216 images/s (2 DataLoader workers); et-fuser training step (four
      cached priors, FER canonical): 9 images/s -> pipeline / step = 29.27x and 22.89x
      the four default priors: 95.5 ms per image (measured on 256) -> cold start with them ~3629 s here
    extrapolated to AffectNet's 287,651 training images (x21.2, linear per image):
      cold start, four default priors, one view: ~21.3 h (the priors' forward passes, once; 2 CPU cores)
      warm start: ~52 s (1.1 s of this start grow with the images: reading the annotations, keying the files); cache
      ~0.82 GiB per pooled view of the four priors
      one epoch's data at 216 images/s: ~22 min; its training steps at 9 images/s: ~509 min
    whole benchmark: 1999 s

Where the warm start goes (cProfile of the start phase alone, same load: 42.3 s preparing): the prior-feature cache's
key (training/feature_cache.py `key`) 23.8 s, of which 21.5 s iterate the alignment columns row by row
(`list(dataset[column])` over 20,000 (68, 2) arrays); imports about 15 s; alignment (keys only, no network) 5.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

AFFECTNET_TRAIN = 287_651
RAFDB_CLASSES = 7
SLICE = 256  # images the four default priors' cost per image is measured on


def generate(folder: Path, count: int) -> Path:
    """RAF-DB's basic/ layout with `count` SYNTHETIC faces (80 % train, 20 % test), reused when already there."""
    from etfuser_hf.data.synthetic_faces import synthetic_face

    root = folder / "RAF-DB" / "basic"
    labels = root / "EmoLabel" / "list_patition_label.txt"
    if labels.exists() and sum(1 for _ in labels.open()) == count:
        return root
    shutil.rmtree(root, ignore_errors=True)
    images = root / "Image" / "aligned"
    images.mkdir(parents=True)
    train = int(count * 0.8)
    lines = []
    for index in range(count):
        name = f"train_{index + 1:05d}.jpg" if index < train else f"test_{index - train + 1:04d}.jpg"
        face = synthetic_face(index, 100, seed=7)
        face["image"].save(images / name.replace(".jpg", "_aligned.jpg"), quality=90)
        lines.append(f"{name} {face['expression'] + 1}\n")
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("".join(lines))
    return root


def train_arguments(root: Path, cache_dir: Path, output_dir: Path) -> list[str]:
    """`train.py --dataset` on the generated dataset with the two cheapest priors (see the module docstring)."""
    return ["--dataset", str(root), "--tasks", "label", "--priors", "age", "expression", "--cache-dir", str(cache_dir),
            "--output-dir", str(output_dir), "--overwrite", "--workers", "1"]


def start_to_first_step(root: Path, cache_dir: Path, output_dir: Path) -> dict:
    """One start as `train.py --dataset` makes it (read, split, cache), then the first training step; counts the
    images opened before that step."""
    import PIL.Image
    import torch

    from etfuser_hf.training.comparison.protocol import row_recipe
    from etfuser_hf.training.comparison.recipe import build_task_model
    from etfuser_hf.training.comparison.rows import MAIN_ROW, PROTOCOL_ROWS
    from etfuser_hf.training.main import parse_args, prepare_protocol

    opened = {"count": 0}
    original = PIL.Image.open

    def counting(*args, **kwargs):
        opened["count"] += 1
        return original(*args, **kwargs)

    PIL.Image.open = counting
    start = time.perf_counter()
    args = parse_args(train_arguments(root, cache_dir, output_dir))
    tasks, context, record = prepare_protocol(args)
    prepared = time.perf_counter() - start
    opened_before_step = opened["count"]
    task = tasks[0]
    row = next(row for row in PROTOCOL_ROWS if row.name == MAIN_ROW)
    recipe = row_recipe(row, task)
    recipe.pop("distillation", None)
    model = build_task_model(task, context.prior_dirs, context.label_names[task.name], context.image_size, **recipe)
    collator = context.collator(task, model, recipe.get("prior_feature"))
    view = collator.view(context.splits["train"])
    batch = collator([view[index] for index in range(32)])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    model(**batch).loss.backward()
    optimizer.step()
    total = time.perf_counter() - start
    # what grows with the images (the reader's listing and parsing, the cache keys), timed again on its own: the rest
    # of a start (imports, loading the networks, the step) is the same at any size
    from etfuser_hf.data.face_datasets import load_face_dataset
    from etfuser_hf.data.image_keys import image_keys

    again = time.perf_counter()
    data = load_face_dataset(root)
    for split in data.values():
        image_keys(split)
    per_image_part = time.perf_counter() - again
    return {"seconds_to_first_step": total, "seconds_preparing": prepared,
            "seconds_growing_with_images": per_image_part,
            "images_opened_before_first_step": opened_before_step, "train_images": len(context.splits["train"]),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "sizes": record["sizes"]}


def pipeline_and_step(root: Path, cache_dir: Path, output_dir: Path) -> dict:
    """images/s of the collator over the cached train split (0 and 2 DataLoader workers) and of training steps of the
    default et-fuser row (four priors, read from the cache: random features of their shapes cost the same)."""
    import torch
    from torch.utils.data import DataLoader

    from etfuser_hf.data.face_datasets import load_face_dataset
    from etfuser_hf.models.image_processing_etfuser import ETFuserImageProcessor
    from etfuser_hf.priors.convert_face_priors import ensure_face_priors
    from etfuser_hf.training.comparison.protocol import row_recipe
    from etfuser_hf.training.comparison.recipe import build_task_model
    from etfuser_hf.training.comparison.rows import MAIN_ROW, PROTOCOL_ROWS
    from etfuser_hf.training.comparison.tasks import DEFAULT_PRIORS
    from etfuser_hf.training.main import parse_args, prepare_protocol

    args = parse_args(train_arguments(root, cache_dir, output_dir))
    tasks, context, _ = prepare_protocol(args)
    task = tasks[0]
    recipe = row_recipe(next(row for row in PROTOCOL_ROWS if row.name == MAIN_ROW), task)
    recipe.pop("distillation", None)
    small = build_task_model(task, context.prior_dirs, context.label_names[task.name], context.image_size, **recipe)
    collator = context.collator(task, small, recipe.get("prior_feature"))
    view = collator.view(context.splits["train"])
    pipeline = {}
    for workers in (0, 2):
        loader = DataLoader(view, batch_size=32, collate_fn=collator, num_workers=workers, shuffle=True)
        start, seen = time.perf_counter(), 0
        for index, batch in enumerate(loader):
            seen += len(batch["labels"])
            if index == 40:
                break
        pipeline[workers] = seen / (time.perf_counter() - start)

    prior_dirs = ensure_face_priors(cache_dir, list(DEFAULT_PRIORS))
    model = build_task_model(task, prior_dirs, context.label_names[task.name], context.image_size, **recipe)
    processor = ETFuserImageProcessor(size={"height": context.image_size, "width": context.image_size})
    images = [load_face_dataset(root)["train"][index]["image"] for index in range(SLICE)]
    pixel_values = processor(images, return_tensors="pt")["pixel_values"]
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    for first in range(0, SLICE, 64):
        features = model.etfuser.extract_prior_features(pixel_values[first:first + 64])
    per_image_priors = (time.perf_counter() - start) / SLICE
    torch.set_grad_enabled(True)
    shapes = {name: value.shape[1:] for name, value in features.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    step_times = []
    for step in range(6):
        batch = {"pixel_values": pixel_values[:32], "labels": torch.zeros(32, dtype=torch.long),
                 "prior_features": {name: torch.randn(32, *shape) for name, shape in shapes.items()}}
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:  # the first step warms up
            step_times.append(time.perf_counter() - start)
    feature_bytes = {name: int(np.prod(shape)) * 4 for name, shape in shapes.items()}
    return {"pipeline_images_per_second": pipeline, "step_images_per_second": 32 / float(np.median(step_times)),
            "default_priors_seconds_per_image": per_image_priors, "default_priors_feature_bytes": feature_bytes}


def run_phase(phase: str, root: Path, cache_dir: Path, output_dir: Path) -> dict:
    """`phase` in a fresh Python process (its own peak RSS), its result as JSON on the last stdout line."""
    command = [sys.executable, __file__, "--phase", phase, "--root", str(root), "--cache-dir", str(cache_dir),
               "--output-dir", str(output_dir)]
    done = subprocess.run(command, check=True, capture_output=True, text=True,
                          env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def cache_size(cache_dir: Path) -> dict[str, int]:
    """Bytes of the prior-feature cache files, by file."""
    return {path.name: path.stat().st_size for path in (cache_dir / "features").glob("prior-features-*.arrow")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "etfuser-dataset-scale")
    parser.add_argument("--phase", choices=("start", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "start":
        print(json.dumps(start_to_first_step(args.root, args.cache_dir, args.output_dir)))
        return
    if args.phase == "pipeline":
        print(json.dumps(pipeline_and_step(args.root, args.cache_dir, args.output_dir)))
        return

    start = time.perf_counter()
    root = generate(args.folder, args.images)
    print(f"dataset: {args.images} SYNTHETIC faces in RAF-DB's layout under {root} "
          f"({time.perf_counter() - start:.0f} s to generate or find)")
    cache_dir = args.folder / "cache"
    for stage in ("faces", "features", "images"):  # a cold start finds no cache of any stage (the faces' too)
        shutil.rmtree(cache_dir / stage, ignore_errors=True)
    if (Path.home() / ".cache" / "etfuser_hf" / "priors").is_dir() and not (cache_dir / "priors").exists():
        cache_dir.mkdir(parents=True, exist_ok=True)  # the converted priors are not what is measured: share them
        os.symlink(Path.home() / ".cache" / "etfuser_hf" / "priors", cache_dir / "priors")
    output = args.folder / "run"
    cold = run_phase("start", root, cache_dir, output)
    warm = run_phase("start", root, cache_dir, output)
    sizes = cache_size(cache_dir)
    flow = run_phase("pipeline", root, cache_dir, output)

    train = cold["train_images"]
    total_images = sum(cold["sizes"].values())
    scale = AFFECTNET_TRAIN / train
    cache_bytes = sum(sizes.values())
    default_bytes_per_image = sum(flow["default_priors_feature_bytes"].values())
    cold_default = cold["seconds_to_first_step"] + total_images * flow["default_priors_seconds_per_image"]
    print(f"\n{train} training images ({cold['sizes']}), SYNTHETIC faces; cold start with the age and FER priors only:")
    print(f"  cold start to the first training step: {cold['seconds_to_first_step']:.1f} s "
          f"(preparing {cold['seconds_preparing']:.1f} s), peak RSS {cold['peak_rss_mib']:.0f} MiB, "
          f"images opened before the step: {cold['images_opened_before_first_step']}")
    print(f"  warm start to the first training step: {warm['seconds_to_first_step']:.1f} s "
          f"(preparing {warm['seconds_preparing']:.1f} s), peak RSS {warm['peak_rss_mib']:.0f} MiB, "
          f"images opened before the step: {warm['images_opened_before_first_step']}"
          + ("  (goal: 0, met)" if warm["images_opened_before_first_step"] == 0 else "  (goal: 0, NOT met)"))
    print(f"  prior-feature cache: {cache_bytes / 2**20:.1f} MiB in {len(sizes)} files (one view, three splits), "
          f"{cache_bytes / total_images:.0f} bytes per image; the four default priors' pooled view: "
          f"{default_bytes_per_image} bytes per image")
    pipeline = flow["pipeline_images_per_second"]
    step = flow["step_images_per_second"]
    print(f"  data pipeline: {pipeline['0']:.0f} images/s (in-process), {pipeline['2']:.0f} images/s (2 DataLoader "
          f"workers); et-fuser training step (four cached priors, FER canonical): {step:.0f} images/s -> pipeline / "
          f"step = {pipeline['0'] / step:.2f}x and {pipeline['2'] / step:.2f}x")
    print(f"  the four default priors: {flow['default_priors_seconds_per_image'] * 1000:.1f} ms per image (measured on "
          f"{SLICE}) -> cold start with them ~{cold_default:.0f} s here")
    print(f"\nextrapolated to AffectNet's {AFFECTNET_TRAIN:,} training images (x{scale:.1f}, linear per image):")
    print(f"  cold start, four default priors, one view: ~{cold_default * scale / 3600:.1f} h (the priors' forward "
          f"passes, once; 2 CPU cores)")
    warm_scaled = warm["seconds_to_first_step"] + warm["seconds_growing_with_images"] * (scale - 1)
    print(f"  warm start: ~{warm_scaled:.0f} s ({warm['seconds_growing_with_images']:.1f} s of this start grow with "
          f"the images: reading the annotations, keying the files); cache ~"
          f"{default_bytes_per_image * AFFECTNET_TRAIN / 2**30:.2f} GiB per pooled view of the four priors")
    print(f"  one epoch's data at {pipeline['2']:.0f} images/s: ~{AFFECTNET_TRAIN / pipeline['2'] / 60:.0f} min; its "
          f"training steps at {step:.0f} images/s: ~{AFFECTNET_TRAIN / step / 60:.0f} min")
    print(f"\nwhole benchmark: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
