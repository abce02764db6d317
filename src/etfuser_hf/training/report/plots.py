"""Plots of the run folder: loss and metric curves, confusion matrix, per-prior attention, and where the ensemble
token looks in each grid prior (`save_attention_maps`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np

from ...analysis.attention_maps import attention_panels, save_attention_figure
from ...data.collators import face_inputs
from ...models.image_processing_etfuser import ETFuserImageProcessor
from ...models.modeling_etfuser import ETFuserPreTrainedModel
from ...priors.crop_plan import CropPlan
from ..run.trainer import RunResult


# the validation metrics drawn per problem type (whichever the log has); those in [0, 1] share a fixed axis
CURVE_METRICS = ("accuracy", "macro_f1", "multilabel_accuracy", "multilabel_f1", "mae", "rmse", "ccc", "nme")
UNIT_METRICS = {"accuracy", "macro_f1", "multilabel_accuracy", "multilabel_f1", "nme"}


def save_plots(folder: Path, main: RunResult, labels: np.ndarray, label_names: Sequence[str],
               prior_attention: Mapping[str, float]) -> list[str]:
    """Loss and metric curves, the confusion matrix and the per-prior attention bar chart of the main row's first run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    history = main.log_history
    written = []
    figure, axis = plt.subplots(figsize=(5, 3.2))
    train = [(entry["epoch"], entry["loss"]) for entry in history if "loss" in entry]
    evaluation = [(entry["epoch"], entry["eval_loss"]) for entry in history if "eval_loss" in entry]
    for points, label in ((train, "train"), (evaluation, "eval")):
        if points:
            axis.plot(*zip(*points), marker="." if label == "eval" else None, label=label)
    axis.set(xlabel="epoch", ylabel="loss", title=f"{main.name}: loss")
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "loss_curve.png", dpi=120)
    written.append("loss_curve.png")

    figure, axis = plt.subplots(figsize=(5, 3.2))
    plotted = []
    for key in CURVE_METRICS:
        points = [(entry["epoch"], entry[f"eval_{key}"]) for entry in history if f"eval_{key}" in entry]
        if points:
            axis.plot(*zip(*points), marker="o", label=key)
            plotted.append(key)
    axis.set(xlabel="epoch", ylabel="score", title=f"{main.name}: validation metrics")
    if set(plotted) <= UNIT_METRICS:  # MAE (years) and RMSE have no upper bound
        axis.set_ylim(0, 1)
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "metric_curve.png", dpi=120)
    written.append("metric_curve.png")

    if not label_names:  # a regression task (landmarks) has no confusion matrix
        return _attention_plot(folder, prior_attention, written)
    matrix = np.zeros((len(label_names), len(label_names)), dtype=int)
    np.add.at(matrix, (labels, main.predictions), 1)
    figure, axis = plt.subplots(figsize=(5, 4.5))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axis.set_yticks(range(len(label_names)), label_names)
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, str(value), ha="center", va="center", fontsize=8)
    axis.set(xlabel="predicted", ylabel="true", title=f"{main.name}: confusion matrix")
    figure.tight_layout()
    figure.savefig(folder / "confusion_matrix.png", dpi=120)
    written.append("confusion_matrix.png")

    return _attention_plot(folder, prior_attention, written)


def _attention_plot(folder: Path, prior_attention: Mapping[str, float], written: list[str]) -> list[str]:
    import matplotlib.pyplot as plt

    if prior_attention:
        figure, axis = plt.subplots(figsize=(5, 3))
        axis.bar(list(prior_attention), list(prior_attention.values()), color="tab:orange")
        axis.set(ylabel="share of attention", title="ensemble token attention per prior (eval mean)")
        figure.tight_layout()
        figure.savefig(folder / "prior_attention.png", dpi=120)
        written.append("prior_attention.png")
    plt.close("all")
    return written


def save_attention_maps(folder: Path, models: Mapping[str, ETFuserPreTrainedModel], test: datasets.Dataset,
                        processor: ETFuserImageProcessor, num_faces: int = 3, synthetic: bool = True,
                        geometry_column: str | None = None) -> list[str]:
    """`attention_maps.png`: for the first `num_faces` test faces, each task's model's ensemble-token attention over
    every grid prior, each drawn over that prior's own crop of the face (`analysis.attention_maps.attention_panels`,
    as `etfuser analyze` draws them): the inputs training fed (`data.collators.face_inputs`), each network's crop
    placed by the faces in `geometry_column` through each model's `CropPlan` (an aligned dataset's faces as their
    canonical crops cut from the photos); without it every network reads the whole face. Nothing where no model reads
    grid tokens."""
    faces = [test[index] for index in range(min(num_faces, len(test)))]
    images = [face["image"] for face in faces]
    figure_rows = []
    for task, model in models.items():
        inputs, crops = face_inputs(images, faces, processor, CropPlan.for_model(model), geometry_column)
        panels = attention_panels(model, inputs, crops or None)
        figure_rows += panels.rows(task) if panels.maps else []
    if not figure_rows:
        return []
    data = "SYNTHETIC test faces" if synthetic else "test faces"
    save_attention_figure(folder / "attention_maps.png", figure_rows,
                          title=f"ensemble token attention over each prior's grid, on its own crop, last fusion layer "
                                f"({data})")
    return ["attention_maps.png"]
