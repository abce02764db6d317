"""Does a row's edge grow or shrink with data? The validation metric of every swept row at several numbers of
training images, each point one `etfuser sweep` (so each row keeps the candidates it is given, the same for every
row, and the best of them on validation is the point), the test split never predicted:

    python training/data_size_curve.py --train-sizes 800 1600 3200 --tasks expression --rows et-fuser concat-mlp-pooled \
        --augment-candidates light:4 --seeds 3

The smallest size is `--num-train`; every larger one adds images from beyond the test range (`--more-train`), so
the points share their validation images and the smaller points' training images. Every other option is the
sweep's (`validation_sweep.py`). Writes OUTPUT/train-N/ (each point's sweep folder) and OUTPUT/data_size_curve.md,
.json and .png: per task and row the validation metric of its best candidate at each size (mean ± std over seeds),
each ensemble-token row against concatenation over the same tokens and against the canonical model (the paired
t-test across seeds, validation split).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..metrics import GREATER_IS_BETTER
from .comparison.tasks import resolve_tasks
from .report.curves import render_curves_markdown, row_comparisons, save_curve_plot
from .report.task_tables import mean_std
from .validation_sweep import best_candidates
from .validation_sweep import main as sweep_main

# set by the curve itself (the sizes, of the synthetic default), or not taken: the curve reads each task's headline
# metric, as the synthetic tasks define it
REFUSED_SWEEP_OPTIONS = ("--num-train", "--more-train", "--dataset", "--select-on")
CURVE_FILE_NAME = "data_size_curve"


def data_size_curves(sweeps: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """`{task: {"metric", "split": "validation", "rows": {row: {size: {"mean", "std", "per_seed", "candidate"}}},
    "comparisons"}}` from each size's sweep summary (`validation_sweep.main`'s return value)."""
    first = next(iter(sweeps.values()))
    tasks = resolve_tasks(list(first["tasks"]), synthetic=True)
    curves: dict[str, Any] = {}
    for task in tasks:
        per_row: dict[str, dict[int, Any]] = {}
        for size, sweep in sweeps.items():
            for row, record in best_candidates(task, sweep["tasks"][task.name]).items():
                per_row.setdefault(row, {})[size] = {**mean_std(record["per_seed"]), "per_seed": record["per_seed"],
                                                     "candidate": record["candidate"]}
        curves[task.name] = {"metric": task.selection_metric, "split": "validation", "rows": per_row,
                             "comparisons": row_comparisons(task, per_row, GREATER_IS_BETTER[task.selection_metric])}
    return curves


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="training/data_size_curve.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-sizes", nargs="+", type=int, required=True, metavar="N",
                        help="numbers of training images; the smallest is the sweep's --num-train")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/data-size"))
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args, sweep_args = parser.parse_known_args(argv)
    sizes = sorted(dict.fromkeys(args.train_sizes))
    if len(sizes) < 2 or sizes[0] < 1:
        parser.error(f"--train-sizes: expected at least two different positive sizes, got {args.train_sizes}.")
    given = [option for option in REFUSED_SWEEP_OPTIONS
             if any(value == option or value.startswith(option + "=") for value in sweep_args)]
    if given:
        parser.error(f"{', '.join(given)}: not taken here: the curve sets the training images (the smallest "
                     f"--train-sizes, then images added to the synthetic default's) and reads each task's headline "
                     f"metric; drop {'them' if len(given) > 1 else 'it'}.")
    sweeps = {size: sweep_main([*sweep_args, "--num-train", str(sizes[0]), "--more-train", str(size - sizes[0]),
                                "--output-dir", str(args.output_dir / f"train-{size}")])
              for size in sizes}
    curves = data_size_curves(sweeps)
    markdown = render_curves_markdown(
        curves, "## Validation metric against training images (SYNTHETIC data; validation split only, mean ± std over "
                "seeds; each row's best candidate on validation at each size)", lambda size: f"{size} images")
    (args.output_dir / f"{CURVE_FILE_NAME}.md").write_text(markdown)
    (args.output_dir / f"{CURVE_FILE_NAME}.json").write_text(json.dumps(
        {"train_sizes": sizes, "sweep_commands": {size: sweep["command"] for size, sweep in sweeps.items()},
         "curves": curves}, indent=2))
    save_curve_plot(args.output_dir / f"{CURVE_FILE_NAME}.png", curves, True, "training images")
    print(markdown, flush=True)
    return curves


if __name__ == "__main__":
    main()
