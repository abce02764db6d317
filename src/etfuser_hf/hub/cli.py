"""`etfuser` (or `python -m etfuser_hf`): predict, train, evaluate, export, card and demo from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = """ET-Fuser for Hugging Face Transformers: fuse frozen face-analysis priors through a learned
ensemble token.

sub-commands:
  predict    classify the faces in images with a saved ET-Fuser
  train      train ET-Fuser and its baselines (the main job; `etfuser train --help` for its options)
  evaluate   accuracy and macro-F1 of a saved ET-Fuser on a dataset
  export     ONNX (verified with onnxruntime) and torch.export of a saved ET-Fuser
  card       write the Hub model card of a run folder
  demo       annotate a photo: faces, predicted labels, per-prior attention
  analyze    images, folders and videos in, one table (CSV/Parquet) out: a row per face per frame
"""


def _load(model_dir: str):
    import torch

    from ..models.image_processing_etfuser import ETFuserImageProcessor
    from ..models.modeling_etfuser import ETFuserForImageClassification

    if not (Path(model_dir) / "config.json").is_file():
        raise SystemExit(f"model_dir: {model_dir} is not a saved ET-Fuser folder (no config.json).")
    model = ETFuserForImageClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, ETFuserImageProcessor.from_pretrained(model_dir)


def predict(args: argparse.Namespace) -> None:
    import PIL.Image

    from .demo import predict_faces

    model, processor = _load(args.model_dir)
    results = {}
    for image_path in args.images:
        if not Path(image_path).is_file():
            raise SystemExit(f"images: {image_path} does not exist.")
        predictions = predict_faces(PIL.Image.open(image_path), model, processor)
        results[image_path] = [{"box": [round(float(v), 1) for v in p.box], "label": p.label,
                                "score": round(p.score, 4), "prior_attention": p.prior_attention} for p in predictions]
    print(json.dumps(results, indent=2))


def evaluate(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from ..data.face_datasets import load_face_dataset
    from ..data.synthetic_faces import make_synthetic_faces
    from ..metrics import accuracy, macro_f1

    model, processor = _load(args.model_dir)
    if args.dataset is None:
        data = make_synthetic_faces(args.num_eval, model.config.image_size, seed=args.seed)
    else:
        data = load_face_dataset(args.dataset)
        data = data[args.split] if hasattr(data, "keys") else data
    predictions = []
    for start in range(0, len(data), 64):
        batch = data[start : start + 64]
        with torch.no_grad():
            logits = model(**processor(batch["image"], return_tensors="pt")).logits
        predictions.extend(logits.argmax(-1).tolist())
    labels = np.asarray(data[args.task])
    print(json.dumps({"num_samples": len(labels), "accuracy": accuracy(predictions, labels),
                      "macro_f1": macro_f1(predictions, labels, model.config.num_labels)}, indent=2))


def export(args: argparse.Namespace) -> None:
    from .export import export_onnx, export_program, verify_onnx

    model, _ = _load(args.model_dir)
    path = export_onnx(model, args.output)
    print(f"ONNX written to {path}")
    if not args.no_verify:
        print(f"max |onnxruntime - PyTorch| = {verify_onnx(model, path):.2e}")
    if args.torch_export:
        import torch

        program_path = Path(args.output).with_suffix(".pt2")
        torch.export.save(export_program(model), program_path)
        print(f"torch.export program written to {program_path}")


def card(args: argparse.Namespace) -> None:
    from .model_card import write_model_card

    print(f"model card written to {write_model_card(args.run_folder, args.output, args.name)}")


def analyze_files(args: argparse.Namespace) -> int:
    """`etfuser analyze`: shards the files over processes when started by `accelerate launch` (or torchrun); the
    main process merges the parts into `--output`. Returns the exit status: 1 when any input failed."""
    from accelerate import PartialState

    from .analysis import analyze, empty_table, load_model
    from .analysis_backends import ensure_analysis_onnx
    from .analysis_report import (
        check_table_path,
        merge_tables,
        plot_time_course,
        summarize,
        video_sources,
        write_table,
    )
    from .media import expand_inputs

    output = check_table_path(args.output, "--output")
    files = expand_inputs(args.paths)
    # analyze runs on the CPU; without cpu=True a CPU-only machine would ignore the processes torchrun started
    state = PartialState(cpu=True)
    if args.backend == "onnx":
        # one process exports, the others then find the cached graph
        with state.main_process_first():
            model, size, folder = load_model(args.model)
            ensure_analysis_onnx(model, folder, size)
    options = dict(model=args.model, batch_size=args.batch_size, backend=args.backend,
                   every_n_frames=args.every_n_frames, max_faces=args.max_faces,
                   progress=not args.no_progress and state.is_main_process)
    with state.split_between_processes(files) as part:
        table = analyze(part, **options) if part else empty_table(load_model(args.model)[0])
    if state.num_processes > 1:
        parts = [output.with_name(f"{output.name}.part{rank}-of-{state.num_processes}.parquet")
                 for rank in range(state.num_processes)]
        write_table(table, parts[state.process_index])
        state.wait_for_everyone()
        if not state.is_main_process:
            # the main process reports failures: a worker exiting non-zero makes the launcher kill the merge
            return 0
        table = merge_tables(parts)
        for path in parts:
            path.unlink()
    write_table(table, output)
    summary = summarize(table)
    if args.summary:
        write_table(summary, args.summary)
    for source in video_sources(table) if args.plots else []:
        plot_time_course(table, source, Path(args.plots) / f"{Path(source).stem}_time_course.png")
    failed = table[table["status"] == "error"]
    print(f"{len(table)} rows ({int((table['status'] == 'ok').sum())} faces, {len(failed)} errors) from "
          f"{table['source'].nunique()} files written to {output}")
    print(summary[["source", "frames", "frames_with_face", "faces", "errors", "top_label"]].to_string(index=False))
    for row in failed.itertuples():
        print(f"error: {row.source}: {row.error}", file=sys.stderr)
    return 1 if len(failed) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etfuser", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    sub = commands.add_parser("predict", help="classify the faces in images",
                              description="Detect, align and classify every face in each image; prints JSON.")
    sub.add_argument("model_dir", help="a saved ET-Fuser folder (e.g. runs/etfuser-synthetic/model)")
    sub.add_argument("images", nargs="+", help="image files")
    sub.set_defaults(handler=predict)

    commands.add_parser("train", help="train ET-Fuser and baselines (the main job)", add_help=False,
                        description="All options: `etfuser train --help`.")

    sub = commands.add_parser("evaluate", help="accuracy and macro-F1 of a saved model",
                              description="Evaluate a saved ET-Fuser on the synthetic default or a local dataset.")
    sub.add_argument("model_dir", help="a saved ET-Fuser folder")
    sub.add_argument("--dataset", default=None, help="a local dataset layout (etfuser_hf.data.face_datasets); default: synthetic")
    sub.add_argument("--split", default="test", help="split of a multi-split dataset (default: test)")
    sub.add_argument("--task", default="expression", help="label column (default: expression)")
    sub.add_argument("--num-eval", type=int, default=500, help="synthetic images when no --dataset (default: 500)")
    sub.add_argument("--seed", type=int, default=1, help="seed of the synthetic images (default: 1, unseen in training)")
    sub.set_defaults(handler=evaluate)

    sub = commands.add_parser("export", help="ONNX / torch.export", description="Export a saved ET-Fuser classifier.")
    sub.add_argument("model_dir", help="a saved ET-Fuser folder")
    sub.add_argument("--output", default="et-fuser.onnx", help="ONNX file to write (default: et-fuser.onnx)")
    sub.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    sub.add_argument("--torch-export", action="store_true", help="also save a torch.export program (.pt2)")
    sub.set_defaults(handler=export)

    sub = commands.add_parser("card", help="write the Hub model card of a run folder",
                              description="Generate model_cards/<name>/README.md from a run folder's metrics.json.")
    sub.add_argument("run_folder", help="a folder written by `etfuser train` (e.g. runs/etfuser-synthetic)")
    sub.add_argument("--output", default="model_cards/et-fuser/README.md")
    sub.add_argument("--name", default="et-fuser", help="model name in the card (default: et-fuser)")
    sub.set_defaults(handler=card)

    from .demo import add_arguments, run_demo

    sub = commands.add_parser("demo", help="annotate a photo", description="Detect faces, classify them and write "
                              "an annotated image with per-prior attention bars.")
    add_arguments(sub)
    sub.set_defaults(handler=lambda args: run_demo(args.image, args.model, args.output))

    sub = commands.add_parser("analyze", help="images, folders, videos -> one table of faces",
                              description="Detect and analyse every face in images, folders (recursive) and videos; "
                              "write one row per face per image or frame (etfuser_hf.hub.analysis documents the "
                              "columns). Exits 1 when an input could not be read. Under `accelerate launch -m "
                              "etfuser_hf.cli analyze ...` the files are sharded over the processes.")
    sub.add_argument("paths", nargs="+", help="image files, video files and folders")
    sub.add_argument("--model", default=None, help="saved ET-Fuser folder (default: newest runs/*/model)")
    sub.add_argument("--output", default="results.csv", help="table to write: .csv or .parquet (default: results.csv)")
    sub.add_argument("--batch-size", type=int, default=32, help="frames per detection chunk and faces per model batch")
    sub.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                     help="torch, or onnx (exported once per model folder, cached; run with onnxruntime)")
    sub.add_argument("--every-n-frames", type=int, default=1, help="analyse every n-th video frame (default: 1)")
    sub.add_argument("--max-faces", type=int, default=None, help="keep at most this many faces per frame")
    sub.add_argument("--summary", default=None, help="also write the per-file summary table (.csv or .parquet)")
    sub.add_argument("--plots", default=None, help="folder for one time-course PNG per video")
    sub.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.set_defaults(handler=analyze_files)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from ..training.main import main as train_main

        train_main(argv[1:], prog="etfuser train")
        return
    args = build_parser().parse_args(argv)
    status = args.handler(args)
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
