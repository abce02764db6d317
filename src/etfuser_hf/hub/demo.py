"""Demo: detect the faces in a photo, classify each with ET-Fuser, and write an annotated image — boxes, the
predicted label with its score, and a bar per prior showing where the ensemble token's attention went.

    python -m etfuser_hf.demo                          # the astronaut photo (public domain, ships with scikit-image)
    python -m etfuser_hf.demo photo.jpg --model runs/etfuser-synthetic/model --output annotated.png
    python -m etfuser_hf.demo photos/                  # every image in a folder, one annotated PNG each
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from ..models.image_processing_etfuser import ETFuserImageProcessor
from ..models.modeling_etfuser import ETFuserForImageClassification
from ..priors.face_detection import detect_and_align

_BAR_COLOURS = [(230, 120, 30), (40, 140, 210), (80, 170, 80), (200, 60, 120), (150, 100, 200), (120, 120, 120)]
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class FacePrediction:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in pixels
    label: str
    score: float
    prior_attention: dict[str, float]


def default_model_dir() -> Path:
    """The newest `runs/*/model` folder, or a clear error telling how to get one."""
    candidates = sorted(Path("runs").glob("*/model/config.json"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError("No model given and none found under runs/*/model: run the main job "
                                "(`python training/train.py`) or pass --model <folder>.")
    return candidates[-1].parent


def predict_faces(image: PIL.Image.Image, model: ETFuserForImageClassification, processor: ETFuserImageProcessor
                  ) -> list[FacePrediction]:
    """Detects, aligns and classifies every face in `image`; [] when none is found."""
    detections = detect_and_align(np.asarray(image.convert("RGB")), output_size=112)[0]
    if not detections.found:
        return []
    inputs = processor(list(detections.faces), return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs, output_attentions=True)
    probabilities = outputs.logits.softmax(-1)
    predictions = []
    for index, box in enumerate(detections.boxes):
        label_id = int(probabilities[index].argmax())
        attention = {} if outputs.prior_attention is None else dict(
            zip(model.config.priors, outputs.prior_attention[index].tolist()))
        predictions.append(FacePrediction(np.asarray(box, dtype=float), model.config.id2label[label_id],
                                          float(probabilities[index, label_id]), attention))
    return predictions


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
        caption = f"{prediction.label} {prediction.score:.2f}"
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


def run_demo(source: str | Path | None, model_dir: str | Path | None, output: str | Path | None) -> list[Path]:
    """Annotates `source` (an image, a folder of images, or None for the astronaut) and returns the written files."""
    import skimage.data

    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    model = ETFuserForImageClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = ETFuserImageProcessor.from_pretrained(model_dir)
    if source is None:
        images = [("astronaut", PIL.Image.fromarray(skimage.data.astronaut()))]
    else:
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"image: {source} does not exist.")
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) if source.is_dir() else [source]
        if not paths:
            raise FileNotFoundError(f"image: no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in {source}.")
        images = [(path.stem, PIL.Image.open(path)) for path in paths]
    written = []
    for stem, image in images:
        target = Path(output) if output is not None and len(images) == 1 else \
            Path(output or ".") / f"{stem}_etfuser.png" if output is not None else Path(f"{stem}_etfuser.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        predictions = predict_faces(image, model, processor)
        annotate(image, predictions).save(target)
        summary = ", ".join(f"{p.label} ({p.score:.2f})" for p in predictions) or "no face found"
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
