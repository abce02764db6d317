"""What the page shows for a photo or a video, built from `etfuser_hf.analyze`'s table (the one inference path) and the
demo's drawing (`etfuser_hf.hub.demo.annotate`): nothing here detects, aligns or runs a network itself.

Bad input never raises: `analyze` turns an unreadable or tiny file into an `error` row and a face-less image into a
`no_face` row, and both become the page's message.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import PIL.ImageDraw

import etfuser_hf
from etfuser_hf.hub.demo import FacePrediction, annotate
from space_model import PRETRAINED_PREFIX, SpaceModel, face_detector

MAX_SIDE = 1280  # larger photos are downscaled first: MTCNN's cost grows with the pixel count
MAX_VIDEO_FRAMES = 90  # analysed frames per video at most (the sampling stride grows to stay under it)
LANDMARK_COLOUR = (0, 230, 255)
NO_FACE = "**No face found** in this image. Try a photo where a face is at least ~40 pixels wide."


@dataclass
class PhotoResult:
    """message: markdown for the page (an error, "no face found", or a note such as the downscale); annotated: the
    photo with boxes, labels, age, 68 landmarks and attention bars (None on error); table: `analyze`'s rows for the
    photo; faces: one row per face, the model's label and probabilities; readings: per face, the model's answer beside
    the pretrained networks' own outputs, each labelled with who said it; attention: `face, prior, share` rows."""

    message: str = ""
    annotated: PIL.Image.Image | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    faces: pd.DataFrame = field(default_factory=pd.DataFrame)
    readings: pd.DataFrame = field(default_factory=pd.DataFrame)
    attention: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class VideoResult:
    """message: markdown; table: `analyze`'s rows, one per face per sampled frame; time_course: `time, class,
    probability` rows of the best face of each frame."""

    message: str = ""
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    time_course: pd.DataFrame = field(default_factory=pd.DataFrame)


def _problem(table: pd.DataFrame) -> str | None:
    """The page's message when `analyze` found nothing to show: its error, or "no face found"."""
    if table.empty:
        return "**Nothing could be read from this file.**"
    errors = table.loc[table["status"] == "error", "error"]
    if len(errors) and not (table["status"] == "ok").any():
        return f"**Could not read this file:** {errors.iloc[0]}"
    if not (table["status"] == "ok").any():
        return NO_FACE
    return None


def _bounded_photo(path: str, workdir: Path) -> tuple[str, str]:
    """(the path to analyse, a note): photos over MAX_SIDE pixels a side are downscaled into `workdir` first. Files
    PIL cannot even size are passed on unchanged, for `analyze` to report."""
    try:
        with PIL.Image.open(path) as image:
            width, height = image.size
            if max(width, height) <= MAX_SIDE:
                return path, ""
            scale = MAX_SIDE / max(width, height)
            small = image.convert("RGB").resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                                PIL.Image.Resampling.LANCZOS)
    except (OSError, ValueError, PIL.Image.DecompressionBombError):
        return path, ""
    target = workdir / "downscaled.png"
    small.save(target)
    return str(target), f"The photo ({width}×{height}) was downscaled to {small.width}×{small.height} for analysis."


def _probability_columns(table: pd.DataFrame) -> list[str]:
    return [name for name in table.columns if name.startswith("prob_")]


def _prior_columns(table: pd.DataFrame, prior: str) -> dict[str, list[str]]:
    """A prior's readout columns in `analyze`'s table by kind (documented schema): age, expression, landmarks."""
    return {"age": [name for name in (f"{prior}_age",) if name in table],
            "expression": [name for name in table.columns if name.startswith(f"{prior}_prob_")],
            "landmarks": [name for name in table.columns if re.fullmatch(rf"{re.escape(prior)}_[xy]\d\d", name)]}


def _readout_priors(table: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Every prior with readout columns in `table`, found from the `attention_<prior>` columns and the reference's."""
    names = [name.removeprefix("attention_") for name in table.columns if name.startswith("attention_")]
    names += sorted({name.split("_prob_")[0] for name in table.columns if name.startswith(PRETRAINED_PREFIX)})
    found = {}
    for name in names:
        columns = _prior_columns(table, name)
        if any(columns.values()):
            found[name] = columns
    return found


def _draw(image: PIL.Image.Image, faces: pd.DataFrame, priors: dict[str, dict[str, list[str]]]) -> PIL.Image.Image:
    """The demo's boxes, labels and attention bars, then each face's 68 landmarks and age estimate on top."""
    probabilities = _probability_columns(faces)
    attention = [name for name in faces.columns if name.startswith("attention_")]
    predictions = [FacePrediction(row[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float), str(row["label"]),
                                  float(row[probabilities].max()),
                                  {name.removeprefix("attention_"): float(row[name]) for name in attention})
                   for _, row in faces.iterrows()]
    canvas = annotate(image, predictions)
    draw = PIL.ImageDraw.Draw(canvas)
    radius = max(1.5, canvas.width / 400)
    for _, row in faces.iterrows():
        for columns in priors.values():
            points = columns["landmarks"]
            for x_name, y_name in zip(points[0::2], points[1::2]):
                x, y = float(row[x_name]), float(row[y_name])
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=LANDMARK_COLOUR)
            for age in columns["age"]:
                corner, caption = (float(row["box_x0"]) + 3, float(row["box_y0"]) + 3), f"age ~{row[age]:.0f}"
                draw.rectangle([*corner, corner[0] + 7 * len(caption) + 4, corner[1] + 14], fill=(0, 0, 0))
                draw.text((corner[0] + 2, corner[1] + 1), caption, fill=(255, 220, 0))
    return canvas


def _readings(faces: pd.DataFrame, space: SpaceModel, priors: dict[str, dict[str, list[str]]]) -> pd.DataFrame:
    """Per face: the model's answer, then each pretrained network's own output, with who said it."""
    rows = []
    probabilities = _probability_columns(faces)
    for _, face in faces.iterrows():
        top = max(probabilities, key=lambda name: face[name])
        rows.append({"face": int(face["face"]), "who": "ET-Fuser (this model, fine-tuned)",
                     "reading": f"{face['label']} {face[top]:.2f}"})
        for name, columns in priors.items():
            pretrained = name.removeprefix(PRETRAINED_PREFIX)
            who = (f"pretrained {pretrained} network (the canonical model before fine-tuning)"
                   if pretrained == space.canonical_prior else f"{name} prior (pretrained, frozen)")
            if columns["expression"]:
                best = max(columns["expression"], key=lambda column: face[column])
                rows.append({"face": int(face["face"]), "who": who,
                             "reading": f"{best.split('_prob_')[1]} {face[best]:.2f}"})
            if columns["age"]:
                rows.append({"face": int(face["face"]), "who": who, "reading": f"age {face[columns['age'][0]]:.1f} years"})
            if columns["landmarks"]:
                rows.append({"face": int(face["face"]), "who": who,
                             "reading": f"{len(columns['landmarks']) // 2} landmarks (drawn in cyan)"})
    return pd.DataFrame(rows, columns=["face", "who", "reading"])


def _with_reference(table: pd.DataFrame, space: SpaceModel, path: str) -> pd.DataFrame:
    """`table` plus the pretrained canonical network's readout columns, from `analyze` with the reference model (the
    same detector on the same file finds the same faces in the same order)."""
    if space.reference is None:
        return table
    reference = etfuser_hf.analyze(path, model=space.reference, detector=face_detector(), progress=False)
    extra = [name for name in reference.columns if name.startswith(PRETRAINED_PREFIX)]
    if len(reference) != len(table) or not np.allclose(reference["box_x0"].fillna(0), table["box_x0"].fillna(0)):
        return table
    return pd.concat([table, reference[extra].set_axis(table.index)], axis=1)


def analyze_photo(path: str | None, space: SpaceModel) -> PhotoResult:
    """Everything the page shows for one uploaded photo (`path` as Gradio saved it; None when nothing was uploaded)."""
    if not path:
        return PhotoResult(message="**No file uploaded.** Choose a photo (JPEG, PNG, WebP, ...) first.")
    if Path(path).stat().st_size == 0:
        return PhotoResult(message="**The uploaded file is empty** (0 bytes).")
    with tempfile.TemporaryDirectory() as workdir:
        source, note = _bounded_photo(path, Path(workdir))
        table = etfuser_hf.analyze(source, model=space.model, detector=face_detector(), progress=False)
        problem = _problem(table)
        if problem is not None:
            return PhotoResult(message=problem, table=table)
        table = _with_reference(table, space, source)
        with PIL.Image.open(source) as image:
            image = image.convert("RGB")
    table = table.assign(source=Path(path).name)
    faces = table[table["status"] == "ok"]
    priors = _readout_priors(faces)
    attention = [name for name in faces.columns if name.startswith("attention_")]
    return PhotoResult(
        message=note or f"{len(faces)} face{'s' * (len(faces) != 1)} found.",
        annotated=_draw(image, faces, priors),
        table=table,
        faces=faces[["face", "label"]].join(faces[[*_probability_columns(faces), "score"]].astype("float64").round(4))
        .reset_index(drop=True),
        readings=_readings(faces, space, priors),
        attention=faces.melt(id_vars="face", value_vars=attention, var_name="prior", value_name="share")
        .assign(prior=lambda frame: frame["prior"].str.removeprefix("attention_"),
                face=lambda frame: "face " + frame["face"].astype(str)),
    )


def _stride(path: str, every_n_frames: int) -> int:
    """`every_n_frames`, raised so that at most MAX_VIDEO_FRAMES frames are analysed (when the container says how
    many it has)."""
    import av

    try:
        with av.open(path) as container:
            frames = container.streams.video[0].frames if container.streams.video else 0
    except Exception:  # noqa: BLE001 - analyze reports the unreadable video itself
        return every_n_frames
    return max(every_n_frames, math.ceil(frames / MAX_VIDEO_FRAMES)) if frames else every_n_frames


def analyze_video(path: str | None, space: SpaceModel, every_n_frames: int = 5) -> VideoResult:
    """The table per sampled frame and the time course of the class probabilities of each frame's best face."""
    if not path:
        return VideoResult(message="**No file uploaded.** Choose a short video (MP4, WebM, MOV, ...) first.")
    if Path(path).stat().st_size == 0:
        return VideoResult(message="**The uploaded file is empty** (0 bytes).")
    stride = _stride(path, max(1, int(every_n_frames)))
    table = etfuser_hf.analyze(path, model=space.model, detector=face_detector(), every_n_frames=stride,
                               progress=False).assign(source=Path(path).name)
    problem = _problem(table)
    if problem is not None:
        return VideoResult(message=problem, table=table)
    best = table[(table["status"] == "ok") & (table["face"] == 0)]
    course = best.melt(id_vars="timestamp", value_vars=_probability_columns(best), var_name="class",
                       value_name="probability").rename(columns={"timestamp": "time (s)"})
    course["class"] = course["class"].str.removeprefix("prob_")
    frames = table["frame"].nunique()
    broken = table.loc[table["status"] == "error", "error"]
    message = f"{len(best)} of {frames} sampled frames (every {stride}th) have a face."
    if len(broken):
        message += f" The video stopped early: {broken.iloc[0]}"
    return VideoResult(message=message, table=table, time_course=course)

