"""What to do with `analyze`'s table: write and read it (CSV or Parquet), merge the parts of a multi-process run,
summarise it per source file, plot a video's per-class probabilities over time, and read its faces back as
`FacePrediction`s (what `etfuser predict` prints and the demo draws)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .extras import EXTRA_COLUMNS, FER_LABEL_COLUMN, FER_PROBABILITY_PREFIX
from .table import META_COLUMNS, model_output_columns
from .task_columns import landmark_columns

TABLE_SUFFIXES = (".csv", ".parquet")
# label columns of the table -> the summary's column for their most frequent value per file
TOP_LABELS = {"label": "top_label", FER_LABEL_COLUMN: f"top_{FER_LABEL_COLUMN}"}


def check_table_path(path: str | os.PathLike, argument: str) -> Path:
    """`path` as a Path, or a ValueError naming `argument` when it is not a .csv or .parquet file name."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{argument}: expected a .csv or .parquet file name, got {str(path)!r}.")
    return path


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Writes `table` as CSV or Parquet, chosen by the suffix of `path`."""
    path = check_table_path(path, "output")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a table written by `write_table`; CSV gets the documented dtypes back (text columns as `string`,
    model outputs as float32, empty `error` cells as "")."""
    path = check_table_path(path, "path")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    known = META_COLUMNS | {"label": "string"} | {name: dtype for columns in EXTRA_COLUMNS.values()
                                                   for name, dtype in columns.items()}
    table = pd.read_csv(path, dtype=known)
    table["error"] = table["error"].fillna("")
    floats = [name for name in table.columns if name not in known]
    return table.astype({name: "float32" for name in floats})


def merge_tables(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenates part tables in the given order (the processes' ranks: each holds a contiguous slice of the
    inputs), skipping empty parts so the dtypes come from the parts that have rows."""
    tables = [read_table(path) for path in paths]
    non_empty = [table for table in tables if len(table)] or tables[:1]
    return pd.concat(non_empty, ignore_index=True)


class RunningSummary:
    """`summarize` of a table given one part at a time (`update`), holding per source only counts, sums and the
    frame numbers seen: what `etfuser analyze` keeps while it streams the parts into the output."""

    def __init__(self):
        self.sources: dict[str, dict] = {}
        self.rows = 0
        self.errors: list[tuple[str, str]] = []  # (source, error) of each error row
        self.top_labels = ["label"]  # `top_label` is always reported; `top_fer_label` where the table has fer_label

    def update(self, table: pd.DataFrame) -> RunningSummary:
        self.rows += len(table)
        failed = table[table["status"] == "error"]
        self.errors += list(zip(failed["source"].tolist(), failed["error"].tolist()))
        self.top_labels += [name for name in TOP_LABELS if name in table and name not in self.top_labels]
        # a mean of image coordinates over a file's faces says nothing: landmark columns are not averaged
        points = set(landmark_columns(table.columns))
        averaged = [name for name in table.columns if name not in points and (
                    name in model_output_columns(table.columns)
                    or name.startswith(("attention_", FER_PROBABILITY_PREFIX)) or name.endswith("_age")
                    or "_prob_" in name)]
        for source, group in table.groupby("source", sort=False):
            entry = self.sources.setdefault(source, {"frames": set(), "face_frames": set(), "faces": 0, "errors": 0,
                                                     "labels": {name: Counter() for name in TOP_LABELS}, "sums": {},
                                                     "counts": {}})
            faces = group[group["status"] == "ok"]
            entry["frames"].update(group.loc[group["status"] != "error", "frame"].tolist())
            entry["face_frames"].update(faces["frame"].tolist())
            entry["faces"] += len(faces)
            entry["errors"] += int((group["status"] == "error").sum())
            for name in TOP_LABELS:
                if name in faces:
                    entry["labels"][name].update(faces[name].dropna().tolist())
            for name in averaged:
                values = faces[name].to_numpy(dtype=np.float64)
                entry["sums"][name] = entry["sums"].get(name, 0.0) + float(np.nansum(values))
                entry["counts"][name] = entry["counts"].get(name, 0) + int(np.isfinite(values).sum())
        return self

    def table(self) -> pd.DataFrame:
        """One row per source file, as `summarize` documents."""
        rows = []
        for source, entry in self.sources.items():
            row = {"source": source, "frames": len(entry["frames"]), "frames_with_face": len(entry["face_frames"]),
                   "faces": entry["faces"], "errors": entry["errors"]}
            row.update({TOP_LABELS[name]: _most_frequent(entry["labels"][name]) for name in self.top_labels})
            row.update({f"mean_{name}": total / entry["counts"][name] if entry["counts"][name] else float("nan")
                        for name, total in entry["sums"].items()})
            rows.append(row)
        summary = pd.DataFrame(rows)
        text = {"source": "string", **{TOP_LABELS[name]: "string" for name in self.top_labels}}
        return summary.astype(text) if len(summary) else summary


def _most_frequent(labels: Counter):
    """The most frequent label (the first in alphabetical order on a tie), or NA when there is none."""
    return min(label for label, count in labels.items() if count == max(labels.values())) if labels else pd.NA


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """One row per source file: frames analysed, frames with a face, faces, errors, the most frequent predicted label
    (`top_label`, the first in alphabetical order on a tie) and, where the table has the FER net's columns, its most
    frequent label (`top_fer_label`), and the mean over its faces (`mean_<column>`) of every model output (per-class
    probability; for a multi-label model the rate of each label, `mean_attr_<label>`, and its mean probability; a
    regression model's mean value, `mean_value_<target>`; landmarks are not averaged), attention share, prior readout
    and FER net probability."""
    return RunningSummary().update(table).table()


def plot_time_course(table: pd.DataFrame, source: str, path: str | os.PathLike) -> Path:
    """Writes a PNG of the per-class probabilities (or the multi-label probabilities, or the regression values) over
    time for one video: one line per output, read from the best-scoring face of each frame (`face == 0`); frames
    without a face leave gaps. A landmark model's table has no such values: a ValueError says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = table[(table["source"] == source) & (table["status"] != "error")]
    if frames.empty:
        raise ValueError(f"source: no analysed frames of {source!r} in the table.")
    lines = time_course_columns(frames.columns)
    if not lines:
        raise ValueError(f"table: no per-frame values to plot for {source!r} (a landmark model's table has points, "
                         f"not values).")
    frames = frames[frames["face"] <= 0].drop_duplicates("frame").sort_values("frame")
    time = frames["timestamp"] if frames["timestamp"].notna().any() else frames["frame"]
    figure, axes = plt.subplots(figsize=(9, 3.5))
    for name in lines:
        axes.plot(time.to_numpy(), frames[name].to_numpy(dtype=float),
                  label=name.removeprefix("attr_prob_").removeprefix("prob_").removeprefix("value_"))
    axes.set_xlabel("time (s)" if time is frames["timestamp"] else "frame")
    axes.set_ylabel("value" if lines[0].startswith("value_") else "probability")
    axes.set_title(Path(source).name)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def time_course_columns(columns: Sequence[str]) -> list[str]:
    """The model outputs a time course draws: the probabilities (`prob_*`, `attr_prob_*`) or the regression values
    (`value_*`); not a multi-label model's 0/1 columns nor landmarks."""
    return [name for name in model_output_columns(columns) if name.startswith(("prob_", "attr_prob_", "value_"))]


@dataclass
class FacePrediction:
    """One face of the table.

    box: (4,) x0, y0, x1, y1 in image pixels.
    label: the table's `label` (argmax class, or the labels >= 0.5 joined by `|`); None for regression and landmarks.
    score: the probability of `label` (single-label) or the highest label probability (multi-label); None for
        regression and landmarks.
    outputs: the model's outputs by column name (`prob_<label>`; `attr_<label>` and `attr_prob_<label>`;
        `value_<target>`), landmarks aside.
    landmarks: (K, 2) a landmark model's points in image pixels; None for the other task types.
    prior_attention: share of the ensemble token's attention per prior (empty without priors).
    fer_label: the pretrained FER net's own label (`fer_label`); None when the table has no FER columns.
    fer_probabilities: its 7 probabilities by column name (`fer_probability_<expression>`); empty without them.
    """

    box: np.ndarray
    label: str | None
    score: float | None
    outputs: dict[str, float]
    prior_attention: dict[str, float]
    fer_label: str | None = None
    fer_probabilities: dict[str, float] = field(default_factory=dict)
    landmarks: np.ndarray | None = None

    @property
    def caption(self) -> str:
        """`label score`, the values of a regression head, or how many landmarks a landmark head placed."""
        if self.landmarks is not None:
            return f"{len(self.landmarks)} landmarks"
        if self.label is None:
            return " ".join(f"{name.removeprefix('value_')}={value:.2f}" if name != "value" else f"{value:.2f}"
                            for name, value in self.outputs.items())
        return f"{self.label or '(none)'} {self.score:.2f}"


def face_predictions(table: pd.DataFrame) -> list[FacePrediction]:
    """The `ok` rows of `table` (faces), in table order, as `FacePrediction`s."""
    points = landmark_columns(table.columns)
    outputs = [name for name in model_output_columns(table.columns) if name not in points]
    attention = [name for name in table.columns if name.startswith("attention_")]
    fer = [name for name in table.columns if name.startswith(FER_PROBABILITY_PREFIX)]
    faces = []
    for _, row in table[table["status"] == "ok"].iterrows():
        values = {name: float(row[name]) for name in outputs}
        label = str(row["label"]) if "label" in table else None
        if label is None:
            score = None
        elif f"prob_{label}" in values:
            score = values[f"prob_{label}"]
        else:  # multi-label: several labels or none above 0.5
            score = max(value for name, value in values.items() if name.startswith("attr_prob_"))
        faces.append(FacePrediction(
            box=row[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(dtype=float), label=label, score=score,
            outputs=values, prior_attention={name.removeprefix("attention_"): float(row[name]) for name in attention},
            fer_label=str(row[FER_LABEL_COLUMN]) if FER_LABEL_COLUMN in table else None,
            fer_probabilities={name: float(row[name]) for name in fer},
            landmarks=row[points].to_numpy(dtype=float).reshape(-1, 2) if points else None))
    return faces


def video_sources(table: pd.DataFrame) -> list[str]:
    """Sources with a timestamp on at least one row: the videos."""
    return table.loc[table["timestamp"].notna(), "source"].drop_duplicates().tolist()


__all__ = ["TABLE_SUFFIXES", "FacePrediction", "RunningSummary", "check_table_path", "face_predictions", "merge_tables", "plot_time_course", "read_table", "summarize", "time_course_columns",
           "video_sources",
           "write_table"]
