"""Long videos in bounded memory: peak RSS of `etfuser analyze` on a short and a 10x longer video, and faces/s at the
start and the end of the long one, in one run on this machine (CPU).

Both videos are synthetic: two real faces (scikit-image's astronaut and an upscaled LFW face, public domain) drift
across a grey frame on slow sine paths, crossing now and then, at `--fps` frames per second (default: 2 and 20
minutes at 2 fps; `--every` analyses every n-th frame only). Each video is analysed by `etfuser analyze --output
x.parquet` (parts written per chunk, then streamed into the output; all extra columns on) in a child process of its
own, so the two do not share a peak; psutil samples the child's RSS every 50 ms, and the child times every chunk.
Goals (issue 21): peak RSS(long) <= 1.2x peak RSS(short); faces/s over the last tenth of the long video's chunks
within 10 % of the first tenth's.

    python benchmarks/analysis_long_video.py [--model DIR] [--minutes 2 20] [--fps 2] [--every 1] [--batch-size 32]

Without --model a small ET-Fuser over the real expression prior (random fusion, tiny ViT) is built: the point is the
pipeline's memory and speed over time, not the model's accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIDE = 110


def make_video(path: Path, minutes: float, fps: int) -> Path:
    import skimage.data
    import skimage.transform

    from etfuser_hf.analysis.media import write_video

    astronaut = skimage.transform.resize(skimage.data.astronaut()[30:230, 140:320], (SIDE, SIDE), anti_aliasing=True)
    lfw = skimage.transform.resize(skimage.data.lfw_subset()[0], (SIDE, SIDE), order=3)
    faces = [(astronaut * 255).astype(np.uint8), (np.repeat(lfw[..., None], 3, 2) * 255).clip(0, 255).astype(np.uint8)]

    def frames():
        for index in range(int(minutes * 60 * fps)):
            frame = np.full((240, 400, 3), 90, np.uint8)
            t = index / fps
            for face, (period, y) in zip(faces, ((23.0, 10), (31.0, 80))):
                x = int((400 - SIDE) * (0.5 + 0.5 * np.sin(2 * np.pi * t / period + y)))
                frame[y:y + SIDE, x:x + SIDE] = face
            yield frame

    return write_video(path, frames(), fps=fps)


def default_model(folder: Path) -> Path:
    import torch
    from transformers import ViTConfig

    from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
    from etfuser_hf.priors.convert_face_priors import ensure_face_priors

    torch.manual_seed(0)
    backbone = ViTConfig(image_size=112, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64)
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={"expression": ensure_face_priors(names=["expression"])["expression"]}, backbone=backbone,
        image_size=112, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=7)
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 112, "width": 112}).save_pretrained(folder)
    return folder


def child(args: argparse.Namespace) -> None:
    """Runs `etfuser analyze` in this process, timing each chunk; prints one JSON line."""
    from etfuser_hf.analysis.pipeline import FaceAnalyzer
    from etfuser_hf.hub.cli import main

    chunks = []
    original = FaceAnalyzer.analyze_chunk

    def timed(self, chunk):
        start = time.perf_counter()
        table = original(self, chunk)
        chunks.append((int((table["status"] == "ok").sum()), time.perf_counter() - start))
        return table

    FaceAnalyzer.analyze_chunk = timed
    start = time.perf_counter()
    main(["analyze", args.child, "--model", args.model, "--output", args.output, "--batch-size",
          str(args.batch_size), "--every-n-frames", str(args.every), "--no-progress"])
    print(json.dumps({"chunks": chunks, "seconds": time.perf_counter() - start}))


def measure(video: Path, args: argparse.Namespace, output: Path) -> dict:
    import psutil

    command = [sys.executable, __file__, "--child", str(video), "--model", str(args.model), "--output", str(output),
               "--batch-size", str(args.batch_size), "--every", str(args.every)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    lines = process.stdout.read().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise SystemExit(f"{video}: the child failed (exit {process.returncode})")
    return {**json.loads(lines[-1]), "peak_rss": peak}


def faces_per_second(chunks: list) -> float:
    faces, seconds = map(sum, zip(*chunks))
    return faces / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--minutes", type=float, nargs=2, default=[2.0, 20.0])
    parser.add_argument("--fps", type=int, default=2)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        args.model = args.model or str(default_model(scratch / "model"))
        results = {}
        for minutes in args.minutes:
            video = make_video(scratch / f"{minutes:g}min.mp4", minutes, args.fps)
            results[minutes] = measure(video, args, scratch / f"{minutes:g}min.parquet")
            chunks = results[minutes]["chunks"]
            print(f"{minutes:g} min at {args.fps} fps (every {args.every}): {sum(f for f, _ in chunks)} faces in "
                  f"{len(chunks)} chunks, {results[minutes]['seconds']:.0f} s, peak RSS "
                  f"{results[minutes]['peak_rss'] / 2**20:.0f} MiB", flush=True)
    short, long = (results[minutes] for minutes in args.minutes)
    ratio = long["peak_rss"] / short["peak_rss"]
    tenth = max(1, len(long["chunks"]) // 10)
    first, last = faces_per_second(long["chunks"][:tenth]), faces_per_second(long["chunks"][-tenth:])
    print(f"peak RSS {args.minutes[1]:g} min / {args.minutes[0]:g} min: {ratio:.3f} (goal <= 1.2)")
    print(f"faces/s, first tenth of the long video: {first:.2f}, last tenth: {last:.2f}, change "
          f"{100 * (last / first - 1):+.1f} % (goal within 10 %)")
    print(f"load average: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
