"""Inputs of the face analysis (`analyze`, `etfuser predict`, the demo): paths (image files, folders searched
recursively, videos) expanded into a stream of RGB frames, decoded lazily so a long video never sits in memory at once.

Every problem with one input (missing path, unreadable image, broken or truncated video) becomes a `MediaItem` with
`error` set instead of an exception, so a bulk run reports it and carries on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.image_decoding import BadImage, open_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass
class MediaItem:
    """One still image or one video frame, or an input that failed.

    source: the file's path as given (folders expanded to the files found under them).
    frame: index of the decoded frame in the video (0 for a still image; -1 when the whole file failed).
    timestamp: presentation time in seconds (NaN for still images and failures).
    image: `np.ndarray` uint8 `(H, W, 3)` RGB, or None when `error` is set.
    error: why the input (or the rest of the video from `frame` on) could not be read; None when fine.
    """

    source: str
    frame: int
    timestamp: float
    image: np.ndarray | None = None
    error: str | None = None


def _check_inputs(inputs) -> list[str]:
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    if isinstance(inputs, Sequence) and not isinstance(inputs, (bytes, bytearray)):
        paths = []
        for index, value in enumerate(inputs):
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"inputs[{index}]: expected a file or folder path (str or os.PathLike), "
                                f"got {type(value).__name__}.")
            paths.append(os.fspath(value))
        if not paths:
            raise ValueError("inputs: got an empty list; expected image files, videos or folders.")
        return paths
    raise TypeError(f"inputs: expected a path or a list of paths (images, videos, folders), got {type(inputs).__name__}.")


def expand_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike],
                  suffixes: frozenset[str] = MEDIA_SUFFIXES) -> list[str]:
    """Files to analyse, in a stable order: each path as given, folders replaced by the files with one of `suffixes`
    found under them (recursively, sorted). Missing paths stay in the list; `iter_media` reports them."""
    files: list[str] = []
    for path in _check_inputs(inputs):
        if Path(path).is_dir():
            found = [p for p in Path(path).rglob("*") if p.is_file() and p.suffix.lower() in suffixes]
            files.extend(str(p) for p in sorted(found))
        else:
            files.append(path)
    return files


def is_video(path: str) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def count_frames(path: str, every_n_frames: int = 1) -> int:
    """Frames `iter_media` will yield for one file (1 for an image; the container's frame count, or an estimate from
    its duration, for a video; 0 when unknown). Only sizes the progress bar."""
    if not is_video(path):
        return 1
    try:
        import av

        with av.open(path) as container:
            stream = container.streams.video[0]
            frames = stream.frames
            if not frames and stream.duration and stream.time_base and stream.average_rate:
                frames = int(float(stream.duration * stream.time_base) * float(stream.average_rate))
    except Exception:  # noqa: BLE001 - a broken file is reported by iter_media, not here
        return 0
    return -(-int(frames) // every_n_frames) if frames else 0


def _read_image(path: str) -> MediaItem:
    try:
        return MediaItem(path, 0, float("nan"), image=np.asarray(open_image(path)))
    except BadImage as error:
        return MediaItem(path, -1, float("nan"), error=str(error))


def _read_video(path: str, every_n_frames: int) -> Iterator[MediaItem]:
    """Decodes one frame at a time (PyAV, its own FFmpeg); a decoding error ends this video with an error item."""
    import av

    index = -1
    try:
        with av.open(path) as container:
            if not container.streams.video:
                yield MediaItem(path, -1, float("nan"), error="no video stream")
                return
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                index += 1
                if index % every_n_frames:
                    continue
                timestamp = float(frame.time) if frame.time is not None else float("nan")
                yield MediaItem(path, index, timestamp, image=frame.to_ndarray(format="rgb24"))
    except Exception as error:  # noqa: BLE001 - av.error.* and truncated streams alike
        where = "unreadable video" if index < 0 else f"video broke after frame {index}"
        yield MediaItem(path, -1 if index < 0 else index + 1, float("nan"), error=f"{where}: {error}")
        return
    if index < 0:
        yield MediaItem(path, -1, float("nan"), error="video has no decodable frames")


def iter_media(files: Iterable[str], every_n_frames: int = 1) -> Iterator[MediaItem]:
    """Streams `MediaItem`s for `files` (from `expand_inputs`): one per image, one per kept video frame (every
    `every_n_frames`-th decoded frame, starting with the first), one with `error` set per failure. A bad
    `every_n_frames` is refused here, before anything is read."""
    if not isinstance(every_n_frames, int) or isinstance(every_n_frames, bool) or every_n_frames < 1:
        raise ValueError(f"every_n_frames: expected an int >= 1, got {every_n_frames!r}.")
    return _iter_media(files, every_n_frames)


def _iter_media(files: Iterable[str], every_n_frames: int) -> Iterator[MediaItem]:
    for path in files:
        if not Path(path).exists():
            yield MediaItem(path, -1, float("nan"), error="no such file or folder")
        elif is_video(path):
            yield from _read_video(path, every_n_frames)
        elif Path(path).suffix.lower() in IMAGE_SUFFIXES:
            yield _read_image(path)
        else:
            yield MediaItem(path, -1, float("nan"), error=f"unsupported file type {Path(path).suffix or '(none)'!r}: "
                            f"expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a video "
                            f"({', '.join(sorted(VIDEO_SUFFIXES))})")


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = 10) -> Path:
    """Writes RGB uint8 frames `(H, W, 3)` (even sides) as an H.264 MP4 with PyAV; for tests, demos and benchmarks."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = None
        for array in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.height, stream.width = array.shape[:2]
                stream.pix_fmt = "yuv420p"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")))
        if stream is not None:
            container.mux(stream.encode())
    return path


__all__ = ["IMAGE_SUFFIXES", "MEDIA_SUFFIXES", "VIDEO_SUFFIXES", "MediaItem", "count_frames", "expand_inputs", "is_video",
           "iter_media", "write_video"]
