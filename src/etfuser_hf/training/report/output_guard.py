"""Output folders and files that refuse to overwrite an earlier run unless asked to."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class OutputExistsError(FileExistsError):
    """The output folder or file already holds results and neither overwrite nor resume was asked for."""


def check_output_dir(path: str | os.PathLike, overwrite: bool, resume: bool = False,
                     flag: str = "--overwrite") -> Path:
    """Returns `path` if a run may write into it, creating nothing. An existing, non-empty folder is refused with
    `OutputExistsError` unless `overwrite` (files in it may then be replaced) or `resume` (a run continues in it);
    a path that is an existing file is always refused."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output folder {path} is an existing file; expected a folder or a new path.")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise OutputExistsError(f"output folder {path} exists and is not empty (it holds an earlier run?); pass "
                                f"{flag} to write into it anyway, or choose another folder.")
    return path


def prepare_output_dir(path: str | os.PathLike, overwrite: bool, resume: bool = False,
                       flag: str = "--overwrite") -> Path:
    """`check_output_dir`, then creates `path` (and its parents) and returns it. Nothing is deleted here."""
    path = check_output_dir(path, overwrite, resume, flag)
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare_output_files(paths: Iterable[str | os.PathLike], overwrite: bool, flag: str = "--overwrite"
                         ) -> list[Path]:
    """Refuses (`OutputExistsError`) when any of `paths` exists unless `overwrite`; creates their parent folders.
    For commands whose output is a file (a model card, an ONNX file and its side files)."""
    paths = [Path(path) for path in paths]
    existing = [str(path) for path in paths if path.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"output file(s) {', '.join(existing)} already exist; pass {flag} to replace them.")
    for path in paths:
        if path.is_dir():
            raise OutputExistsError(f"output file {path} is an existing folder; expected a file path.")
        path.parent.mkdir(parents=True, exist_ok=True)
    return paths


__all__ = ["OutputExistsError", "check_output_dir", "prepare_output_dir", "prepare_output_files"]
