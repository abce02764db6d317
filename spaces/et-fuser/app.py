"""ET-Fuser as a Gradio Space: upload a photo or a short video, see every face the model finds.

    python spaces/et-fuser/app.py                               # the main job's model, http://127.0.0.1:7860
    python spaces/et-fuser/app.py --model path/to/model --port 7861
    ETFUSER_SPACE_MODEL=user/et-fuser python app.py             # on the Hub: a model id from the front matter

Each answer comes from `etfuser_hf.analyze` (face_report.py); every problem with an upload or a model folder is a
message in the page, never a stack trace. Requests go through Gradio's queue, at most `--concurrency` at a time.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine unless asked

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from face_report import PhotoResult, VideoResult, analyze_photo, analyze_video  # noqa: E402
from space_model import ModelNotFound, load_space_model, model_choices  # noqa: E402

logger = logging.getLogger("etfuser_space")
DEFAULT_CONCURRENCY = 2  # one request per CPU core of a free Space; more only queue behind each other
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


def photo_outputs(path: str | None, model_choice: str | None) -> tuple:
    """The photo tab's outputs: banner, message, annotated image, faces, readings, attention bars, table, CSV."""
    banner = ""
    try:
        space = load_space_model(model_choice)
        banner = _banner(space)
        result = analyze_photo(path, space)
    except ModelNotFound as missing:
        result = PhotoResult(message=str(missing))
    except Exception as error:  # noqa: BLE001 - the page gets a message, the log the traceback
        result = PhotoResult(message=_internal_error(error))
    return (banner, result.message, result.annotated, result.faces, result.readings, result.attention, result.table,
            _csv(result.table))


def video_outputs(path: str | None, every_n_frames: float, model_choice: str | None) -> tuple:
    """The video tab's outputs: banner, message, time-course plot, table, CSV."""
    banner = ""
    try:
        space = load_space_model(model_choice)
        banner = _banner(space)
        result = analyze_video(path, space, int(every_n_frames))
    except ModelNotFound as missing:
        result = VideoResult(message=str(missing))
    except Exception as error:  # noqa: BLE001
        result = VideoResult(message=_internal_error(error))
    return banner, result.message, result.time_course, result.table, _csv(result.table)


def model_status(model_choice: str | None) -> str:
    """The banner for the picked model, or how to make one when there is none."""
    try:
        return _banner(load_space_model(model_choice))
    except ModelNotFound as missing:
        return str(missing)
    except Exception as error:  # noqa: BLE001
        return _internal_error(error)


def build_app(model: str | None = None, concurrency: int = DEFAULT_CONCURRENCY) -> gr.Blocks:
    """The page; `model` is the picker's start-up choice (default: the main job's model)."""
    choices = model_choices(model)
    with gr.Blocks(title="ET-Fuser") as app:
        gr.Markdown(TITLE + "\n\n" + INTRO)
        picker = gr.Dropdown(choices, value=choices[0], allow_custom_value=True, label="Model",
                             info="any saved ET-Fuser classification folder (or a Hub model id)")
        banner = gr.Markdown(model_status(choices[0]), elem_id="banner")
        with gr.Tab("Photo"):
            with gr.Row():
                photo = gr.File(label="Photo", file_types=["image"], elem_id="photo-input")
                photo_button = gr.Button("Analyse photo", variant="primary", elem_id="photo-submit")
            photo_message = gr.Markdown(elem_id="photo-message")
            annotated = gr.Image(label="Faces found", type="pil", elem_id="annotated", interactive=False)
            faces = gr.Dataframe(label="Per face: the model's label and probabilities", elem_id="faces",
                                 interactive=False)
            readings = gr.Dataframe(label="The model's answer beside the pretrained networks' own readings",
                                    elem_id="readings", interactive=False)
            attention = gr.BarPlot(x="prior", y="share", color="face", y_lim=[0, 1], elem_id="attention",
                                   label="Where the ensemble token's attention went (share per prior)")
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
        picker.change(model_status, picker, banner, concurrency_limit=concurrency)
        photo_button.click(photo_outputs, [photo, picker],
                           [banner, photo_message, annotated, faces, readings, attention, photo_table, photo_csv],
                           api_name="analyze_photo", concurrency_limit=concurrency, concurrency_id="analysis")
        video_button.click(video_outputs, [video, every, picker], [banner, video_message, course, video_table, video_csv],
                           api_name="analyze_video", concurrency_limit=concurrency, concurrency_id="analysis")
    return app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=concurrency)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("ETFUSER_SPACE_MODEL"),
                        help="saved ET-Fuser folder or Hub model id (default: runs/etfuser-synthetic/model)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help=f"requests analysed at once (default {DEFAULT_CONCURRENCY}); the rest wait in the queue")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency: expected an int >= 1, got {args.concurrency}.")
    logging.basicConfig(level=logging.INFO)
    # 127.0.0.1 unless the host says otherwise (a Hub Space sets GRADIO_SERVER_NAME=0.0.0.0)
    build_app(args.model, args.concurrency).launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                                                   server_port=args.port)


if __name__ == "__main__":
    main()
