"""The run folder: metrics.json (the documented schema) and results.md."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .results import render_multitask_markdown, render_results_markdown


def write_run_folder(folder: str | os.PathLike, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                     main: str) -> Path:
    """metrics.json (the documented schema) and results.md (with the multi-task comparison where `summary` has one
    under "multitask", from `multitask_comparison`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({**summary, "main_variant": main, "results": list(rows)}, indent=2))
    text = render_results_markdown(rows, main)
    if summary.get("multitask"):
        text += ("\n## One multi-task model against single-task models\n\n"
                 + render_multitask_markdown(summary["multitask"]))
    (folder / "results.md").write_text(text)
    return folder
