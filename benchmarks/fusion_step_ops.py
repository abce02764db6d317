"""Where a training step of ET-Fuser goes beyond the canonical model's, in deterministic counts and in CPU time: for
the settings the default main job trains (`SYNTHETIC_TASKS`: expression reads pooled priors, age group and landmarks
their task's grid tokens, each task's fusion mode), one batch of cached features, the Trainer's own optimizer and
step (bf16 autocast, forward, backward, gradient clipping at the Trainer's `max_grad_norm`, AdamW, zero_grad).

    python benchmarks/fusion_step_ops.py [--tasks expression age_group landmarks] [--repeats 5] [--steps 8]
    python benchmarks/fusion_step_ops.py --by-op 25 --by-module 25   # where the calls go
    git show main:src/etfuser_hf/models/modeling_etfuser.py > /tmp/baseline.py
    python benchmarks/fusion_step_ops.py --baseline /tmp/baseline.py   # + each ET-Fuser as that file computes it

Operator calls: every event `torch.profiler` records in one step (nested calls included: an `aten::linear` and the
`aten::addmm` under it count twice), and the top-level ATen calls alone (a dispatch mode's count, autograd's backward
nodes included). CPU ms: `time.process_time` of one step, the models interleaved in the same process, the median
over `--repeats` x `--steps` steps (the machine's load moves wall time; the process's CPU clock much less).
`--baseline FILE`: a `modeling_etfuser.py` of another revision, loaded beside this one; every ET-Fuser row gets a
"(baseline)" twin of that file's class with the same weights, timed in the same alternation, and its loss and
gradients in float32 are compared with this revision's.
"""

from __future__ import annotations

import argparse
import collections
import copy
import importlib.util
import sys
import statistics
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.module_tracker import ModuleTracker

from etfuser_hf.data.collators import FaceCollator
from etfuser_hf.data.feature_cache import feature_view
from etfuser_hf.models.image_processing_etfuser import ETFuserImageProcessor
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.fetch import default_cache_dir
from etfuser_hf.training.comparison.prior_features import cache_prior_features
from etfuser_hf.training.comparison.recipe import build_task_model, fusion_attention_implementation
from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
from etfuser_hf.training.comparison.splits import synthetic_splits
from etfuser_hf.training.comparison.tasks import DEFAULT_PRIORS, SYNTHETIC_TASKS, row_recipe
from etfuser_hf.training.run.trainer import ETFuserTrainer, training_arguments


class CountOps(TorchDispatchMode):
    """Top-level ATen calls (what reaches the dispatcher below autograd), by name and by the innermost module."""

    def __init__(self, tracker: ModuleTracker | None = None):
        super().__init__()
        self.tracker = tracker
        self.by_op: collections.Counter = collections.Counter()
        self.by_module: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.by_op[str(func.overloadpacket.__name__)] += 1
        if self.tracker is not None:
            parents = [name for name in self.tracker.parents if name != "Global"]
            where = max(parents, key=len) if parents else "(outside modules: loss, optimizer)"
            self.by_module[where.split(".", 1)[-1] if "." in where else where] += 1
        return func(*args, **(kwargs or {}))


class Step:
    """One Trainer-like training step of `model` on `batch`."""

    def __init__(self, model, batch, folder: str):
        arguments = training_arguments(folder, bf16=True, learning_rate=1e-3, eval_strategy="no", save_strategy="no",
                                       load_best_model_at_end=False, disable_tqdm=True)
        trainer = ETFuserTrainer(model=model, args=arguments)
        self.optimizer = trainer.create_optimizer(model)
        self.max_grad_norm = arguments.max_grad_norm
        self.model, self.batch = model, batch
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        model.train()

    def __call__(self) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = self.model(**self.batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def load_baseline(path: str):
    """`path`, a modeling_etfuser.py, as a module beside this revision's (its relative imports resolve to this
    package: only the modeling file differs)."""
    spec = importlib.util.spec_from_file_location("etfuser_hf.models._baseline_modeling_etfuser", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def float32_difference(model, twin, batch) -> str:
    """Relative difference of the loss and the largest of the parameters' gradients (each relative to the largest
    gradient of the model), one training forward and backward in float32."""
    results = []
    for network in (model, twin):
        network.train()
        network.zero_grad(set_to_none=True)
        loss = network(**batch).loss
        loss.backward()
        results.append((loss.item(), {name: p.grad.clone() for name, p in network.named_parameters() if p.grad is not None}))
        network.zero_grad(set_to_none=True)
    (loss, gradients), (twin_loss, twin_gradients) = results
    scale = max(gradient.abs().max().item() for gradient in twin_gradients.values())
    gap = max((gradients[name] - twin_gradients[name]).abs().max().item() for name in twin_gradients) / scale
    same = gradients.keys() == twin_gradients.keys()
    return f"loss {abs(loss - twin_loss) / abs(twin_loss):.1e}, gradients {gap:.1e}{'' if same else ' (other parameters!)'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(SYNTHETIC_TASKS), choices=list(SYNTHETIC_TASKS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--read-only", action="store_true", help="also the main row with read_only_priors=True")
    parser.add_argument("--by-op", type=int, default=0, help="print the N most called top-level ops per model")
    parser.add_argument("--by-module", type=int, default=0, help="print the N modules with the most top-level ops")
    parser.add_argument("--baseline", default=None, help="a modeling_etfuser.py to compare with (its twin of each model)")
    args = parser.parse_args()
    baseline = load_baseline(args.baseline) if args.baseline else None
    torch.manual_seed(0)
    torch.set_num_threads(1)
    prior_dirs = ensure_face_priors(names=DEFAULT_PRIORS)
    splits, _ = synthetic_splits({"train": 64, "validation": 1, "test": 1}, 112, seed=99)
    processor = ETFuserImageProcessor(size={"height": 112, "width": 112})
    tasks = [SYNTHETIC_TASKS[name] for name in args.tasks]
    views = [task.spatial["prior_feature"] for task in tasks if task.main_tokens == "spatial"]
    train = cache_prior_features(splits, prior_dirs, processor, default_cache_dir(), 112, views)[0]["train"]
    steps: dict[str, Step] = {}
    folder = tempfile.mkdtemp()
    for task in tasks:
        labels = train.features[task.column].names if task.is_classification else None
        rows = {row.name: row for row in PROTOCOL_ROWS}
        recipe = row_recipe(rows["et-fuser"], task)
        prior_feature = recipe.pop("prior_feature", None)
        variants = {"canonical": (row_recipe(rows["canonical"], task), None), "et-fuser": (recipe, prior_feature)}
        if args.read_only:
            variants["et-fuser read-only"] = ({**recipe, "read_only_priors": True}, prior_feature)
        for variant, (overrides, feature) in variants.items():
            torch.manual_seed(0)
            model = build_task_model(task, prior_dirs, labels, 112, prior_feature=feature, **overrides)
            collator = FaceCollator(processor, task.column, len(labels or ()), problem_type=task.problem_type,
                                    use_cached_features=variant != "canonical", feature_view=feature_view(feature))
            view = collator.view(train)
            batch = collator([view[index] for index in range(args.batch_size)])
            steps[f"{task.name} {variant}"] = Step(model, batch, folder)
            if baseline is not None and variant != "canonical":
                twin = getattr(baseline, type(model).__name__)(copy.deepcopy(model.config))
                twin.load_state_dict(model.state_dict())
                twin.set_attn_implementation({"": fusion_attention_implementation()})
                print(f"{task.name} {variant}: float32 loss and gradients, this revision vs baseline: "
                      f"{float32_difference(model, twin, batch)}")
                steps[f"{task.name} {variant} (baseline)"] = Step(twin, batch, folder)
    for step in steps.values():  # warm-up: the optimizer's state, the first call's allocations
        step()
        step()
    print(f"batch {args.batch_size}, bf16 autocast, torch threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'model':32s} {'profiler events':>15s} {'top-level ops':>13s} {'CPU ms':>8s} {'(spread)':>15s} "
          f"{'params':>7s}")
    counts = {}
    for key, step in steps.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        tracker = ModuleTracker()
        with tracker, CountOps(tracker) as counter:
            step()
        counts[key] = (len(prof.events()), counter)
    times: dict[str, list[float]] = {key: [] for key in steps}
    for _ in range(args.repeats):
        for key, step in steps.items():
            for _ in range(args.steps):
                start = time.process_time()
                step()
                times[key].append(1e3 * (time.process_time() - start))
    for key, step in steps.items():
        events, counter = counts[key]
        quartiles = statistics.quantiles(times[key], n=4) if len(times[key]) > 1 else times[key] * 3
        print(f"{key:32s} {events:15d} {sum(counter.by_op.values()):13d} {statistics.median(times[key]):8.1f} "
              f"({quartiles[0]:5.1f}-{quartiles[2]:5.1f}) {len(step.parameters):7d}")
    for key in steps:
        counter = counts[key][1]
        if args.by_op:
            print(f"\n{key}: top-level ops by name")
            for name, count in counter.by_op.most_common(args.by_op):
                print(f"  {count:6d} {name}")
        if args.by_module:
            print(f"\n{key}: top-level ops by innermost module")
            for name, count in counter.by_module.most_common(args.by_module):
                print(f"  {count:6d} {name}")


if __name__ == "__main__":
    main()
