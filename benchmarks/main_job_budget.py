"""The main job's budget, measured: wall time and peak resident memory of the whole process tree (the training
workers are separate processes), polled every half second, against the goals of 15 minutes and 4 GiB on 2 cores.

    pip install -e ".[benchmarks]"
    python benchmarks/main_job_budget.py                          # the README's main job
    python benchmarks/main_job_budget.py -- --tasks expression    # extra arguments go to training/train.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

WALL_GOAL_S, RSS_GOAL_MIB = 15 * 60, 4 * 1024


def tree_rss(root: psutil.Process) -> int:
    """Resident bytes of `root` and all its descendants (processes that exit between the calls are skipped)."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def main() -> None:
    extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    script = Path(__file__).resolve().parents[1] / "training" / "train.py"
    start = time.perf_counter()
    job = subprocess.Popen([sys.executable, str(script), *extra])
    root, peak = psutil.Process(job.pid), 0
    while job.poll() is None:
        peak = max(peak, tree_rss(root))
        time.sleep(0.5)
    wall, peak_mib = time.perf_counter() - start, peak / 2**20
    print(f"main job: exit {job.returncode}, wall {wall:.0f} s ({wall / WALL_GOAL_S:.2f} of the 15-minute goal), "
          f"peak RSS of the process tree {peak_mib:.0f} MiB ({peak_mib / RSS_GOAL_MIB:.2f} of the 4 GiB goal)")
    sys.exit(job.returncode)


if __name__ == "__main__":
    main()
