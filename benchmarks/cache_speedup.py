"""Epoch time of ET-Fuser training with the prior-feature cache / without it, measured in one run.

Real converted face priors (face-api recognition + landmarks, dlib age, FER2013 expression), the default small ViT
backbone, 112x112 synthetic faces, batch 32, CPU. The cache is built once before the timed epochs (its one-off cost
is printed too); each setting is timed `--repeats` times, interleaved, and the fastest epoch counts (the first
uncached epoch of a process can carry tens of seconds of one-off warm-up). Target: ratio <= 0.05.

With `--fusion-mode priors_only` the cache removes all per-step encoder work (2 cores: 2.61 s -> 0.12 s, 0.045);
with the default recipe (`add_to_pooled`) the trainable ViT backbone still runs on the pixels every step, which
bounds the saving (3.37 s -> 0.97 s, 0.29).

    python benchmarks/cache_speedup.py [--num-images 256] [--fusion-mode priors_only] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from transformers import Trainer, TrainerCallback

from etfuser_hf import ETFuserImageProcessor
from etfuser_hf.data.collators import FaceCollator
from etfuser_hf.data.feature_cache import PriorFeatureCache
from etfuser_hf.data.synthetic_faces import EXPRESSIONS, make_synthetic_faces
from etfuser_hf.models.fusion_modes import fusion_mode_properties
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.training.comparison.recipe import DEFAULT_PRIORS, build_etfuser_from_face_priors
from etfuser_hf.training.run.trainer import training_arguments


class EpochTimer(TrainerCallback):
    """Wall time from the first step's start to the epoch's end: the epoch itself, without the Trainer's one-off
    set-up (optimizer, accelerate preparation), which would otherwise dominate short runs."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:
            self.start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start


def epoch_seconds(model, dataset, collator, output_dir: str) -> float:
    args = training_arguments(output_dir, num_train_epochs=1, eval_strategy="no", save_strategy="no",
                              load_best_model_at_end=False, disable_tqdm=True, logging_strategy="no")
    timer = EpochTimer()
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[timer]).train()
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs per setting; the fastest counts")
    parser.add_argument("--fusion-mode", default="add_to_pooled",
                        help="add_to_pooled (default recipe: the trainable ViT backbone still runs every step) or "
                             "priors_only (only the fusion module trains: what the cache can save at most)")
    args = parser.parse_args()
    prior_dirs = ensure_face_priors(names=DEFAULT_PRIORS)
    data = make_synthetic_faces(args.num_images, image_size=112, seed=0)
    processor = ETFuserImageProcessor(size={"height": 112, "width": 112})
    torch.manual_seed(0)
    reads_pixels = fusion_mode_properties(args.fusion_mode).canonical_model
    overrides = {"fusion_mode": args.fusion_mode, **({} if reads_pixels else {"backbone": None})}
    model = build_etfuser_from_face_priors(prior_dirs, EXPRESSIONS, image_size=112, **overrides)
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    without_collator = FaceCollator(processor, "expression", len(EXPRESSIONS), use_cached_features=False)
    with_collator = FaceCollator(processor, "expression", len(EXPRESSIONS),
                                 include_pixel_values=reads_pixels)
    timings = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        cached = PriorFeatureCache(model, processor, folder)(data)
        build = time.perf_counter() - start
        if not reads_pixels:  # only the canonical model reads the pixels past the cache: do not decode them
            cached = cached.remove_columns(["image"])
        # interleaved repeats, best of each: a shared machine's load spikes inflate single timings
        for _ in range(args.repeats):
            for name, dataset, collator in (("without", data, without_collator), ("with", cached, with_collator)):
                model.load_state_dict(initial)
                timings[name].append(epoch_seconds(model, dataset, collator, folder))
    without, with_cache = min(timings["without"]), min(timings["with"])
    print(f"{args.num_images} images, 4 real priors, fusion_mode={args.fusion_mode}, batch 32, "
          f"{torch.get_num_threads()} threads")
    print(f"one-off cache build: {build:.1f} s")
    print(f"epoch without cache: {without:.2f} s   epoch with cache: {with_cache:.2f} s   (best of {args.repeats}; "
          f"all: without {[round(t, 2) for t in timings['without']]}, with {[round(t, 2) for t in timings['with']]})")
    print(f"ratio with / without = {with_cache / without:.3f}   (target <= 0.05)")


if __name__ == "__main__":
    main()
