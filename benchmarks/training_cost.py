"""The paper's "negligible cost" claim, measured: one training epoch of canonical model + ET-Fuser (frozen priors read
from the feature cache) over one epoch of the canonical model alone, per task, in one run.

    python benchmarks/training_cost.py [--num-images 512] [--repeats 3] [--threads 1]
    python benchmarks/training_cost.py --grid-sizes 2 4 --canonical-tokens   # + spatial tokens, in the same run
    python benchmarks/training_cost.py --precision fp32 bf16     # both precisions in one run, and bf16 / fp32

Every model trains with the same Trainer settings on the same SYNTHETIC images. What is timed is the training step
inside the Trainer, from the end of one step to the end of the next (so the batch's loading and collation, forward,
backward and optimizer step, nothing else): the median over an epoch's steps but the first, times the steps of an
epoch. A Trainer's fixed costs (building the optimizer and the data loader, warm-up of the first step) are left out,
as they are paid once per run, not per epoch; with 16-step epochs they would otherwise decide the ratio. Each model's
epoch runs `--repeats` times (alternating the models) and the fastest is kept, so a background hiccup does not decide
the ratio. Two clocks: wall time, and the process's CPU time (all threads), which other programs on a shared machine
barely move. `--threads` defaults to 1, the setting of the main job's training workers; `--precision` (default: the
main job's `auto`, see `etfuser_hf.training.run.precision`) times every epoch in each precision given, and with two of
them also prints each model's epoch in the second over the first. `--grid-sizes` adds an ET-Fuser per size whose priors
enter as g x g grid tokens (their grid view cached too), `--canonical-tokens` one more per size with the canonical
model's own tokens in the fusion (`fusion_mode="canonical_tokens"`), each against the same canonical epoch. Every
task with a spatial setting (`FaceTask.spatial`, chosen on validation) also times ET-Fuser over it ("spatial
(task's)"): what the main job's spatial rows train. A FLOPs row per variant counts one step's forward and backward
operations (matmuls and convolutions): the ratio no faster kernel can go below. Goal: <= 1.10.
Every ET-Fuser variant also gets a "read-only" row, the same model with `read_only_priors=True` (the prior tokens
keys and values only, the ensemble token the only query of each fusion layer), timed in the same alternation;
`--no-read-only` leaves those rows out.

    python benchmarks/training_cost.py --augment standard --views 4   # + augmented training, both modes

`--augment` (issue 34) renders `--views` K views per training image and caches their priors (the one-off cost is
printed), times every epoch on the views (one view per image per epoch: `views.EpochSampler`, so an epoch still
holds `--num-images` images), and adds "online" rows: canonical and ET-Fuser trained on a fresh augmented draw every
batch, the frozen priors running in ET-Fuser's forward; their ratio, and the priors' share of ET-Fuser's online step
(online minus cached, over online).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback

from etfuser_hf.data.augmentation import LEVELS
from etfuser_hf.data.collators import FaceCollator
from etfuser_hf.data.feature_cache import feature_view
from etfuser_hf.data.views import Augmentation, EpochSampler, image_groups, render_views
from etfuser_hf.models.image_processing_etfuser import ETFuserImageProcessor
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.crop_plan import CropPlan
from etfuser_hf.priors.fetch import default_cache_dir
from etfuser_hf.training.comparison.prior_features import cache_prior_features
from etfuser_hf.training.comparison.recipe import build_task_model
from etfuser_hf.training.comparison.splits import synthetic_splits
from etfuser_hf.training.comparison.tasks import DEFAULT_PRIORS, SYNTHETIC_TASKS
from etfuser_hf.training.run.precision import PRECISIONS, precision_arguments, resolve_precision
from etfuser_hf.training.run.trainer import ETFuserTrainer, training_arguments


class StepClock(TrainerCallback):
    """(wall, CPU) seconds from the end of each training step to the end of the next: one step's loading, collation,
    forward, backward and optimizer update."""

    def __init__(self):
        self.steps: list[tuple[float, float]] = []
        self._last: tuple[float, float] | None = None

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter(), time.process_time()
        if self._last is not None:
            self.steps.append((now[0] - self._last[0], now[1] - self._last[1]))
        self._last = now


def epoch_seconds(model, data, collator, batch_size: int, precision: str, sampler=None) -> tuple[float, float]:
    """(wall, CPU) seconds of one training epoch with the main job's Trainer in `precision`: the median step
    (`StepClock`) times the steps of an epoch (no evaluation, no checkpoint, no fixed costs of the Trainer)."""
    clock = StepClock()
    with tempfile.TemporaryDirectory() as folder:
        arguments = training_arguments(folder, num_train_epochs=1, per_device_train_batch_size=batch_size,
                                       eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                                       logging_steps=10_000, disable_tqdm=True, learning_rate=1e-3,
                                       **precision_arguments(precision))
        # the main job's view of the split: only the columns this model reads (train_model does the same)
        trainer = ETFuserTrainer(model=model, args=arguments, train_dataset=collator.view(data), data_collator=collator,
                                 callbacks=[clock], train_sampler=sampler)
        trainer.train()
    if not clock.steps:
        raise ValueError(f"--num-images: an epoch needs at least 2 batches of --batch-size {batch_size} to time a step")
    steps = len(clock.steps) + 1
    return tuple(steps * statistics.median(step[column] for step in clock.steps) for column in (0, 1))


def step_flops(model, data, collator, batch_size: int) -> int:
    """Floating-point operations of one training step's forward and backward (matmuls and convolutions, as
    `torch.utils.flop_counter` counts them) on the first batch: what no kernel choice can make cheaper."""
    view = collator.view(data)
    batch = collator([view[index] for index in range(batch_size)])
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


WIDTH = 28  # the variant column: "grid 4 + canonical read-only"


def with_read_only_rows(variants: dict[str, tuple]) -> dict[str, tuple]:
    """{variant: (prior feature, ETFuserConfig overrides)} with, after each, its "<variant> read-only" twin:
    the same model with `read_only_priors=True`."""
    rows = {}
    for mode, (prior_feature, overrides) in variants.items():
        rows[mode] = (prior_feature, overrides)
        rows[f"{mode} read-only"] = (prior_feature, {**overrides, "read_only_priors": True})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the main job's workers use 1)")
    parser.add_argument("--tasks", nargs="+", default=list(SYNTHETIC_TASKS), choices=list(SYNTHETIC_TASKS))
    parser.add_argument("--grid-sizes", nargs="+", type=int, default=[], metavar="G",
                        help="also ET-Fuser over G x G grid tokens per prior")
    parser.add_argument("--canonical-tokens", action="store_true",
                        help="with --grid-sizes: also fusion_mode=canonical_tokens (the canonical model's G x G tokens)")
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=PRECISIONS,
                        help="time every epoch in each of these (auto: the main job's default on this machine)")
    parser.add_argument("--augment", default="none", choices=LEVELS, help="also time augmented training at this level")
    parser.add_argument("--views", type=int, default=4, help="with --augment: cached views per training image")
    parser.add_argument("--no-read-only", dest="read_only", action="store_false",
                        help="leave out the read_only_priors row of every ET-Fuser variant")
    args = parser.parse_args()
    precisions = list(dict.fromkeys(resolve_precision(precision) for precision in args.precision))
    # variant -> (how the priors are read, ETFuserConfig overrides beyond the task's fusion)
    variants = {"et-fuser": (None, {})}
    for size in args.grid_sizes:
        grid = {"feature": "grid", "grid_size": size}
        variants[f"grid {size}"] = (grid, {})
        if args.canonical_tokens:
            variants[f"grid {size} + canonical"] = (grid, {"fusion_mode": "canonical_tokens", "canonical_grid_size": size})
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    prior_dirs = ensure_face_priors(names=DEFAULT_PRIORS)
    splits, _ = synthetic_splits({"train": args.num_images, "validation": 1, "test": 1}, 112, seed=99)
    processor = ETFuserImageProcessor(size={"height": 112, "width": 112})
    spatial = {name: SYNTHETIC_TASKS[name].spatial for name in args.tasks if SYNTHETIC_TASKS[name].spatial}
    views = [prior_feature for prior_feature, _ in variants.values() if prior_feature]
    views += [setting["prior_feature"] for setting in spatial.values()]
    augmentation = Augmentation(args.augment, "views", args.views, seed=99)
    sampler = None
    if args.augment != "none":
        start = time.perf_counter()
        splits["train"] = render_views(splits["train"], augmentation, "image", ["landmarks"])
        rendered = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as cache:  # a cold cache: the one-off cost of the views' prior features
            cache_prior_features(splits, prior_dirs, processor, Path(cache), 112, views, "landmarks")
        print(f"one-off: {args.views} views per image rendered in {rendered:.1f} s, their prior features cached in "
              f"{time.perf_counter() - start - rendered:.1f} s ({args.num_images} images)")
        sampler = EpochSampler(image_groups(splits["train"]), seed=0)
    train = cache_prior_features(splits, prior_dirs, processor, default_cache_dir(), 112, views,
                                 "landmarks" if args.augment != "none" else None)[0]["train"]
    print(f"{args.num_images} SYNTHETIC images, batch {args.batch_size}, torch threads {torch.get_num_threads()}; "
          f"prior features cached (the frozen priors do not run in either epoch); precision {', '.join(precisions)}")
    print(f"{'task':10s} {'variant':{WIDTH}s} {'prec.':5s} {'clock':5s} {'canonical':>12s} "
          f"{'canonical + ET-Fuser':>22s} "
          f"{'ratio':>7s}   trainable params")
    for name in args.tasks:
        task = SYNTHETIC_TASKS[name]
        labels = train.features[task.column].names if task.is_classification else None
        models = {"canonical": build_task_model(task, prior_dirs, labels, 112, fusion_mode="none")}
        collators = {"canonical": FaceCollator(processor, task.column, len(labels or ()),
                                               problem_type=task.problem_type, use_cached_features=False)}
        task_variants = dict(variants)
        if name in spatial:  # the spatial setting validation chose for this task: what the main job's rows read
            setting = dict(spatial[name])
            task_variants["spatial (task's)"] = (setting.pop("prior_feature"), setting)
        if args.read_only:
            task_variants = with_read_only_rows(task_variants)
        for mode, (prior_feature, overrides) in task_variants.items():
            models[mode] = build_task_model(task, prior_dirs, labels, 112, prior_feature=prior_feature,
                                            **{**task.fusion, **overrides})
            collators[mode] = FaceCollator(processor, task.column, len(labels or ()), problem_type=task.problem_type,
                                           feature_view=feature_view(prior_feature))
        if args.augment != "none":  # a fresh draw every batch; the priors run in ET-Fuser's forward
            online = dict(point_columns=("landmarks",), augmentation=augmentation.policy_for(task.problem_type),
                          geometry_column="landmarks", use_cached_features=False, problem_type=task.problem_type)
            for mode, model in (("online canonical", models["canonical"]), ("online", models["et-fuser"])):
                models[mode] = model
                collators[mode] = FaceCollator(processor, task.column, len(labels or ()),
                                               crop_plan=CropPlan.for_model(model), **online)
        timings: dict[tuple[str, str], list[tuple[float, float]]] = {
            (mode, precision): [] for mode in models for precision in precisions}
        for _ in range(args.repeats):
            for mode, model in models.items():
                for precision in precisions:
                    timings[mode, precision].append(
                        epoch_seconds(model, train, collators[mode], args.batch_size, precision, sampler))
        trainable = {mode: sum(p.numel() for p in model.parameters() if p.requires_grad) for mode, model in models.items()}
        flops = {mode: step_flops(model, train, collators[mode], args.batch_size) for mode, model in models.items()
                 if not mode.startswith("online")}
        fastest = {key: [min(run[column] for run in runs) for column in (0, 1)] for key, runs in timings.items()}
        if args.augment != "none":
            for precision in precisions:
                canonical, fused = fastest["online canonical", precision][0], fastest["online", precision][0]
                cached = fastest["et-fuser", precision][0]
                print(f"{name:10s} {'online (priors run)':{WIDTH}s} {precision:5s} {'wall':5s} {canonical:10.2f} s "
                      f"{fused:20.2f} s {fused / canonical:7.3f}   priors' share of the online step "
                      f"{(fused - cached) / fused:.2f}")
        for mode in task_variants:
            for precision in precisions:
                for clock, column in (("wall", 0), ("CPU", 1)):
                    canonical, fused = fastest["canonical", precision][column], fastest[mode, precision][column]
                    print(f"{name:10s} {mode:{WIDTH}s} {precision:5s} {clock:5s} {canonical:10.2f} s {fused:20.2f} s "
                          f"{fused / canonical:7.3f}   {trainable['canonical']:,} -> {trainable[mode]:,}")
            print(f"{name:10s} {mode:{WIDTH}s} {'':5s} {'FLOPs':5s} {flops['canonical'] / 1e9:8.2f} GF "
                  f"{flops[mode] / 1e9:18.2f} GF "
                  f"{flops[mode] / flops['canonical']:7.3f}   (one step, forward + backward)")
        if len(precisions) == 2:
            first, second = precisions
            for mode in models:
                print(f"{name:10s} {mode:{WIDTH}s} wall epoch, {second} / {first}: "
                      f"{fastest[mode, second][0] / fastest[mode, first][0]:.3f}")


if __name__ == "__main__":
    main()
