"""What the page shows for photos or a video, built from the table of `FaceAnalyzer` (the path `etfuser_hf.analyze`
runs) and the demo's drawing (`etfuser_hf.hub.demo.annotate`): nothing here detects, aligns or runs a network itself.

Photos are answered in batches (the queued uploads of several users at once): MTCNN detects the faces of all of them
in one `FaceAnalyzer.detect`, and both the model and the pretrained reference read the same aligned crops
(`FaceAnalyzer.predict`), so each photo is detected once.

Bad input never raises: the analysis turns an unreadable or tiny file into an `error` row and a face-less image into a
`no_face` row, and both become the page's message.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import PIL.ImageDraw

from etfuser_hf.analysis.attention_maps import attention_strip, reads_grids
from etfuser_hf.analysis.extras import EXTRA_PRIORS, FER_LABEL_COLUMN, FER_PROBABILITY_PREFIX
from etfuser_hf.analysis.media import MediaItem, is_video, iter_media
from etfuser_hf.analysis.pipeline import DetectedFaces
from etfuser_hf.analysis.report import face_predictions, time_course_columns
from etfuser_hf.analysis.task_columns import landmark_columns, task_output_columns
from etfuser_hf.hub.demo import annotate
from space_model import PRETRAINED_PREFIX, SpaceModel

MAX_SIDE = 1280  # larger photos are downscaled first: MTCNN's cost grows with the pixel count
MAX_VIDEO_FRAMES = 90  # analysed frames per video at most (the sampling stride grows to stay under it)
LANDMARK_COLOUR = (0, 230, 255)
MODEL_LANDMARK_COLOUR = (255, 0, 200)  # the model's own points, apart from the landmark prior's cyan ones
NO_FACE = "**No face found** in this image. Try a photo where a face is at least ~40 pixels wide."


@dataclass
class PhotoResult:
    """message: markdown for the page (an error, "no face found", or a note such as the downscale); annotated: the
    photo with boxes, labels, age, 68 landmarks and attention bars (None on error); table: `analyze`'s rows for the
    photo; faces: one row per face, the model's label and probabilities; readings: per face, the model's answer beside
    the pretrained networks' own outputs, each labelled with who said it; attention: `face, prior, share` rows;
    attention_maps: per face, (the face as the model reads it beside the ensemble token's attention over each prior's
    grid, drawn over that prior's own crop, caption), for models whose priors are read as grid tokens (empty
    otherwise)."""

    message: str = ""
    annotated: PIL.Image.Image | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    faces: pd.DataFrame = field(default_factory=pd.DataFrame)
    readings: pd.DataFrame = field(default_factory=pd.DataFrame)
    attention: pd.DataFrame = field(default_factory=pd.DataFrame)
    attention_maps: list[tuple[PIL.Image.Image, str]] = field(default_factory=list)

    @property
    def attention_picture(self) -> PIL.Image.Image | None:
        """`attention_maps` as one picture for the page: each face's strip at twice its size above its caption (below,
        because the page's label covers the picture's top-left corner)."""
        if not self.attention_maps:
            return None
        band, scale = 18, 2
        strips = [(strip.resize((strip.width * scale, strip.height * scale), PIL.Image.Resampling.BICUBIC), caption)
                  for strip, caption in self.attention_maps]
        picture = PIL.Image.new("RGB", (max(strip.width for strip, _ in strips),
                                        sum(band + strip.height for strip, _ in strips)), "white")
        draw, top = PIL.ImageDraw.Draw(picture), 0
        for strip, caption in strips:
            picture.paste(strip, (0, top))
            draw.text((4, top + strip.height + 3), caption, fill=(0, 0, 0))
            top += band + strip.height
        return picture


@dataclass
class VideoResult:
    """message: markdown; table: `analyze`'s rows, one per face per sampled frame; time_course: `time, class,
    probability` rows of the best face of each frame (`time, class, value` for a regression model; empty for a
    landmark model, whose points are in the table)."""

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


def _bounded(item: MediaItem) -> tuple[MediaItem, str]:
    """(`item`, a note): photos over MAX_SIDE pixels a side are downscaled first."""
    if item.error is not None or max(item.image.shape[:2]) <= MAX_SIDE:
        return item, ""
    height, width = item.image.shape[:2]
    scale = MAX_SIDE / max(width, height)
    small = PIL.Image.fromarray(item.image).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                                   PIL.Image.Resampling.LANCZOS)
    note = f"The photo ({width}×{height}) was downscaled to {small.width}×{small.height} for analysis."
    return dataclasses.replace(item, image=np.asarray(small)), note


def _answer_columns(table: pd.DataFrame) -> list[str]:
    """The model's own output columns but its landmarks: `prob_*`; `attr_*` and `attr_prob_*`; `value_*`."""
    points = set(landmark_columns(table.columns))
    return [name for name in task_output_columns(table.columns) if name not in points]


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
    """The demo's boxes, labels and attention bars, then each face's 68 landmarks and age estimate on top, and a
    landmark model's own points in magenta."""
    predictions = face_predictions(faces)
    canvas = annotate(image, predictions)
    draw = PIL.ImageDraw.Draw(canvas)
    radius = max(1.5, canvas.width / 400)
    for prediction in predictions:
        for x, y in prediction.landmarks if prediction.landmarks is not None else ():
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=MODEL_LANDMARK_COLOUR)
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


def _who(network: str, space: SpaceModel, otherwise: str) -> str:
    """Who gave a reading of the converted network `network`: the canonical model before fine-tuning, when the model
    started from it, else `otherwise`."""
    if network == space.canonical_prior:
        return f"pretrained {network} network (the canonical model before fine-tuning)"
    return otherwise


def _readings(faces: pd.DataFrame, space: SpaceModel, priors: dict[str, dict[str, list[str]]]) -> pd.DataFrame:
    """Per face: the model's answer, the pretrained FER net's (`fer_label`), then each prior's own output, with who
    said it."""
    rows = []
    fer_who = _who(EXTRA_PRIORS["fer"], space, f"pretrained FER net (trained on real faces; {FER_LABEL_COLUMN})")
    for prediction, (_, face) in zip(face_predictions(faces), faces.iterrows()):
        caption = prediction.caption + (" (drawn in magenta)" if prediction.landmarks is not None else "")
        rows.append({"face": int(face["face"]), "who": "ET-Fuser (this model, fine-tuned)", "reading": caption})
        if FER_LABEL_COLUMN in faces:
            fer = face[FER_LABEL_COLUMN]
            rows.append({"face": int(face["face"]), "who": fer_who,
                         "reading": f"{fer} {face[FER_PROBABILITY_PREFIX + fer]:.2f}"})
        for name, columns in priors.items():
            pretrained = name.removeprefix(PRETRAINED_PREFIX)
            who = _who(pretrained, space, f"{name} prior (pretrained, frozen)")
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


def _upload_problem(path: str | None, kind: str) -> str | None:
    """The page's message for an upload that is not there at all: nothing chosen, or an empty file."""
    if not path:
        return f"**No file uploaded.** Choose {kind} first."
    if Path(path).stat().st_size == 0:
        return "**The uploaded file is empty** (0 bytes)."
    return None


def _photo_item(index: int, path: str) -> MediaItem:
    """The decoded photo (or why it cannot be read), its source the batch index so that uploads of the same file
    by two users stay apart."""
    if is_video(path):
        return MediaItem(str(index), -1, float("nan"), error="this is a video; use the Video tab")
    return dataclasses.replace(next(iter_media([path])), source=str(index))


def analyze_photos(paths: Sequence[str | None], space: SpaceModel) -> list[PhotoResult]:
    """Everything the page shows for each uploaded photo (`paths` as Gradio saved them; None when nothing was
    uploaded): one detection pass over all of them, read by the model and by the pretrained reference."""
    results: dict[int, PhotoResult] = {}
    items, notes = {}, {}
    for index, path in enumerate(paths):
        problem = _upload_problem(path, "a photo (JPEG, PNG, WebP, ...)")
        if problem is not None:
            results[index] = PhotoResult(message=problem)
        else:
            items[index], notes[index] = _bounded(_photo_item(index, path))
    if items:
        detected = space.analyzer.detect(list(items.values()))
        table = space.analyzer.predict(detected)
        if space.reference is not None:
            reference = space.reference.predict(detected)
            extra = [name for name in reference.columns if name.startswith(PRETRAINED_PREFIX)]
            table = pd.concat([table, reference[extra]], axis=1)
        strips_by_source = _attention_strips(detected, space)
        for index, item in items.items():
            rows = table[table["source"] == str(index)].reset_index(drop=True)
            results[index] = _photo_result(rows.assign(source=Path(paths[index]).name), item, notes[index], space,
                                           strips_by_source.get(str(index), []))
    return [results[index] for index in range(len(paths))]


def _attention_strips(detected: DetectedFaces, space: SpaceModel) -> dict[str, list[tuple[PIL.Image.Image, str]]]:
    """{source: [(face beside its attention overlays, caption), ...]} for every detected face, from the inputs the
    table's run gave the model, each grid over its own network's crop; {} for a model without grid tokens."""
    if not reads_grids(space.analyzer.loaded.model):
        return {}
    panels = space.analyzer.attention(detected)
    strips_by_source: dict[str, list[tuple[PIL.Image.Image, str]]] = {}
    for face, row in enumerate(detected.face_rows):
        drawn = panels.face(face, f"face {detected.rows[row]['face']}")
        caption = f"{drawn.title}: " + ", ".join(
            f"{name} {grid.shape[0]}x{grid.shape[1]} (max {grid.max():.2f}, even {1 / grid.size:.2f})"
            for name, grid in drawn.grids.items())
        strips_by_source.setdefault(detected.rows[row]["source"], []).append(
            (attention_strip(drawn.face, drawn.grids, drawn.crops), caption))
    return strips_by_source


def analyze_photo(path: str | None, space: SpaceModel) -> PhotoResult:
    """`analyze_photos` for one photo."""
    return analyze_photos([path], space)[0]


def _photo_result(table: pd.DataFrame, item: MediaItem, note: str, space: SpaceModel,
                  attention_maps: list[tuple[PIL.Image.Image, str]]) -> PhotoResult:
    problem = _problem(table)
    if problem is not None:
        return PhotoResult(message=problem, table=table)
    faces = table[table["status"] == "ok"]
    priors = _readout_priors(faces)
    attention = [name for name in faces.columns if name.startswith("attention_")]
    return PhotoResult(
        message=note or f"{len(faces)} face{'s' * (len(faces) != 1)} found.",
        annotated=_draw(PIL.Image.fromarray(item.image), faces, priors),
        table=table,
        faces=faces[["face", *(["label"] if "label" in faces else [])]]
        .join(faces[[*_answer_columns(faces), "score"]].astype("float64").round(4)).reset_index(drop=True),
        readings=_readings(faces, space, priors),
        attention=faces.melt(id_vars="face", value_vars=attention, var_name="prior", value_name="share")
        .assign(prior=lambda frame: frame["prior"].str.removeprefix("attention_"),
                face=lambda frame: "face " + frame["face"].astype(str)),
        attention_maps=attention_maps,
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
    problem = _upload_problem(path, "a short video (MP4, WebM, MOV, ...)")
    if problem is not None:
        return VideoResult(message=problem)
    stride = _stride(path, max(1, int(every_n_frames)))
    table = space.analyzer.analyze_files([path], stride, progress=False).assign(source=Path(path).name)
    problem = _problem(table)
    if problem is not None:
        return VideoResult(message=problem, table=table)
    best = table[(table["status"] == "ok") & (table["face"] == 0)]
    lines = time_course_columns(best.columns)
    course = best.melt(id_vars="timestamp", value_vars=lines, var_name="class",
                       value_name="value" if lines and lines[0].startswith("value_") else "probability"
                       ).rename(columns={"timestamp": "time (s)"})
    course["class"] = course["class"].str.removeprefix("attr_prob_").str.removeprefix("prob_").str.removeprefix("value_")
    frames = table["frame"].nunique()
    broken = table.loc[table["status"] == "error", "error"]
    message = f"{len(best)} of {frames} sampled frames (every {stride}th) have a face."
    if len(broken):
        message += f" The video stopped early: {broken.iloc[0]}"
    return VideoResult(message=message, table=table, time_course=course)

