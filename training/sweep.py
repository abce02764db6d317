"""Validation sweep behind the default recipe (docs/recipe.md): protocol rows under candidate learning rates, on the
main job's splits, validation split only (test is never predicted).

    python training/sweep.py --tasks age_group --rows et-fuser-priors-only --learning-rates 1e-3 3e-3 1e-2
    python training/sweep.py --rows canonical et-fuser concat-mlp --new-module-speedups 1 3 10 --seeds 2

Takes every option of `training/train.py` (data, budget, --workers); writes `sweep.md` and `sweep.json` into
--output-dir (default runs/sweep).
"""

import json
from pathlib import Path

from etfuser_hf.training.main import build_parser, parse_args, prepare_protocol
from etfuser_hf.training.protocol import PROTOCOL_ROWS
from etfuser_hf.training.validation_sweep import render_sweep, run_sweep, sweep_candidates


def main() -> None:
    parser = build_parser("training/sweep.py", __doc__)
    parser.set_defaults(output_dir=Path("runs/sweep"), seeds=2)
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--rows", nargs="+", default=["et-fuser"], choices=[row.name for row in PROTOCOL_ROWS if not row.probe])
    sweep.add_argument("--learning-rates", nargs="+", type=float, default=[], metavar="LR",
                       help="rates tried for every row (new modules and canonical model alike)")
    sweep.add_argument("--new-module-speedups", nargs="+", type=float, default=[], metavar="K",
                       help="rows that fine-tune the canonical model: new modules at K x the task's rate, the "
                            "canonical model at the task's rate")
    args = parse_args(parser=parser)
    tasks, context, _ = prepare_protocol(args)
    seeds = list(range(args.seed, args.seed + args.seeds))
    rows = [row for row in PROTOCOL_ROWS if row.name in args.rows]
    report, records = [], {}
    for task in tasks:
        candidates = sweep_candidates(task, rows, args.learning_rates, args.new_module_speedups)
        records[task.name] = run_sweep(task, candidates, seeds, context, args.workers)
        report.append(render_sweep(task, records[task.name], seeds))
        print(report[-1], flush=True)
    (args.output_dir / "sweep.md").write_text("SYNTHETIC data; validation split only.\n\n" + "\n".join(report))
    (args.output_dir / "sweep.json").write_text(json.dumps({"seeds": seeds, "tasks": records}, indent=2))


if __name__ == "__main__":
    main()
