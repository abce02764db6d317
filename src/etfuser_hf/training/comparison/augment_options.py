"""The augmentation options of the command line (`--augment`, `--augment-mode`, `--views`), checked against the
job's other options: the setting `data.views.Augmentation` renders views or augments batches with."""

from __future__ import annotations

import argparse

from ...data.augmentation import LEVELS
from ...data.views import MODES, Augmentation
from ..run.processes import trains_on_cpu


def add_augmentation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("augmentation (training split only; every network sees the same face)")
    group.add_argument("--augment", default="none", choices=LEVELS,
                       help="light: mirror, mild window and colour; standard: + rotation, colour, erasing; strong: "
                            "+ TrivialAugment and mixup/CutMix (online only)")
    group.add_argument("--augment-mode", default="auto", choices=MODES,
                       help="views: K fixed views per image rendered once, their prior features cached (CPU); "
                            "online: a fresh draw every batch, the priors run in the forward (GPU); auto: views on "
                            "a CPU, online on a GPU")
    group.add_argument("--views", type=int, default=4, metavar="K",
                       help="views per training image in the view cache: the image, its mirror and K-2 random views")


def parse_augmentation(args: argparse.Namespace) -> Augmentation:
    """The checked options (a ValueError naming the option)."""
    mode = args.augment_mode if args.augment_mode != "auto" else ("views" if trains_on_cpu() else "online")
    augmentation = Augmentation(args.augment, mode, args.views, args.data_seed)
    if args.views < 1:
        raise ValueError(f"--views: expected at least 1 (the image itself), got {args.views}.")
    if augmentation.level == "none":
        return augmentation
    if args.dataset is not None:
        raise ValueError("--augment with --dataset: a dataset's faces are fed as aligned canonical crops cut from the "
                         "original images (data/alignment.py), which the augmentation does not move yet; train "
                         "without --augment.")
    if mode == "views" and args.views == 1:
        raise ValueError(f"--augment {args.augment} --views 1: one view is the image itself, nothing augmented; pass "
                         f"--views 2 or more (the mirror, then random views), or --augment-mode online.")
    if mode == "views" and augmentation.policy.mixes_rows:
        raise ValueError(f"--augment {args.augment}: mixup and CutMix mix the pixels of two images, which no cached "
                         f"view holds; run it with --augment-mode online.")
    if mode == "views" and args.no_cache:
        raise ValueError("--augment-mode views caches each view's prior features; with --no-cache use "
                         "--augment-mode online.")
    if augmentation.renders_views and (args.resample_train or args.label_fractions):
        raise ValueError("--views: --resample-train and --label-fractions draw training images, not views; run them "
                         "with --views 1 or --augment-mode online.")
    return augmentation


__all__ = ["add_augmentation_arguments", "parse_augmentation"]
