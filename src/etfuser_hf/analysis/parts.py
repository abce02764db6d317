"""A run's table written as it is made, so a crash loses at most the chunk in progress and `--resume` continues.

Every chunk of `batch_size` frames becomes one Parquet part in `<output>.parts/`, written to a temporary name and
renamed into place (`os.replace`, atomic), with page checksums; its key-value metadata holds the run's key (the
files, options and model it was made from), its chunk index and the tracker's state after it. A resumed run keeps the
longest unbroken series of parts from chunk 0 that read back in full under their checksums with this run's key,
deletes the rest (a part cut off mid-write, a damaged one, anything after a gap), restores the tracker from the last
kept part and analyses from the next chunk on: the final table is the one an uninterrupted run writes.

When all chunks are done the parts are streamed into `--output` (Parquet row groups or CSV appends, to a temporary
file renamed into place) and the folder is removed; the per-file summary and the data for the time-course plots
are gathered on the way, so no step holds the whole table.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .pipeline import FaceAnalyzer
from .table import model_output_columns
from .report import RunningSummary, check_table_path
from .tracking import FaceTracker

METADATA_KEY = b"etfuser.part"


def parts_folder(output: str | os.PathLike) -> Path:
    """Where the parts of the run writing `output` live."""
    output = Path(output)
    return output.with_name(f"{output.name}.parts")


def run_key(analyzer: FaceAnalyzer, files: Sequence[str], every_n_frames: int, rank: int, processes: int) -> str:
    """sha256 of what decides the table: the files (with size and modification time), the options and the model."""
    from .backends import folder_hash

    loaded = analyzer.loaded
    stats = [(path, *(lambda s: (s.st_size, s.st_mtime_ns))(os.stat(path))) if os.path.exists(path) else (path,)
             for path in files]
    described = {
        "files": stats, "every_n_frames": every_n_frames, "batch_size": analyzer.batch_size,
        "max_faces": analyzer.max_faces, "extras": analyzer.extras.extras, "backend": type(analyzer.run).__name__,
        "model": folder_hash(loaded.folder) if loaded.folder is not None else None, "rank": [rank, processes],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def _part_path(folder: Path, rank: int, processes: int, index: int) -> Path:
    return folder / f"rank{rank:03d}-of-{processes:03d}-chunk{index:07d}.parquet"


def write_part(path: Path, table: pd.DataFrame, key: str, index: int, tracker: FaceTracker) -> Path:
    """Writes one chunk's rows atomically, with the run key, chunk index and tracker state as metadata."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    metadata = {"key": key, "chunk": index, "rows": len(table), "tracker": tracker.state_dict()}
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), METADATA_KEY: json.dumps(metadata).encode()})
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    pq.write_table(arrow, partial, write_page_checksum=True)
    os.replace(partial, path)
    return path


def read_part(path: Path) -> tuple[pd.DataFrame, dict]:
    """A part's rows and metadata; raises when the file is cut off, damaged or not a part."""
    arrow = pq.read_table(path, page_checksum_verification=True)
    metadata = json.loads(arrow.schema.metadata[METADATA_KEY])
    if arrow.num_rows != metadata["rows"]:
        raise ValueError(f"{path}: {arrow.num_rows} rows, its metadata says {metadata['rows']}")
    return arrow.to_pandas(), metadata


def _rank_pattern(rank: int, processes: int) -> str:
    """The glob of this rank's part names (`_part_path`, any chunk)."""
    return f"rank{rank:03d}-of-{processes:03d}-chunk*.parquet"


def _rank_parts(folder: Path, rank: int, processes: int) -> list[Path]:
    return sorted(folder.glob(_rank_pattern(rank, processes)))


def _rank_partials(folder: Path, rank: int, processes: int) -> list[Path]:
    """This rank's half-written parts (`write_part`'s temporary files); the other ranks' may be being written now."""
    return sorted(folder.glob(f".{_rank_pattern(rank, processes)}.*.partial"))


def _resume_point(folder: Path, rank: int, processes: int, key: str) -> tuple[int, dict | None]:
    """(chunks already done, the tracker state after the last of them); removes every part not kept."""
    done, state, parts = 0, None, _rank_parts(folder, rank, processes)
    for path in parts:
        try:
            _, metadata = read_part(path)
            valid = metadata["key"] == key and path == _part_path(folder, rank, processes, done)
        except Exception:  # noqa: BLE001 - whatever makes a part unreadable, it is redone
            valid = False
        if not valid:
            break
        done, state = done + 1, metadata["tracker"]
    for path in parts[done:]:  # cut off, damaged, from another run, or after a gap
        path.unlink()
    for stale in _rank_partials(folder, rank, processes):
        stale.unlink()
    return done, state


def analyze_to_parts(analyzer: FaceAnalyzer, files: Sequence[str], every_n_frames: int, folder: Path, resume: bool,
                     rank: int = 0, processes: int = 1, progress: bool = True) -> list[Path]:
    """Analyses `files` into parts under `folder` (see the module docstring); `resume=False` starts afresh, removing
    this rank's old parts. Returns this rank's parts in order."""
    folder.mkdir(parents=True, exist_ok=True)
    key = run_key(analyzer, files, every_n_frames, rank, processes)
    if not resume:
        for old in _rank_parts(folder, rank, processes):
            old.unlink()
    done, state = _resume_point(folder, rank, processes, key)
    if state is not None:
        analyzer.extras.tracker = FaceTracker.from_state_dict(state)
    items = analyzer.watched(files, every_n_frames, progress)
    for index, table in analyzer.iter_chunks(items, skip=done):
        write_part(_part_path(folder, rank, processes, index), table, key, index, analyzer.extras.tracker)
    return _rank_parts(folder, rank, processes)


def iter_parts(paths: Sequence[Path]) -> Iterator[pd.DataFrame]:
    for path in paths:
        yield read_part(path)[0]


def merge_parts(paths: Sequence[Path], output: str | os.PathLike, empty: pd.DataFrame,
                keep_time_course: bool = False) -> tuple[RunningSummary, pd.DataFrame | None]:
    """Streams the parts, in order, into `output` (.csv or .parquet; written to a temporary file, then renamed);
    `empty` (the table's columns, no rows) is written when there are no parts. Returns the running summary and, with
    `keep_time_course`, the rows `plot_time_course` reads (each frame's best face and its model outputs)."""
    output = check_table_path(output, "--output")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    summary, courses, writer = RunningSummary(), [], None
    try:
        for index, table in enumerate(iter_parts(paths) if paths else [empty]):
            summary.update(table)
            if keep_time_course:
                kept = ["source", "frame", "timestamp", "face", "status", *model_output_columns(table.columns)]
                courses.append(table.loc[(table["face"] <= 0) & (table["status"] != "error"), kept])
            if output.suffix.lower() == ".csv":
                table.to_csv(partial, mode="w" if index == 0 else "a", header=index == 0, index=False)
            else:
                arrow = pa.Table.from_pandas(table, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(partial, arrow.schema)
                writer.write_table(arrow)
        if writer is not None:
            writer.close()
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return summary, (pd.concat(courses, ignore_index=True) if courses else None)


__all__ = ["analyze_to_parts", "merge_parts", "parts_folder", "read_part", "run_key", "write_part"]
