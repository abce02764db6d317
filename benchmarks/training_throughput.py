"""Training throughput on this machine's accelerator (issue 34, item 4): images per second of one training epoch of
the canonical model alone and of canonical + ET-Fuser, with the priors read from the view cache and with the priors
running online on a fresh augmented draw every batch, in each precision asked for, in one run.

    python benchmarks/training_throughput.py                       # the machine's `auto` precision (bf16 on a GPU)
    python benchmarks/training_throughput.py --precision fp32 bf16 --batch-size 128 --num-images 2048

On a GPU everything runs there (the Trainer's device; the collators' crops and augmentation stay on the CPU in the
data loader, as in the main job, `--dataloader-workers` of them). Timing is `training_cost.epoch_seconds`: the median
training step times the steps of an epoch, fixed costs left out. SYNTHETIC faces; the numbers are this machine's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from training_cost import epoch_seconds  # benchmarks/ is the script's folder, first on sys.path

from etfuser_hf.data.collators import FaceCollator
from etfuser_hf.data.views import Augmentation, EpochSampler, image_groups, render_views
from etfuser_hf.models.image_processing_etfuser import ETFuserImageProcessor
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.crop_plan import CropPlan
from etfuser_hf.training.comparison.prior_features import cache_prior_features
from etfuser_hf.training.comparison.recipe import build_task_model
from etfuser_hf.training.comparison.splits import synthetic_splits
from etfuser_hf.training.comparison.tasks import DEFAULT_PRIORS, SYNTHETIC_TASKS
from etfuser_hf.training.run.precision import PRECISIONS, resolve_precision
from etfuser_hf.training.run.processes import runs_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--task", default="expression", choices=list(SYNTHETIC_TASKS))
    parser.add_argument("--augment", default="standard", help="the level of both modes")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=PRECISIONS)
    args = parser.parse_args()
    precisions = list(dict.fromkeys(resolve_precision(precision) for precision in args.precision))
    task = SYNTHETIC_TASKS[args.task]
    prior_dirs = ensure_face_priors(names=DEFAULT_PRIORS)
    processor = ETFuserImageProcessor(size={"height": 112, "width": 112})
    splits, _ = synthetic_splits({"train": args.num_images, "validation": 1, "test": 1}, 112, seed=99)
    augmentation = Augmentation(args.augment, "views", args.views, seed=99)
    splits["train"] = render_views(splits["train"], augmentation, "image", ["landmarks"])
    with tempfile.TemporaryDirectory() as cache:
        train = cache_prior_features(splits, prior_dirs, processor, Path(cache), 112, (), "landmarks")[0]["train"]
        labels = train.features[task.column].names if task.is_classification else None
        models = {"canonical": build_task_model(task, prior_dirs, labels, 112, fusion_mode="none"),
                  "et-fuser": build_task_model(task, prior_dirs, labels, 112, **task.fusion)}
        online = {"augmentation": augmentation.policy_for(task.problem_type), "point_columns": ("landmarks",),
                  "use_cached_features": False}
        settings = {("canonical", "views"): {}, ("et-fuser", "views"): {}, ("canonical", "online"): online,
                    ("et-fuser", "online"): online}
        device = runs_device()
        name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
        print(f"{name}; {args.num_images} SYNTHETIC images ({args.views} cached views each), batch {args.batch_size}, "
              f"task {args.task}, augmentation {args.augment}")
        print(f"{'model':10s} {'priors':28s} {'prec.':5s} {'images/s':>9s}")
        for (model_name, mode), options in settings.items():
            collator = FaceCollator(processor, task.column, len(labels or ()), problem_type=task.problem_type,
                                    crop_plan=CropPlan.for_model(models[model_name]), geometry_column="landmarks",
                                    **options)
            for precision in precisions:
                sampler = EpochSampler(image_groups(train), seed=0)
                wall, _ = epoch_seconds(models[model_name], train, collator, args.batch_size, precision, sampler)
                where = ("cached views" if mode == "views" else "online (run every batch)") if (
                    model_name == "et-fuser") else ("views" if mode == "views" else "online augmentation")
                print(f"{model_name:10s} {where:28s} {precision:5s} {args.num_images / wall:9.1f}")


if __name__ == "__main__":
    main()
