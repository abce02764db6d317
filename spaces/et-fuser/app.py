"""ET-Fuser as a Gradio Space: upload a photo or a short video, see every face the model finds.

    etfuser space                                              # the newest runs/*/model, http://127.0.0.1:7860
    python spaces/et-fuser/app.py --model path/to/model --port 7861
    ETFUSER_SPACE_MODEL=user/et-fuser python app.py             # on the Hub: a model id from the front matter

Each answer comes from `FaceAnalyzer`, the path `etfuser_hf.analyze` runs (face_report.py); every problem with an
upload or a model folder is a message in the page, never a stack trace. Requests go through Gradio's queue: up to
`--concurrency` analyses run at once (one group for photos, videos and the picker), each on the one loaded model (its
forward keeps no per-call state, and each request gets its own analyzer session, `FaceAnalyzer.session`), and the
photos queued meanwhile (up to `--max-batch-size`) share one detection pass and one model batch. The cores are shared
out between the concurrent analyses (`threads_per_request`), so N of them never run N x cores torch threads; a
request's Python-bound steps (decoding, drawing, tables) then overlap another's network compute.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine unless asked
# Read once, when torch loads OpenMP. Spinning workers on a shared 2-core host (a free Space, this CI) wait for a
# descheduled sibling at every op: benchmarks/space_load.py measured 5-20x slower analyses without it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from face_report import PhotoResult, VideoResult, analyze_photos, analyze_video  # noqa: E402
from space_model import ModelNotFound, load_space_model, model_choices  # noqa: E402

logger = logging.getLogger("etfuser_space")
DEFAULT_MAX_BATCH_SIZE = 8
# Analyses at once; on 2 cores, one torch thread each. benchmarks/space_load.py on a shared 2-core host, 8 clients:
# about the same requests/s as one analysis at a time with 2 threads (the cores are the limit either way), lower p50
# (the second analysis starts while the first batch runs), higher p95 (a large batch on one thread).
DEFAULT_CONCURRENCY = 2
QUEUE_SIZE = 64
TITLE = "# ET-Fuser: face analysis with an ensemble token over frozen face networks"
INTRO = ("Every face is boxed with the model's label and probability, its age estimate and 68 landmarks (from the "
         "frozen pretrained priors), and bars showing where the ensemble token's attention went. Beside the model's "
         "answer: what the pretrained networks themselves say.")


def _banner(space) -> str:
    return space.banner or ""


def _internal_error(error: Exception) -> str:
    logger.exception("the request failed")
    return f"**Something went wrong while analysing this file** ({type(error).__name__}: {error})."


def _csv(table: pd.DataFrame) -> str | None:
    if table.empty:
        return None
    handle = tempfile.NamedTemporaryFile(prefix="etfuser-analyze-", suffix=".csv", delete=False)
    table.to_csv(handle.name, index=False)
    return handle.name


PHOTO_OUTPUTS = 9  # banner, message, annotated image, faces, readings, attention bars, attention maps, table, CSV


def _photo_row(banner: str, result: PhotoResult) -> tuple:
    return (banner, result.message, result.annotated, result.faces, result.readings, result.attention,
            result.attention_picture, result.table, _csv(result.table))


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or `taskset` limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_request(concurrency: int, cores: int | None = None) -> int:
    """Torch threads for each of `concurrency` analyses running at once: the cores shared out, at least one."""
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"concurrency: expected an int >= 1, got {concurrency!r}.")
    return max(1, (cores or available_cores()) // concurrency)


def photo_batch(paths: list[str | None], model_choices_: list[str | None]) -> list[list]:
    """The photo tab's outputs for a batch of queued requests (Gradio `batch=True`: one list per input, one list per
    output): the requests that picked the same model are analysed together."""
    rows: list[tuple | None] = [None] * len(paths)
    for choice in dict.fromkeys(model_choices_):
        members = [index for index, picked in enumerate(model_choices_) if picked == choice]
        banner = ""
        try:
            space = load_space_model(choice)
            banner = _banner(space)
            results = analyze_photos([paths[index] for index in members], space.session())
        except ModelNotFound as missing:
            results = [PhotoResult(message=str(missing))] * len(members)
        except Exception as error:  # noqa: BLE001 - the page gets a message, the log the traceback
            results = [PhotoResult(message=_internal_error(error))] * len(members)
        for index, result in zip(members, results):
            rows[index] = _photo_row(banner, result)
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(PHOTO_OUTPUTS)]


def photo_outputs(path: str | None, model_choice: str | None) -> tuple:
    """The photo tab's outputs for one request: banner, message, annotated image, faces, readings, attention bars,
    attention maps, table, CSV."""
    return tuple(column[0] for column in photo_batch([path], [model_choice]))


def video_outputs(path: str | None, every_n_frames: float, model_choice: str | None) -> tuple:
    """The video tab's outputs: banner, message, time-course plot, table, CSV."""
    banner = ""
    try:
        space = load_space_model(model_choice)
        banner = _banner(space)
        result = analyze_video(path, space.session(), int(every_n_frames))
    except ModelNotFound as missing:
        result = VideoResult(message=str(missing))
    except Exception as error:  # noqa: BLE001
        result = VideoResult(message=_internal_error(error))
    return banner, result.message, result.time_course, result.table, _csv(result.table)


def time_course_plot(course: pd.DataFrame) -> gr.LinePlot:
    """The video tab's plot for `analyze_video`'s time course: probabilities on [0, 1], or a regression model's values
    on their own scale (set on every answer, so that the next model's answer resets it)."""
    if "value" in course:
        return gr.LinePlot(value=course, y="value", y_lim=None,
                           label="Predicted values over time (best face of each frame)")
    return gr.LinePlot(value=course, y="probability", y_lim=[0, 1],
                       label="Class probabilities over time (best face of each frame)")


def video_tab(path: str | None, every_n_frames: float, model_choice: str | None) -> tuple:
    """`video_outputs` with its time course as the plot component's update (`time_course_plot`)."""
    banner, message, course, table, csv = video_outputs(path, every_n_frames, model_choice)
    return banner, message, time_course_plot(course), table, csv


def model_status(model_choice: str | None) -> str:
    """The banner for the picked model, or how to make one when there is none."""
    try:
        return _banner(load_space_model(model_choice))
    except ModelNotFound as missing:
        return str(missing)
    except Exception as error:  # noqa: BLE001
        return _internal_error(error)


def build_app(model: str | None = None, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
              concurrency: int = DEFAULT_CONCURRENCY) -> gr.Blocks:
    """The page; `model` is the picker's start-up choice (default: the newest `runs/*/model`); at most `concurrency`
    analyses run at once."""
    threads_per_request(concurrency)  # refuses a bad concurrency before anything is built
    choices = model_choices(model)
    with gr.Blocks(title="ET-Fuser") as app:
        gr.Markdown(TITLE + "\n\n" + INTRO)
        picker = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True, label="Model",
                             info="any saved ET-Fuser task model folder (or a Hub model id)")
        banner = gr.Markdown(model_status(choices[0] if choices else None), elem_id="banner")
        with gr.Tab("Photo"):
            with gr.Row():
                photo = gr.File(label="Photo", file_types=["image"], elem_id="photo-input")
                photo_button = gr.Button("Analyse photo", variant="primary", elem_id="photo-submit")
            photo_message = gr.Markdown(elem_id="photo-message")
            annotated = gr.Image(label="Faces found", type="pil", elem_id="annotated", interactive=False)
            faces = gr.Dataframe(label="Per face: the model's answer (label and probabilities, attributes, values)", elem_id="faces",
                                 interactive=False)
            readings = gr.Dataframe(label="The model's answer beside the pretrained networks' own readings",
                                    elem_id="readings", interactive=False)
            attention = gr.BarPlot(x="prior", y="share", color="face", y_lim=[0, 1], elem_id="attention",
                                   label="Where the ensemble token's attention went (share per prior)")
            attention_maps = gr.Image(label="Where the ensemble token looks inside each prior's grid (each face, then "
                                      "each grid over its prior's own crop; models with grid tokens only)", type="pil",
                                      elem_id="attention-maps", interactive=False)
            with gr.Accordion("The full table (the columns of `etfuser analyze`)", open=False):
                photo_table = gr.Dataframe(interactive=False, elem_id="photo-table")
                photo_csv = gr.File(label="table as CSV")
        with gr.Tab("Video"):
            with gr.Row():
                video = gr.File(label="Video", file_types=["video"], elem_id="video-input")
                every = gr.Slider(1, 30, value=5, step=1, label="analyse every n-th frame")
                video_button = gr.Button("Analyse video", variant="primary", elem_id="video-submit")
            video_message = gr.Markdown(elem_id="video-message")
            course = gr.LinePlot(x="time (s)", y="probability", color="class", y_lim=[0, 1], elem_id="time-course",
                                 label="Class probabilities over time (best face of each frame)")
            video_table = gr.Dataframe(label="Per sampled frame and face", interactive=False, elem_id="video-table")
            video_csv = gr.File(label="table as CSV")
        # one group: photos, videos and model loads share the `concurrency` slots (and so the cores)
        group = {"concurrency_id": "analysis", "concurrency_limit": concurrency}
        picker.change(model_status, picker, banner, **group)
        photo_button.click(photo_batch, [photo, picker],
                           [banner, photo_message, annotated, faces, readings, attention, attention_maps, photo_table,
                            photo_csv],
                           api_name="analyze_photo", batch=True, max_batch_size=max_batch_size, **group)
        video_button.click(video_tab, [video, every, picker], [banner, video_message, course, video_table, video_csv],
                           api_name="analyze_video", **group)
    return app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=concurrency)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.max_batch_size < 1:
        parser.error(f"--max-batch-size: expected an int >= 1, got {args.max_batch_size}.")
    if args.concurrency < 1:
        parser.error(f"--concurrency: expected an int >= 1, got {args.concurrency}.")
    serve(args.model, args.port, args.max_batch_size, args.concurrency)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `app.py` and `etfuser space`."""
    parser.add_argument("--model", default=os.environ.get("ETFUSER_SPACE_MODEL"),
                        help="saved ET-Fuser folder or Hub model id (default: the newest runs/*/model)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port on 127.0.0.1 (default 7860)")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help=f"queued photos analysed together (default {DEFAULT_MAX_BATCH_SIZE})")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help=f"analyses running at once, sharing the cores (default {DEFAULT_CONCURRENCY})")


def serve(model: str | None, port: int, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
          concurrency: int = DEFAULT_CONCURRENCY) -> None:
    """Builds the page and serves it until interrupted, with the cores shared out between `concurrency` analyses."""
    logging.basicConfig(level=logging.INFO)
    # process-wide, and read by each of Gradio's worker threads when it first runs torch
    torch.set_num_threads(threads_per_request(concurrency))
    logger.info("up to %d analyses at once, %d torch threads each", concurrency, torch.get_num_threads())
    # 127.0.0.1 unless the host says otherwise (a Hub Space sets GRADIO_SERVER_NAME=0.0.0.0)
    app = build_app(model, max_batch_size, concurrency)
    app.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), server_port=port)


if __name__ == "__main__":
    main()
