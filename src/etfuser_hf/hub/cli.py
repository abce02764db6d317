"""`etfuser` (or `python -m etfuser_hf`): predict, train, evaluate, export, card and demo from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the analysis loads on use: `etfuser --help` stays light
    from ..analysis.pipeline import FaceAnalyzer
    from ..analysis.report import FacePrediction

DESCRIPTION = """ET-Fuser for Hugging Face Transformers: fuse frozen face-analysis priors through a learned
ensemble token.

sub-commands:
  predict    the faces in images through a saved ET-Fuser (labels, attributes, values or landmarks; JSON)
  train      train ET-Fuser and its baselines (the main job; `etfuser train --help` for its options)
  sweep      choose learning rates on the validation split (`etfuser sweep --help` for its options)
  evaluate   the metrics of a saved ET-Fuser on a dataset (accuracy, macro-F1; MAE, RMSE, CCC; NME; ...)
  export     ONNX (verified with onnxruntime) and torch.export of a saved ET-Fuser
  card       write the Hub model card of a run folder
  demo       annotate a photo: faces, predicted labels, per-prior attention
  analyze    images, folders and videos in, one table (CSV/Parquet) out: a row per face per frame
  space      the web demo (spaces/et-fuser, Gradio) on http://127.0.0.1:7860
"""
# The Space folder is pushed to the Hub as it is, so it lives beside the package in a checkout, not inside it.
SPACE_APP = Path(__file__).resolve().parents[3] / "spaces" / "et-fuser" / "app.py"


def report_bad(path: object, reason: object) -> None:
    """One line on stderr per unusable input: `path: reason`."""
    print(f"{path}: {reason}", file=sys.stderr)


def note_synthetic_training(analyzer: FaceAnalyzer, command: str) -> None:
    """One stderr line when the analyzer's model was trained on SYNTHETIC faces (`synthetic_data_note`, the reader of
    the Space's banner), naming the pretrained FER net's columns."""
    from .training_data import synthetic_data_note

    note = synthetic_data_note(analyzer.loaded.folder, command, analyzer.extras.extras)
    if note is not None:
        print(note, file=sys.stderr)


def predict(args: argparse.Namespace) -> int:
    """`etfuser predict`: the faces of each image through the analysis path (`FaceAnalyzer`, as `etfuser analyze`),
    printed as JSON (per face: box, the model's label, score and outputs, by task type as `face_json` says, the prior
    attention, and the pretrained FER net's `fer_label` and `fer_probabilities`); folders are searched recursively
    for images. Returns 1 when any input was unusable."""
    from ..analysis.media import IMAGE_SUFFIXES, expand_inputs, is_video, iter_media
    from ..analysis.pipeline import FaceAnalyzer
    from ..analysis.report import face_predictions
    from ..analysis.saved_model import load_model

    analyzer = FaceAnalyzer(load_model(args.model_dir))
    note_synthetic_training(analyzer, "predict")
    files, bad = [], 0
    for path in args.images:
        if Path(path).is_dir():
            found = expand_inputs(path, IMAGE_SUFFIXES)
            if not found:
                report_bad(path, f"folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
                bad += 1
            files += found
        elif is_video(path):
            report_bad(path, "a video; `etfuser analyze` reads videos")
            bad += 1
        else:
            files.append(path)  # missing and unreadable files are reported in the table's order below
    results = {}
    for source, rows in analyzer(iter_media(files)).groupby("source", sort=False):
        if rows["status"].iloc[0] == "error":
            report_bad(source, rows["error"].iloc[0])
            bad += 1
            continue
        results[source] = [face_json(face) for face in face_predictions(rows)]
    print(json.dumps(results, indent=2))
    return 1 if bad else 0


def face_json(face: FacePrediction) -> dict:
    """One face of `etfuser predict`'s JSON: `box` (x0, y0, x1, y1 image pixels); `label` and `score` (single-label:
    the argmax class and its probability; multi-label: the labels present joined by `|` and the highest probability;
    None for regression and landmarks); `outputs` (the table's model columns: `prob_<label>`, `attr_<label>` and
    `attr_prob_<label>`, `value_<target>`); for a landmark model `landmarks`, [[x, y], ...] in image pixels; then
    `prior_attention`, `fer_label`, `fer_probabilities`."""

    def rounded(values: dict[str, float]) -> dict[str, float]:
        return {name: round(value, 4) for name, value in values.items()}

    answer = {"box": [round(float(v), 1) for v in face.box], "label": face.label,
              "score": None if face.score is None else round(face.score, 4), "outputs": rounded(face.outputs)}
    if face.landmarks is not None:
        answer["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks]
    return {**answer, "prior_attention": face.prior_attention, "fer_label": face.fer_label,
            "fer_probabilities": rounded(face.fer_probabilities)}


def evaluate(args: argparse.Namespace) -> int:
    """`etfuser evaluate`: the metrics of a saved model's task type on the synthetic faces or a local dataset
    (`hub/evaluation.py`): classes matched to the model's by name, multi-label labels by name, landmarks mapped into
    the model's frame. Returns 1 when any image was unreadable."""
    import datasets

    from ..data.face_datasets import detect_format, load_face_dataset, source_report
    from ..data.sources.options import reader_options
    from ..data.synthetic_faces import make_synthetic_faces
    from .evaluation import evaluation_target, load_evaluated_model, score_dataset

    datasets.disable_progress_bars()
    model, processor, problem_type = load_evaluated_model(args.model_dir)
    options = reader_options(args.image_root, args.dataset_option)
    spec = None
    if args.dataset is None:
        if options:
            raise ValueError(f"--image-root / --dataset-option {options} need a --dataset.")
        data = make_synthetic_faces(args.num_eval, model.config.image_size, seed=args.seed)
        where, geometry = "synthetic", "landmarks"
        column = args.task or {"landmarks": "landmarks", "single_label_classification": "expression"}.get(problem_type)
        if column is None:
            raise ValueError(f"--task: the synthetic faces have no {problem_type} target; pass a --dataset.")
    else:
        # imagefolder: bad files are reported one by one below instead of refusing the whole folder at load
        if detect_format(args.dataset) == "imagefolder":
            options.setdefault("check_images", False)
        data = load_face_dataset(args.dataset, **options)
        report = source_report(data)  # what the reader declared of each column (None: not read by our readers)
        if hasattr(data, "keys") and args.split not in data:
            raise ValueError(f"--split: {args.dataset} has no split {args.split!r}; splits: {list(data)}.")
        data = data[args.split] if hasattr(data, "keys") else data
        where, column, geometry = f"{args.dataset} ({args.split})", args.task or "label", None
        spec = report.columns.get(column) if report is not None else None
    target = evaluation_target(model, problem_type, data, column, spec, where)
    summary = score_dataset(model, processor, data, target, where, report_bad, geometry_column=geometry)
    print(json.dumps(summary, indent=2))
    return 1 if summary["num_skipped"] else 0


def export(args: argparse.Namespace) -> None:
    from ..analysis.saved_model import load_model
    from ..training.report.output_guard import prepare_output_files
    from .export import export_onnx, export_program, verify_onnx

    output = Path(args.output)
    targets = [output, output.with_name(output.name + ".data")]  # the exporter's external-data file, when large
    prepare_output_files(targets + ([output.with_suffix(".pt2")] if args.torch_export else []), args.overwrite)
    model = load_model(args.model_dir).model
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
    from ..training.report.output_guard import prepare_output_files
    from .model_card import write_model_card

    prepare_output_files([args.output], args.overwrite)
    print(f"model card written to {write_model_card(args.run_folder, args.output, args.name)}")


def demo(args: argparse.Namespace) -> int:
    """`etfuser demo`: annotated photos (`hub/demo.py`)."""
    from .demo import run_demo

    run_demo(args.image, args.model, args.output)
    return 0


def space(args: argparse.Namespace) -> int:
    """`etfuser space`: serves `spaces/et-fuser/app.py` of the checkout the package is installed from, in its own
    interpreter (the app sets OpenMP's wait policy before torch loads). Returns the app's exit status."""
    import importlib.util
    import subprocess

    if not SPACE_APP.is_file():
        raise FileNotFoundError(f"no Space app at {SPACE_APP}: the Space (spaces/et-fuser) ships with the source "
                                "repository, not with the installed package; install the package editable from a "
                                "checkout (pip install -e '.[space]') or run `python spaces/et-fuser/app.py` there.")
    if importlib.util.find_spec("gradio") is None:
        raise OSError("the Space needs gradio: pip install -e '.[space]'")
    command = [sys.executable, str(SPACE_APP), *(["--model", args.model] if args.model else []), "--port", str(args.port)]
    if args.concurrency is not None:
        command += ["--concurrency", str(args.concurrency)]
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:  # Ctrl-C reached the app too, which stops by itself
        return 130


def analyze_files(args: argparse.Namespace) -> int:
    """`etfuser analyze`: each chunk of frames is written as a Parquet part as soon as it is made (`--resume`
    continues an interrupted run from its parts); the files are sharded over processes when started by `accelerate
    launch` (or torchrun), and the main process streams the parts into `--output`. Returns the exit status: 1 when any
    input failed."""
    from accelerate import PartialState

    from ..analysis.media import expand_inputs
    from ..analysis.parts import analyze_to_parts, merge_parts, parts_folder
    from ..analysis.pipeline import FaceAnalyzer, empty_table
    from ..analysis.report import (
        TOP_LABELS,
        check_table_path,
        plot_time_course,
        time_course_columns,
        video_sources,
        write_table,
    )

    output = check_table_path(args.output, "--output")
    files = expand_inputs(args.paths)
    # analyze runs on the CPU; without cpu=True a CPU-only machine would ignore the processes torchrun started
    state = PartialState(cpu=True)
    # the model loads once per process; with --backend onnx the main process exports first, the others then find
    # the cached graphs
    with state.main_process_first():
        analyzer = FaceAnalyzer(args.model, args.backend, args.batch_size, args.max_faces, extras=args.extras,
                                attention_maps=args.attention_maps)
    if state.is_main_process:
        note_synthetic_training(analyzer, "analyze")
    folder = parts_folder(output)
    with state.split_between_processes(files) as part:
        analyze_to_parts(analyzer, part, args.every_n_frames, folder, args.resume, state.process_index,
                         state.num_processes, progress=not args.no_progress and state.is_main_process)
    state.wait_for_everyone()
    if not state.is_main_process:
        # the main process reports failures: a worker exiting non-zero makes the launcher kill the merge
        return 0
    parts = sorted(folder.glob(f"rank*-of-{state.num_processes:03d}-chunk*.parquet"))
    running, courses = merge_parts(parts, output, empty_table(analyzer.loaded.model, analyzer.extras.extras),
                                   keep_time_course=bool(args.plots))
    for path in parts:
        path.unlink()
    folder.rmdir()
    summary = running.table()
    if args.summary:
        write_table(summary, args.summary)
    if courses is not None and not time_course_columns(courses.columns):
        print("--plots: a landmark model's table has points, not per-frame values; no time course drawn",
              file=sys.stderr)
        courses = None
    for source in video_sources(courses) if courses is not None else []:
        plot_time_course(courses, source, Path(args.plots) / f"{Path(source).stem}_time_course.png")
    faces, errors = int(summary["faces"].sum()) if len(summary) else 0, int(summary["errors"].sum()) if len(summary) else 0
    print(f"{running.rows} rows ({faces} faces, {errors} errors) from {len(summary)} files written to {output}")
    if len(summary):
        tops = [name for name in TOP_LABELS.values() if name in summary]
        shown = ["source", "frames", "frames_with_face", "faces", "errors", *tops]
        print(summary[shown].to_string(index=False))
    for source, error in running.errors:
        print(f"error: {source}: {error}", file=sys.stderr)
    return 1 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    from ..analysis.extras import EXTRAS
    from ..data.sources.options import add_reader_arguments

    parser = argparse.ArgumentParser(prog="etfuser", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    sub = commands.add_parser("predict", help="predict the faces in images (any task type)",
                              description="Detect and align every face in each image and run the model on it (its "
                                          "label, attributes, values or landmarks); prints JSON.")
    sub.add_argument("model_dir", help="a saved ET-Fuser folder (e.g. runs/etfuser-synthetic/model)")
    sub.add_argument("images", nargs="+", help="image files or folders of them; unreadable ones are reported on "
                     "stderr (path: reason), the rest are predicted, and the exit status is then 1")
    sub.set_defaults(handler=predict)

    commands.add_parser("train", help="train ET-Fuser and baselines (the main job)", add_help=False,
                        description="All options: `etfuser train --help`.")
    commands.add_parser("sweep", help="learning rates chosen on validation (the recipe's sweep)", add_help=False,
                        description="All options: `etfuser sweep --help`.")

    sub = commands.add_parser("evaluate", help="the metrics of a saved model on a dataset",
                              description="Evaluate a saved ET-Fuser on the synthetic default or a local dataset, with "
                              "the metrics of its task type: accuracy and macro-F1 (single-label), mean accuracy and "
                              "macro-F1 over labels (multi-label), MAE, RMSE and CCC (regression), NME (landmarks).")
    sub.add_argument("model_dir", help="a saved ET-Fuser folder")
    sub.add_argument("--dataset", default=None, help="a local dataset layout (etfuser_hf.data.face_datasets); default: synthetic")
    sub.add_argument("--split", default="test", help="split of a multi-split dataset (default: test)")
    sub.add_argument("--task", default=None, help="target column (default: expression on the synthetic faces, label on "
                     "a --dataset; e.g. age, attributes, valence, landmarks); classes are matched to the model's by "
                     "name (RAF-DB's happiness is happy), as are multi-label labels")
    sub.add_argument("--num-eval", type=int, default=500, help="synthetic images when no --dataset (default: 500)")
    sub.add_argument("--seed", type=int, default=1, help="seed of the synthetic images (default: 1, unseen in training)")
    add_reader_arguments(sub)
    sub.set_defaults(handler=evaluate)

    sub = commands.add_parser("export", help="ONNX / torch.export", description="Export a saved ET-Fuser classifier.")
    sub.add_argument("model_dir", help="a saved ET-Fuser folder")
    sub.add_argument("--output", default="et-fuser.onnx", help="ONNX file to write (default: et-fuser.onnx)")
    sub.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    sub.add_argument("--torch-export", action="store_true", help="also save a torch.export program (.pt2)")
    sub.add_argument("--overwrite", action="store_true", help="replace existing output files (refused otherwise)")
    sub.set_defaults(handler=export)

    sub = commands.add_parser("card", help="write the Hub model card of a run folder",
                              description="Generate model_cards/<name>/README.md from a run folder's metrics.json.")
    sub.add_argument("run_folder", help="a folder written by `etfuser train` (e.g. runs/etfuser-synthetic)")
    sub.add_argument("--output", default="model_cards/et-fuser/README.md")
    sub.add_argument("--name", default="et-fuser", help="model name in the card (default: et-fuser)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing card (refused otherwise)")
    sub.set_defaults(handler=card)

    from .demo import add_arguments

    sub = commands.add_parser("demo", help="annotate a photo", description="Detect faces, classify them and write "
                              "an annotated image with per-prior attention bars.")
    add_arguments(sub)
    sub.set_defaults(handler=demo)

    sub = commands.add_parser("analyze", help="images, folders, videos -> one table of faces",
                              description="Detect and analyse every face in images, folders (recursive) and videos; "
                              "write one row per face per image or frame (etfuser_hf.analysis.pipeline documents the "
                              "columns). Exits 1 when an input could not be read. Under `accelerate launch -m "
                              "etfuser_hf.cli analyze ...` the files are sharded over the processes.")
    sub.add_argument("paths", nargs="+", help="image files, video files and folders")
    sub.add_argument("--model", default=None, help="saved ET-Fuser folder (default: newest runs/*/model)")
    sub.add_argument("--output", default="results.csv", help="table to write: .csv or .parquet (default: results.csv)")
    sub.add_argument("--batch-size", type=int, default=32, help="frames per detection chunk and faces per model batch")
    sub.add_argument("--backend", choices=["torch", "onnx", "onnx-int8"], default="torch",
                     help="torch, onnx (exported once per model folder, cached; run with onnxruntime) or onnx-int8 "
                     "(the same, the face-recognition net quantised to int8)")
    sub.add_argument("--every-n-frames", type=int, default=1, help="analyse every n-th video frame (default: 1)")
    sub.add_argument("--max-faces", type=int, default=None, help="keep at most this many faces per frame")
    sub.add_argument("--summary", default=None, help="also write the per-file summary table (.csv or .parquet)")
    sub.add_argument("--plots", default=None, help="folder for one time-course PNG per video")
    sub.add_argument("--attention-maps", default=None, metavar="FOLDER",
                     help="folder for one PNG per image (and per video frame with faces, the first 16 of each video): "
                     "each face beside the ensemble token's attention over every prior's grid; for models whose "
                     "priors are read as grid tokens (e.g. runs/<run>/checkpoints/attention/<task>)")
    sub.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from the parts in <output>.parts/ (same inputs and options); "
                     "without it a run starts afresh")
    sub.add_argument("--extras", nargs="*", default=list(EXTRAS), choices=EXTRAS, metavar="EXTRA",
                     help=f"extra column groups from converted priors: {', '.join(EXTRAS)} (default: all; "
                     "none: `--extras` alone)")
    sub.set_defaults(handler=analyze_files)

    sub = commands.add_parser("space", help="the web demo on 127.0.0.1 (Gradio)",
                              description="Serve the Space (spaces/et-fuser/app.py of this checkout) on 127.0.0.1: "
                              "upload a photo or a short video in a browser, see every face the model finds.")
    sub.add_argument("--model", default=None, help="saved ET-Fuser folder or Hub model id (default: newest runs/*/model)")
    sub.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (default 7860)")
    sub.add_argument("--concurrency", type=int, default=None,
                     help="analyses running at once, sharing the cores (default: the app's, 2)")
    sub.set_defaults(handler=space)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from ..training.main import main as train_main

        train_main(argv[1:], prog="etfuser train")
        return
    if argv and argv[0] == "sweep":
        from ..training.validation_sweep import main as sweep_main

        sweep_main(argv[1:], prog="etfuser sweep")
        return
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr carries one line per bad input; loading bars would bury them
    try:
        status = args.handler(args)
    except (OSError, ValueError) as error:  # bad input and refused outputs: the message says it all, no traceback
        print(f"etfuser {args.command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
