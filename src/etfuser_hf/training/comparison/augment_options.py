"""The augmentation options of the command line (`--augment`, `--augment-mode`, `--views`), checked against the
job's other options: the setting `data.views.Augmentation` renders views or augments batches with. A row may train
with its own level and K (a sweep's `--augment-candidates`, a recipe file's choice: `run_augmentation`); the job
renders every view its rows draw from once (`data.views.render_views`), and each run draws from its own
(`data.views.views_for`)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

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
    """The job's setting from its options, checked (a ValueError naming the option)."""
    mode = args.augment_mode if args.augment_mode != "auto" else ("views" if trains_on_cpu() else "online")
    return checked_augmentation(Augmentation(args.augment, mode, args.views, args.data_seed), args)


def checked_augmentation(augmentation: Augmentation, args: argparse.Namespace, option: str = "--augment"
                         ) -> Augmentation:
    """`augmentation` if the job of `args` can train with it, else a ValueError naming `option` and why."""
    if augmentation.views < 1:
        raise ValueError(f"--views: expected at least 1 (the image itself), got {augmentation.views}.")
    if augmentation.level == "none":
        return augmentation
    level, mode = augmentation.level, augmentation.mode
    if mode == "views" and augmentation.views == 1:
        raise ValueError(f"{option} {level} with 1 view: one view is the image itself, nothing augmented; take 2 or "
                         f"more (the mirror, then random views), or --augment-mode online.")
    if mode == "views" and augmentation.policy.mixes_rows:
        raise ValueError(f"{option} {level}: mixup and CutMix mix the pixels of two images, which no cached view "
                         f"holds; run it with --augment-mode online.")
    if mode == "views" and args.no_cache:
        raise ValueError("--augment-mode views caches each view's prior features; with --no-cache use "
                         "--augment-mode online.")
    return augmentation


def parse_augmentation_candidate(value: str, job: Augmentation, args: argparse.Namespace) -> dict[str, Any]:
    """A sweep's `--augment-candidates` value, `none`, `LEVEL` or `LEVEL:K` (K views; default the job's --views), as
    the row setting `run_augmentation` reads ({"level", "views"}), checked against the job."""
    level, _, views = value.partition(":")
    if level not in LEVELS or (views and not views.isdigit()):
        raise ValueError(f"--augment-candidates: expected none, LEVEL or LEVEL:K with LEVEL one of {list(LEVELS)} "
                         f"and K a whole number, got {value!r}.")
    setting = {"level": level, "views": int(views) if views else job.views} if level != "none" else {"level": "none"}
    checked_augmentation(run_augmentation(job, setting), args, "--augment-candidates")
    return setting


def run_augmentation(job: Augmentation, setting: Mapping[str, Any] | None) -> Augmentation:
    """The augmentation a run trains with: the job's, with a row's chosen `setting` ({"level", "views"}: a sweep
    candidate or a recipe file's choice) over it; the mode and seed stay the job's."""
    if not setting:
        return job
    unknown = set(setting) - {"level", "views"}
    if unknown or setting.get("level", job.level) not in LEVELS:
        raise ValueError(f"augmentation: expected {{'level': one of {list(LEVELS)}, 'views': K}}, got {dict(setting)}.")
    return dataclasses.replace(job, level=setting.get("level", job.level), views=int(setting.get("views", job.views)))


def rendered_augmentations(args: argparse.Namespace, row_overrides: Sequence[Mapping[str, Any]],
                           candidates: Sequence[Mapping[str, Any]] = ()) -> list[Augmentation]:
    """Every setting a job's runs draw views of, checked against the job (a ValueError naming where it came from):
    the job's own (`args.augmentation`), each row's chosen one in `row_overrides` (a recipe file's) and a sweep's
    `candidates`; those that render views, for `data.views.render_views` to render all at once."""
    settings = [args.augmentation]
    for where, chosen in [("--recipe", overrides.get("augmentation")) for overrides in row_overrides] + [
            ("--augment-candidates", candidate) for candidate in candidates]:
        if chosen:
            settings.append(checked_augmentation(run_augmentation(args.augmentation, chosen), args, where))
    return list(dict.fromkeys(setting for setting in settings if setting.renders_views))


__all__ = ["add_augmentation_arguments", "checked_augmentation", "parse_augmentation", "parse_augmentation_candidate",
           "rendered_augmentations", "run_augmentation"]
