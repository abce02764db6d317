"""Demo: detect the faces in a photo, classify each with ET-Fuser (through `etfuser_hf.analysis`, as `analyze` does),
and write an annotated image — boxes, the predicted label with its score, and a bar per prior showing where the
ensemble token's attention went.

    python -m etfuser_hf.demo                          # the astronaut photo (public domain, ships with scikit-image)
    python -m etfuser_hf.demo photo.jpg --model runs/etfuser-synthetic/model --output annotated.png
    python -m etfuser_hf.demo photos/                  # every image in a folder (recursively), one PNG each
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import PIL.Image
import PIL.ImageDraw

from ..analysis.media import IMAGE_SUFFIXES, MediaItem, expand_inputs, iter_media
from ..analysis.pipeline import FaceAnalyzer
from ..analysis.report import FacePrediction, face_predictions
from ..analysis.saved_model import load_model

_BAR_COLOURS = [(230, 120, 30), (40, 140, 210), (80, 170, 80), (200, 60, 120), (150, 100, 200), (120, 120, 120)]


def annotate(image: PIL.Image.Image, predictions: list[FacePrediction]) -> PIL.Image.Image:
    """Draws boxes, labels and per-prior attention bars; a banner when no face was found."""
    canvas = image.convert("RGB").copy()
    draw = PIL.ImageDraw.Draw(canvas)
    line = max(2, canvas.width // 200)
    if not predictions:
        draw.rectangle([0, 0, canvas.width, 24], fill=(0, 0, 0))
        draw.text((6, 6), "no face found", fill=(255, 255, 255))
        return canvas
    for prediction in predictions:
        x0, y0, x1, y1 = prediction.box
        draw.rectangle([x0, y0, x1, y1], outline=(255, 220, 0), width=line)
        caption = prediction.caption
        draw.rectangle([x0, max(0, y0 - 16), x0 + 7 * len(caption) + 6, y0], fill=(255, 220, 0))
        draw.text((x0 + 3, max(0, y0 - 14)), caption, fill=(0, 0, 0))
        bar_top, bar_height = y1 + 4, 12
        width = x1 - x0
        for row, (name, share) in enumerate(prediction.prior_attention.items()):
            top = bar_top + row * (bar_height + 2)
            draw.rectangle([x0, top, x0 + width, top + bar_height], fill=(40, 40, 40))
            draw.rectangle([x0, top, x0 + width * share, top + bar_height], fill=_BAR_COLOURS[row % len(_BAR_COLOURS)])
            draw.text((x0 + 3, top), f"{name} {share:.2f}", fill=(255, 255, 255))
    return canvas


def _demo_items(source: str | Path | None) -> tuple[int, Iterator[MediaItem]]:
    """(number of images, their `MediaItem`s): the astronaut for None, else an image or a folder (recursive)."""
    import skimage.data

    if source is None:
        return 1, iter([MediaItem("astronaut", 0, float("nan"), image=skimage.data.astronaut())])
    if not Path(source).exists():
        raise FileNotFoundError(f"image: {source} does not exist.")
    files = expand_inputs(source, IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"image: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}.")
    return len(files), iter_media(files)


def run_demo(source: str | Path | None, model_dir: str | Path | None, output: str | Path | None) -> list[Path]:
    """Annotates `source` (an image, a folder of images searched recursively, or None for the astronaut) and returns
    the written files."""
    analyzer = FaceAnalyzer(load_model(model_dir))
    count, items = _demo_items(source)
    written = []
    for item in items:
        if item.error is not None:
            raise ValueError(f"image: {item.source}: {item.error}")
        stem = Path(item.source).stem
        target = Path(output) if output is not None and count == 1 else \
            Path(output or ".") / f"{stem}_etfuser.png" if output is not None else Path(f"{stem}_etfuser.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        predictions = face_predictions(analyzer([item]))
        annotate(PIL.Image.fromarray(item.image), predictions).save(target)
        summary = ", ".join(prediction.caption for prediction in predictions) or "no face found"
        print(f"{target}: {summary}")
        written.append(target)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", default=None,
                        help="an image or a folder of images (default: scikit-image's astronaut photo)")
    parser.add_argument("--model", default=None, help="saved ET-Fuser folder (default: newest runs/*/model)")
    parser.add_argument("--output", default=None, help="output PNG (one image) or folder (several)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m etfuser_hf.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    run_demo(args.image, args.model, args.output)


if __name__ == "__main__":
    main()
