"""Train and evaluate ET-Fuser with the Trainer, compare it with baselines, and write a run folder.

With no arguments this is the README's main job: the real converted face priors (face-api recognition + 68
landmarks, dlib age, FER2013 expression; fetched and converted once), a small ViT backbone, the SYNTHETIC offline
default dataset (expression task), baselines (backbone alone, a linear probe per prior, concatenated priors + MLP)
with paired-bootstrap and McNemar p-values, and `runs/etfuser-synthetic/`.

    python training/train.py                                 # main job (a few minutes on 2 CPU cores)
    python training/train.py --ablations                     # + mask strategy / fusion mode / number of priors
    python training/train.py --task mask --bf16 --lora       # another label, CPU bf16 autocast, LoRA adapters
    python training/train.py --variants mask-isolated priors-2   # any entries of etfuser_hf.training.variants.VARIANTS
    python training/train.py --multitask expression mask      # one cross-task model against two single-task models
    torchrun --nproc_per_node 2 training/train.py --no-baselines   # data parallel (gloo on CPU, nccl on GPUs)
    accelerate launch --multi_gpu training/train.py --no-baselines
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from ..data.face_datasets import load_face_dataset
from ..data.labels import check_label_column, encode_label_column
from ..data.synthetic_faces import make_synthetic_faces
from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..priors.convert_face_priors import ensure_face_priors
from ..priors.fetch import default_cache_dir
from .collators import FaceCollator, MultiTaskFaceCollator
from .feature_cache import PriorFeatureCache, pooled_prior_features
from .plots import save_plots
from .probes import fit_probe
from .recipe import DEFAULT_PRIORS, build_etfuser_from_face_priors
from .results import (
    count_parameters,
    mean_prior_attention,
    multitask_comparison,
    results_table,
)
from .run_folder import write_run_folder
from .trainer_runs import apply_lora, train_multitask_variant, train_variant
from .variants import VARIANTS


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    companion_names = [name.removeprefix("aux-") for name, variant in VARIANTS.items() if variant.group == "companion"]
    parser.add_argument("--dataset", default=None,
                        help="your data instead of the synthetic default: a local layout etfuser_hf.data.face_datasets reads "
                             "(FER2013 CSV, RAF-DB, UTKFace, CelebA, AffectNet CSV, manifest, imagefolder) or a hub id")
    parser.add_argument("--dataset-format", default=None, help="force a format (see etfuser_hf.data.face_datasets.FORMATS)")
    parser.add_argument("--task", default="expression",
                        help="label column: expression | mask | age_group for the synthetic default, or a "
                             "ClassLabel column of --dataset (default: expression; 'label' is typical for --dataset)")
    parser.add_argument("--priors", nargs="+", default=list(DEFAULT_PRIORS), choices=list(DEFAULT_PRIORS),
                        help="converted face priors to fuse (default: all four)")
    parser.add_argument("--num-train", type=int, default=2400, help="synthetic training images")
    parser.add_argument("--num-eval", type=int, default=800, help="synthetic evaluation images")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--max-steps", type=int, default=-1, help="overrides --epochs when > 0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (CPU autocast or GPU)")
    parser.add_argument("--fp16", action="store_true", help="fp16 mixed precision (GPU only)")
    parser.add_argument("--lora", action="store_true", help="LoRA on the backbone and fusion attention")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--early-stopping", type=int, default=3, help="patience in evaluations (0 disables)")
    parser.add_argument("--resume_from_checkpoint", "--resume-from-checkpoint", default=None,
                        help="a checkpoint folder, or 'latest' for the newest in the main variant's folder")
    parser.add_argument("--no-cache", action="store_true", help="run the priors in every step instead of caching")
    parser.add_argument("--no-baselines", action="store_true", help="train ET-Fuser only")
    parser.add_argument("--ablations", action="store_true", help="also train the ablation variants")
    parser.add_argument("--companion", nargs="+", default=[], choices=companion_names,
                        help="also train ET-Fuser with these companion-paper auxiliary tasks (synthetic data only)")
    parser.add_argument("--variants", nargs="+", default=[], choices=list(VARIANTS), metavar="NAME",
                        help=f"also train these entries of etfuser_hf.training.variants.VARIANTS: {', '.join(VARIANTS)}")
    parser.add_argument("--multitask", nargs="+", default=[], metavar="COLUMN",
                        help="also train one ETFuserForMultiTaskFaceAnalysis over these label columns (e.g. "
                             "'expression mask'; --task is added if missing) and a single-task ET-Fuser per column, "
                             "and compare them in accuracy (p-values) and parameters")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/etfuser-synthetic"))
    parser.add_argument("--cache-dir", type=Path, default=None, help="priors and feature cache (default ~/.cache/etfuser_hf)")
    return parser.parse_args(argv)


def label_columns(args: argparse.Namespace) -> list[str]:
    """`--task` first, then the other `--multitask` columns."""
    return [args.task] + [column for column in dict.fromkeys(args.multitask) if column != args.task]


def load_data(args: argparse.Namespace):
    """(train, eval) datasets with an `image` column and a ClassLabel column per label column (`--task` and the
    `--multitask` ones; plain integer or string labels of a manifest are encoded); a dataset without a
    test/validation split is split 80/20, stratified by `--task`."""
    if args.dataset is None:
        data = make_synthetic_faces(args.num_train + args.num_eval, args.image_size, args.seed)
        train_data, eval_data = (data.select(range(args.num_train)),
                                 data.select(range(args.num_train, args.num_train + args.num_eval)))
    else:
        data = load_face_dataset(args.dataset, args.dataset_format)
        for column in label_columns(args):
            data = encode_label_column(data, column)
        eval_split = None
        if isinstance(data, datasets.DatasetDict):
            eval_split = next((name for name in ("test", "validation") if name in data), None)
            if eval_split is not None and "train" in data:
                train_data, eval_data = data["train"], data[eval_split]
            else:
                data, eval_split = datasets.concatenate_datasets(list(data.values())), None
        if eval_split is None:
            parts = data.train_test_split(test_size=0.2, seed=args.seed, stratify_by_column=args.task)
            train_data, eval_data = parts["train"], parts["test"]
    for column in label_columns(args):
        feature = train_data.features.get(column)
        if not isinstance(feature, datasets.ClassLabel):
            raise ValueError(f"label column {column!r} must be a ClassLabel column of the dataset, got {feature!r}; "
                             f"columns: {list(train_data.features)}.")
        check_label_column(train_data, column, feature.num_classes, "train split")
        check_label_column(eval_data, column, feature.num_classes, "eval split")
    return train_data, eval_data


def selected_variants(args: argparse.Namespace) -> list[str]:
    """Registry entries to train besides ET-Fuser, in registry order: the baselines unless --no-baselines, the
    ablations with --ablations, the named companion tasks and --variants; prior-count ablations that would not
    drop a prior are skipped."""
    wanted = set(args.variants) | {f"aux-{name}" for name in args.companion}
    names = []
    for name, variant in VARIANTS.items():
        if variant.num_priors is not None and variant.num_priors >= len(args.priors):
            continue
        if (name in wanted or (variant.group == "baseline" and not args.no_baselines)
                or (variant.group == "ablation" and args.ablations)):
            names.append(name)
    return names


def main(argv: list[str] | None = None, prog: str | None = None) -> dict:
    args = parse_args(argv, prog)
    start = time.perf_counter()
    cache_dir = args.cache_dir or default_cache_dir()
    output_dir = args.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    prior_dirs = ensure_face_priors(cache_dir, args.priors)
    train_data, eval_data = load_data(args)
    label_names = train_data.features[args.task].names
    processor = ETFuserImageProcessor(size={"height": args.image_size, "width": args.image_size})

    def etfuser(labels=label_names, **overrides):
        torch.manual_seed(args.seed)  # every variant starts from the same fusion/backbone initialisation
        return build_etfuser_from_face_priors({name: prior_dirs[name] for name in overrides.pop("priors", args.priors)},
                                              labels, args.image_size, **overrides)

    model = etfuser()
    if not args.no_cache:
        cache = PriorFeatureCache(model, processor, cache_dir / "features")
        train_data, eval_data = cache(train_data), cache(eval_data)
    collator_options = dict(use_cached_features=not args.no_cache,
                            include_landmarks="landmarks" in train_data.column_names)
    collator = FaceCollator(processor, args.task, len(label_names), **collator_options)
    run_settings = dict(num_train_epochs=args.epochs, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
                        learning_rate=args.learning_rate, seed=args.seed, bf16=args.bf16, fp16=args.fp16)

    def train(name, description, variant_model, resume=None, variant_collator=collator):
        return train_variant(name, description, variant_model, train_data, eval_data, variant_collator,
                             output_dir / "checkpoints" / name, early_stopping_patience=args.early_stopping or None,
                             resume_from_checkpoint=resume, **run_settings)

    resume = args.resume_from_checkpoint
    if resume == "latest":
        resume = True
    description = f"ET-Fuser: {len(args.priors)} frozen priors, ensemble token added to the ViT's pooled output"
    main_model = apply_lora(model, args.lora_rank) if args.lora else model
    main_result, main_trainer = train("et-fuser", description + (" (LoRA)" if args.lora else ""), main_model, resume)
    results = [main_result]

    model_dir = output_dir / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    if args.lora:
        main_model.save_pretrained(output_dir / "lora_adapter")
        main_model = main_model.merge_and_unload()
    main_model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)

    def train_registered(name):
        variant = VARIANTS[name]
        overrides, description = dict(variant.overrides), variant.description
        if variant.num_priors is not None:
            overrides["priors"] = args.priors[:variant.num_priors]
            description += f" ({', '.join(overrides['priors'])})"
        results.append(train(name, description, etfuser(**overrides))[0])

    variants = selected_variants(args)
    for name in variants:
        if VARIANTS[name].group == "baseline":
            train_registered(name)
    labels = np.asarray(eval_data[args.task])
    if not args.no_baselines and not args.no_cache:  # the probes read the cached prior features
        train_labels = np.asarray(train_data[args.task])
        for name in args.priors:
            results.append(fit_probe(f"probe-{name}", f"linear probe on the frozen {name} prior",
                                     pooled_prior_features(train_data, [name]), train_labels,
                                     pooled_prior_features(eval_data, [name]), labels, seed=args.seed))
        results.append(fit_probe("concat-mlp", "all priors' features concatenated + MLP",
                                 pooled_prior_features(train_data, args.priors), train_labels,
                                 pooled_prior_features(eval_data, args.priors), labels, hidden_size=256,
                                 seed=args.seed))
    for name in variants:
        if VARIANTS[name].group != "baseline":
            train_registered(name)

    def train_multitask(columns):
        """One ETFuserForMultiTaskFaceAnalysis over `columns` against a single-task ET-Fuser per column (the main model
        for --task): the comparison for the run folder, and the --task branch as a row of the main table."""
        task_labels = {column: train_data.features[column].names for column in columns}
        multitask_model, name = etfuser(task_labels), "multitask-" + "+".join(columns)
        num_labels = {column: len(names) for column, names in task_labels.items()}
        multitask_collator = MultiTaskFaceCollator(processor, num_labels, **collator_options)
        branches = train_multitask_variant(
            name, f"one cross-task ET-Fuser for {', '.join(columns)}", multitask_model, train_data, eval_data,
            multitask_collator, output_dir / "checkpoints" / name, early_stopping_patience=args.early_stopping or None,
            **run_settings)[0]
        single_results, single_models = {args.task: main_result}, [main_model]
        for column in columns[1:]:
            single_models.append(etfuser(task_labels[column]))
            column_collator = FaceCollator(processor, column, num_labels[column], **collator_options)
            single_results[column] = train(f"single-{column}", f"ET-Fuser for {column} alone", single_models[-1],
                                           variant_collator=column_collator)[0]
        comparison = multitask_comparison(single_results, branches,
                                          {column: np.asarray(eval_data[column]) for column in columns},
                                          [count_parameters(single) for single in single_models],
                                          count_parameters(multitask_model))
        results.append(branches[args.task])
        return comparison

    multitask = train_multitask(label_columns(args)) if len(label_columns(args)) > 1 else None

    rows = results_table(results, "et-fuser", labels)
    attention = mean_prior_attention(main_model, eval_data, collator)  # LoRA: the merged model
    plots = save_plots(output_dir / "plots", main_result, labels, label_names, attention)
    summary = {
        "task": args.task,
        "problem_type": "single_label_classification",
        "label_names": label_names,
        "dataset": {"name": args.dataset or "etfuser-synthetic-faces", "split": "test", "num_samples": len(eval_data),
                    "synthetic": args.dataset is None,
                    "description": (f"SYNTHETIC faces from etfuser_hf.data.synthetic_faces (seed {args.seed}, "
                                    f"{args.image_size}px); {len(train_data)} train / {len(eval_data)} eval images")
                    if args.dataset is None else f"{args.dataset}: {len(train_data)} train / {len(eval_data)} eval"},
        "model": {"priors": {name: {"model_type": main_model.config.priors[name].config.model_type,
                                    "source": str(prior_dirs[name])} for name in args.priors},
                  "backbone": "ViT (hidden 192, 4 layers, patch 16), random init",
                  **count_parameters(main_model)},
        "prior_attention": attention,
        **({"multitask": multitask} if multitask else {}),
        "plots": [f"plots/{name}" for name in plots],
        "training": {"epochs": main_trainer.state.epoch, "steps": main_trainer.state.global_step,
                     "seconds": round(main_result.seconds, 1), "seed": args.seed, "bf16": args.bf16,
                     "lora": args.lora, "cached_prior_features": not args.no_cache,
                     "total_seconds": round(time.perf_counter() - start, 1)},
    }
    write_run_folder(output_dir, summary, rows, "et-fuser")
    print((output_dir / "results.md").read_text())
    print(json.dumps({"prior_attention": attention, "total_seconds": summary["training"]["total_seconds"],
                      "run_folder": str(output_dir)}, indent=2))
    return summary


if __name__ == "__main__":
    main()
